"""Benchmarks of strat_bot's scan.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over a whole 50,000-candle series (every bar, as a
backtest would), not over the ``lookback`` window the runner hands it each cycle. Its candles are the
last 50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there,
otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label says how
many were used). A second row times the same scan with full timeframe continuity on, the higher
timeframes (4h, 1d, 1w for 1h; 1h, 4h, 1d for 15m) aggregated from the same candles.
"""

from __future__ import annotations

from functools import partial

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.strat_bot import StratBot, StratParams, higher_timeframes
from common.market.replay import aggregate
from common.types import Candles


def run() -> list[tuple[str, float, str]]:
    """strat_bot scan time over up to 50,000 candles, without and with full timeframe continuity."""
    candles, origin = load_series()
    bot = StratBot()
    rows = []
    for params in (StratParams.model_validate({}), StratParams.model_validate({"ftfc": True})):
        others: dict[str, Candles] = {}
        if params.ftfc:
            others = {tf: aggregate(candles, tf) for tf in higher_timeframes(params, candles.timeframe)}
        data = MarketData(candles=candles, other_timeframes=others)
        setups = len(bot.scan(data, params))
        seconds = best_of(partial(bot.scan, data, params), repeats=5)
        mode = f"ftfc {' '.join(others)}" if others else "defaults"
        label = (
            f"strat_bot scan ({mode}), one call over {len(candles):,} candles ({origin}), {setups:,} setups"
        )
        rows.append((label, seconds * 1e3, "ms"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
