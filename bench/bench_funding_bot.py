"""Benchmarks of funding_bot: its scan over a 50,000-candle real series with its funding, and one cycle.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The whole-history scan runs once over every bar (as a backtest
would) with all the funding settlements: the last 50,000 candles of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` and
``binance_usdm_funding/BTC_USDT-funding_rate.csv.gz`` when those files are there. Otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles) with a seeded random funding
series every 8 h over the same span (the sample bundles no funding); the label says which. The
cycle metric is what the runner hands the scan each close: the last ``lookback`` candles and the
last ``zscore_window + 1`` settlements.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from bench.timing import best_of
from bots.base import MarketData
from bots.funding_bot import FundingBot, FundingParams
from common.market.extras import FundingRates, read_funding_file
from common.market.replay import read_ohlcv_file
from common.types import Candles

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "market-data"
SHARED_SERIES = SHARED / "binance_usdm_perp" / "BTC_USDT-1h.csv.gz"
SHARED_FUNDING = SHARED / "binance_usdm_funding" / "BTC_USDT-funding_rate.csv.gz"
SAMPLE_SERIES = ROOT / "data" / "sample" / "BTC_USDT-15m.csv.gz"
SCAN_CANDLES = 50_000
CYCLE_CALLS = 1_000
H8 = 8 * 3_600_000


def synthetic_funding(candles: Candles) -> FundingRates:
    """Settlements every 8 h over the candles' span: 0.01 % plus a seeded random walk (fallback only)."""
    ts = np.arange(candles.ts[0] - 40 * H8, candles.ts[-1] + 1, H8, dtype=np.int64)
    walk = np.cumsum(np.random.default_rng(8).normal(0.0, 0.00005, ts.size))
    rate = np.round(0.0001 + walk - np.convolve(walk, np.ones(30) / 30, mode="same"), 8)
    return FundingRates(symbol=candles.symbol, ts=ts, rate=rate, interval_ms=H8)


def load_series() -> tuple[Candles, FundingRates, str]:
    """The last 50,000 BTC 1h perpetual candles and their funding, or the bundled BTC 15m + synthetic."""
    if SHARED_SERIES.is_file() and SHARED_FUNDING.is_file():
        candles = read_ohlcv_file(SHARED_SERIES, "BTC/USDT:USDT", "1h").tail(SCAN_CANDLES)
        funding = read_funding_file(SHARED_FUNDING, "BTC/USDT:USDT")
        return candles, funding, "binance_usdm_perp BTC_USDT-1h + its funding"
    candles = read_ohlcv_file(SAMPLE_SERIES, "BTC/USDT:USDT", "15m").tail(SCAN_CANDLES)
    return candles, synthetic_funding(candles), "data/sample BTC_USDT-15m + synthetic 8 h funding"


def run() -> list[tuple[str, float, str]]:
    """funding_bot scan time over the whole series and per runner cycle; setups found."""
    candles, funding, origin = load_series()
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
