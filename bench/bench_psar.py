"""Benchmarks of psar_bot's scan and of the replay source's per-cycle candle lookup.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over a whole 50,000-candle series (every bar, as a
backtest would), not over the ``lookback`` window the runner hands it each cycle. Its candles are the
last 50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label says how
many were used).

The replay metric times :meth:`ReplaySource.closed_candles` the way the runner calls it: 1,000 calls
for BTC/USDT 1h (aggregated from the bundled 15m file) with psar_bot's default lookback, the simulated
clock moved one candle forward before each call.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.psar_bot import PsarBot, PsarParams
from common.clock import SimulatedClock
from common.market import SeriesKey
from common.market.replay import ReplaySource
from common.types import timeframe_ms

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample"
REPLAY_CALLS = 1_000


async def _replay_timings(lookback: int) -> tuple[float, float]:
    """(seconds to open the source, best seconds for REPLAY_CALLS closed_candles calls)."""
    key = SeriesKey("BTC/USDT", "1h")
    clock = SimulatedClock(0)
    source = ReplaySource(SAMPLE_DIR, clock)
    started = time.perf_counter()
    problems = await source.open([key])
    opened = time.perf_counter() - started
    if problems:
        raise RuntimeError(f"replay source cannot serve {key}: {problems}")
    first = source.start_ms({key: lookback})
    assert first is not None  # the series loaded, so it has a start
    step = timeframe_ms(key.timeframe)
    best = float("inf")
    for _ in range(5):
        clock = SimulatedClock(first)
        source.clock = clock
        started = time.perf_counter()
        for call in range(REPLAY_CALLS):
            clock.set(first + call * step)
            await source.closed_candles(key.symbol, key.timeframe, lookback)
        best = min(best, time.perf_counter() - started)
    await source.close()
    return opened, best


def run() -> list[tuple[str, float, str]]:
    """psar_bot scan time over up to 50,000 candles; replay open time and closed_candles cost."""
    candles, origin = load_series()
    bot = PsarBot()
    params = PsarParams.model_validate({})
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    label = f"psar_bot scan, one call over {len(candles):,} candles ({origin}), {setups:,} setups"

    opened, replay_s = asyncio.run(_replay_timings(params.lookback))
    return [
        (label, scan_s * 1e3, "ms"),
        ("ReplaySource.open BTC/USDT 1h (validate + aggregate the 15m sample)", opened * 1e3, "ms"),
        (
            f"ReplaySource.closed_candles, {REPLAY_CALLS:,} calls, lookback {params.lookback}",
            replay_s * 1e3,
            "ms",
        ),
        ("ReplaySource.closed_candles, per call", replay_s / REPLAY_CALLS * 1e6, "us"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
