"""Funding, trades, order book and ticker through both sources and into a strategy's MarketData."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from bots.base import DataNeeds, MarketData, StrategyParams
from common.clock import SimulatedClock
from common.config import (
    ExchangeSettings,
)
from common.market import ExtrasNeed, SeriesKey, SourceProblem
from common.market.mexc import MexcSource
from common.market.replay import ReplaySource
from common.types import Setup
from tests.fakes.csvdata import SHARED_DATA, load_funding_csv, load_trades_csv, require_shared_data
from tests.fakes.mexc import FakeMexc
from tests.harness import bot_runtime, in_process_runner, sample_4h

pytestmark = pytest.mark.integration

SWAP = "BTC/USDT:USDT"
FUNDING = "binance_usdm_funding/BTC_USDT-funding_rate.csv.gz"
TRADES = "trades/ETH_USDT-trades.csv.gz"
H8 = 8 * 3_600_000


def ms(text: str) -> int:
    """Unix ms of an ISO time in UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def paths(fake: FakeMexc, prefix: str) -> int:
    """How many requests went to paths starting with ``prefix``."""
    return fake.count(prefix)


async def test_live_extras_come_from_ccxt_once_each_and_funding_history_is_cached() -> None:
    """Funding (150 settlements in 2 pages, later only the current rate), trades, book, ticker via ccxt."""
    funding = load_funding_csv(require_shared_data(FUNDING))
    trades = load_trades_csv(require_shared_data(TRADES))
    clock = SimulatedClock(ms("2024-06-01T20:07:00"))
    fake = FakeMexc(now_ms=clock.now_ms)
    fake.add_swap("BTC_USDT", "BTC", "USDT", price_unit=0.1, contract_size=0.0001)
    candles = sample_4h()
    fake.add_candles(
        "BTC_USDT",
        "swap",
        "4h",
        candles.ts,
        candles.open,
        candles.high,
        candles.low,
        candles.close,
        candles.volume,
    )
    fake.add_funding("BTC_USDT", funding.ts, funding.rate)
    fake.add_trades("BTC_USDT", "swap", trades.ts, None, trades.side, trades.price, trades.amount)
    need = ExtrasNeed(funding=150, trades=40, book_depth=5, ticker=True)
    async with fake:
        source = MexcSource(ExchangeSettings(timeout_ms=2000), clock, base_url=fake.base_url)
        try:
            assert await source.open([SeriesKey(SWAP, "4h")], {SWAP: need}) == []
            got = await source.extras(SWAP, need)
            assert got.funding is not None
            assert got.trades is not None
            assert got.book is not None
            assert got.ticker is not None
            settled = funding.ts[funding.ts <= clock.now_ms()]
            assert got.funding.ts.tolist() == settled[-150:].tolist()
            assert got.funding.rate.tolist() == funding.rate[: len(settled)][-150:].tolist()
            assert (got.funding.next_ts, got.funding.interval_ms) == (ms("2024-06-02T00:00:00"), H8)
            assert got.trades.ts.tolist() == trades.ts[-40:].tolist()
            np.testing.assert_allclose(got.trades.amount, trades.amount[-40:], rtol=1e-12)
            assert len(got.book.bid_price) == 5
            assert got.book.bid_price[0] < got.book.ask_price[0]
            assert got.ticker.last == float(candles.close[candles.ts <= clock.now_ms()][-1])
            assert paths(fake, "/api/v1/contract/funding_rate/history") == 2
            assert paths(fake, "/api/v1/contract/funding_rate/BTC_USDT") == 1

            await source.extras(SWAP, ExtrasNeed(funding=150))  # same time: the history is cached
            assert paths(fake, "/api/v1/contract/funding_rate/history") == 2
            clock.set(ms("2024-06-02T00:00:05"))  # a settlement has passed: one page for it
            later = await source.extras(SWAP, ExtrasNeed(funding=150))
            assert paths(fake, "/api/v1/contract/funding_rate/history") == 3
            assert later.funding is not None
            assert later.funding.ts[-1] == ms("2024-06-02T00:00:00")
            assert len(later.funding) == 150
        finally:
            await source.close()


async def test_live_funding_for_a_spot_symbol_is_refused_at_start() -> None:
    """Asking funding for a spot symbol is one problem line at open, naming the swap to use instead."""
    clock = SimulatedClock(ms("2024-06-01T20:07:00"))
    fake = FakeMexc(now_ms=clock.now_ms)
    fake.add_spot("ETHUSDT", "ETH", "USDT")
    async with fake:
        source = MexcSource(ExchangeSettings(timeout_ms=2000), clock, base_url=fake.base_url)
        try:
            problems = await source.open([SeriesKey("ETH/USDT", "4h")], {"ETH/USDT": ExtrasNeed(funding=30)})
        finally:
            await source.close()
    assert problems == [
        SourceProblem(
            "ETH/USDT",
            "symbol ETH/USDT: funding rates exist only for perpetual swaps "
            '(use {"symbol": "ETH/USDT", "market": "swap"})',
            extras=True,
        )
    ]


def shared_replay(clock: SimulatedClock) -> ReplaySource:
    """A replay over the shared perpetual candles, funding and trades folders (in that order)."""
    require_shared_data(FUNDING)
    folders = ("binance_usdm_perp", "binance_usdm_funding", "trades")
    return ReplaySource([SHARED_DATA / folder for folder in folders], clock)


async def test_replay_extras_never_show_the_future() -> None:
    """Replay funding holds settlements up to now only, trades up to now, a ticker from candles, no book."""
    clock = SimulatedClock(0)
    source = shared_replay(clock)
    need = ExtrasNeed(funding=30, book_depth=5, ticker=True)
    keys = [SeriesKey(SWAP, "1h"), SeriesKey("ETH/USDT:USDT", "1h")]
    assert await source.open(keys, {SWAP: need, "ETH/USDT:USDT": ExtrasNeed(trades=25)}) == []
    now = ms("2023-02-02T09:22:00")  # between two settlements, inside the ETH trades file
    clock.set(now)
    got = await source.extras(SWAP, need)
    assert got.funding is not None
    assert got.ticker is not None
    funding = load_funding_csv(require_shared_data(FUNDING))
    assert got.funding.ts.tolist() == funding.ts[funding.ts <= now][-30:].tolist()
    assert got.funding.next_ts == ms("2023-02-02T16:00:00")
    assert got.funding.predicted_rate is None  # the next settled rate would be a look ahead
    assert got.book is None  # history files hold no order book
    hourly = await source.closed_candles(SWAP, "1h", 24)
    assert hourly.ts[-1] == ms("2023-02-02T08:00:00")
    assert (got.ticker.ts, got.ticker.last) == (now, float(hourly.close[-1]))
    assert got.ticker.base_volume == pytest.approx(float(hourly.volume.sum()), rel=1e-12)
    eth = await source.extras("ETH/USDT:USDT", ExtrasNeed(trades=25))
    assert eth.trades is not None
    trades = load_trades_csv(require_shared_data(TRADES))
    assert eth.trades.ts.tolist() == trades.ts[trades.ts <= now][-25:].tolist()
    assert int(trades.ts[-1]) > now  # the file goes on after now: the cut is real


async def test_replay_without_a_funding_file_says_so_at_start(tmp_path: Path) -> None:
    """A symbol needing funding with no funding file is one problem line naming the file looked for."""
    source = ReplaySource([tmp_path, SHARED_DATA / "binance_usdm_perp"], SimulatedClock(0))
    require_shared_data("binance_usdm_perp/SOL_USDT-1h.csv.gz")
    sol = "SOL/USDT:USDT"
    problems = await source.open([SeriesKey(sol, "1h")], {sol: ExtrasNeed(funding=10)})
    where = f"{tmp_path}, {SHARED_DATA / 'binance_usdm_perp'}"
    text = f"no funding_rate file for {sol} in {where} (looked for SOL_USDT-funding_rate.csv[.gz])"
    assert problems == [SourceProblem(sol, text, extras=True)]


class NoParams(StrategyParams):
    """No parameters."""


@dataclass
class FundingReader:
    """A strategy double that needs 20 funding settlements and records the newest one it was shown."""

    name: str = "funding_reader"
    params_model: type[NoParams] = NoParams
    seen: list[tuple[int, int, int]] = field(default_factory=list)

    def needs(self, params: NoParams, timeframe: str) -> DataNeeds:
        """50 candles and 20 funding settlements."""
        return DataNeeds(lookback=50, extras=ExtrasNeed(funding=20))

    def scan(self, data: MarketData, params: NoParams) -> Sequence[Setup]:
        """Record (bar close, newest settlement, settlements) and find nothing."""
        assert data.funding is not None
        self.seen.append((data.candles.close_time(-1), int(data.funding.ts[-1]), len(data.funding)))
        return []


async def test_the_runner_hands_each_bar_the_funding_known_at_its_close(tmp_path: Path) -> None:
    """Over a replay, every scan gets 20 settlements, the newest at or before the bar's close."""
    clock = SimulatedClock(0)
    source = shared_replay(clock)
    strategy = FundingReader()
    runner = in_process_runner(
        tmp_path, [bot_runtime(strategy, "4h", [SWAP], NoParams())], source, clock, asyncio.Event()
    )
    assert await runner.prepare() == []
    start = source.start_ms({SeriesKey(SWAP, "4h"): 50})
    assert start is not None
    clock.set(start)
    for _ in range(30):
        await runner.run(once=True)
        clock.set(clock.now_ms() + 4 * 3_600_000)
    funding = load_funding_csv(require_shared_data(FUNDING))
    assert len(strategy.seen) == 30
    for bar_close, newest, count in strategy.seen:
        expected = int(funding.ts[funding.ts <= bar_close][-1])
        assert (newest, count) == (expected, 20)
