"""psar_bot: Parabolic SAR flips in a strong trend.

Rule (on each closed candle t):

* SAR = TA-Lib ``SAR(high, low, acceleration, maximum)``; the trend is up while the close is above the
  SAR and down while it is below. A **flip** is a bar whose trend differs from the previous bar's.
* Keep the flip only when ``ADX(adx_period)`` at t is at least ``adx_min`` (a trend strong enough to
  follow) and the previous trend lasted at least ``min_trend_bars`` bars (not a whipsaw).
* Flip up -> LONG, flip down -> SHORT. Entry is the close of t. The stop is the SAR value at t (after
  a flip TA-Lib places it at the previous trend's extreme), but at least ``min_stop_pct`` % from entry.
  Targets come from ``tp_sl_calculator`` with the bot's risk settings (ATR multiples by default).

Parameters (``bots.psar_bot.params``), with defaults: acceleration 0.02, maximum 0.2, adx_period 14,
adx_min 30, min_trend_bars 3, atr_period 14, min_stop_pct 0.5, lookback 300 (bars of history per scan;
SAR and ADX depend on where the history starts, and 300 bars let them settle).

``trailing_stop`` offers the SAR itself as a trailing stop for an open signal (the tracker may use
it): the SAR where it is below the close for a LONG (above for a SHORT), NaN elsewhere.

TA-Lib conventions used: SAR's first value is at index 1 (lookback 1); ADX(n) has lookback 2n - 1;
ATR(n) has lookback n; earlier values are NaN, and a bar with any NaN input is never a signal.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import Direction, FloatArray, Setup


class PsarParams(StrategyParams):
    """psar_bot's parameters (see the module docstring)."""

    acceleration: float = Field(0.02, gt=0, le=1)
    maximum: float = Field(0.2, gt=0, le=1)
    adx_period: int = Field(14, ge=2, le=200)
    adx_min: float = Field(30.0, ge=0, le=100)
    min_trend_bars: int = Field(3, ge=1, le=500)
    atr_period: int = Field(14, ge=1, le=200)
    min_stop_pct: float = Field(0.5, ge=0, le=50)
    lookback: int = Field(300, ge=50, le=5_000)

    @model_validator(mode="after")
    def _acceleration_below_maximum(self) -> PsarParams:
        if self.acceleration > self.maximum:
            raise ValueError("acceleration must not exceed maximum")
        return self


def trend_run_lengths(trend: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each bar, how many bars the current value of ``trend`` has lasted (1 on a change)."""
    change = np.r_[True, trend[1:] != trend[:-1]]
    run_starts = np.flatnonzero(change)
    run_index = np.cumsum(change) - 1
    lengths: npt.NDArray[np.int64] = np.arange(trend.size, dtype=np.int64) - run_starts[run_index] + 1
    return lengths


class PsarBot:
    """Parabolic SAR flip, filtered by ADX and by the length of the trend it ends."""

    name = "psar_bot"
    params_model = PsarParams

    def needs(self, params: PsarParams, timeframe: str) -> DataNeeds:
        """SAR and ADX need history to settle: ``lookback`` bars of the bot's timeframe."""
        return DataNeeds(lookback=params.lookback)

    def trailing_stop(self, data: MarketData, params: PsarParams, direction: Direction) -> FloatArray:
        """The SAR as a trailing stop: below price for a LONG, above for a SHORT, NaN on the other side.

        TA-Lib's SAR at bar t uses bars <= t (it is the stop for bar t+1 computed at t's close), so the
        line never looks ahead; it only ever moves in the trend's favour until the trend flips.
        """
        c = data.candles
        sar = talib.SAR(c.high, c.low, acceleration=params.acceleration, maximum=params.maximum)
        on_side = c.close > sar if direction is Direction.LONG else c.close < sar
        trail: FloatArray = np.where(on_side, sar, np.nan)
        return trail

    def scan(self, data: MarketData, params: PsarParams) -> Sequence[Setup]:
        """Every qualifying SAR flip in ``data.candles``, oldest first."""
        c = data.candles
        if len(c) < params.adx_period * 2 + 1:
            return []
        sar = talib.SAR(c.high, c.low, acceleration=params.acceleration, maximum=params.maximum)
        adx = talib.ADX(c.high, c.low, c.close, timeperiod=params.adx_period)
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
        # +1 above the SAR, -1 below, 0 where the SAR is not defined yet.
        trend = np.where(np.isnan(sar), 0, np.where(c.close > sar, 1, -1))
        runs = trend_run_lengths(trend)
        previous_trend = np.r_[0, trend[:-1]]
        previous_run = np.r_[0, runs[:-1]]
        flips = (
            (trend != 0)
            & (previous_trend != 0)
            & (trend != previous_trend)
            & (previous_run >= params.min_trend_bars)
            & (adx >= params.adx_min)
            & np.isfinite(atr)
            & ~c.placeholder
        )
        setups = []
        for i in np.flatnonzero(flips):
            direction = Direction.LONG if trend[i] > 0 else Direction.SHORT
            entry = float(c.close[i])
            floor_distance = entry * params.min_stop_pct / 100.0
            stop = (
                min(float(sar[i]), entry - floor_distance)
                if direction is Direction.LONG
                else max(float(sar[i]), entry + floor_distance)
            )
            before = "down" if direction is Direction.LONG else "up"
            setups.append(
                Setup(
                    direction=direction,
                    bar_ts=int(c.ts[i]),
                    entry=entry,
                    atr=float(atr[i]),
                    stop=stop,
                    reason=(
                        f"Parabolic SAR flipped {'up' if direction is Direction.LONG else 'down'} after "
                        f"{int(previous_run[i])} bars {before}; ADX {float(adx[i]):.1f}"
                    ),
                    context={
                        "sar": float(sar[i]),
                        "adx": round(float(adx[i]), 4),
                        "atr": float(atr[i]),
                        "previous_trend_bars": int(previous_run[i]),
                    },
                )
            )
        return setups
