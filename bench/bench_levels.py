"""Benchmarks of the level maths: volume profile (vectorised vs a plain loop) and calculate_levels.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter`` (the best run is the one least disturbed by the rest of the machine).
Real candles come from ``../shared/market-data`` when it is there, otherwise from the bundled
``data/sample`` BTC/USDT 15m file.
"""

from __future__ import annotations

import gzip
from functools import partial
from pathlib import Path

import numpy as np

from bench.timing import best_of
from common.types import Candles, Direction, Setup
from tp_sl_calculator import RiskSettings, calculate_levels
from volume_profile import calculate_volume_profile

MARKET_DATA = Path(__file__).resolve().parents[2] / "shared" / "market-data"
SERIES = "binance_spot/BTC_USDT-5m.csv.gz"
SAMPLE_SERIES = Path(__file__).resolve().parents[1] / "data" / "sample" / "BTC_USDT-15m.csv.gz"
SIZES = (100, 1_000, 10_000)
ROWS = 24


def load_candles(count: int) -> tuple[Candles, str]:
    """The last ``count`` candles of real BTC/USDT 5m data, or of the bundled 15m sample; and their origin."""
    path = MARKET_DATA / SERIES
    if not path.is_file():
        path = SAMPLE_SERIES  # real too (about 24,000 candles): the bench runs without ../shared
    with gzip.open(path, "rt") as handle:
        raw = np.loadtxt(handle, delimiter=",", skiprows=1, dtype=np.float64)[-count:]
    columns = [raw[:, index] for index in range(6)]
    shared = path != SAMPLE_SERIES
    origin = "real " + (SERIES if shared else "data/sample/BTC_USDT-15m.csv.gz")
    candles = Candles(
        symbol="BTC/USDT",
        timeframe="5m" if shared else "15m",
        ts=columns[0].astype(np.int64),
        open=columns[1],
        high=columns[2],
        low=columns[3],
        close=columns[4],
        volume=columns[5],
    )
    return candles, origin


def reference_profile(
    candles: Candles, rows: int, value_area_pct: float = 70.0
) -> tuple[list[float], int, tuple[int, int]]:
    """Row volumes, POC and value-area rows by plain loops: the same loops the tests compare against."""
    edges = np.linspace(float(candles.low.min()), float(candles.high.max()), rows + 1).tolist()
    row_volume = [0.0] * rows
    for low, high, volume in zip(
        candles.low.tolist(), candles.high.tolist(), candles.volume.tolist(), strict=True
    ):
        if high == low:  # all of it in the row holding the price; rows are [lower, upper), top row closed
            for row in range(rows):
                if edges[row] <= low < edges[row + 1] or (row == rows - 1 and low == edges[rows]):
                    row_volume[row] += volume
                    break
            continue
        for row in range(rows):
            overlap = min(high, edges[row + 1]) - max(low, edges[row])
            if overlap > 0:
                row_volume[row] += volume * overlap / (high - low)
    poc = 0
    for row in range(rows):
        if row_volume[row] > row_volume[poc]:  # strictly greater: the lowest row keeps a tie
            poc = row
    target = sum(candles.volume.tolist()) * value_area_pct / 100.0
    lowest = highest = poc
    accumulated = row_volume[poc]
    while accumulated < target * (1 - 1e-12) and (lowest > 0 or highest < rows - 1):
        below = row_volume[lowest - 1] if lowest > 0 else -1.0
        above = row_volume[highest + 1] if highest < rows - 1 else -1.0
        if below >= above:  # tie: the row below
            lowest -= 1
            accumulated += below
        else:
            highest += 1
            accumulated += above
    return row_volume, poc, (lowest, highest)


def run() -> list[tuple[str, float, str]]:
    """Volume-profile time at 100 / 1,000 / 10,000 candles x 24 rows, its speed-up, calculate_levels time."""
    candles, origin = load_candles(max(SIZES))
    results: list[tuple[str, float, str]] = []
    for size in SIZES:
        window = candles.tail(size)
        fast = best_of(partial(calculate_volume_profile, window, rows=ROWS), repeats=20)
        slow = best_of(partial(reference_profile, window, ROWS), repeats=3)
        label = f"volume_profile {size:,} candles x {ROWS} rows, {origin}"
        results.append((label, fast * 1e3, "ms"))
        results.append((f"{label}: speed-up over a Python loop", slow / fast, "x"))

    setup = Setup(
        direction=Direction.LONG, bar_ts=0, entry=float(candles.close[-1]), reason="bench", atr=150.0
    )
    risk = RiskSettings()
    calls = 2_000

    def many_levels() -> None:
        for _ in range(calls):
            calculate_levels(setup, risk, tick_size=0.01)

    results.append(
        ("calculate_levels (ATR stop, R targets, tick 0.01)", best_of(many_levels, 5) / calls * 1e6, "us")
    )
    return results


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:95s} {value:12.3f} {unit}")
