"""Checks every candle series on arrival, so a strategy never sees a silently broken series."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from common.clock import utc_text
from common.errors import DataError
from common.types import Candles, FloatArray, IntArray, timeframe_ms, timeframe_offset_ms


def build_candles(
    symbol: str,
    timeframe: str,
    ts: IntArray,
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    *,
    where: str,
) -> Candles:
    """Validate raw OHLCV arrays and wrap them as :class:`Candles`; raise ``DataError`` naming ``where``.

    Rules: timestamps strictly increasing and aligned to the timeframe; no NaN or infinity;
    prices positive; high >= max(open, close); low <= min(open, close); volume >= 0.
    """
    period = timeframe_ms(timeframe)
    prefix = f"{where}: {symbol} {timeframe}"
    arrays = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for name, values in arrays.items():
        if values.shape != ts.shape:
            raise DataError(f"{prefix}: {name} has {values.size} values for {ts.size} timestamps")
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{prefix}: {name} is not a finite number at candle {_when(ts, bad)}")
    if ts.size > 1:
        steps = np.diff(ts)
        if (steps <= 0).any():
            raise DataError(
                f"{prefix}: timestamps not strictly increasing at candle {_when(ts[1:], steps <= 0)}"
            )
    misaligned = ((ts - timeframe_offset_ms(timeframe)) % period) != 0
    if misaligned.any():
        raise DataError(f"{prefix}: candle at {_when(ts, misaligned)} is not aligned to the {timeframe} grid")
    nonpositive = (open_ <= 0) | (high <= 0) | (low <= 0) | (close <= 0)
    if nonpositive.any():
        raise DataError(f"{prefix}: non-positive price at candle {_when(ts, nonpositive)}")
    broken = (high < np.maximum(open_, close)) | (low > np.minimum(open_, close))
    if broken.any():
        raise DataError(f"{prefix}: high/low do not contain open/close at candle {_when(ts, broken)}")
    if (volume < 0).any():
        raise DataError(f"{prefix}: negative volume at candle {_when(ts, volume < 0)}")
    return Candles(
        symbol=symbol, timeframe=timeframe, ts=ts, open=open_, high=high, low=low, close=close, volume=volume
    )


def _when(ts: IntArray, mask: npt.NDArray[np.bool_]) -> str:
    index = int(np.flatnonzero(mask)[0])
    return f"{utc_text(int(ts[index]))} (ts={int(ts[index])})"
