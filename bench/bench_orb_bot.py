"""Benchmarks of orb_bot's scan: one call over a whole 50,000-candle real series.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The scan runs once over the whole series (every bar, as a backtest
would), not over the ``lookback`` window the runner hands it each cycle.

The first row scans the last 50,000 candles of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz``
when that file is there (with the default parameters 1h divides the 60-minute range: a one-candle
range), otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label
says which and how many. When the shared 5m perpetual SOL series is there, two more rows scan its last
50,000 candles, the bot's own timeframe: with the defaults, and with the multi-stage variant (sessions
00:00, 08:00, 13:30; stages 5, 15, 30, 60 minutes).
"""

from __future__ import annotations

from pathlib import Path

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.orb_bot import OrbBot, OrbParams
from common.market.replay import read_ohlcv_file
from common.types import Candles

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "market-data"
FIVE_MINUTE_SERIES = SHARED / "binance_usdm_perp" / "SOL_USDT-5m.csv.gz"
SCAN_CANDLES = 50_000
MULTI_STAGE = OrbParams(sessions=["00:00", "08:00", "13:30"], stages=[5, 15, 30, 60])


def _scan_row(candles: Candles, origin: str, params: OrbParams, variant: str) -> tuple[str, float, str]:
    bot = OrbBot()
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    label = f"orb_bot scan{variant}, one call over {len(candles):,} candles ({origin}), {setups:,} setups"
    return label, scan_s * 1e3, "ms"


def run() -> list[tuple[str, float, str]]:
    """orb_bot scan time over up to 50,000 candles (and over 50,000 5m candles when they are there)."""
    candles, origin = load_series()
    rows = [_scan_row(candles, origin, OrbParams.model_validate({}), "")]
    if FIVE_MINUTE_SERIES.is_file():
        five = read_ohlcv_file(FIVE_MINUTE_SERIES, "SOL/USDT:USDT", "5m").tail(SCAN_CANDLES)
        origin = "binance_usdm_perp SOL_USDT-5m"
        rows.append(_scan_row(five, origin, OrbParams.model_validate({}), ""))
        rows.append(_scan_row(five, origin, MULTI_STAGE, " (3 sessions x 4 stages)"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
