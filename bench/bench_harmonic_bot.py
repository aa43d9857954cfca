"""Benchmarks of harmonic_bot: its scan and the zigzag alone, over a 50,000-candle real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. Each scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle. The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says
which and how many. The zigzag (:func:`common.pivots.zigzag`) is the one sequential loop in the bot
(the brief's budget for it: under about 150 ms for 50,000 bars), so it is timed on its own too, and
so is one scan of the default 1,000-bar window (what the runner pays per symbol and candle close).
"""

from __future__ import annotations

from functools import partial

import talib

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.harmonic_bot import HarmonicBot, HarmonicParams
from common.pivots import zigzag


def run() -> list[tuple[str, float, str]]:
    """harmonic_bot scan time (defaults; RSI at D with a 3.5 ATR zone), setups found; zigzag time."""
    candles, origin = load_series()
    bot = HarmonicBot()
    data = MarketData(candles=candles)
    rows: list[tuple[str, float, str]] = []
    for label, params in (
        ("defaults", HarmonicParams.model_validate({})),
        ("rsi_bar d, d_zone_atr 3.5", HarmonicParams(rsi_bar="d", d_zone_atr=3.5)),
    ):
        setups = len(bot.scan(data, params))
        seconds = best_of(partial(bot.scan, data, params), repeats=5)
        rows.append(
            (
                f"harmonic_bot scan {label}, one call, {len(candles):,} candles ({origin}), {setups} setups",
                seconds * 1e3,
                "ms",
            )
        )
    window = MarketData(candles=candles.tail(HarmonicParams().lookback))
    seconds = best_of(partial(bot.scan, window, HarmonicParams()), repeats=20)
    rows.append(
        (f"harmonic_bot scan of one {len(window.candles):,}-candle lookback window", seconds * 1e3, "ms")
    )
    moves = 3.0 * talib.ATR(candles.high, candles.low, candles.close, timeperiod=14)
    pivots = len(zigzag(candles.high, candles.low, min_move=moves))
    seconds = best_of(lambda: zigzag(candles.high, candles.low, min_move=moves), repeats=5)
    rows.append(
        (
            f"zigzag (3 x ATR 14, legs >= 3 bars) over {len(candles):,} candles, {pivots:,} pivots",
            seconds * 1e3,
            "ms",
        )
    )
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
