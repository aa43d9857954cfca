"""Benchmarks of fib_reversal_bot's scan over a 50,000-candle real series, for each speed preset.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. Each scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle; a last row times one such
window scan (the live per-cycle cost). The candles are the last 50,000 of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there, otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says which and how many.
"""

from __future__ import annotations

from functools import partial

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.fib_reversal_bot import FibReversalBot, FibReversalParams


def run() -> list[tuple[str, float, str]]:
    """fib_reversal_bot scan time and setups per speed preset; one lookback-window scan."""
    candles, origin = load_series()
    bot = FibReversalBot()
    data = MarketData(candles=candles)
    rows: list[tuple[str, float, str]] = []
    for speed in ("medium", "fast", "safe"):
        params = FibReversalParams.model_validate({"speed": speed})
        setups = len(bot.scan(data, params))
        seconds = best_of(partial(bot.scan, data, params), repeats=5)
        label = "defaults (medium)" if speed == "medium" else speed
        rows.append(
            (
                f"fib_reversal_bot scan {label}, one call, {len(candles):,} candles ({origin}), "
                f"{setups:,} setups ({setups / len(candles):.2%} of bars)",
                seconds * 1e3,
                "ms",
            )
        )
    defaults = FibReversalParams.model_validate({})
    window = MarketData(candles=candles.tail(defaults.lookback))
    per_cycle = best_of(partial(bot.scan, window, defaults), repeats=50)
    rows.append(
        (f"fib_reversal_bot scan of one {defaults.lookback}-candle lookback window", per_cycle * 1e3, "ms")
    )
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:120s} {value:12.3f} {unit}")
