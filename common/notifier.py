"""Delivery of outbox messages: Telegram through python-telegram-bot's ``Bot``, or the console.

Every message is written to the outbox (in the store) in the same transaction as the signal it
announces, then sent, then marked sent with Telegram's message_id. A crash between send and mark
can repeat one message on restart; a crash anywhere else loses nothing. The bots only send: no
``getUpdates``, so several processes can share one token. Each process delivers only its own bots'
rows, and Telegram's limits are reserved in the shared database (``common.sendlimits``), so they
hold across processes.

Each chat is drained by its own task, in queue order: a chat that must wait (its per-minute limit,
a ``retry_after``, an alert whose chart is still being drawn) never holds up another chat, and a
result never overtakes the alert it replies to. A pass waits at most ``INLINE_WAIT_S`` for a slot;
anything longer is left for the next pass (the runner wakes delivery after every cycle and every
few seconds).

Telegram facts this module relies on (Bot API, python-telegram-bot 22):

* ``RetryAfter`` (HTTP 429) carries ``retry_after`` seconds; nothing may be sent to that chat before
  it passes. PTB gives an int, or a timedelta when PTB_TIMEDELTA is set: both are accepted.
* ``TimedOut`` is ambiguous (the message may have arrived); we retry, so delivery is at-least-once.
* ``BadRequest`` and ``TimedOut`` subclass ``NetworkError``: ``BadRequest`` is caught first. "can't
  parse entities" means broken HTML: we retry once as plain text. Other ``BadRequest`` / ``Forbidden``
  answers (chat not found, bot not in channel) will not pass by retrying: the message is marked
  failed with the reason and stays in the table. A photo Telegram refuses is dropped and the card
  goes out as text.
* ``InvalidToken`` (401) at start keeps that token's bots from starting; later it stops delivery
  for the token until it is fixed (logged every pass), and the messages wait.
* A photo caption holds at most 1024 characters after entity parsing: a longer card follows the
  photo as a reply to it. ``message_thread_id`` puts a message in a forum topic.
"""

from __future__ import annotations

import asyncio
import enum
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol, TextIO

from telegram import Bot, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from common.cards import caption_fits, html_to_plain, late_note
from common.clock import Clock
from common.config import Settings, TelegramSettings
from common.logging_config import get_logger
from common.observe import NO_OBSERVER, Observer
from common.sendlimits import SendLimiter, SendRules, token_key
from common.store import OutboxMessage, Store

log = get_logger(__name__)

#: How long an alert waits for its chart before it goes out as text alone.
CHART_WAIT_S = 60.0
#: The longest a delivery pass sleeps for one chat's next slot; longer waits are left to later passes.
INLINE_WAIT_S = 1.5


class Notifier(Protocol):
    """What the runner needs from a notifier."""

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """Check each bot's destination once; returns {bot: one-line problem} for bots that cannot post."""
        ...

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Send queued messages in order until none is ready or ``deadline`` (monotonic) passes."""
        ...

    def backlog(self) -> int:
        """How many messages this notifier still has to deliver."""
        ...

    def interrupt(self) -> None:
        """End the pass in progress once the sends already in flight are answered and recorded."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _chart_waiting(message: OutboxMessage, now_ms: int) -> bool:
    """True while an alert's chart is being drawn and it is young enough to wait for it."""
    return message.chart_state == "pending" and now_ms - message.created_ms < CHART_WAIT_S * 1000


class ConsoleNotifier:
    """Dry-run: prints each message as plain text (and its chart's path) to ``stream``."""

    def __init__(
        self, store: Store, clock: Clock, stream: TextIO | None = None, *, observer: Observer = NO_OBSERVER
    ) -> None:
        self._store = store
        self._clock = clock
        self._stream = stream or sys.stdout
        self._observer = observer
        self._bots: tuple[str, ...] = ()
        self._after_id = 0

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """The console always accepts messages; only those queued from now on are printed.

        Messages already waiting in the store belong to a live run (a dry-run must not mark them
        sent, or they would never reach Telegram).
        """
        self._bots = tuple(bots)
        self._after_id = self._store.last_outbox_id()
        return {}

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Print the messages this run queued (marked sent, so a later live run does not repeat them)."""
        delivered = 0
        while batch := self._store.pending_messages(self._bots, after_id=self._after_id):
            for message in batch:
                if _chart_waiting(message, int(time.time() * 1000)):
                    self._stream.flush()
                    return delivered  # printed once its chart is drawn, in order
                label = {"signal": "alert", "result": "result", "update": "update"}[message.kind]
                # The dry-run's product is this console text (stdout), not a log line.
                self._stream.write(f"──── {message.bot} · {label} (dry-run) ────\n")
                self._stream.write(html_to_plain(message.text) + "\n")
                if message.chart_state == "ready" and message.chart_path:
                    self._stream.write(f"chart: {message.chart_path}\n")
                self._store.mark_sent(message.id, None, self._clock.now_ms())
                self._observer.alert_sent(message.bot, message.kind)
                delivered += 1
        self._stream.flush()
        return delivered

    def backlog(self) -> int:
        """Messages this run queued and has not printed yet."""
        return self._store.count_pending(self._bots, after_id=self._after_id)

    def interrupt(self) -> None:
        """Printing never waits: nothing to interrupt."""

    async def close(self) -> None:
        """Nothing to release."""


def _retry_after_s(error: RetryAfter) -> float:
    """``retry_after`` in seconds, an int or (with PTB_TIMEDELTA) a timedelta.

    PTB 22.2+ warns on every read that the type will become timedelta; both are handled here, so
    the warning says nothing to act on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | float | timedelta = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True)
class _Route:
    """Where one bot's messages go and with which token."""

    bot_key: str  # token_key of the token: names the bot in logs and in the limits table
    chat: str
    topic: int | None


class _Step(enum.Enum):
    """The outcome of one delivery attempt."""

    SENT = "sent"
    GAVE_UP = "gave_up"  # marked failed for good
    WAIT = "wait"  # this chat waits for a later pass


class TelegramNotifier:
    """Sends outbox messages with python-telegram-bot, honouring Telegram's limits across processes."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: Settings,
        limits: TelegramSettings,
        *,
        limiter: SendLimiter | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._store = store
        self._observer = observer
        self._clock = clock
        self._settings = settings
        self._limits = limits
        self._limiter = limiter or SendLimiter(
            store.path,
            SendRules(
                per_chat_interval_ms=round(limits.per_chat_interval_s * 1000),
                group_per_minute=limits.group_per_minute,
                bot_per_second=limits.bot_per_second,
            ),
        )
        base = (settings.telegram_api_base_url or "https://api.telegram.org").rstrip("/")
        self._base = base
        self._clients: dict[str, Bot] = {}  # token_key -> client
        self._routes: dict[str, _Route] = {}  # bot name -> route
        self._backoff_until: dict[str, float] = {}  # chat -> monotonic time (network trouble)
        self._bad_tokens: set[str] = set()
        self._interrupted = False  # set by interrupt(): the pass in progress ends after its sends

    def _client(self, token: str) -> tuple[str, Bot]:
        key = token_key(token)
        if key not in self._clients:
            timeout = self._limits.send_timeout_s
            self._clients[key] = Bot(
                token,
                base_url=f"{self._base}/bot",
                base_file_url=f"{self._base}/file/bot",
                request=HTTPXRequest(read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout),
            )
        return key, self._clients[key]

    # -- start ----------------------------------------------------------------------------------

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """Check each token (getMe) and each bot's chat (getChat) once; return the problems found.

        A problem keeps only that bot from starting: no token, a token Telegram rejects, a chat that
        does not exist or that the bot may not post to. An outage (network error) is not a problem
        here: messages wait in the outbox.
        """
        problems: dict[str, str] = {}
        tokens_checked: dict[str, str | None] = {}
        chats_checked: dict[tuple[str, str], str | None] = {}
        for bot in bots:
            token, chat = self._settings.token_for(bot), self._settings.chat_for(bot)
            if token is None:
                variables = f"TELEGRAM_BOT_TOKEN or TELEGRAM_BOT_TOKEN_{bot.upper()}"
                problems[bot] = f"bot {bot}: no Telegram token (set {variables})"
                continue
            if chat is None:
                problems[bot] = (
                    f"bot {bot}: no Telegram chat (set TELEGRAM_CHAT_{bot.upper()} or TELEGRAM_CHAT_ID)"
                )
                continue
            key, client = self._client(token.get_secret_value())
            if key not in tokens_checked:
                tokens_checked[key] = await self._check_token(client)
            if tokens_checked[key] is not None:
                variable = self._settings.token_variable(bot)
                problems[bot] = f"bot {bot}: Telegram rejected {variable} ({tokens_checked[key]})"
                continue
            if (key, chat) not in chats_checked:
                chats_checked[(key, chat)] = await self._check_chat(client, chat)
            if chats_checked[(key, chat)] is not None:
                problems[bot] = f"bot {bot}: Telegram chat {chat}: {chats_checked[(key, chat)]}"
                continue
            self._routes[bot] = _Route(bot_key=key, chat=chat, topic=self._settings.topic_for(bot))
        abandoned = self._store.abandon_pending_charts(self._routes)
        if abandoned:
            log.info("alerts whose chart was lost with the previous process go out as text", count=abandoned)
        return problems

    @staticmethod
    async def _check_token(client: Bot) -> str | None:
        try:
            await client.initialize()
        except InvalidToken:
            return "401 Unauthorized"
        except NetworkError as exc:
            log.warning("telegram unreachable at start; alerts will wait in the outbox", error=str(exc))
        return None

    @staticmethod
    async def _check_chat(client: Bot, chat: str) -> str | None:
        try:
            await client.get_chat(chat)
        except (BadRequest, Forbidden) as exc:
            return exc.message
        except (NetworkError, RetryAfter) as exc:
            log.warning("telegram unreachable while checking a chat", chat=chat, error=str(exc))
        return None

    # -- delivery -------------------------------------------------------------------------------

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """One pass: every chat's pending messages in queue order, each chat in its own task."""
        self._interrupted = False
        if not self._routes:
            return 0
        by_chat: dict[tuple[str, str], list[OutboxMessage]] = {}
        for message in self._store.pending_messages(self._routes, limit=1000):
            route = self._routes[message.bot]
            by_chat.setdefault((route.bot_key, route.chat), []).append(message)
        counts = await asyncio.gather(*(self._drain(queue, deadline) for queue in by_chat.values()))
        return sum(counts)

    def backlog(self) -> int:
        """Messages of this process's bots still waiting to be sent."""
        return self._store.count_pending(self._routes) if self._routes else 0

    async def reachable(self, timeout_s: float) -> str | None:
        """Ask Telegram who each token is (getMe): None when every token answered, else one line why not.

        The health endpoint's probe. A token Telegram rejected during delivery counts as a problem.
        """
        if self._bad_tokens:
            return f"Telegram rejected {len(self._bad_tokens)} token(s); their alerts wait"
        keys = {route.bot_key for route in self._routes.values()}
        for key in sorted(keys):
            try:
                async with asyncio.timeout(timeout_s):
                    await self._clients[key].get_me()
            except TimeoutError:
                return f"Telegram did not answer getMe within {timeout_s:g} s"
            except TelegramError as exc:
                return f"Telegram getMe failed: {type(exc).__name__}: {exc.message}"
        return None

    def interrupt(self) -> None:
        """End the pass in progress: no new send starts; those on the wire finish and are recorded."""
        self._interrupted = True

    async def _drain(self, queue: list[OutboxMessage], deadline: float | None) -> int:
        """Send one chat's messages in order; stop at the first that must wait."""
        delivered = 0
        for message in queue:
            if self._interrupted or (deadline is not None and time.monotonic() >= deadline):
                break
            step = await self._deliver(message, self._routes[message.bot], deadline)
            if step is _Step.WAIT:
                break
            delivered += step is _Step.SENT
        return delivered

    async def _slot(self, route: _Route, deadline: float | None) -> bool:
        """Wait (briefly) for this chat's next send slot; False when it is not due within this pass."""
        while not self._interrupted:
            now = time.monotonic()
            backoff = self._backoff_until.get(route.chat, 0.0) - now
            wait_s = max(backoff, 0.0)
            if wait_s <= 0:
                wait_ms = self._limiter.reserve(route.bot_key, route.chat)
                if wait_ms == 0:
                    return True
                wait_s = wait_ms / 1000
            if wait_s > INLINE_WAIT_S or (deadline is not None and now + wait_s > deadline):
                return False
            await asyncio.sleep(wait_s)
        return False

    async def _deliver(self, message: OutboxMessage, route: _Route, deadline: float | None) -> _Step:
        """Try one message (both parts when a photo's caption cannot hold the card)."""
        if route.bot_key in self._bad_tokens:
            return _Step.WAIT
        now_ms = int(time.time() * 1000)
        if _chart_waiting(message, now_ms):
            return _Step.WAIT
        if message.chart_state == "pending":
            self._store.chart_failed(message.signal_id)  # drawn too slowly: the text goes alone
        text = message.text
        if (
            message.kind == "signal"
            and now_ms - message.created_ms > self._limits.late_alert_minutes * 60_000
        ):
            text = f"{late_note(message.created_ms, now_ms)}\n{text}"
        photo = await _chart_bytes(message)
        reply_to = message.reply_to_message_id
        if photo is not None and message.part_message_id is None:
            caption_holds_card = caption_fits(text)
            sent = await self._attempt(
                message, route, deadline, text if caption_holds_card else _headline(text), photo, reply_to
            )
            if not isinstance(sent, int):
                return sent
            if caption_holds_card:
                return self._done(message, sent)
            self._store.mark_part_sent(message.id, sent)
            reply_to = sent
        elif message.part_message_id is not None:
            reply_to = message.part_message_id  # the photo went out before a restart: only the card is left
        sent = await self._attempt(message, route, deadline, text, None, reply_to)
        return self._done(message, sent) if isinstance(sent, int) else sent

    def _done(self, message: OutboxMessage, telegram_id: int) -> _Step:
        self._store.mark_sent(message.id, telegram_id, self._clock.now_ms())
        self._observer.alert_sent(message.bot, message.kind)
        log.info(
            "alert sent",
            outbox_id=message.id,
            bot=message.bot,
            kind=message.kind,
            signal_id=message.signal_id,
            message_id=telegram_id,
        )
        return _Step.SENT

    async def _attempt(  # noqa: PLR0911 - one return per Telegram outcome
        self,
        message: OutboxMessage,
        route: _Route,
        deadline: float | None,
        text: str,
        photo: bytes | None,
        reply_to: int | None,
    ) -> int | _Step:
        """Send one Telegram message; its message id, or what the caller should do instead."""
        plain = False
        while True:
            if not await self._slot(route, deadline):
                return _Step.WAIT
            try:
                try:
                    sent = await self._send(route, text, photo, reply_to, plain=plain)
                finally:
                    self._limiter.finished(route.bot_key, route.chat)
            except RetryAfter as exc:
                seconds = _retry_after_s(exc)
                bot_wide = self._limiter.pause(route.bot_key, route.chat, seconds)
                self._store.mark_attempt(message.id, f"retry after {seconds:g}s")
                log.warning(
                    "telegram flood control; pausing",
                    chat=route.chat,
                    retry_after_s=seconds,
                    scope="every chat of this token" if bot_wide else "this chat",
                )
                return _Step.WAIT
            except BadRequest as exc:
                if not plain and "can't parse entities" in exc.message.lower():
                    log.warning("telegram refused the HTML; resending as plain text", outbox_id=message.id)
                    plain = True
                    continue
                if photo is not None:
                    log.warning("telegram refused the chart; sending the text alone", error=exc.message)
                    self._store.chart_failed(message.signal_id)
                    photo, text = None, message.text
                    continue
                self._store.mark_failed(message.id, f"BadRequest: {exc.message}")
                self._observer.alert_failed(message.bot, message.kind)
                log.error(
                    "telegram refused a message", outbox_id=message.id, chat=route.chat, error=exc.message
                )
                return _Step.GAVE_UP
            except Forbidden as exc:
                self._store.mark_failed(message.id, f"Forbidden: {exc.message}")
                self._observer.alert_failed(message.bot, message.kind)
                log.error(
                    "telegram forbids posting to this chat",
                    outbox_id=message.id,
                    chat=route.chat,
                    error=exc.message,
                )
                return _Step.GAVE_UP
            except InvalidToken:
                self._bad_tokens.add(route.bot_key)
                log.error(
                    "telegram rejected the token; its bots' delivery stopped until it is fixed",
                    bot_key=route.bot_key,
                )
                return _Step.WAIT
            except (NetworkError, TelegramError) as exc:
                # TimedOut and 5xx land here: temporary, the message stays pending for a later pass.
                self._store.mark_attempt(message.id, f"{type(exc).__name__}: {exc.message}")
                log.warning("telegram send failed; will retry", outbox_id=message.id, error=exc.message)
                self._backoff_until[route.chat] = time.monotonic() + min(
                    30.0, 2.0 ** min(message.attempts, 5)
                )
                return _Step.WAIT
            return sent

    async def _send(
        self, route: _Route, text: str, photo: bytes | None, reply_to: int | None, *, plain: bool
    ) -> int:
        client = self._clients[route.bot_key]
        reply = (
            ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
            if reply_to is not None
            else None
        )
        body = html_to_plain(text) if plain else text
        mode = None if plain else ParseMode.HTML
        sent: Message
        if photo is not None:
            sent = await client.send_photo(
                chat_id=route.chat,
                photo=photo,
                caption=body,
                parse_mode=mode,
                reply_parameters=reply,
                message_thread_id=route.topic,
            )
        else:
            sent = await client.send_message(
                chat_id=route.chat,
                text=body,
                parse_mode=mode,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
                reply_parameters=reply,
                message_thread_id=route.topic,
            )
        return int(sent.message_id)

    async def close(self) -> None:
        """Close the HTTP clients and the limits connection."""
        for client in self._clients.values():
            try:
                await client.shutdown()
            except TelegramError as exc:
                log.warning("telegram client did not shut down cleanly", error=str(exc))
        self._limiter.close()


async def _chart_bytes(message: OutboxMessage) -> bytes | None:
    """The alert's chart PNG, read off the event loop; None without one (or when its file is gone)."""
    if message.chart_state != "ready" or not message.chart_path:
        return None
    try:
        return await asyncio.to_thread(Path(message.chart_path).read_bytes)
    except OSError as exc:
        log.warning("chart file unreadable; sending the text alone", outbox_id=message.id, error=str(exc))
        return None


def _headline(card: str) -> str:
    """The caption of a photo whose card follows as a reply: the card's first line (it fits)."""
    return card.split("\n", 1)[0]
