"""Tracking in the running fleet: across a SIGKILL and restart (the signal closes on the candle that
touched its target, STATE_RECOVERED counts it), over candles missed beyond the lookback, partial
exits as replies, funding of a perpetual in the P&L, and a strategy's trailing stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import talib

from bots.psar_bot import PsarBot, PsarParams
from common.clock import SimulatedClock
from common.events import read_events
from common.market.replay import ReplaySource
from common.store import GateRules, GateVerdict, Store
from common.types import Direction, Levels, Signal, timeframe_ms
from tests.fakes.csvdata import OhlcvArrays, load_ohlcv_csv
from tests.fakes.mexc import FakeMexc, shift_to_now
from tests.harness import (
    H4_MS,
    SAMPLE,
    avoid_candle_boundary,
    bot_runtime,
    cli_env,
    in_process_runner,
    sample_4h,
    start_cli,
    write_config,
)

pytestmark = pytest.mark.integration

WAIT_S = 30.0
#: Candles the exchange "has not published" during the first run: the market moves through the
#: target among them while the process is dead.
WITHHELD = 3


def _pick(data: OhlcvArrays) -> tuple[int, int]:
    """(signal bar b, last closed candle m): m-1 makes a new high above b+1..m-2, and m stays below it."""
    for m in range(len(data.ts) - 3, 300, -1):
        b = m - 12
        before = float(np.max(data.high[b + 1 : m - 1]))
        if (
            float(data.high[m - 1]) > before * 1.004
            and float(data.high[m]) < before
            and data.close[b] < before
        ):
            return b, m
    raise AssertionError("the sample has no suitable stretch")


def _serve(mexc: FakeMexc, data: OhlcvArrays, ts: npt.NDArray[np.int64], end: int) -> None:
    mexc.add_candles(
        "BTCUSDT",
        "spot",
        "4h",
        ts[:end],
        data.open[:end],
        data.high[:end],
        data.low[:end],
        data.close[:end],
        data.volume[:end],
    )


def _row(tmp_path: Path, signal_id: str) -> sqlite3.Row:
    db = sqlite3.connect(tmp_path / "state" / "signals.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        row: sqlite3.Row = db.execute("SELECT * FROM signals WHERE id = ?", (signal_id,)).fetchone()
        return row
    finally:
        db.close()


def _seed(
    tmp_path: Path, signal_id: str, symbol: str, timeframe: str, bar_ts: int, levels: Levels
) -> tuple[Signal, Store]:
    """A psar_bot LONG found on ``bar_ts`` and emitted at its close, admitted to the store in ``tmp_path``."""
    signal = Signal(
        id=signal_id,
        bot="psar_bot",
        symbol=symbol,
        timeframe=timeframe,
        direction=Direction.LONG,
        levels=levels,
        reason="seeded by the test",
        bar_ts=bar_ts,
        created_ms=bar_ts + timeframe_ms(timeframe),
    )
    store = Store(tmp_path / "state")
    assert store.admit_signal(signal, GateRules(0, 5), signal.created_ms, "seeded") is GateVerdict.ACCEPTED
    return signal, store


async def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def mexc() -> AsyncIterator[FakeMexc]:
    """The fake MEXC with BTC/USDT spot."""
    avoid_candle_boundary(H4_MS)
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        yield fake


async def test_sigkill_then_restart_after_the_market_moved_through_tp1(
    mexc: FakeMexc, tmp_path: Path
) -> None:
    """Killed with the signal open; restarted once the target was touched: TP1 at its price and candle."""
    data = sample_4h()
    b, m = _pick(data)
    ts = shift_to_now(data.ts[: m + 2], H4_MS, int(time.time() * 1000))  # m closed, m+1 forming
    entry = float(data.close[b])
    tp1 = round((float(np.max(data.high[b + 1 : m - 1])) + float(data.high[m - 1])) / 2, 2)
    sl = round(float(np.min(data.low[b + 1 : m + 1])) * 0.9, 2)
    levels = Levels(Direction.LONG, entry=entry, sl=sl, tps=(tp1,))
    tracked, store = _seed(tmp_path, "seeded0001", "BTC/USDT", "4h", int(ts[b]), levels)
    store.close()
    write_config(tmp_path, {"timeout_hours": 1000}, tracking={"tp_fractions": [1.0]})
    env = cli_env(tmp_path, mexc.base_url, None)

    # First run: the exchange lags WITHHELD candles behind; the tracker checks what it has, then dies.
    _serve(mexc, data, ts, m + 1 - WITHHELD)
    first = await start_cli(["run", "psar_bot", "--log-level", "WARNING"], env, tmp_path)
    newest_served = int(ts[m - WITHHELD])
    await _wait_for(lambda: _row(tmp_path, tracked.id)["checked_until"] == newest_served, "the first check")
    assert _row(tmp_path, tracked.id)["status"] == "OPEN"
    open_at_kill = len(Store(tmp_path / "state").open_signals())
    os.kill(first.pid, signal.SIGKILL)
    await first.wait()

    # While it is down the candles arrive, candle m-1 through TP1; the restart must find that candle.
    _serve(mexc, data, ts, m + 2)
    second = await start_cli(["run", "psar_bot", "--log-level", "WARNING"], env, tmp_path)
    try:
        await _wait_for(lambda: _row(tmp_path, tracked.id)["status"] == "CLOSED", "the close")
    finally:
        second.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT_S):
            await second.communicate()
    assert second.returncode == 0
    row = _row(tmp_path, tracked.id)
    assert (row["exit_reason"], row["exit_price"], row["exit_ms"]) == ("TP1", tp1, int(ts[m - 1]) + H4_MS)
    # Gross (tp1 / entry - 1) minus 2 x 0.05 % fees; spot: no funding.
    assert row["pnl_pct"] == pytest.approx((tp1 / entry - 1) * 100 - 0.1, rel=1e-9)
    recovered = [e for e in read_events(tmp_path / "logs" / "events") if e["event"] == "STATE_RECOVERED"]
    assert recovered[-1]["open_signals"] == open_at_kill
    closed = [e for e in read_events(tmp_path / "logs" / "events") if e["event"] == "SIGNAL_CLOSED"]
    assert [(e["signal_id"], e["exit_reason"]) for e in closed if e["signal_id"] == tracked.id] == [
        (tracked.id, "TP1")
    ]


async def test_candles_missed_beyond_the_lookback_are_replayed_first(tmp_path: Path) -> None:
    """A signal last checked long before the fetched window is advanced over the missed candles first:
    it closes on the candle that touched TP1 (before the window), not on a later one inside it."""
    data = sample_4h()
    lookback = 60
    b = 400
    # The first new high of at least 1 % over b's close after b: TP1 sits just below that high.
    k = next(i for i in range(b + 2, len(data.ts)) if data.high[i] > max(data.high[b + 1 : i]) * 1.003)
    tp1 = round((float(max(data.high[b + 1 : k])) + float(data.high[k])) / 2, 2)
    sl = round(float(min(data.low[b + 1 : k + 1])) * 0.9, 2)
    start_index = k + lookback + 40  # the replay begins well after the touch: k is outside the window
    assert start_index < len(data.ts)
    levels = Levels(Direction.LONG, entry=float(data.close[b]), sl=sl, tps=(tp1,))
    tracked, store = _seed(tmp_path, "seeded0002", "BTC/USDT", "4h", int(data.ts[b]), levels)
    bot = bot_runtime(PsarBot(), "4h", ["BTC/USDT"], PsarParams(lookback=lookback))
    bot = replace(bot, settings=replace(bot.settings, timeout_ms=10_000 * 3_600_000, tp_fractions=(1.0,)))
    clock = SimulatedClock(0)
    source = ReplaySource(SAMPLE, clock)
    runner = in_process_runner(tmp_path, [bot], source, clock, asyncio.Event(), int(data.ts[start_index]))
    await runner.prepare()
    await runner.run(once=True)
    stored = store.get_signal(tracked.id)
    assert stored is not None
    assert (stored.status, stored.exit_reason, stored.exit_price) == ("CLOSED", "TP1", tp1)
    assert stored.exit_ms == int(data.ts[k]) + H4_MS
    store.close()


async def test_partial_exit_is_a_reply_and_funding_is_in_the_perpetual_pnl(tmp_path: Path) -> None:
    """On a perpetual replay: TP1 closes half and queues a reply (SIGNAL_PARTIAL_EXIT); the rest times
    out a day after the alert; the P&L is both parts, minus fees, plus the funding of the bundled file."""
    data = load_ohlcv_csv(SAMPLE / "BTC_USDT-15m.csv.gz")
    period = 15 * 60_000
    b = int(np.searchsorted(data.ts, 1_722_470_400_000))  # 2024-08-01 00:00 UTC
    entry = float(data.close[b])
    k1 = next(i for i in range(b + 1, len(data.ts)) if data.high[i] > entry * 1.004)
    tp1 = round(entry * 1.004, 2)
    sl = round(float(min(data.low[b + 1 : b + 200])) * 0.9, 2)
    tp2 = round(float(max(data.high[b + 1 : b + 200])) * 1.1, 2)
    created = int(data.ts[b]) + period
    levels = Levels(Direction.LONG, entry=entry, sl=sl, tps=(tp1, tp2))
    tracked, store = _seed(tmp_path, "seeded0003", "BTC/USDT:USDT", "15m", int(data.ts[b]), levels)
    bot = bot_runtime(PsarBot(), "15m", ["BTC/USDT:USDT"], PsarParams(lookback=60))
    bot = replace(bot, settings=replace(bot.settings, tp_fractions=(0.5, 0.5), break_even_after_tp1=False))
    clock = SimulatedClock(0)
    # The replay starts at k1's close: the first cycle sees k1 as the newest candle.
    start = int(data.ts[k1]) + period
    runner = in_process_runner(tmp_path, [bot], ReplaySource(SAMPLE, clock), clock, asyncio.Event(), start)
    await runner.prepare()
    await runner.run(once=True)

    half = store.get_signal(tracked.id)
    assert half is not None
    assert half.status == "OPEN"
    assert (half.position.remaining, half.position.fills[0].reason) == (0.5, "TP1")
    updates = [row for row in store.outbox_rows() if row["kind"] == "update"]
    assert len(updates) == 1
    assert "TP1 hit" in str(updates[0]["text"])
    partial = [e for e in read_events(tmp_path / "events") if e["event"] == "SIGNAL_PARTIAL_EXIT"]
    assert [(e["exit_reason"], e["fraction"], e["remaining"]) for e in partial] == [("TP1", 0.5, 0.5)]

    # A day and a bit later: the rest times out at the close of the first candle ending >= 24 h after.
    clock.set(created + 26 * 3_600_000)
    await runner._cycle()  # one more cycle of the same run
    done = store.get_signal(tracked.id)
    assert done is not None
    assert done.status == "CLOSED"
    t = next(i for i in range(b + 1, len(data.ts)) if int(data.ts[i]) + period - created >= 24 * 3_600_000)
    assert (done.exit_reason, done.exit_ms, done.exit_price) == (
        "TIMEOUT",
        int(data.ts[t]) + period,
        data.close[t],
    )
    # Funding from the file itself: settlements after the alert and up to the exit; half size after TP1.
    raw = np.loadtxt(SAMPLE / "BTC_USDT-funding_rate.csv.gz", delimiter=",", skiprows=1)
    tp1_at = int(data.ts[k1]) + period
    funding = -sum(
        rate * (1.0 if ts < tp1_at else 0.5) * 100.0 for ts, rate in raw if created < ts <= done.exit_ms
    )
    assert sum(1 for ts, _ in raw if created < ts <= done.exit_ms) == 3  # 8-hourly, over one day
    assert done.funding_pct == pytest.approx(funding, rel=1e-9)
    expected = 0.5 * (tp1 / entry - 1) * 100 + 0.5 * (float(data.close[t]) / entry - 1) * 100 - 0.1 + funding
    assert done.pnl_pct == pytest.approx(expected, rel=1e-9)
    assert done.r_multiple == pytest.approx(expected / 100 * entry / (entry - sl), rel=1e-9)
    assert [f.reason for f in done.fills] == ["TP1", "TIMEOUT"]
    store.close()


async def test_psar_trailing_stop_closes_a_long_as_trail(tmp_path: Path) -> None:
    """With trailing_stop, psar_bot's SAR lifts the stop of a LONG it did not find; the exit is TRAIL,
    above the original stop, at a price the exit candle traded through."""
    data = sample_4h()
    sar = talib.SAR(data.high, data.low, acceleration=0.02, maximum=0.2)
    # A bar in an up-trend (close above the SAR) with a long history before it.
    b = next(i for i in range(400, len(data.ts)) if data.close[i] > sar[i] and data.close[i - 1] > sar[i - 1])
    entry = float(data.close[b])
    tracked, store = _seed(
        tmp_path,
        "seeded0004",
        "BTC/USDT",
        "4h",
        int(data.ts[b]),
        Levels(Direction.LONG, entry=entry, sl=round(entry * 0.5, 2), tps=(round(entry * 3, 2),)),
    )
    bot = bot_runtime(PsarBot(), "4h", ["BTC/USDT"], PsarParams(lookback=300))
    bot = replace(bot, settings=replace(bot.settings, timeout_ms=10_000 * 3_600_000, trailing_stop=True))
    clock = SimulatedClock(0)
    start = int(data.ts[b + 150])
    runner = in_process_runner(tmp_path, [bot], ReplaySource(SAMPLE, clock), clock, asyncio.Event(), start)
    await runner.prepare()
    await runner.run(once=True)
    done = store.get_signal(tracked.id)
    assert done is not None
    assert (done.status, done.exit_reason) == ("CLOSED", "TRAIL")
    assert done.exit_price is not None
    assert done.exit_ms is not None
    j = int(np.searchsorted(data.ts, done.exit_ms - H4_MS))
    assert tracked.levels.sl < done.exit_price
    assert data.low[j] <= done.exit_price <= data.high[j]
    store.close()
