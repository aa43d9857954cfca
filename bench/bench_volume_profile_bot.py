"""Benchmarks of volume_profile_bot's scan and of the swing pivots it is built on.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over a whole 50,000-candle series (every bar, as a
backtest would; one volume profile per pivot pair), not over the ``lookback`` window the runner hands
it each cycle, which is timed separately. The candles are the last 50,000 of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there, otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label says how many were used).
"""

from __future__ import annotations

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.volume_profile_bot import VolumeProfileBot, VolumeProfileParams
from common.pivots import swing_pivots


def run() -> list[tuple[str, float, str]]:
    """volume_profile_bot scan time over up to 50,000 candles and per runner cycle; swing_pivots time."""
    candles, origin = load_series()
    bot = VolumeProfileBot()
    params = VolumeProfileParams.model_validate({})
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    pivots = swing_pivots(candles.high, candles.low, params.pivot_lookback)
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    pivots_s = best_of(lambda: swing_pivots(candles.high, candles.low, params.pivot_lookback), repeats=5)
    window = MarketData(candles=candles.tail(params.lookback))
    cycle_s = best_of(lambda: bot.scan(window, params), repeats=20)
    return [
        (
            f"volume_profile_bot scan, one call over {len(candles):,} candles ({origin}), "
            f"{setups:,} setups, {len(pivots):,} pivots",
            scan_s * 1e3,
            "ms",
        ),
        (f"swing_pivots, lookback {params.pivot_lookback}, {len(candles):,} candles", pivots_s * 1e3, "ms"),
        (f"volume_profile_bot scan of one runner window ({params.lookback} candles)", cycle_s * 1e3, "ms"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
