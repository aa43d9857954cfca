"""Benchmarks of diy_bot: its scan with the shipped default rules, over a 50,000-candle real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle. The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says
which and how many. A second row times one scan of the runner's window (the default ``lookback``,
the newest 1,000 candles), what each live cycle costs per symbol.
"""

from __future__ import annotations

from functools import partial

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.diy_bot import DiyBot, DiyParams


def run() -> list[tuple[str, float, str]]:
    """diy_bot scan time with the default rules over the whole series and over one lookback window."""
    candles, origin = load_series()
    bot = DiyBot()
    params = DiyParams.model_validate({})
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    whole_s = best_of(partial(bot.scan, data, params), repeats=5)
    window = MarketData(candles=candles.tail(params.lookback))
    window_s = best_of(partial(bot.scan, window, params), repeats=20)
    return [
        (
            f"diy_bot scan, default rules, one call, {len(candles):,} candles ({origin}), {setups:,} setups",
            whole_s * 1e3,
            "ms",
        ),
        (
            f"diy_bot scan, default rules, one lookback window ({params.lookback:,} candles)",
            window_s * 1e3,
            "ms",
        ),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
