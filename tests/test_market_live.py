"""The live market source (real ccxt client) against the fake MEXC server, alone and under the runner.

Time is simulated: the fake and the source read the same ``SimulatedClock``, so "now" can sit at
any moment of the bundled history and move one candle at a time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from bots.base import DataNeeds, MarketData, StrategyParams
from common.clock import SimulatedClock
from common.config import (
    ExchangeSettings,
)
from common.market import SeriesKey, SourceProblem
from common.market.mexc import MexcSource
from common.runner import BotRuntime, Runner
from common.types import Candles, Setup, timeframe_ms
from tests.fakes.csvdata import OhlcvArrays, load_ohlcv_csv
from tests.fakes.mexc import FakeMexc, Fault
from tests.harness import SAMPLE, bot_runtime, in_process_runner

pytestmark = pytest.mark.integration

SPOT = {"BTC/USDT": "BTCUSDT", "ETH/USDT": "ETHUSDT", "SOL/USDT": "SOLUSDT"}
SWAP = "BTC/USDT:USDT"
CONTRACT_SIZE = 0.0001
TIMEFRAMES = ("15m", "4h", "1d")


def ms(text: str) -> int:
    """Unix ms of an ISO time in UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


#: Seven minutes into a 15m candle, inside the bundled history (2024-01-01 .. 2024-09-06).
T0 = ms("2024-06-01T20:07:00")


def sample(symbol: str, timeframe: str) -> OhlcvArrays:
    """The bundled history of one spot symbol (tests/harness.py's sample data)."""
    return load_ohlcv_csv(SAMPLE / f"{symbol.split(':', maxsplit=1)[0].replace('/', '_')}-{timeframe}.csv.gz")


def closed_rows(arrays: OhlcvArrays, timeframe: str, now: int, limit: int) -> OhlcvArrays:
    """What a correct source returns: the newest ``limit`` candles that have closed at ``now``."""
    end = int(np.searchsorted(arrays.ts + timeframe_ms(timeframe), now, side="right"))
    return arrays.slice(max(0, end - limit), end)


def assert_same(candles: Candles, arrays: OhlcvArrays, *, volume_rel: float = 0.0) -> None:
    """Exact equality of every column (volume within ``volume_rel`` where contracts were converted)."""
    assert candles.ts.tolist() == arrays.ts.tolist()
    for name in ("open", "high", "low", "close"):
        assert getattr(candles, name).tolist() == getattr(arrays, name).tolist(), name
    if volume_rel:
        np.testing.assert_allclose(candles.volume, arrays.volume, rtol=volume_rel, atol=0)
    else:
        assert candles.volume.tolist() == arrays.volume.tolist()


@pytest.fixture
def clock() -> SimulatedClock:
    """The shared simulated time, starting at T0."""
    return SimulatedClock(T0)


@pytest.fixture
async def fake(clock: SimulatedClock) -> AsyncIterator[FakeMexc]:
    """A fake MEXC serving BTC/ETH/SOL spot (15m, 4h, 1d) and BTC_USDT perpetual (4h) from data/sample."""
    server = FakeMexc(now_ms=clock.now_ms)
    for symbol, symbol_id in SPOT.items():
        server.add_spot(symbol_id, *symbol.split("/"), price_tick="0.01")
        for timeframe in TIMEFRAMES:
            rows = sample(symbol, timeframe)
            server.add_candles(symbol_id, "spot", timeframe, *_columns(rows))
    server.add_swap("BTC_USDT", "BTC", "USDT", price_unit=0.1, contract_size=CONTRACT_SIZE)
    server.add_candles("BTC_USDT", "swap", "4h", *_columns(sample("BTC/USDT", "4h")))
    async with server:
        yield server


def _columns(rows: OhlcvArrays) -> tuple[Any, ...]:
    return rows.ts, rows.open, rows.high, rows.low, rows.close, rows.volume


def make_source(fake: FakeMexc, clock: SimulatedClock, **exchange: Any) -> MexcSource:
    """A MexcSource on ``fake`` with fast timeouts; ``exchange`` overrides the exchange settings."""
    settings = ExchangeSettings.model_validate(
        {"timeout_ms": 1000, "retry_attempts": 2, "requests_per_second": 20, **exchange}
    )
    return MexcSource(settings, clock, base_url=fake.base_url)


def kline_requests(fake: FakeMexc, *, clean: bool = True) -> list[Any]:
    """Recorded OHLCV requests (spot klines and contract kline), optionally only the unfaulted ones."""
    return [
        r
        for r in fake.requests
        if r.path.startswith(("/api/v3/klines", "/api/v1/contract/kline/")) and not (clean and r.fault)
    ]


# -- the source on its own ---------------------------------------------------------------------


async def test_spot_and_swap_load_and_fetch_closed_candles(fake: FakeMexc, clock: SimulatedClock) -> None:
    """Spot and swap markets load with tick and contract size; fetches return exactly the closed candles."""
    source = make_source(fake, clock)
    try:
        problems = await source.open([SeriesKey("BTC/USDT", "4h"), SeriesKey(SWAP, "4h")])
        assert problems == []
        spot, swap = source.market("BTC/USDT"), source.market(SWAP)
        assert (spot.kind, spot.tick_size, spot.contract_size) == ("spot", 0.01, 1.0)
        assert (swap.kind, swap.tick_size, swap.contract_size) == ("swap", 0.1, CONTRACT_SIZE)

        spot_candles = await source.closed_candles("BTC/USDT", "4h", 100)
        expected = closed_rows(sample("BTC/USDT", "4h"), "4h", T0, 100)
        assert_same(spot_candles, expected)
        assert spot_candles.ts[-1] == ms("2024-06-01T16:00:00")  # 20:00-24:00 is still forming at 20:07

        swap_candles = await source.closed_candles(SWAP, "4h", 100)
        assert_same(swap_candles, expected, volume_rel=1e-12)  # contracts x contractSize back to BTC
    finally:
        await source.close()


async def test_forming_candle_is_never_returned(fake: FakeMexc, clock: SimulatedClock) -> None:
    """At 20:07 the 20:00 15m candle is forming; at exactly 20:15 it has closed and is returned."""
    source = make_source(fake, clock)
    try:
        await source.open([SeriesKey("ETH/USDT", "15m")])
        candles = await source.closed_candles("ETH/USDT", "15m", 10)
        assert candles.ts[-1] == ms("2024-06-01T19:45:00")
        assert candles.close_time(-1) <= clock.now_ms()
        clock.set(ms("2024-06-01T20:15:00"))
        candles = await source.closed_candles("ETH/USDT", "15m", 10)
        assert candles.ts[-1] == ms("2024-06-01T20:00:00")
        assert_same(candles, closed_rows(sample("ETH/USDT", "15m"), "15m", clock.now_ms(), 10))
    finally:
        await source.close()


async def test_1500_spot_candles_are_paged_then_fetched_incrementally(
    fake: FakeMexc, clock: SimulatedClock
) -> None:
    """1,500 spot candles take 4 requests of at most 500; the next close needs one request for one candle."""
    source = make_source(fake, clock)
    try:
        await source.open([SeriesKey("BTC/USDT", "15m")])
        candles = await source.closed_candles("BTC/USDT", "15m", 1500)
        assert_same(candles, closed_rows(sample("BTC/USDT", "15m"), "15m", T0, 1500))
        pages = kline_requests(fake)
        # 1,500 + 20 candles of margin (so a hole at the window's start can be filled) = 4 pages.
        assert [int(r.query["limit"]) for r in pages] == [500, 500, 500, 20]
        starts = [int(r.query["startTime"]) for r in pages]
        assert starts == sorted(set(starts))

        clock.set(ms("2024-06-01T20:15:05"))
        candles = await source.closed_candles("BTC/USDT", "15m", 1500)
        assert_same(candles, closed_rows(sample("BTC/USDT", "15m"), "15m", clock.now_ms(), 1500))
        newest = kline_requests(fake)[4:]
        assert [(int(r.query["startTime"]), int(r.query["limit"])) for r in newest] == [
            (ms("2024-06-01T20:00:00"), 1)
        ]
        # Nothing closed since: the cache answers without a request.
        await source.closed_candles("BTC/USDT", "15m", 1500)
        assert len(kline_requests(fake)) == 5
    finally:
        await source.close()


async def test_a_missing_candle_is_fetched_again(fake: FakeMexc, clock: SimulatedClock) -> None:
    """A candle missing from one answer is asked for once more, and the series is complete."""
    source = make_source(fake, clock)
    hole = ms("2024-06-01T12:00:00")
    try:
        await source.open([SeriesKey("SOL/USDT", "4h")])
        fake.inject(Fault.gap(hole), path_contains="klines")
        candles = await source.closed_candles("SOL/USDT", "4h", 50)
        assert_same(candles, closed_rows(sample("SOL/USDT", "4h"), "4h", T0, 50))
        assert not candles.placeholder.any()
        again = kline_requests(fake)[-1]
        assert (int(again.query["startTime"]), int(again.query["limit"])) == (hole, 1)
    finally:
        await source.close()


async def test_a_candle_that_stays_missing_is_filled_marked_and_reported(
    fake: FakeMexc, clock: SimulatedClock
) -> None:
    """A hole the exchange never fills becomes a marked flat placeholder at the last close, logged once."""
    source = make_source(fake, clock)
    hole = ms("2024-06-01T12:00:00")
    try:
        await source.open([SeriesKey("SOL/USDT", "4h")])
        fake.inject(Fault.gap(hole), times=2, path_contains="klines")
        with capture_logs() as logs:
            candles = await source.closed_candles("SOL/USDT", "4h", 50)
        expected = closed_rows(sample("SOL/USDT", "4h"), "4h", T0, 50)
        index = int(np.flatnonzero(candles.ts == hole)[0])
        assert candles.ts.tolist() == expected.ts.tolist()
        assert candles.placeholder.tolist() == [i == index for i in range(50)]
        previous_close = float(expected.close[index - 1])
        assert (candles.open[index], candles.high[index], candles.low[index], candles.close[index]) == (
            previous_close,
            previous_close,
            previous_close,
            previous_close,
        )
        assert candles.volume[index] == 0.0
        reports = [entry for entry in logs if "placeholders" in entry["event"]]
        assert len(reports) == 1
        assert (reports[0]["log_level"], reports[0]["count"]) == ("warning", 1)
    finally:
        await source.close()


async def test_a_1500_swap_request_is_one_page(fake: FakeMexc, clock: SimulatedClock) -> None:
    """Swap pages hold 2,000 candles: 1,500 4h candles come in one contract kline request, in seconds."""
    source = make_source(fake, clock)
    try:
        await source.open([SeriesKey(SWAP, "4h")])
        candles = await source.closed_candles(SWAP, "4h", 1000)
        assert_same(candles, closed_rows(sample("BTC/USDT", "4h"), "4h", T0, 1000), volume_rel=1e-12)
        (request,) = kline_requests(fake)
        assert int(request.query["end"]) == ms("2024-06-01T16:00:00") // 1000
    finally:
        await source.close()


async def test_a_bad_symbol_gets_suggestions_and_the_rest_loads(
    fake: FakeMexc, clock: SimulatedClock
) -> None:
    """An unlisted symbol is one problem line naming close matches; the good symbol is served."""
    source = make_source(fake, clock)
    try:
        problems = await source.open([SeriesKey("BTC/USDTT", "4h"), SeriesKey("ETH/USDT", "4h")])
        assert problems == [
            SourceProblem(
                "BTC/USDTT",
                "symbol BTC/USDTT is not listed on MEXC; did you mean BTC/USDT, BTC/USDT:USDT, ETH/USDT?",
            )
        ]
        assert len(await source.closed_candles("ETH/USDT", "4h", 5)) == 5
    finally:
        await source.close()


async def test_spot_8h_is_refused_at_open(fake: FakeMexc, clock: SimulatedClock) -> None:
    """MEXC spot has no 8h candles: asking for them is a clear problem at start, not a failing fetch."""
    source = make_source(fake, clock)
    try:
        problems = await source.open([SeriesKey("ETH/USDT", "8h")])
        assert problems == [
            SourceProblem(
                "ETH/USDT",
                "symbol ETH/USDT: MEXC spot has no 8h candles (offered: 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w)",
                timeframe="8h",
            )
        ]
    finally:
        await source.close()


# -- under the runner ----------------------------------------------------------------------------


class RecorderParams(StrategyParams):
    """No parameters."""


@dataclass
class Recorder:
    """A strategy double that records the newest candle of every series it is shown and finds nothing."""

    name: str
    lookback: int = 60
    extra_timeframes: tuple[str, ...] = ()
    params_model: type[RecorderParams] = RecorderParams
    seen: list[tuple[str, str, int, dict[str, int]]] = field(default_factory=list)

    def needs(self, params: RecorderParams, timeframe: str) -> DataNeeds:
        """The configured lookback and extra timeframes."""
        return DataNeeds(lookback=self.lookback, extra_timeframes=self.extra_timeframes)

    def scan(self, data: MarketData, params: RecorderParams) -> Sequence[Setup]:
        """Record what was shown; never a setup."""
        others = {tf: int(c.ts[-1]) for tf, c in data.other_timeframes.items() if len(c)}
        self.seen.append((data.candles.symbol, data.candles.timeframe, int(data.candles.ts[-1]), others))
        return []


def runtime(strategy: Recorder, timeframe: str, symbols: Sequence[str]) -> BotRuntime:
    """A BotRuntime for a recorder bot."""
    return bot_runtime(strategy, timeframe, symbols, RecorderParams())


class StoppingClock(SimulatedClock):
    """A simulated clock that stops the runner at ``end_ms`` and notes the request count at every wake."""

    def __init__(self, start_ms: int, end_ms: int, stop: asyncio.Event, fake: FakeMexc) -> None:
        super().__init__(start_ms)
        self.end_ms, self.stop, self.fake = end_ms, stop, fake
        self.requests_per_cycle: list[tuple[int, int]] = []
        self._seen = 0

    async def sleep_until(self, when_ms: int, stop: asyncio.Event) -> bool:
        """Record the OHLCV requests of the cycle just finished, then jump (or stop past the end)."""
        count = len(kline_requests(self.fake))
        self.requests_per_cycle.append((self.now_ms(), count - self._seen))
        self._seen = count
        if when_ms > self.end_ms:
            self.stop.set()
        return await super().sleep_until(when_ms, stop)


def make_runner(
    tmp_path: Path, bots: list[BotRuntime], source: MexcSource, clock: SimulatedClock, stop: asyncio.Event
) -> Runner:
    """The real runner over ``source`` (see tests/harness.py)."""
    return in_process_runner(tmp_path, bots, source, clock, stop)


@pytest.mark.parametrize(
    "fault",
    [Fault.malformed(), Fault.http_500(), Fault.hang(5.0), Fault.too_frequent()],
    ids=["malformed-json", "http-500", "hanging-response", "too-frequent"],
)
async def test_a_failing_cycle_is_skipped_and_the_next_one_succeeds(
    tmp_path: Path, fake: FakeMexc, clock: SimulatedClock, fault: Fault
) -> None:
    """Every attempt of one cycle fails: no exception leaves the runner, and the next close is scanned."""
    bot = Recorder("recorder")
    source = make_source(fake, clock, retry_attempts=2)
    runner = make_runner(tmp_path, [runtime(bot, "15m", ["BTC/USDT"])], source, clock, asyncio.Event())
    try:
        assert await runner.prepare() == []
        fake.inject(fault, times=2, path_contains="klines")
        await runner.run(once=True)
        assert bot.seen == []
        clock.set(ms("2024-06-01T20:15:03"))
        await runner.run(once=True)
        assert bot.seen == [("BTC/USDT", "15m", ms("2024-06-01T20:00:00"), {})]
    finally:
        await source.close()


async def test_a_429_with_retry_after_is_waited_out_within_the_cycle(
    tmp_path: Path, fake: FakeMexc, clock: SimulatedClock
) -> None:
    """After a 429 with Retry-After 1 the retry comes at least 1 s later, succeeds, and the budget slows."""
    bot = Recorder("recorder")
    source = make_source(fake, clock, requests_per_second=10)
    runner = make_runner(tmp_path, [runtime(bot, "4h", ["ETH/USDT"])], source, clock, asyncio.Event())
    try:
        await runner.prepare()
        fake.inject(Fault.http_429(retry_after=1), path_contains="klines")
        await runner.run(once=True)
        assert bot.seen == [("ETH/USDT", "4h", ms("2024-06-01T16:00:00"), {})]
        refused, retried = kline_requests(fake, clean=False)
        assert (refused.fault, retried.fault) == ("http_429", None)
        assert retried.monotonic - refused.monotonic >= 1.0
        assert source.budget.rate_per_s == 5.0
    finally:
        await source.close()


def fleet_of_five() -> list[tuple[Recorder, str, list[str]]]:
    """Five bots over ten series: 15m, 4h and 1d of three spot symbols, and 4h of a swap."""
    everything = list(SPOT)
    return [
        (Recorder("scalper", lookback=100, extra_timeframes=("4h",)), "15m", everything),
        (Recorder("swinger", lookback=80), "4h", [*everything, SWAP]),
        (Recorder("position", lookback=60), "1d", everything),
        (Recorder("btc_mtf", lookback=120, extra_timeframes=("1d",)), "15m", ["BTC/USDT"]),
        (Recorder("alts", lookback=50), "4h", ["ETH/USDT", "SOL/USDT"]),
    ]


def windows_over(times: Sequence[float], limit: int) -> int:
    """The largest number of ``times`` inside any half-open 1-second window."""
    ordered = sorted(times)
    return max(
        (int(np.searchsorted(ordered, t + 1.0, side="left")) - i for i, t in enumerate(ordered)), default=0
    )


async def test_five_bots_on_ten_series_fetch_each_once_per_close_within_the_budget(
    tmp_path: Path, fake: FakeMexc
) -> None:
    """After warm-up a close costs one request per due series (10 at midnight), <= 10 req/s, retries too."""
    stop = asyncio.Event()
    start, end = ms("2024-06-01T21:07:00"), ms("2024-06-02T00:20:00")
    clock = StoppingClock(start, end, stop, fake)
    fake._now_ms = clock.now_ms  # the fixture's server follows this test's clock
    bots = fleet_of_five()
    source = make_source(fake, clock, requests_per_second=10, retry_attempts=3)
    runner = make_runner(tmp_path, [runtime(b, tf, s) for b, tf, s in bots], source, clock, stop)
    try:
        assert await runner.prepare() == []
        # Faults along the way: their retries must stay inside the budget too.
        fake.inject(Fault.http_500(), times=2, path_contains="klines")
        fake.inject(Fault.http_429(), times=1, path_contains="kline")
        await runner.run()
    finally:
        await source.close()

    cycles = clock.requests_per_cycle
    assert cycles[0] == (start, 10)  # warm-up: one request per series (each window fits one page)
    due_at = {
        t: sum(1 for tf in ("15m", "4h", "1d") for _ in range(3) if t % timeframe_ms(tf) == 0)
        + (t % timeframe_ms("4h") == 0)
        for t in range(start - start % 900_000 + 900_000, end, 900_000)
    }
    woke = {now - now % 900_000: count for now, count in cycles[1:]}
    assert woke == due_at
    assert woke[ms("2024-06-02T00:00:00")] == 10
    times = [r.monotonic for r in fake.requests]
    assert len([r for r in fake.requests if r.fault]) == 3
    assert windows_over(times, 10) <= 10
    # Every bot saw every close of its own timeframe, with its extra timeframe's newest closed candle.
    scalper = [entry for entry in bots[0][0].seen if entry[0] == "BTC/USDT"]
    assert [entry[2] for entry in scalper] == [
        *range(ms("2024-06-01T20:45:00"), ms("2024-06-02T00:15:00"), 900_000)
    ]
    assert scalper[-1][3] == {"4h": ms("2024-06-01T20:00:00")}
    assert math.isclose(source.budget.rate_per_s, 5.0)


async def test_an_outage_opens_the_breaker_once_and_recovery_closes_it(
    tmp_path: Path, fake: FakeMexc, clock: SimulatedClock
) -> None:
    """All 500s: the breaker opens after 3 failures; one warning per state change, none per request."""
    bot = Recorder("recorder")
    source = make_source(fake, clock, breaker_failures=3, breaker_reset_s=3.0, retry_attempts=2)
    symbols = list(SPOT)
    runner = make_runner(tmp_path, [runtime(bot, "15m", symbols)], source, clock, asyncio.Event())
    try:
        await runner.prepare()
        fake.fail_all(Fault.http_500())
        with capture_logs() as logs:
            for close in range(6):
                clock.set(T0 + close * 900_000)
                await runner.run(once=True)
            failed_requests = len(kline_requests(fake, clean=False))
            fake.recover()
            await asyncio.sleep(3.1)  # past the breaker's reset timeout
            clock.set(T0 + 6 * 900_000)
            await runner.run(once=True)
    finally:
        await source.close()

    changes = [(e["old"], e["new"]) for e in logs if e["event"] == "circuit breaker state changed"]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "circuit breaker state changed")
    warnings = [e for e in logs if e["log_level"] in ("warning", "error")]
    # Only the breaker's three changes: the skipped cycles are info lines while it is open, and no
    # request or retry logs a warning of its own.
    assert len(warnings) == 3, warnings
    skips = [e for e in logs if e["event"] == "series skipped this cycle"]
    assert [(e["log_level"], e["count"]) for e in skips] == [("info", 3)] * 6
    assert failed_requests == 3  # three failures opened it; later cycles did not call the exchange
    # The first cycle after recovery scans every symbol (calls waited for the probe, none skipped).
    newest = ms("2024-06-01T21:15:00")  # the newest 15m candle closed at 21:37
    assert sorted(bot.seen) == [(symbol, "15m", newest, {}) for symbol in sorted(symbols)]
