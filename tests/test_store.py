"""Tests of common.store: the signal gate, the outbox, closing signals, file modes, two processes."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from common.runner import signal_id
from common.store import GateRules, GateVerdict, Store
from common.tracker import Fill, Outcome, Position
from common.types import Direction, KeyPoint, Levels, Signal

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
MINUTE = 60_000
OPEN_RULES = GateRules(cooldown_ms=0, max_open_signals=100)
BOTS = ("psar_bot",)


def make_signal(
    *,
    bot: str = "psar_bot",
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    direction: Direction = Direction.LONG,
    bar_ts: int = T0,
    created_ms: int | None = None,
    sid: str | None = None,
) -> Signal:
    """A signal with fixed levels (entry 100, SL 98/102, targets 4/6 away), created at its bar's close."""
    if direction is Direction.LONG:
        levels = Levels(direction, entry=100.0, sl=98.0, tps=(104.0, 106.0))
    else:
        levels = Levels(direction, entry=100.0, sl=102.0, tps=(96.0, 94.0))
    return Signal(
        id=sid or signal_id(bot, symbol, timeframe, bar_ts, direction.value),
        bot=bot,
        symbol=symbol,
        timeframe=timeframe,
        direction=direction,
        levels=levels,
        reason="Parabolic SAR flipped up after 12 bars down; ADX 35.2",
        bar_ts=bar_ts,
        created_ms=created_ms if created_ms is not None else bar_ts + HOUR,
        context={"sar": 97.5, "adx": 35.2, "previous_trend_bars": 12, "strong": True, "note": "x"},
        key_points=(KeyPoint(ts=bar_ts - HOUR, price=97.5, label="SAR"),),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary state directory."""
    opened = Store(tmp_path / "state")
    yield opened
    opened.close()


def _count(store: Store, table: str) -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _admit(store: Store, signal: Signal, rules: GateRules = OPEN_RULES, message: str = "msg") -> GateVerdict:
    return store.admit_signal(signal, rules, signal.created_ms, message)


def _outcome(reason: str = "TP1", price: float = 104.0, exit_ms: int = T0 + 5 * HOUR) -> Outcome:
    return Outcome(reason=reason, price=price, exit_ms=exit_ms, pnl_pct=3.9, r_multiple=1.95)


# -- signal ids -----------------------------------------------------------------------------------


def test_signal_id_is_stable_and_distinguishes_every_field() -> None:
    """The same (bot, symbol, timeframe, bar, direction) gives one 10-hex id; any change gives another."""
    first = signal_id("psar_bot", "BTC/USDT", "1h", T0, "LONG")
    assert first == signal_id("psar_bot", "BTC/USDT", "1h", T0, "LONG")
    assert len(first) == 10
    assert int(first, 16) >= 0
    others = {
        signal_id("other_bot", "BTC/USDT", "1h", T0, "LONG"),
        signal_id("psar_bot", "ETH/USDT", "1h", T0, "LONG"),
        signal_id("psar_bot", "BTC/USDT", "4h", T0, "LONG"),
        signal_id("psar_bot", "BTC/USDT", "1h", T0 + HOUR, "LONG"),
        signal_id("psar_bot", "BTC/USDT", "1h", T0, "SHORT"),
    }
    assert first not in others
    assert len(others) == 5


# -- the gate -------------------------------------------------------------------------------------


def test_admit_accepts_and_writes_signal_and_outbox_row_together(store: Store) -> None:
    """An accepted signal is stored with all its fields and its alert is queued with the exact text."""
    signal = make_signal()
    text = "🟢 <b>LONG BTC/USDT</b> · 1h · psar_bot\nEntry: <code>100.00</code>"
    assert store.admit_signal(signal, OPEN_RULES, T0 + HOUR + 500, text) is GateVerdict.ACCEPTED
    stored = store.get_signal(signal.id)
    assert stored is not None
    assert stored.signal == signal
    assert stored.status == "OPEN"
    assert stored.checked_until == T0
    assert (stored.exit_reason, stored.exit_price, stored.exit_ms) == (None, None, None)
    [row] = store.outbox_rows()
    assert row == {
        "id": 1,
        "bot": "psar_bot",
        "kind": "signal",
        "signal_id": signal.id,
        "text": text,
        "created_ms": T0 + HOUR + 500,
        "status": "pending",
        "attempts": 0,
        "last_error": None,
        "sent_ms": None,
        "message_id": None,
        "chart_state": "none",
        "chart_path": None,
        "part_message_id": None,
    }
    assert store.count_pending() == 1


def test_duplicate_same_bar_is_refused_and_writes_nothing(store: Store) -> None:
    """A second signal on the same candle (same id, or other direction) is DUPLICATE; nothing is written."""
    assert _admit(store, make_signal()) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal()) is GateVerdict.DUPLICATE
    assert _admit(store, make_signal(direction=Direction.SHORT)) is GateVerdict.DUPLICATE
    assert (_count(store, "signals"), _count(store, "outbox")) == (1, 1)


def test_same_bar_other_timeframe_or_bot_is_not_a_duplicate(store: Store) -> None:
    """The same bar time on another timeframe or for another bot is a different candle."""
    assert _admit(store, make_signal()) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(bot="other_bot")) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(timeframe="4h", direction=Direction.SHORT)) is GateVerdict.ACCEPTED


def test_already_open_same_bot_symbol_direction(store: Store) -> None:
    """While a LONG is open, another LONG of the same bot and symbol (any timeframe) is refused."""
    first = make_signal()
    assert _admit(store, first) is GateVerdict.ACCEPTED
    later = make_signal(bar_ts=T0 + 3 * HOUR)
    assert _admit(store, later) is GateVerdict.ALREADY_OPEN
    assert _admit(store, make_signal(timeframe="4h", bar_ts=T0 + 4 * HOUR)) is GateVerdict.ALREADY_OPEN
    # The opposite side, another symbol and another bot are free.
    assert _admit(store, make_signal(direction=Direction.SHORT, bar_ts=T0 + 5 * HOUR)) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(symbol="ETH/USDT", bar_ts=T0 + 3 * HOUR)) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(bot="b2", bar_ts=T0 + 3 * HOUR)) is GateVerdict.ACCEPTED
    # Once the first LONG is closed, the same bot and symbol may go LONG again.
    assert store.close_signal(first.id, _outcome(), T0 + 2 * HOUR, "closed")
    assert _admit(store, make_signal(bar_ts=T0 + 6 * HOUR)) is GateVerdict.ACCEPTED
    assert _count(store, "signals") == 5


def test_cooldown_boundary_is_exact(store: Store) -> None:
    """now - last == cooldown is accepted; one millisecond less is refused as COOLDOWN."""
    rules = GateRules(cooldown_ms=4 * HOUR, max_open_signals=10)
    first = make_signal(bar_ts=T0, created_ms=T0 + HOUR)
    assert store.admit_signal(first, rules, T0 + HOUR, "a") is GateVerdict.ACCEPTED
    # The opposite direction, so only the cooldown stands in the way.
    second = make_signal(direction=Direction.SHORT, bar_ts=T0 + 4 * HOUR, created_ms=T0 + 5 * HOUR - 1)
    assert store.admit_signal(second, rules, T0 + 5 * HOUR - 1, "b") is GateVerdict.COOLDOWN
    on_time = make_signal(direction=Direction.SHORT, bar_ts=T0 + 4 * HOUR, created_ms=T0 + 5 * HOUR)
    assert store.admit_signal(on_time, rules, T0 + 5 * HOUR, "b") is GateVerdict.ACCEPTED


def test_cooldown_counts_closed_signals_and_is_per_timeframe(store: Store) -> None:
    """A closed signal still starts the cooldown; another timeframe or symbol has its own."""
    rules = GateRules(cooldown_ms=4 * HOUR, max_open_signals=10)
    first = make_signal()
    assert store.admit_signal(first, rules, T0 + HOUR, "a") is GateVerdict.ACCEPTED
    assert store.close_signal(first.id, _outcome(exit_ms=T0 + 2 * HOUR), T0 + HOUR, "closed")
    again = make_signal(bar_ts=T0 + 2 * HOUR)
    assert store.admit_signal(again, rules, T0 + 3 * HOUR, "b") is GateVerdict.COOLDOWN
    other_tf = make_signal(timeframe="15m", bar_ts=T0 + 2 * HOUR)
    assert store.admit_signal(other_tf, rules, T0 + 3 * HOUR, "c") is GateVerdict.ACCEPTED
    other_symbol = make_signal(symbol="SOL/USDT", bar_ts=T0 + 2 * HOUR)
    assert store.admit_signal(other_symbol, rules, T0 + 3 * HOUR, "d") is GateVerdict.ACCEPTED


def test_max_open_signals_per_bot(store: Store) -> None:
    """With max 2 open, the third open signal of the bot is MAX_OPEN; other bots are not counted."""
    rules = GateRules(cooldown_ms=0, max_open_signals=2)
    a, b = make_signal(symbol="BTC/USDT"), make_signal(symbol="ETH/USDT")
    assert _admit(store, a, rules) is GateVerdict.ACCEPTED
    assert _admit(store, b, rules) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(bot="other_bot", symbol="XRP/USDT"), rules) is GateVerdict.ACCEPTED
    assert _admit(store, make_signal(symbol="SOL/USDT"), rules) is GateVerdict.MAX_OPEN
    assert (_count(store, "signals"), _count(store, "outbox")) == (3, 3)
    assert store.close_signal(a.id, _outcome(), T0, "closed")
    assert _admit(store, make_signal(symbol="SOL/USDT"), rules) is GateVerdict.ACCEPTED


# -- the outbox -----------------------------------------------------------------------------------


def test_pending_order_and_reply_to_from_the_sent_signal_message(store: Store) -> None:
    """Messages come out in queue order; a result replies to the Telegram id of its sent alert."""
    a, b = make_signal(symbol="BTC/USDT"), make_signal(symbol="ETH/USDT")
    _admit(store, a, message="alert a")
    _admit(store, b, message="alert b")
    assert store.close_signal(a.id, _outcome(), T0 + 4 * HOUR, "result a")
    pending = store.pending_messages(BOTS)
    assert [(m.id, m.kind, m.signal_id, m.text) for m in pending] == [
        (1, "signal", a.id, "alert a"),
        (2, "signal", b.id, "alert b"),
        (3, "result", a.id, "result a"),
    ]
    # Before the alert is delivered there is nothing to reply to.
    assert [m.reply_to_message_id for m in pending] == [None, None, None]
    store.mark_sent(1, telegram_message_id=777, now_ms=T0 + 2 * HOUR)
    pending = store.pending_messages(BOTS)
    assert [(m.id, m.reply_to_message_id) for m in pending] == [(2, None), (3, 777)]
    assert [m.id for m in store.pending_messages(BOTS, limit=1)] == [2]
    assert store.count_pending() == 2


def test_mark_sent_attempt_and_failed(store: Store) -> None:
    """mark_attempt keeps a message pending; mark_sent and mark_failed take it out, recording why."""
    _admit(store, make_signal(symbol="BTC/USDT"), message="a")
    _admit(store, make_signal(symbol="ETH/USDT"), message="b")
    _admit(store, make_signal(symbol="SOL/USDT"), message="c")
    store.mark_attempt(1, "timeout")
    store.mark_attempt(1, "429 retry after 3")
    store.mark_sent(1, telegram_message_id=42, now_ms=T0 + 9)
    store.mark_attempt(2, "502 Bad Gateway")
    store.mark_failed(2, "400 chat not found")
    store.mark_attempt(3, "timeout")
    rows = {row["id"]: row for row in store.outbox_rows()}
    assert (rows[1]["status"], rows[1]["attempts"], rows[1]["message_id"], rows[1]["sent_ms"]) == (
        "sent",
        3,
        42,
        T0 + 9,
    )
    assert rows[1]["last_error"] == "429 retry after 3"
    assert (rows[2]["status"], rows[2]["attempts"], rows[2]["last_error"], rows[2]["sent_ms"]) == (
        "failed",
        2,
        "400 chat not found",
        None,
    )
    assert (rows[3]["status"], rows[3]["attempts"], rows[3]["last_error"]) == ("pending", 1, "timeout")
    [still] = store.pending_messages(BOTS)
    assert (still.id, still.attempts, still.text) == (3, 1, "c")


def test_pending_messages_only_for_the_given_bots_and_after_an_id(store: Store) -> None:
    """A process sees only its own bots' pending messages, and only those queued after ``after_id``."""
    _admit(store, make_signal(bot="psar_bot"), message="p1")
    _admit(store, make_signal(bot="rsi_bot"), message="r1")
    _admit(store, make_signal(bot="psar_bot", symbol="ETH/USDT"), message="p2")
    assert [m.text for m in store.pending_messages(["psar_bot"])] == ["p1", "p2"]
    assert [m.text for m in store.pending_messages(["rsi_bot"])] == ["r1"]
    assert [m.text for m in store.pending_messages(["psar_bot", "rsi_bot"])] == ["p1", "r1", "p2"]
    assert [m.text for m in store.pending_messages(["psar_bot"], after_id=1)] == ["p2"]
    assert store.pending_messages(["nobody"]) == []
    assert (store.count_pending(), store.count_pending(["rsi_bot"]), store.last_outbox_id()) == (3, 1, 3)


def test_dry_run_sent_without_message_id_gives_no_reply_target(store: Store) -> None:
    """An alert marked sent with no Telegram id (dry-run) leaves the result without reply_to."""
    signal = make_signal()
    _admit(store, signal)
    store.mark_sent(1, telegram_message_id=None, now_ms=T0)
    store.close_signal(signal.id, _outcome(), T0, "r")
    [result] = store.pending_messages(BOTS)
    assert (result.kind, result.reply_to_message_id) == ("result", None)


# -- closing --------------------------------------------------------------------------------------


def test_close_signal_only_once(store: Store) -> None:
    """The first close records the outcome and queues one result; a second close changes nothing."""
    signal = make_signal()
    _admit(store, signal)
    outcome = Outcome(reason="TP1", price=104.0, exit_ms=T0 + 5 * HOUR, pnl_pct=3.9, r_multiple=1.95)
    assert store.close_signal(signal.id, outcome, T0 + 4 * HOUR, "✅ TP1") is True
    other = Outcome(reason="SL", price=98.0, exit_ms=T0 + 6 * HOUR, pnl_pct=-2.1, r_multiple=-1.05)
    assert store.close_signal(signal.id, other, T0 + 5 * HOUR, "❌ SL") is False
    stored = store.get_signal(signal.id)
    assert stored is not None
    assert (stored.status, stored.exit_reason, stored.exit_price, stored.exit_ms) == (
        "CLOSED",
        "TP1",
        104.0,
        T0 + 5 * HOUR,
    )
    assert (stored.pnl_pct, stored.r_multiple, stored.checked_until) == (3.9, 1.95, T0 + 4 * HOUR)
    results = [r for r in store.outbox_rows() if r["kind"] == "result"]
    assert [(r["text"], r["created_ms"]) for r in results] == [("✅ TP1", T0 + 5 * HOUR)]
    assert store.open_signals() == []
    assert store.close_signal("no-such-id", outcome, T0, "x") is False


def test_saved_progress_comes_back_and_a_closed_signal_is_not_touched(store: Store) -> None:
    """An open signal's progress (stop, fills, excursions) reads back as saved; closed, it is frozen."""
    signal = make_signal()
    _admit(store, signal)
    [fresh] = store.open_signals()
    assert fresh.position == Position.opened(signal)
    progress = replace(
        Position.opened(signal),
        stop=signal.levels.entry,
        stop_reason="BE",
        targets_hit=1,
        remaining=0.5,
        fills=(Fill("TP1", signal.levels.tps[0], T0 + 3 * HOUR, 0.5),),
        mfe_pct=4.25,
        mae_pct=0.5,
        checked_until=T0 + 3 * HOUR,
    )
    store.save_progress([(signal.id, progress)])
    [open_signal] = store.open_signals()
    assert (open_signal.position, open_signal.checked_until) == (progress, T0 + 3 * HOUR)
    store.close_signal(signal.id, _outcome(), T0 + 4 * HOUR, "r")
    store.save_progress([(signal.id, replace(progress, checked_until=T0 + 9 * HOUR))])
    stored = store.get_signal(signal.id)
    assert stored is not None
    assert (stored.checked_until, stored.position) == (T0 + 4 * HOUR, progress)


def test_open_signals_filter_by_bot_and_order(store: Store) -> None:
    """open_signals lists oldest first and can be limited to some bots."""
    late = make_signal(bot="a_bot", bar_ts=T0 + 2 * HOUR)
    early = make_signal(bot="b_bot", bar_ts=T0)
    _admit(store, late)
    _admit(store, early)
    assert [s.signal.id for s in store.open_signals()] == [early.id, late.id]
    assert [s.signal.id for s in store.open_signals(("a_bot",))] == [late.id]
    assert [s.signal.id for s in store.all_signals()] == [early.id, late.id]
    assert store.get_signal("missing") is None


# -- files and processes --------------------------------------------------------------------------


def test_file_modes_are_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    """With umask 022 the state directory is 0700 and the database (and its WAL) 0600."""
    previous = os.umask(0o022)
    try:
        state = tmp_path / "deep" / "state"
        opened = Store(state)
        try:
            _admit(opened, make_signal())
            assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
            assert stat.S_IMODE(os.stat(state / "signals.sqlite3").st_mode) == 0o600
            wal = state / "signals.sqlite3-wal"
            assert wal.exists()
            assert stat.S_IMODE(os.stat(wal).st_mode) == 0o600
        finally:
            opened.close()
    finally:
        os.umask(previous)


def test_existing_state_directory_is_made_private(tmp_path: Path) -> None:
    """A state directory that already exists with mode 0755 is tightened to 0700."""
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    Store(state).close()
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700


def test_two_stores_on_one_directory_cannot_both_admit(tmp_path: Path) -> None:
    """Two Store objects (two processes) admitting the same signal: one ACCEPTED, one DUPLICATE."""
    first, second = Store(tmp_path / "state"), Store(tmp_path / "state")
    try:
        signal = make_signal()
        assert _admit(first, signal) is GateVerdict.ACCEPTED
        assert _admit(second, signal) is GateVerdict.DUPLICATE
        assert second.get_signal(signal.id) is not None
        assert _count(first, "outbox") == 1
    finally:
        first.close()
        second.close()


def test_two_stores_racing_in_threads_admit_exactly_once(tmp_path: Path) -> None:
    """Eight connections released at once on the same signal: exactly one ACCEPTED, one row, one message."""
    Store(tmp_path / "state").close()  # create the schema once, as the first process would
    signal = make_signal()
    barrier = threading.Barrier(8)
    verdicts: list[GateVerdict] = []
    lock = threading.Lock()

    def worker() -> None:
        own = Store(tmp_path / "state")
        try:
            barrier.wait()
            verdict = own.admit_signal(signal, OPEN_RULES, signal.created_ms, "alert")
            with lock:
                verdicts.append(verdict)
        finally:
            own.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(verdicts) == sorted([GateVerdict.ACCEPTED] + [GateVerdict.DUPLICATE] * 7)
    check = Store(tmp_path / "state")
    try:
        assert (_count(check, "signals"), _count(check, "outbox")) == (1, 1)
    finally:
        check.close()


def test_rows_survive_closing_and_reopening(tmp_path: Path) -> None:
    """A stored signal, its outbox row and its sent state are all there after reopening the database."""
    signal = make_signal(direction=Direction.SHORT)
    first = Store(tmp_path / "state")
    _admit(first, signal, message="alert text")
    first.mark_sent(1, 555, T0 + 2 * HOUR)
    first.close()
    second = Store(tmp_path / "state")
    try:
        stored = second.get_signal(signal.id)
        assert stored is not None
        assert stored.signal == signal
        assert stored.signal.levels.tps == (96.0, 94.0)
        assert dict(stored.signal.context) == {
            "sar": 97.5,
            "adx": 35.2,
            "previous_trend_bars": 12,
            "strong": True,
            "note": "x",
        }
        assert stored.signal.key_points == (KeyPoint(ts=T0 - HOUR, price=97.5, label="SAR"),)
        [row] = second.outbox_rows()
        assert (row["text"], row["status"], row["message_id"]) == ("alert text", "sent", 555)
        # A result queued after the restart still finds the alert to reply to.
        second.close_signal(signal.id, _outcome("SL", 102.0), T0 + 3 * HOUR, "sl")
        [result] = second.pending_messages(BOTS)
        assert result.reply_to_message_id == 555
    finally:
        second.close()


def test_an_update_is_queued_once_as_a_reply_to_the_alert(store: Store) -> None:
    """queue_update adds one 'update' row per distinct text; it replies to the alert once that is sent."""
    signal = make_signal()
    assert store.admit_signal(signal, OPEN_RULES, T0 + HOUR, "alert") is GateVerdict.ACCEPTED
    store.mark_sent(1, 555, T0 + HOUR)
    assert store.queue_update(signal.id, "+volume_bot joined", T0 + 2 * HOUR) is True
    assert store.queue_update(signal.id, "+volume_bot joined", T0 + 3 * HOUR) is False
    assert store.queue_update("no-such-id", "x", T0) is False
    [update] = store.pending_messages(["psar_bot"])
    assert (update.kind, update.text, update.reply_to_message_id) == ("update", "+volume_bot joined", 555)


def test_an_older_database_gains_the_update_kind_and_keeps_its_rows(tmp_path: Path) -> None:
    """A schema-2 outbox (kind only signal/result) is rebuilt with 'update' allowed, rows and ids kept."""
    state = tmp_path / "old"
    state.mkdir()
    db = sqlite3.connect(state / "signals.sqlite3")
    db.executescript(
        """CREATE TABLE signals (id TEXT PRIMARY KEY, bot TEXT NOT NULL, symbol TEXT NOT NULL,
               timeframe TEXT NOT NULL, direction TEXT NOT NULL, entry REAL NOT NULL, sl REAL NOT NULL,
               tp1 REAL NOT NULL, tp2 REAL, tp3 REAL, reason TEXT NOT NULL, context TEXT NOT NULL,
               key_points TEXT NOT NULL, bar_ts INTEGER NOT NULL, created_ms INTEGER NOT NULL,
               status TEXT NOT NULL DEFAULT 'OPEN', checked_until INTEGER NOT NULL, exit_reason TEXT,
               exit_price REAL, exit_ms INTEGER, pnl_pct REAL, r_multiple REAL);
           CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, bot TEXT NOT NULL,
               kind TEXT NOT NULL CHECK (kind IN ('signal', 'result')), signal_id TEXT NOT NULL,
               text TEXT NOT NULL, created_ms INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
               attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, sent_ms INTEGER, message_id INTEGER);
           INSERT INTO signals VALUES ('s1', 'consensus_bot', 'BTC/USDT', '15m', 'LONG', 100, 97, 104,
               NULL, NULL, 'r', '{}', '[]', 0, 5, 'OPEN', 0, NULL, NULL, NULL, NULL, NULL);
           INSERT INTO outbox (id, bot, kind, signal_id, text, created_ms, status, message_id)
               VALUES (7, 'consensus_bot', 'signal', 's1', 'alert', 5, 'sent', 42);"""
    )
    db.close()
    store = Store(state)
    assert store.queue_update("s1", "update text", 10) is True
    rows = store.outbox_rows()
    assert [(r["id"], r["kind"], r["text"], r["message_id"]) for r in rows] == [
        (7, "signal", "alert", 42),
        (8, "update", "update text", None),
    ]
    assert rows[0]["chart_state"] == "none"
    store.close()
