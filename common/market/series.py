"""Assembling one candle series: exchange rows to validated arrays, gaps found and filled.

Shared by the live and the replay source so that both hand a strategy exactly the same candles
for the same history: a candle the exchange never published (an outage, a market without trades)
becomes a flat zero-volume placeholder at the previous close, which ``Candles.placeholder`` marks.
A strategy therefore always sees one candle per grid step, never a silent hole in the series.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from common.market.validate import build_candles
from common.types import Candles, IntArray, candle_open_ms, timeframe_ms


def newest_closed_open_ms(now_ms: int, timeframe: str) -> int:
    """Open time of the newest candle of ``timeframe`` that has closed at ``now_ms``."""
    return candle_open_ms(now_ms, timeframe) - timeframe_ms(timeframe)


def missing_opens(ts: IntArray, timeframe: str) -> IntArray:
    """Open times on the grid between the first and the last candle of ``ts`` that are not in it."""
    if ts.size < 2:
        return np.empty(0, dtype=np.int64)
    period = timeframe_ms(timeframe)
    grid = np.arange(int(ts[0]), int(ts[-1]) + period, period, dtype=np.int64)
    return grid[~np.isin(grid, ts, assume_unique=True)]


def fill_gaps(candles: Candles) -> tuple[Candles, IntArray]:
    """``candles`` with every interior hole filled by a placeholder; also returns the filled open times.

    A placeholder is what exchanges publish for a minute without trades: open = high = low =
    close = the previous close, volume 0.
    """
    missing = missing_opens(candles.ts, candles.timeframe)
    if missing.size == 0:
        return candles, missing
    ts = np.union1d(candles.ts, missing)
    real = np.isin(ts, candles.ts, assume_unique=True)
    # Index of the newest real candle at or before each row: a placeholder copies its close.
    source = np.maximum.accumulate(np.where(real, np.cumsum(real) - 1, 0))
    previous_close = candles.close[source]

    def column(values: Any) -> Any:
        out = previous_close.copy()
        out[real] = values
        return out

    volume = np.zeros(ts.size)
    volume[real] = candles.volume
    filled = Candles(
        symbol=candles.symbol,
        timeframe=candles.timeframe,
        ts=ts,
        open=column(candles.open),
        high=column(candles.high),
        low=column(candles.low),
        close=column(candles.close),
        volume=volume,
    )
    return filled, missing


def rows_to_candles(
    symbol: str,
    timeframe: str,
    rows: Sequence[Sequence[Any]],
    *,
    volume_scale: float = 1.0,
    where: str,
) -> Candles:
    """Validated candles from ccxt OHLCV rows ``[ts, open, high, low, close, volume]``.

    Rows are sorted and de-duplicated by open time first (pages can overlap). A missing or
    non-numeric value becomes NaN, which validation then reports with the candle's time.
    ``volume_scale`` converts contract volumes (MEXC swap) to the base asset.
    """
    by_ts = {int(row[0]): row for row in rows if row and row[0] is not None}
    ordered = [by_ts[ts] for ts in sorted(by_ts)]
    ts = np.asarray(sorted(by_ts), dtype=np.int64)
    data = np.full((len(ordered), 5), np.nan)
    for index, row in enumerate(ordered):
        for column, value in enumerate(row[1:6]):
            data[index, column] = _number(value)
    return build_candles(
        symbol,
        timeframe,
        ts,
        data[:, 0],
        data[:, 1],
        data[:, 2],
        data[:, 3],
        data[:, 4] * volume_scale,
        where=where,
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def merge(older: Candles, newer: Candles) -> Candles:
    """One series from two overlapping pieces of it; where both have a candle, ``newer`` wins."""
    if len(older) == 0:
        return newer
    if len(newer) == 0:
        return older
    keep = ~np.isin(older.ts, newer.ts, assume_unique=True)
    ts = np.concatenate([older.ts[keep], newer.ts])
    order = np.argsort(ts, kind="stable")

    def column(name: str) -> Any:
        return np.concatenate([getattr(older, name)[keep], getattr(newer, name)])[order]

    return Candles(
        symbol=newer.symbol,
        timeframe=newer.timeframe,
        ts=ts[order],
        open=column("open"),
        high=column("high"),
        low=column("low"),
        close=column("close"),
        volume=column("volume"),
    )
