"""Delivery of outbox messages: Telegram through python-telegram-bot's ``Bot``, or the console.

Every message is written to the outbox (in the store) in the same transaction as the signal it
announces, then sent, then marked sent with Telegram's message_id. A crash between send and mark
can repeat one message on restart; a crash anywhere else loses nothing. The bots only send: no
``getUpdates``, so several processes can share one token.

Telegram facts this module relies on (Bot API, python-telegram-bot 22):

* ``RetryAfter`` (HTTP 429) carries ``retry_after`` seconds; nothing may be sent to that chat before it
  passes. PTB returns it as an int, or a timedelta when PTB_TIMEDELTA is set: we accept both.
* ``TimedOut`` is ambiguous (the message may have arrived); we retry, so delivery is at-least-once.
* ``BadRequest`` "can't parse entities" means broken HTML: we retry once as plain text; other
  ``BadRequest`` / ``Forbidden`` answers (chat not found, bot not in channel) will not pass by
  retrying, so the message is marked failed with the reason and stays in the table.
* ``InvalidToken`` (401) at start stops the process; later, the round stops and the messages wait
  (each round, every few seconds, tries again and logs the error).
* At most about one message per second per chat; we space sends per chat by
  ``telegram.per_chat_interval_s``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Protocol, TextIO

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from common.cards import html_to_plain
from common.clock import Clock
from common.config import Settings, TelegramSettings
from common.errors import NotifyError
from common.logging_config import get_logger
from common.store import OutboxMessage, Store

log = get_logger(__name__)


class Notifier(Protocol):
    """What the runner needs from a notifier."""

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """Check each bot's destination once; returns {bot: one-line problem} for bots that cannot post."""
        ...

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Send queued messages in order until none is left or ``deadline`` (monotonic) passes."""
        ...

    def backlog(self) -> int:
        """How many messages this notifier still has to deliver."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class ConsoleNotifier:
    """Dry-run: prints each message as plain text to ``stream`` and marks it delivered."""

    def __init__(self, store: Store, clock: Clock, stream: TextIO | None = None) -> None:
        self._store = store
        self._clock = clock
        self._stream = stream or sys.stdout
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
                label = "alert" if message.kind == "signal" else "result"
                # The dry-run's product is this console text (stdout), not a log line.
                self._stream.write(f"──── {message.bot} · {label} (dry-run) ────\n")
                self._stream.write(html_to_plain(message.text) + "\n")
                self._store.mark_sent(message.id, None, self._clock.now_ms())
                delivered += 1
        self._stream.flush()
        return delivered

    def backlog(self) -> int:
        """Messages this run queued and has not printed yet."""
        return self._store.count_pending(self._bots, after_id=self._after_id)

    async def close(self) -> None:
        """Nothing to release."""


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramNotifier:
    """Sends outbox messages with python-telegram-bot, honouring Telegram's limits."""

    def __init__(self, store: Store, clock: Clock, settings: Settings, limits: TelegramSettings) -> None:
        if settings.telegram_token is None:
            raise NotifyError("TELEGRAM_BOT_TOKEN is not set")
        base = (settings.telegram_api_base_url or "https://api.telegram.org").rstrip("/")
        timeout = limits.send_timeout_s
        self._bot = Bot(
            settings.telegram_token.get_secret_value(),
            base_url=f"{base}/bot",
            base_file_url=f"{base}/file/bot",
            request=HTTPXRequest(read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout),
        )
        self._store = store
        self._clock = clock
        self._settings = settings
        self._limits = limits
        self._last_sent: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._bots: tuple[str, ...] = ()

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """Check the token (getMe) and each bot's chat (getChat) once; return the problems found.

        An outage (network error) is not a problem here: messages wait in the outbox. A wrong chat
        or a chat the bot may not post to is, and that bot does not start.
        """
        self._bots = tuple(bots)
        try:
            await self._bot.initialize()
        except InvalidToken:
            raise NotifyError("Telegram rejected TELEGRAM_BOT_TOKEN (401 Unauthorized)") from None
        except NetworkError as exc:
            log.warning("telegram unreachable at start; alerts will wait in the outbox", error=str(exc))
            return {}
        problems: dict[str, str] = {}
        checked: dict[str, str | None] = {}
        for bot in self._bots:
            chat = self._settings.chat_for(bot)
            if chat is None:
                problems[bot] = (
                    f"bot {bot}: no Telegram chat (set TELEGRAM_CHAT_{bot.upper()} or TELEGRAM_CHAT_ID)"
                )
                continue
            if chat not in checked:
                checked[chat] = await self._check_chat(chat)
            if checked[chat] is not None:
                problems[bot] = f"bot {bot}: Telegram chat {chat}: {checked[chat]}"
        return problems

    async def _check_chat(self, chat: str) -> str | None:
        try:
            await self._bot.get_chat(chat)
        except (BadRequest, Forbidden) as exc:
            return exc.message
        except NetworkError as exc:
            log.warning("telegram unreachable while checking a chat", chat=chat, error=str(exc))
        return None

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Send pending messages in queue order; stop at the first one that must wait.

        Stopping (rather than skipping ahead) keeps each chat's messages in order: a result never
        overtakes the alert it replies to.
        """
        delivered = 0
        while batch := self._store.pending_messages(self._bots):
            for message in batch:
                if deadline is not None and time.monotonic() >= deadline:
                    return delivered
                outcome = await self._deliver(message, deadline)
                if outcome is None:
                    return delivered
                delivered += outcome
        return delivered

    def backlog(self) -> int:
        """Messages of this process's bots still waiting to be sent."""
        return self._store.count_pending(self._bots)

    async def _deliver(  # noqa: PLR0911 - one return per Telegram outcome reads clearer than a state machine
        self, message: OutboxMessage, deadline: float | None
    ) -> int | None:
        """Try one message. Returns 1 if sent, 0 if given up (failed), None if it must wait."""
        chat = self._settings.chat_for(message.bot)
        if chat is None:
            self._store.mark_failed(message.id, "no Telegram chat configured for this bot")
            return 0
        wait_until = max(
            self._paused_until.get(chat, 0.0),
            self._last_sent.get(chat, 0.0) + self._limits.per_chat_interval_s,
        )
        if not await self._wait(wait_until, deadline):
            return None
        plain = False
        while True:
            try:
                sent = await self._send(chat, message, plain)
            except RetryAfter as exc:
                seconds = _seconds(exc.retry_after)
                self._paused_until[chat] = time.monotonic() + seconds
                self._store.mark_attempt(message.id, f"retry after {seconds:g}s")
                log.warning("telegram flood control; pausing chat", chat=chat, retry_after_s=seconds)
                if not await self._wait(self._paused_until[chat], deadline):
                    return None
                continue
            except BadRequest as exc:
                if not plain and "can't parse entities" in exc.message.lower():
                    log.warning("telegram refused the HTML; resending as plain text", outbox_id=message.id)
                    plain = True
                    continue
                self._store.mark_failed(message.id, f"BadRequest: {exc.message}")
                log.error("telegram refused a message", outbox_id=message.id, chat=chat, error=exc.message)
                return 0
            except Forbidden as exc:
                self._store.mark_failed(message.id, f"Forbidden: {exc.message}")
                log.error(
                    "telegram forbids posting to this chat",
                    outbox_id=message.id,
                    chat=chat,
                    error=exc.message,
                )
                return 0
            except InvalidToken:
                log.error("telegram rejected the token; delivery stopped until it is fixed")
                return None
            except (NetworkError, TelegramError) as exc:
                # TimedOut and 5xx land here: temporary, the message stays pending for the next round.
                self._store.mark_attempt(message.id, f"{type(exc).__name__}: {exc.message}")
                log.warning("telegram send failed; will retry", outbox_id=message.id, error=exc.message)
                self._paused_until[chat] = time.monotonic() + min(30.0, 2.0 ** min(message.attempts, 5))
                return None
            self._last_sent[chat] = time.monotonic()
            self._store.mark_sent(message.id, sent, self._clock.now_ms())
            log.info(
                "alert sent",
                outbox_id=message.id,
                bot=message.bot,
                kind=message.kind,
                signal_id=message.signal_id,
                message_id=sent,
            )
            return 1

    async def _send(self, chat: str, message: OutboxMessage, plain: bool) -> int:
        reply = (
            ReplyParameters(message_id=message.reply_to_message_id, allow_sending_without_reply=True)
            if message.reply_to_message_id is not None
            else None
        )
        sent = await self._bot.send_message(
            chat_id=chat,
            text=html_to_plain(message.text) if plain else message.text,
            parse_mode=None if plain else ParseMode.HTML,
            link_preview_options=LinkPreviewOptions(is_disabled=True),
            reply_parameters=reply,
        )
        return int(sent.message_id)

    @staticmethod
    async def _wait(until: float, deadline: float | None) -> bool:
        """Sleep until ``until`` (monotonic) unless that is past ``deadline``; False means give up now."""
        if deadline is not None and until > deadline:
            return False
        delay = until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    async def close(self) -> None:
        """Close the HTTP client."""
        try:
            await self._bot.shutdown()
        except TelegramError as exc:
            log.warning("telegram client did not shut down cleanly", error=str(exc))
