"""Benchmark of fib_swing_bot's scan over a 50,000-candle real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle. The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says
which and how many. A second row times the scan of one ``lookback`` window, the runner's per-cycle call.
"""

from __future__ import annotations

from functools import partial

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.fib_swing_bot import FibSwingBot, FibSwingParams


def run() -> list[tuple[str, float, str]]:
    """fib_swing_bot scan time over up to 50,000 candles and over one lookback window; setups found."""
    candles, origin = load_series()
    bot = FibSwingBot()
    params = FibSwingParams.model_validate({})
    data = MarketData(candles=candles)
    setups = bot.scan(data, params)
    scan_s = best_of(partial(bot.scan, data, params), repeats=5)
    window = MarketData(candles=candles.tail(params.lookback))
    window_s = best_of(partial(bot.scan, window, params), repeats=20)
    share = len(setups) / len(candles) * 100
    return [
        (
            f"fib_swing_bot scan, one call over {len(candles):,} candles ({origin}), "
            f"{len(setups):,} setups ({share:.2f} % of bars)",
            scan_s * 1e3,
            "ms",
        ),
        (f"fib_swing_bot scan of one {params.lookback}-candle lookback window", window_s * 1e3, "ms"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
