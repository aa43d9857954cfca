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
from common.market.replay import ReplaySource
from common.types import Setup
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
