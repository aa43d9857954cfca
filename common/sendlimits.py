"""Telegram's sending limits, kept in the shared SQLite database so that every process honours them.

Telegram allows a bot about one message per second in a chat, 20 messages per minute in a group or
channel, and 30 per second overall; past that it answers 429 with ``retry_after``, and a request
inside that window is answered 429 again. Several bot processes may post to one channel with one
token, so the accounting cannot live in one process's memory: each send is reserved in a table of
the state database in one ``BEGIN IMMEDIATE`` transaction (the same lock the signal gate uses),
and a 429 is recorded there as a pause that every process sees.

Private chats (positive ids) have no per-minute limit; groups and channels (negative ids,
``@username``) do. A reservation is stamped when it is taken and stamped again when the answer has
come (``finished``): Telegram saw the request somewhere in between, so spacing the next request from
the later stamp keeps the limits even when a request is slow to leave (a loaded machine) or slow to
be answered. The windows also keep a small margin. Times are wall-clock milliseconds: the only clock
two processes share.

The token itself is never stored: a bot is known by a short hash of it (``token_key``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telegram_sends (scope TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS telegram_sends_scope ON telegram_sends (scope, at_ms);
CREATE TABLE IF NOT EXISTS telegram_pauses (scope TEXT PRIMARY KEY, until_ms INTEGER NOT NULL);
"""

#: Added to every window: a reservation leaves a few ms before Telegram sees the request.
MARGIN_MS = 250
MINUTE_MS = 60_000
SECOND_MS = 1_000
#: Two chats of one bot told to wait within this span: Telegram is throttling the bot, not a chat.
BOT_WIDE_SPAN_MS = 10_000


def token_key(token: str) -> str:
    """A short, stable name for a bot token that reveals nothing about it."""
    return hashlib.blake2b(token.encode(), digest_size=6).hexdigest()


def is_group_or_channel(chat: str) -> bool:
    """Groups and channels have negative ids or ``@username`` names; private chats positive ids."""
    return chat.startswith(("-", "@"))


@dataclass(frozen=True)
class SendRules:
    """The limits to keep (from the ``telegram`` section of global_config.json)."""

    per_chat_interval_ms: int = 1_000
    group_per_minute: int = 20
    bot_per_second: int = 30


class SendLimiter:
    """Reserves send slots per (bot, chat) and per bot in the shared database."""

    def __init__(
        self, db_path: Path, rules: SendRules, *, wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    ) -> None:
        self.rules = rules
        self._wall_ms = wall_ms
        self._db = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)
        # The rows of the reservation in flight per (bot, chat): restamped by ``finished``.
        self._in_flight: dict[tuple[str, str], tuple[int, int]] = {}

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def reserve(self, bot: str, chat: str) -> int:
        """Take the next send slot of ``chat`` for ``bot`` if it is free now.

        Returns 0 when the slot is taken (send at once) or the milliseconds to wait before asking
        again (nothing is reserved then).
        """
        now = self._wall_ms()
        chat_scope, bot_scope = f"{bot}|{chat}", f"{bot}|*"
        rules = self.rules
        with self._transaction() as db:
            db.execute("DELETE FROM telegram_sends WHERE at_ms < ?", (now - MINUTE_MS - MARGIN_MS,))
            due = now
            paused = db.execute(
                "SELECT MAX(until_ms) FROM telegram_pauses WHERE scope IN (?, ?)", (chat_scope, bot_scope)
            ).fetchone()[0]
            if paused is not None:
                due = max(due, int(paused))
            recent = [
                int(row[0])
                for row in db.execute(
                    "SELECT at_ms FROM telegram_sends WHERE scope = ? AND at_ms > ? ORDER BY at_ms DESC",
                    (chat_scope, now - MINUTE_MS - MARGIN_MS),
                )
            ]
            if recent:
                due = max(due, recent[0] + rules.per_chat_interval_ms + MARGIN_MS // 5)
            if is_group_or_channel(chat) and len(recent) >= rules.group_per_minute:
                due = max(due, recent[rules.group_per_minute - 1] + MINUTE_MS + MARGIN_MS)
            last_second = [
                int(row[0])
                for row in db.execute(
                    "SELECT at_ms FROM telegram_sends WHERE scope = ? AND at_ms > ? ORDER BY at_ms DESC",
                    (bot_scope, now - SECOND_MS - MARGIN_MS),
                )
            ]
            if len(last_second) >= rules.bot_per_second:
                due = max(due, last_second[rules.bot_per_second - 1] + SECOND_MS + MARGIN_MS)
            if due > now:
                return due - now
            insert = "INSERT INTO telegram_sends (scope, at_ms) VALUES (?, ?)"
            chat_row = db.execute(insert, (chat_scope, now)).lastrowid or 0
            bot_row = db.execute(insert, (bot_scope, now)).lastrowid or 0
        self._in_flight[(bot, chat)] = (chat_row, bot_row)
        return 0

    def finished(self, bot: str, chat: str) -> None:
        """The request of the slot last reserved for ``chat`` has been answered: stamp it now.

        The next slot is then measured from when Telegram had certainly seen the request.
        """
        rows = self._in_flight.pop((bot, chat), None)
        if rows is None:
            return
        self._db.execute(
            "UPDATE telegram_sends SET at_ms = MAX(at_ms, ?) WHERE rowid IN (?, ?)", (self._wall_ms(), *rows)
        )

    def pause(self, bot: str, chat: str, retry_after_s: float) -> bool:
        """Record Telegram's ``retry_after`` for ``chat``; returns True when the whole bot is paused.

        Telegram does not say whether a 429 is about the chat or the bot. When a second chat of the
        same bot is told to wait within ``BOT_WIDE_SPAN_MS``, it is the bot: every chat pauses.
        """
        now = self._wall_ms()
        until = now + int(retry_after_s * 1000) + MARGIN_MS
        chat_scope, bot_scope = f"{bot}|{chat}", f"{bot}|*"
        with self._transaction() as db:
            others = db.execute(
                "SELECT COUNT(*) FROM telegram_pauses WHERE scope LIKE ? AND scope NOT IN (?, ?)"
                " AND until_ms > ?",
                (f"{bot}|%", chat_scope, bot_scope, now - BOT_WIDE_SPAN_MS),
            ).fetchone()[0]
            scope = bot_scope if others else chat_scope
            db.execute(
                "INSERT INTO telegram_pauses (scope, until_ms) VALUES (?, ?)"
                " ON CONFLICT (scope) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                (scope, until),
            )
            if scope == bot_scope:
                db.execute(
                    "INSERT INTO telegram_pauses (scope, until_ms) VALUES (?, ?)"
                    " ON CONFLICT (scope) DO UPDATE SET until_ms = MAX(until_ms, excluded.until_ms)",
                    (chat_scope, until),
                )
        return scope == bot_scope
