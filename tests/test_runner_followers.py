"""The runner scans a bot that reads the others' signals (consensus) after them, over what they emitted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bots.base import DataNeeds, MarketData, StrategyParams
from bots.psar_bot import PsarBot, PsarParams
from common.clock import SimulatedClock
from common.market import SeriesKey
from common.market.replay import ReplaySource
from common.types import Direction, Setup
from tests.harness import SAMPLE, bot_runtime, in_process_runner

pytestmark = pytest.mark.integration

HOUR = 3_600_000


class NoParams(StrategyParams):
    """No parameters."""


@dataclass
class PeerReader:
    """A follower double: records (bar close, the peers' bots and bar times) at every scan; finds nothing."""

    name: str = "peer_reader"
    window_ms: int = 8 * HOUR
    params_model: type[NoParams] = NoParams
    seen: list[tuple[int, tuple[tuple[str, int], ...]]] = field(default_factory=list)

    def needs(self, params: NoParams, timeframe: str) -> DataNeeds:
        """60 candles and the peers' signals of the last 8 hours."""
        return DataNeeds(lookback=60, peer_signals_ms=self.window_ms)

    def scan(self, data: MarketData, params: NoParams) -> Sequence[Setup]:
        """Record what it was shown."""
        peers = tuple((s.bot, s.bar_ts) for s in data.peer_signals)
        self.seen.append((data.candles.close_time(-1), peers))
        return []


async def test_a_follower_sees_the_signals_emitted_in_the_same_cycle(tmp_path: Path) -> None:
    """Every psar_bot signal is in the follower's peers from the very cycle it was emitted, for 8 hours."""
    clock = SimulatedClock(0)
    source = ReplaySource(SAMPLE, clock)
    reader = PeerReader()
    psar = bot_runtime(PsarBot(), "4h", ["BTC/USDT"], PsarParams())
    follower = bot_runtime(reader, "4h", ["BTC/USDT"], NoParams())
    runner = in_process_runner(tmp_path, [follower, psar], source, clock, asyncio.Event())
    assert await runner.prepare() == []
    await runner.run()
    emitted = [(s.signal.bar_ts, s.signal.created_ms) for s in runner._store.all_signals()]
    assert len(emitted) >= 10
    by_close = dict(reader.seen)
    for bar_ts, created_ms in emitted:
        # Emitted at the close of its bar; the follower's scan of that same close already has it.
        assert created_ms == bar_ts + 4 * HOUR
        assert ("psar_bot", bar_ts) in by_close[created_ms]
        # Still there one bar later, gone once it is older than the 8-hour window.
        assert ("psar_bot", bar_ts) in by_close[created_ms + 4 * HOUR]
        assert ("psar_bot", bar_ts) not in by_close.get(created_ms + 8 * HOUR, ())
    assert all(bot == "psar_bot" for _, peers in reader.seen for bot, _ in peers)


@dataclass
class Announcer:
    """A follower double: a LONG setup on one bar, then an ``update`` setup on each of the next two."""

    first_close: int
    name: str = "announcer"
    params_model: type[NoParams] = NoParams

    def needs(self, params: NoParams, timeframe: str) -> DataNeeds:
        """A short history; peers are not read, but asking for them makes it a follower."""
        return DataNeeds(lookback=20, peer_signals_ms=HOUR)

    def scan(self, data: MarketData, params: NoParams) -> Sequence[Setup]:
        """The newest bar's setup: the first alert, or an update naming a newcomer."""
        candles = data.candles
        close = candles.close_time(-1)
        step = (close - self.first_close) // candles.period_ms
        if step not in (0, 1, 2):
            return []
        entry = float(candles.close[-1])
        context: dict[str, str | bool] = {"update": step > 0, "newcomer": f"bot{step}"}
        reason = "first" if step == 0 else f"+bot{step} joined"
        return [Setup(Direction.LONG, int(candles.ts[-1]), entry, reason, atr=entry * 0.05, context=context)]


async def test_an_update_setup_on_an_open_signal_becomes_a_reply_not_an_alert(tmp_path: Path) -> None:
    """A follower's update setups while its signal is open are queued as 'update' replies, one each."""
    clock = SimulatedClock(0)
    source = ReplaySource(SAMPLE, clock)
    await source.open([SeriesKey("BTC/USDT", "4h")])
    start = source.start_ms({SeriesKey("BTC/USDT", "4h"): 20})
    assert start is not None
    announcer = Announcer(first_close=start + 4 * HOUR)
    bot = bot_runtime(announcer, "4h", ["BTC/USDT"], NoParams())
    runner = in_process_runner(tmp_path, [bot], ReplaySource(SAMPLE, clock), clock, asyncio.Event())
    assert await runner.prepare() == []
    clock.set(start)
    for _ in range(4):
        await runner.run(once=True)
        clock.set(clock.now_ms() + 4 * HOUR)
    rows = runner._store.outbox_rows()
    assert [(r["kind"], r["signal_id"] == rows[0]["signal_id"]) for r in rows] == [
        ("signal", True),
        ("update", True),
        ("update", True),
    ]
    assert "ANNOUNCER UPDATE" in str(rows[1]["text"])
    assert "+bot1 joined" in str(rows[1]["text"])
    assert "+bot2 joined" in str(rows[2]["text"])
    assert len(runner._store.all_signals()) == 1
