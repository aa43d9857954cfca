"""Benchmark of candlestick_bot's scan over a whole real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. The timing is the best of several
runs with ``time.perf_counter`` (``bench.timing.best_of``). The scan runs once over a whole 50,000-candle
series (every bar, as a backtest would), not over the ``lookback`` window the runner hands it each
cycle; a second row times that per-cycle call (the last ``lookback`` candles). The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label says how
many were used).
"""

from __future__ import annotations

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.candlestick_bot import CandlestickBot, CandlestickParams

CYCLE_CALLS = 1_000


def run() -> list[tuple[str, float, str]]:
    """candlestick_bot scan time over up to 50,000 candles, and per runner cycle."""
    candles, origin = load_series()
    bot = CandlestickBot()
    params = CandlestickParams.model_validate({})
    data = MarketData(candles=candles)
    setups = bot.scan(data, params)
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    rate = len(setups) / len(candles) * 100.0
    label = (
        f"candlestick_bot scan, one call over {len(candles):,} candles ({origin}), "
        f"{len(setups):,} setups ({rate:.2f} % of bars)"
    )
    window = MarketData(candles=candles.tail(params.lookback))

    def cycles() -> None:
        for _ in range(CYCLE_CALLS):
            bot.scan(window, params)

    cycle_s = best_of(cycles, repeats=3) / CYCLE_CALLS
    return [
        (label, scan_s * 1e3, "ms"),
        (f"candlestick_bot scan, one runner cycle ({params.lookback} candles)", cycle_s * 1e6, "us"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
