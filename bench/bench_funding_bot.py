"""Benchmarks of funding_bot: its scan over a 50,000-candle real series with its funding, and one cycle.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The whole-history scan runs once over every bar (as a backtest
would) with all the funding settlements: the last 50,000 candles of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` and
``binance_usdm_funding/BTC_USDT-funding_rate.csv.gz`` when those files are there. Otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles) with the bundled BTC funding
(2024-07-01 on: the earlier bars have none and cannot fire); the label says which. The
cycle metric is what the runner hands the scan each close: the last ``lookback`` candles and the
last ``zscore_window + 1`` settlements.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from bench.timing import SAMPLE_SERIES, SHARED_SERIES, best_of, load_series
from bots.base import MarketData
from bots.funding_bot import FundingBot, FundingParams
from common.market.extras import FundingRates, read_funding_file
from common.types import Candles

SHARED_FUNDING = SHARED_SERIES.parents[1] / "binance_usdm_funding" / "BTC_USDT-funding_rate.csv.gz"
SAMPLE_FUNDING = SAMPLE_SERIES.parent / "BTC_USDT-funding_rate.csv.gz"
CYCLE_CALLS = 1_000


def load_inputs() -> tuple[Candles, FundingRates, str]:
    """The benchmark series (bench/timing.py) and the real BTC funding beside it (shared or bundled)."""
    candles, origin = load_series()
    funding_path = SHARED_FUNDING if SHARED_FUNDING.is_file() else SAMPLE_FUNDING
    candles = Candles(
        symbol="BTC/USDT:USDT",
        timeframe=candles.timeframe,
        ts=candles.ts,
        open=candles.open,
        high=candles.high,
        low=candles.low,
        close=candles.close,
        volume=candles.volume,
    )
    return candles, read_funding_file(funding_path, "BTC/USDT:USDT"), f"{origin} + {funding_path.name}"


def run() -> list[tuple[str, float, str]]:
    """funding_bot scan time over the whole series and per runner cycle; setups found."""
    candles, funding, origin = load_inputs()
    bot = FundingBot()
    params = FundingParams.model_validate({})
    data = MarketData(candles=candles, funding=funding)
    setups = len(bot.scan(data, params))
    scan_s = best_of(partial(bot.scan, data, params), repeats=5)

    # The runner's view at CYCLE_CALLS closes spread over the series: lookback candles, 31 settlements.
    ends = np.linspace(params.lookback, len(candles), CYCLE_CALLS, dtype=np.int64)
    cycles = []
    for end in ends.tolist():
        window = candles.slice(end - params.lookback, end)
        shown = funding.until(window.close_time(-1)).last(params.zscore_window + 1)
        cycles.append(MarketData(candles=window, funding=shown))

    def every_cycle() -> None:
        for cycle in cycles:
            bot.scan(cycle, params)

    cycle_s = best_of(every_cycle, repeats=3)
    return [
        (
            f"funding_bot scan, one call over {len(candles):,} candles and {len(funding):,} settlements "
            f"({origin}), {setups:,} setups",
            scan_s * 1e3,
            "ms",
        ),
        (
            f"funding_bot scan per runner cycle ({params.lookback} candles, "
            f"{params.zscore_window + 1} settlements), mean of {CYCLE_CALLS:,}",
            cycle_s / CYCLE_CALLS * 1e6,
            "us",
        ),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
