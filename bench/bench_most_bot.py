"""Benchmarks of most_bot: its scan and the MOST recursion alone, over a 50,000-candle real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. Each scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle. The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says
which and how many. The MOST line is the one sequential loop in the bot (the brief's budget for it:
under about 100 ms for 50,000 bars), so it is timed on its own too.
"""

from __future__ import annotations

from functools import partial

import talib

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.most_bot import MostBot, MostParams, most_line


def run() -> list[tuple[str, float, str]]:
    """most_bot scan time (defaults, with pullbacks, ATR mode) and the MOST loop's time; setups found."""
    candles, origin = load_series()
    bot = MostBot()
    data = MarketData(candles=candles)
    rows: list[tuple[str, float, str]] = []
    for label, params in (
        ("defaults (EMA 3, 2 %)", MostParams.model_validate({})),
        ("with pullbacks", MostParams(pullbacks=True)),
        ("ATR mode (EMA 9, 2 x ATR 14)", MostParams(mode="atr", ema_length=9)),
    ):
        setups = len(bot.scan(data, params))
        seconds = best_of(partial(bot.scan, data, params), repeats=5)
        rows.append(
            (
                f"most_bot scan {label}, one call, {len(candles):,} candles ({origin}), {setups:,} setups",
                seconds * 1e3,
                "ms",
            )
        )
    ema = talib.EMA(candles.close, timeperiod=3)
    lower, upper = ema * 0.98, ema * 1.02
    loop = best_of(lambda: most_line(candles.close, ema, lower, upper), repeats=5)
    rows.append(
        (f"most_line (the sequential MOST recursion) over {len(candles):,} candles", loop * 1e3, "ms")
    )
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
