"""Benchmark of volume_bot's scan over a whole 50,000-candle series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. The timing is the best of several
runs with ``time.perf_counter`` (``bench.timing.best_of``). The scan runs once over every bar of the
series, as a backtest would, not over the ``lookback`` window the runner hands it each cycle; the volume
profile is computed only on the bars where the cheap factors leave it a chance to matter (see
``bots/volume_bot.py``). The candles are the last 50,000 of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there, otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label says which and how many).
"""

from __future__ import annotations

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.volume_bot import VolumeBot, VolumeParams


def run() -> list[tuple[str, float, str]]:
    """volume_bot scan time over up to 50,000 candles (one call, every bar), and per candle."""
    candles, origin = load_series()
    bot = VolumeBot()
    params = VolumeParams.model_validate({})
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    scan_s = best_of(lambda: bot.scan(data, params), repeats=3)
    label = f"volume_bot scan, one call over {len(candles):,} candles ({origin}), {setups:,} setups"
    return [
        (label, scan_s * 1e3, "ms"),
        ("volume_bot scan, per candle", scan_s / len(candles) * 1e6, "us"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
