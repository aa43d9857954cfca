"""SQLite state: signals, the signal gate, and the Telegram outbox.

Why SQLite in WAL mode: it is file-locked and crash-safe, and every bot process (one per systemd
unit) plus the CLI tools can share one database safely. Each decision that must be atomic runs in
one ``BEGIN IMMEDIATE`` transaction, which takes the write lock before reading, so two processes
can never both pass the gate for the same signal:

* the gate (cooldown, max open, one open signal per (bot, symbol, direction), one signal per candle)
  and the INSERT of the signal and of its outbox message happen together; a crash before COMMIT
  leaves neither, a crash after leaves both, and the message is then sent on the next start.
* cooldowns are derived from the signals table (the newest signal of a (bot, symbol, timeframe))
  rather than kept in a table of their own, so they can never drift from what was emitted.

The database directory is 0700 and its files 0600. Calls are synchronous and short (one small
transaction); the event loop tolerates them, and SQLite's busy timeout absorbs brief contention
between processes.
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from common.tracker import Fill, Outcome, Position, fills_from_rows, fills_to_rows
from common.types import ContextValue, Direction, KeyPoint, Levels, Signal

SCHEMA_VERSION = 4

_OUTBOX_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bot         TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('signal', 'result', 'update')),
    signal_id   TEXT NOT NULL REFERENCES signals (id),
    text        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_ms     INTEGER,
    message_id  INTEGER,
    chart_state TEXT NOT NULL DEFAULT 'none' CHECK (chart_state IN ('none', 'pending', 'ready', 'failed')),
    chart_path  TEXT,
    part_message_id INTEGER
);"""

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS signals (
    id            TEXT PRIMARY KEY,
    bot           TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    timeframe     TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('LONG', 'SHORT')),
    entry         REAL NOT NULL,
    sl            REAL NOT NULL,
    tp1           REAL NOT NULL,
    tp2           REAL,
    tp3           REAL,
    reason        TEXT NOT NULL,
    context       TEXT NOT NULL,
    key_points    TEXT NOT NULL,
    bar_ts        INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    checked_until INTEGER NOT NULL,
    exit_reason   TEXT,
    exit_price    REAL,
    exit_ms       INTEGER,
    pnl_pct       REAL,
    r_multiple    REAL,
    progress      TEXT,
    mfe_pct       REAL,
    mae_pct       REAL,
    funding_pct   REAL,
    fills         TEXT,
    UNIQUE (bot, symbol, timeframe, bar_ts)
);
CREATE INDEX IF NOT EXISTS signals_open ON signals (status, bot, symbol);
CREATE INDEX IF NOT EXISTS signals_recent ON signals (bot, symbol, timeframe, created_ms);
CREATE INDEX IF NOT EXISTS signals_by_symbol ON signals (symbol, created_ms);
"""
    + _OUTBOX_TABLE.format(name="outbox")
    + """
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
)

#: Columns added after schema version 1, for databases created by an older version.
_ADDED_COLUMNS = {
    "signals": ("progress TEXT", "mfe_pct REAL", "mae_pct REAL", "funding_pct REAL", "fills TEXT"),
    "outbox": (
        "chart_state TEXT NOT NULL DEFAULT 'none'"
        " CHECK (chart_state IN ('none', 'pending', 'ready', 'failed'))",
        "chart_path TEXT",
        "part_message_id INTEGER",
    ),
}


class GateVerdict(enum.StrEnum):
    """Why the gate let a signal through or not."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate: this candle already produced a signal"
    ALREADY_OPEN = "an open signal exists for this bot, symbol and direction"
    COOLDOWN = "cooldown: the last signal of this bot, symbol and timeframe is too recent"
    MAX_OPEN = "the bot has reached its maximum of open signals"


@dataclass(frozen=True)
class GateRules:
    """One bot's gate settings."""

    cooldown_ms: int
    max_open_signals: int


@dataclass(frozen=True)
class StoredSignal:
    """A signal as the store holds it, with its tracking state."""

    signal: Signal
    status: str
    checked_until: int
    exit_reason: str | None
    exit_price: float | None
    exit_ms: int | None
    pnl_pct: float | None
    r_multiple: float | None
    position: Position  # the tracker's progress (partial fills, stop, excursions) so far
    mfe_pct: float | None = None
    mae_pct: float | None = None
    funding_pct: float | None = None
    fills: tuple[Fill, ...] = ()  # every exit of a closed signal, oldest first (open: position.fills)

    @property
    def duration_ms(self) -> int | None:
        """Time in trade, from the alert to the final exit (None while open)."""
        return None if self.exit_ms is None else self.exit_ms - self.signal.created_ms


@dataclass(frozen=True)
class OutboxMessage:
    """A message waiting in (or delivered from) the outbox."""

    id: int
    bot: str
    kind: str
    signal_id: str
    text: str
    created_ms: int
    attempts: int
    reply_to_message_id: int | None
    chart_state: str = "none"  # none | pending (being rendered) | ready (chart_path) | failed
    chart_path: str | None = None
    part_message_id: int | None = None  # the photo, when the card had to follow it as a reply


@dataclass(frozen=True)
class BotRecord:
    """A bot's closed signals so far: what its running record line shows."""

    trades: int
    wins: int
    gross_profit_pct: float
    gross_loss_pct: float  # positive: the sum of the losing trades' losses
    total_r: float = 0.0  # realised R multiples, summed

    @property
    def win_rate(self) -> float:
        """Share of trades closed with a profit, 0..1 (0 without trades)."""
        return self.wins / self.trades if self.trades else 0.0

    @property
    def profit_factor(self) -> float | None:
        """Gross profit / gross loss (net of fees); None while there is no loss yet."""
        return self.gross_profit_pct / self.gross_loss_pct if self.gross_loss_pct > 0 else None

    @property
    def total_pct(self) -> float:
        """Realised P&L in percent, summed over the trades (net of fees and funding)."""
        return self.gross_profit_pct - self.gross_loss_pct

    def plus(self, pnl_pct: float, r_multiple: float = 0.0) -> BotRecord:
        """The record with one more closed trade."""
        return BotRecord(
            trades=self.trades + 1,
            wins=self.wins + (pnl_pct > 0),
            gross_profit_pct=self.gross_profit_pct + max(pnl_pct, 0.0),
            gross_loss_pct=self.gross_loss_pct + max(-pnl_pct, 0.0),
            total_r=self.total_r + r_multiple,
        )


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)


class Store:
    """The fleet's SQLite database (``<state_dir>/signals.sqlite3``)."""

    def __init__(self, state_dir: Path) -> None:
        _private_dir(state_dir)
        self.path = state_dir / "signals.sqlite3"
        # Create the file 0600 ourselves: sqlite3 would create it with the process umask.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        self.path.chmod(0o600)  # an older file may have been created with looser permissions
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=30000")
        # SQLite gives the -wal and -shm files the permissions of the database file itself.
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    def _add_missing_columns(self) -> None:
        """Bring a database created by an older version up to date (columns are only ever added).

        Version 3 allows the outbox kind 'update'; SQLite cannot change a CHECK constraint, so an
        older outbox table is copied into a new one in one transaction (same columns, same ids).
        """
        for table, columns in _ADDED_COLUMNS.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        outbox_sql = self._db.execute("SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()[0]
        if "'update'" not in outbox_sql:
            with self._transaction() as db:
                db.execute(_OUTBOX_TABLE.format(name="outbox_v3"))
                db.execute("INSERT INTO outbox_v3 SELECT * FROM outbox")
                db.execute("DROP TABLE outbox")
                db.execute("ALTER TABLE outbox_v3 RENAME TO outbox")
                db.execute("CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, id)")
        self._db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
            (str(SCHEMA_VERSION), SCHEMA_VERSION),
        )

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens on the last close)."""
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

    # -- the gate -------------------------------------------------------------------------------

    def admit_signal(
        self, signal: Signal, rules: GateRules, now_ms: int, message: str, *, chart: bool = False
    ) -> GateVerdict:
        """Apply the gate and, if it passes, store the signal and queue its alert, atomically.

        With ``chart`` the alert waits for its chart (``attach_chart`` / ``chart_failed``).
        """
        with self._transaction() as db:
            if db.execute(
                "SELECT 1 FROM signals WHERE id = ?"
                " OR (bot = ? AND symbol = ? AND timeframe = ? AND bar_ts = ?)",
                (signal.id, signal.bot, signal.symbol, signal.timeframe, signal.bar_ts),
            ).fetchone():
                return GateVerdict.DUPLICATE
            if db.execute(
                "SELECT 1 FROM signals WHERE status = 'OPEN' AND bot = ? AND symbol = ? AND direction = ?",
                (signal.bot, signal.symbol, signal.direction.value),
            ).fetchone():
                return GateVerdict.ALREADY_OPEN
            last = db.execute(
                "SELECT MAX(created_ms) FROM signals WHERE bot = ? AND symbol = ? AND timeframe = ?",
                (signal.bot, signal.symbol, signal.timeframe),
            ).fetchone()[0]
            if last is not None and now_ms - int(last) < rules.cooldown_ms:
                return GateVerdict.COOLDOWN
            open_count = db.execute(
                "SELECT COUNT(*) FROM signals WHERE status = 'OPEN' AND bot = ?", (signal.bot,)
            ).fetchone()[0]
            if open_count >= rules.max_open_signals:
                return GateVerdict.MAX_OPEN
            self._insert_signal(db, signal)
            db.execute(
                "INSERT INTO outbox (bot, kind, signal_id, text, created_ms, chart_state)"
                " VALUES (?, 'signal', ?, ?, ?, ?)",
                (signal.bot, signal.id, message, now_ms, "pending" if chart else "none"),
            )
        return GateVerdict.ACCEPTED

    @staticmethod
    def _insert_signal(db: sqlite3.Connection, signal: Signal) -> None:
        tps = list(signal.levels.tps) + [None] * (3 - len(signal.levels.tps))
        db.execute(
            """INSERT INTO signals (id, bot, symbol, timeframe, direction, entry, sl, tp1, tp2, tp3, reason,
                                    context, key_points, bar_ts, created_ms, checked_until)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                signal.id,
                signal.bot,
                signal.symbol,
                signal.timeframe,
                signal.direction.value,
                signal.levels.entry,
                signal.levels.sl,
                *tps,
                signal.reason,
                json.dumps(dict(signal.context), sort_keys=True),
                json.dumps([[p.ts, p.price, p.label] for p in signal.key_points]),
                signal.bar_ts,
                signal.created_ms,
                signal.bar_ts,
            ),
        )

    # -- reading signals ------------------------------------------------------------------------

    @staticmethod
    def _row_to_stored(row: sqlite3.Row) -> StoredSignal:
        tps = tuple(float(row[k]) for k in ("tp1", "tp2", "tp3") if row[k] is not None)
        direction = Direction(row["direction"])
        context: Mapping[str, ContextValue] = json.loads(row["context"])
        signal = Signal(
            id=row["id"],
            bot=row["bot"],
            symbol=row["symbol"],
            timeframe=row["timeframe"],
            direction=direction,
            levels=Levels(direction=direction, entry=row["entry"], sl=row["sl"], tps=tps),
            reason=row["reason"],
            bar_ts=row["bar_ts"],
            created_ms=row["created_ms"],
            context=context,
            key_points=tuple(
                KeyPoint(ts=int(t), price=float(p), label=str(lbl))
                for t, p, lbl in json.loads(row["key_points"])
            ),
        )
        # Before schema 4 only checked_until was kept: such a signal resumes from there.
        position = replace(Position.opened(signal), checked_until=row["checked_until"])
        if row["progress"] is not None:
            position = Position.from_json(row["progress"])
        return StoredSignal(
            signal=signal,
            status=row["status"],
            checked_until=row["checked_until"],
            exit_reason=row["exit_reason"],
            exit_price=row["exit_price"],
            exit_ms=row["exit_ms"],
            pnl_pct=row["pnl_pct"],
            r_multiple=row["r_multiple"],
            position=position,
            mfe_pct=row["mfe_pct"],
            mae_pct=row["mae_pct"],
            funding_pct=row["funding_pct"],
            fills=fills_from_rows(json.loads(row["fills"])) if row["fills"] else (),
        )

    def get_signal(self, signal_id: str) -> StoredSignal | None:
        """The signal with ``signal_id``, or None."""
        row = self._db.execute("SELECT * FROM signals WHERE id = ?", (signal_id,)).fetchone()
        return None if row is None else self._row_to_stored(row)

    def open_signals(self, bots: tuple[str, ...] | None = None) -> list[StoredSignal]:
        """Open signals (of ``bots`` when given), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM signals WHERE status = 'OPEN' ORDER BY created_ms, id"
        ).fetchall()
        stored = [self._row_to_stored(r) for r in rows]
        return [s for s in stored if bots is None or s.signal.bot in bots]

    def recent_signals(self, symbol: str, since_ms: int) -> list[StoredSignal]:
        """Signals on ``symbol`` created after ``since_ms`` (any bot, open or closed), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM signals WHERE symbol = ? AND created_ms > ? ORDER BY created_ms, id",
            (symbol, since_ms),
        ).fetchall()
        return [self._row_to_stored(r) for r in rows]

    def all_signals(self) -> list[StoredSignal]:
        """Every signal, oldest first."""
        rows = self._db.execute("SELECT * FROM signals ORDER BY created_ms, id").fetchall()
        return [self._row_to_stored(r) for r in rows]

    # -- tracking -------------------------------------------------------------------------------

    def save_progress(self, progress: Iterable[tuple[str, Position]]) -> None:
        """Persist open signals' progress (candles checked, stop, excursions) after a cycle.

        One transaction for all of them: one disk sync per cycle, not one per open signal. A signal
        closed meanwhile is not touched.
        """
        rows = [(position.to_json(), position.checked_until, signal_id) for signal_id, position in progress]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE signals SET progress = ?, checked_until = MAX(checked_until, ?)"
                " WHERE id = ? AND status = 'OPEN'",
                rows,
            )

    def save_progress_with_update(self, signal_id: str, position: Position, text: str, now_ms: int) -> bool:
        """Persist progress and queue a reply to the alert (a target hit, the stop moved), atomically.

        A crash between the two would either repeat the reply or lose it; one transaction does
        neither. False when the signal is no longer open (nothing is written).
        """
        with self._transaction() as db:
            row = db.execute(
                "SELECT bot FROM signals WHERE id = ? AND status = 'OPEN'", (signal_id,)
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE signals SET progress = ?, checked_until = MAX(checked_until, ?) WHERE id = ?",
                (position.to_json(), position.checked_until, signal_id),
            )
            db.execute(
                "INSERT INTO outbox (bot, kind, signal_id, text, created_ms) VALUES (?, 'update', ?, ?, ?)",
                (row[0], signal_id, text, now_ms),
            )
        return True

    def close_signal(self, signal_id: str, outcome: Outcome, checked_until: int, message: str) -> bool:
        """Close an open signal and queue its result message, atomically. False if it was not open.

        ``checked_until`` is the open time of the last candle examined.
        """
        with self._transaction() as db:
            changed = db.execute(
                """UPDATE signals SET status = 'CLOSED', exit_reason = ?, exit_price = ?, exit_ms = ?,
                          pnl_pct = ?, r_multiple = ?, checked_until = MAX(checked_until, ?),
                          mfe_pct = ?, mae_pct = ?, funding_pct = ?, fills = ?
                   WHERE id = ? AND status = 'OPEN'""",
                (
                    outcome.reason,
                    outcome.price,
                    outcome.exit_ms,
                    outcome.pnl_pct,
                    outcome.r_multiple,
                    checked_until,
                    outcome.mfe_pct,
                    outcome.mae_pct,
                    outcome.funding_pct,
                    json.dumps(fills_to_rows(outcome.fills)),
                    signal_id,
                ),
            ).rowcount
            if not changed:
                return False
            bot = db.execute("SELECT bot FROM signals WHERE id = ?", (signal_id,)).fetchone()[0]
            db.execute(
                "INSERT INTO outbox (bot, kind, signal_id, text, created_ms) VALUES (?, 'result', ?, ?, ?)",
                (bot, signal_id, message, outcome.exit_ms),
            )
        return True

    # -- the outbox -----------------------------------------------------------------------------

    def pending_messages(
        self, bots: Iterable[str], *, after_id: int = 0, limit: int = 100
    ) -> list[OutboxMessage]:
        """Unsent messages of ``bots`` (with outbox id > ``after_id``) in queue order, each with the
        Telegram message id to reply to.

        Each process delivers only its own bots' messages: with one process per bot under systemd,
        two processes never send the same row.
        """
        names = sorted(set(bots))
        marks = ",".join("?" * len(names))
        rows = self._db.execute(
            f"""SELECT o.*, (SELECT s.message_id FROM outbox s
                             WHERE s.signal_id = o.signal_id AND s.kind = 'signal' AND s.status = 'sent')
                            AS reply_to
                FROM outbox o WHERE o.status = 'pending' AND o.id > ? AND o.bot IN ({marks})
                ORDER BY o.id LIMIT ?""",  # noqa: S608 - only '?' placeholders are interpolated
            (after_id, *names, limit),
        ).fetchall()
        return [
            OutboxMessage(
                id=r["id"],
                bot=r["bot"],
                kind=r["kind"],
                signal_id=r["signal_id"],
                text=r["text"],
                created_ms=r["created_ms"],
                attempts=r["attempts"],
                reply_to_message_id=r["reply_to"],
                chart_state=r["chart_state"],
                chart_path=r["chart_path"],
                part_message_id=r["part_message_id"],
            )
            for r in rows
        ]

    def count_pending(self, bots: Iterable[str] | None = None, *, after_id: int = 0) -> int:
        """Number of messages still waiting to be sent (of ``bots`` and after ``after_id`` when given)."""
        if bots is None:
            query = "SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND id > ?"
            return int(self._db.execute(query, (after_id,)).fetchone()[0])
        names = sorted(set(bots))
        marks = ",".join("?" * len(names))
        query = f"SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND id > ? AND bot IN ({marks})"  # noqa: S608
        return int(self._db.execute(query, (after_id, *names)).fetchone()[0])

    def last_outbox_id(self) -> int:
        """The newest outbox id (0 when empty)."""
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])

    def mark_sent(self, message_id: int, telegram_message_id: int | None, now_ms: int) -> None:
        """Record a delivered message with Telegram's message id (None in dry-run)."""
        self._db.execute(
            "UPDATE outbox SET status = 'sent', sent_ms = ?, message_id = ?, attempts = attempts + 1"
            " WHERE id = ?",
            (now_ms, telegram_message_id, message_id),
        )

    def mark_attempt(self, message_id: int, error: str) -> None:
        """Record a failed attempt that will be retried."""
        self._db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?", (error, message_id)
        )

    def mark_failed(self, message_id: int, error: str) -> None:
        """Give up on a message (Telegram refused it for good); it stays in the table with the reason."""
        self._db.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error, message_id),
        )

    def queue_update(self, signal_id: str, text: str, now_ms: int) -> bool:
        """Queue an update of an open signal (a reply to its alert); False when the same text was queued.

        consensus_bot uses it when another bot joins a live consensus. The same text twice (the same
        newcomer seen again after a restart) is not queued twice.
        """
        with self._transaction() as db:
            row = db.execute("SELECT bot FROM signals WHERE id = ?", (signal_id,)).fetchone()
            if (
                row is None
                or db.execute(
                    "SELECT 1 FROM outbox WHERE signal_id = ? AND kind = 'update' AND text = ?",
                    (signal_id, text),
                ).fetchone()
            ):
                return False
            db.execute(
                "INSERT INTO outbox (bot, kind, signal_id, text, created_ms) VALUES (?, 'update', ?, ?, ?)",
                (row[0], signal_id, text, now_ms),
            )
        return True

    def attach_chart(self, signal_id: str, path: str) -> None:
        """The alert of ``signal_id`` has its chart at ``path``: it may be sent now."""
        self._db.execute(
            "UPDATE outbox SET chart_state = 'ready', chart_path = ?"
            " WHERE signal_id = ? AND kind = 'signal' AND chart_state = 'pending'",
            (path, signal_id),
        )

    def chart_failed(self, signal_id: str) -> None:
        """The alert of ``signal_id`` gets no chart (rendering failed or its process died): send the text."""
        self._db.execute(
            "UPDATE outbox SET chart_state = 'failed'"
            " WHERE signal_id = ? AND kind = 'signal' AND chart_state = 'pending'",
            (signal_id,),
        )

    def abandon_pending_charts(self, bots: Iterable[str]) -> int:
        """At start: charts still 'pending' were being rendered by a process that is gone."""
        names = sorted(set(bots))
        marks = ",".join("?" * len(names))
        return self._db.execute(
            f"UPDATE outbox SET chart_state = 'failed' WHERE chart_state = 'pending' AND status = 'pending'"  # noqa: S608
            f" AND bot IN ({marks})",
            names,
        ).rowcount

    def mark_part_sent(self, message_id: int, telegram_message_id: int) -> None:
        """The photo of a two-part alert is out; only the card (its reply) remains to be sent."""
        self._db.execute(
            "UPDATE outbox SET part_message_id = ? WHERE id = ?", (telegram_message_id, message_id)
        )

    def bot_record(self, bot: str) -> BotRecord:
        """The bot's closed signals: trades, wins, gross profit and loss (percent, net of fees)."""
        row = self._db.execute(
            """SELECT COUNT(*), COALESCE(SUM(pnl_pct > 0), 0),
                      COALESCE(SUM(MAX(pnl_pct, 0)), 0.0), COALESCE(SUM(MAX(-pnl_pct, 0)), 0.0),
                      COALESCE(SUM(r_multiple), 0.0)
               FROM signals WHERE bot = ? AND status = 'CLOSED'""",
            (bot,),
        ).fetchone()
        return BotRecord(
            trades=int(row[0]),
            wins=int(row[1]),
            gross_profit_pct=float(row[2]),
            gross_loss_pct=float(row[3]),
            total_r=float(row[4]),
        )

    def outbox_rows(self) -> list[dict[str, object]]:
        """Every outbox row as a dict (for tools and tests)."""
        return [dict(r) for r in self._db.execute("SELECT * FROM outbox ORDER BY id").fetchall()]
