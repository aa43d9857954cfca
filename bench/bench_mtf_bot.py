"""Benchmarks of mtf_bot's scan.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over a whole 50,000-candle series (every bar, as a
backtest would), its two higher timeframes aggregated from that series with
``common.market.replay.aggregate`` (the table's pair for its timeframe). The candles are the last
50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` (higher: 4h and 1d) when
that file is there, otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles;
higher: 1h and 4h); the label says which and how many. A second row times one runner cycle: the scan
of the default ``lookback`` window with ``higher_lookback`` candles of each higher timeframe.
"""

from __future__ import annotations

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.mtf_bot import DEFAULT_HIGHER, MtfBot, MtfParams
from common.market.replay import aggregate

CYCLE_CALLS = 1_000


def run() -> list[tuple[str, float, str]]:
    """mtf_bot scan time over up to 50,000 candles (and its setups); one runner-sized scan."""
    candles, origin = load_series()
    higher = DEFAULT_HIGHER[candles.timeframe]
    others = {name: aggregate(candles, name) for name in higher}
    bot = MtfBot()
    params = MtfParams.model_validate({})
    data = MarketData(candles=candles, other_timeframes=others)
    setups = len(bot.scan(data, params))
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    label = (
        f"mtf_bot scan, one call over {len(candles):,} candles ({origin}; {' and '.join(higher)} aggregated "
        f"from it), {setups:,} setups"
    )

    window = MarketData(
        candles=candles.tail(params.lookback),
        other_timeframes={name: series.tail(params.higher_lookback) for name, series in others.items()},
    )
    cycle_s = best_of(lambda: [bot.scan(window, params) for _ in range(CYCLE_CALLS)], repeats=5)
    return [
        (label, scan_s * 1e3, "ms"),
        (
            f"mtf_bot scan of one runner window ({params.lookback} + 2 x {params.higher_lookback} candles)",
            cycle_s / CYCLE_CALLS * 1e6,
            "us",
        ),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
