"""Helpers shared by the bench_*.py modules: the timing loop and the 50,000-candle real series."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from common.market.replay import read_ohlcv_file
from common.types import Candles

ROOT = Path(__file__).resolve().parents[1]
SHARED_SERIES = ROOT.parent / "shared" / "market-data" / "binance_usdm_perp" / "BTC_USDT-1h.csv.gz"
SAMPLE_SERIES = ROOT / "data" / "sample" / "BTC_USDT-15m.csv.gz"
#: How many candles a strategy benchmark scans in one call (issues 6 to 8: 50,000).
SCAN_CANDLES = 50_000


def best_of(function: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls, in seconds (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def load_series() -> tuple[Candles, str]:
    """Up to the last 50,000 candles of the shared BTC 1h perpetual series, or of the bundled BTC 15m.

    Returns the candles and where they came from, for the benchmark's label.
    """
    if SHARED_SERIES.is_file():
        candles = read_ohlcv_file(SHARED_SERIES, "BTC/USDT:USDT", "1h")
        origin = "binance_usdm_perp BTC_USDT-1h"
    else:
        candles = read_ohlcv_file(SAMPLE_SERIES, "BTC/USDT", "15m")
        origin = "data/sample BTC_USDT-15m"
    return candles.tail(SCAN_CANDLES), origin
