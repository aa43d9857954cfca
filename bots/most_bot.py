"""most_bot: MOST (Moving Stop Loss, Anil Ozeksi) trend flips and, optionally, pullbacks to its EMA.

Rule (on each closed candle t):

* EMA = TA-Lib ``EMA(close, ema_length)``. The MOST line trails it by an offset: ``percent`` % of the
  EMA (``mode`` "percent", the author's published indicator) or ``atr_mult`` x TA-Lib
  ``ATR(atr_period)`` (``mode`` "atr"). With ``lower = EMA x (1 - percent / 100)`` (or
  ``EMA - atr_mult x ATR``) and ``upper = EMA x (1 + percent / 100)`` (or ``EMA + atr_mult x ATR``):

  - uptrend: ``MOST[t] = max(MOST[t-1], lower[t])``, unless ``EMA[t] < MOST[t-1]``: the trend flips
    down and ``MOST[t] = upper[t]``;
  - downtrend: ``MOST[t] = min(MOST[t-1], upper[t])``, unless ``EMA[t] > MOST[t-1]``: the trend flips
    up and ``MOST[t] = lower[t]``.

  The flip is a crossing: the EMA at t against the PREVIOUS bar's MOST, strictly (an EMA exactly on
  the line does not flip it). Comparing with the ratcheted ``max(MOST[t-1], lower[t])`` instead gives
  the same flips (``lower[t] < EMA[t]``), so this is also the original bot's comparison.
* Start: at the first bar where the EMA (and, in atr mode, the ATR) exists, the trend is up when the
  close is >= the EMA there (``MOST = lower``), else down (``MOST = upper``). That bar is never a
  signal; a trend's length counts from it.
* REVERSAL: a bar whose trend differs from the previous bar's. Flip up -> LONG, flip down -> SHORT.
* PULLBACK (only with ``pullbacks``): a bar that stays in the previous bar's trend, touches the EMA
  (``low <= EMA <= high``) and closes back on the trend's side of it (``close > EMA`` in an
  uptrend -> LONG; ``close < EMA`` in a downtrend -> SHORT), after a bar that stayed clear of its EMA
  on the trend's side (uptrend: ``low[t-1] > EMA[t-1]``; downtrend: ``high[t-1] < EMA[t-1]``).
* Entry is the close of t. The stop is ``MOST[t]`` (after a flip: the freshly reset line), but at
  least ``min_stop_pct`` % from entry (a MOST hugging the price would be a stop inside the noise).
  Targets come from ``tp_sl_calculator`` with the bot's risk settings; recommended
  ``{"sl_method": "structure", "tp_method": "r", "tp_multiples": [1.5, 2.5, 4.0], "min_rr": 1.5}``.
  The stop is always on the loss side: a flip up needs ``EMA[t] > MOST[t-1] >= EMA[t-1]``, so the EMA
  rose and the close is above it, and the new MOST is below the EMA (mirror for a flip down); in a
  continuing trend ``MOST[t] <= EMA[t]`` (uptrend), and a pullback closes beyond the EMA.
* Never a signal on a placeholder bar (the line still runs through it: its close is the previous
  close), where the EMA, MOST (or the ATR in atr mode) is not defined, or on a LONG whose MOST is at
  or below zero (possible only in atr mode with a multiple far too large for the market).

Parameters (``bots.most_bot.params``), with defaults: mode "percent", ema_length 3, percent 2.0,
atr_mult 2.0, atr_period 14, pullbacks false, min_stop_pct 0.5, lookback 300 (bars of history per
scan; the EMA's seed and the MOST's starting trend depend on where the history starts, and the line
forgets its start at the first flip, so 300 bars leave it settled).

``Setup.atr`` is ATR(``atr_period``) at t in both modes (for ATR-based risk settings), None in percent
mode on the first ``atr_period`` bars, where it does not exist yet.

``trailing_stop`` offers the MOST line itself as a trailing stop: the line where its trend matches the
direction (uptrend for a LONG), NaN elsewhere.

Where this differs from the bot it replaces (an ATR-mode MOST with EMA 9 and 2 x ATR): the ATR there
was one number, the mean true range of the LAST 14 bars, applied to the whole history (a look-ahead:
old bars' MOST changed with every new candle); here each bar uses ATR(14) as of that bar. Its EMA was
seeded from a zero array before the seed bar and the line always started in an uptrend; here nothing
exists before the EMA does and the start follows the close. Its pullback wanted
``low <= EMA <= close`` and a close above the previous close; the rule here is the touch
``low <= EMA <= high`` with a close beyond the EMA, off by default, plus one condition of our own:
the bar before stayed clear of the EMA. Without it the touch is nearly always true (the EMA at t is
pulled toward t's own close: EMA 3 sits halfway between the close and the previous EMA, inside most
bars' range) and "pullbacks" fired on 47-50 % of all bars of the real BTC and ETH 15m / 1h / 4h
series (20-40 % with the old bot's close-above-previous-close), i.e. on every other bar of a trend;
with it they fire on 2-4 % of bars (percent mode) and 6-7 % (atr mode, EMA 9). The published
defaults (EMA 3, 2 %) are the default; ``mode="atr", ema_length=9`` reproduces the old bot's line.
TradingView's MOST (KivancOzbilgic) ratchets the long and the short line separately even while the
other is in force, so after a flip its new line can start tighter than ``EMA -/+ offset``; the rule
here resets the line to ``EMA -/+ offset`` on a flip, like the original bot.

TA-Lib conventions used: EMA(n) has lookback n - 1 (its first value, at index n - 1, is the mean of
the first n closes); ATR(n) has lookback n; earlier values are NaN.

Implementation: the offsets, signals and levels are vectorised numpy / TA-Lib over the whole history;
the MOST recursion alone is inherently sequential (each value depends on the previous one and on the
trend state), so :func:`most_line` runs it as one tight loop over plain Python floats (10-20 ms
for 50,000 bars; see ``bench/bench_most_bot.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.prices import format_price
from common.types import Candles, ContextValue, Direction, FloatArray, KeyPoint, Setup

IntArray = npt.NDArray[np.int64]


class MostParams(StrategyParams):
    """most_bot's parameters (see the module docstring)."""

    mode: Literal["percent", "atr"] = "percent"
    ema_length: int = Field(3, ge=1, le=500)
    percent: float = Field(2.0, gt=0, le=50)
    atr_mult: float = Field(2.0, gt=0, le=20)
    atr_period: int = Field(14, ge=1, le=200)
    pullbacks: bool = False
    min_stop_pct: float = Field(0.5, ge=0, le=50)
    lookback: int = Field(300, ge=50, le=5_000)

    @model_validator(mode="after")
    def _lookback_covers_the_indicators(self) -> MostParams:
        longest = max(self.ema_length, self.atr_period if self.mode == "atr" else 0)
        if self.lookback < 3 * longest:
            raise ValueError(
                f"lookback {self.lookback} is too short for the indicators to settle: use at least "
                f"{3 * longest} (3 x the longest period)"
            )
        return self


def most_line(
    close: FloatArray, ema: FloatArray, lower: FloatArray, upper: FloatArray
) -> tuple[FloatArray, IntArray]:
    """The MOST line and its trend (+1 up, -1 down, 0 before it starts) for each bar.

    ``lower`` / ``upper`` are the EMA minus / plus the offset (NaN where it is not defined yet). The
    line starts at the first bar where both exist (up when the close is >= the EMA there); from
    then on both must stay finite, as they do over validated candles.
    """
    size = close.size
    most: FloatArray = np.full(size, np.nan)
    trend: IntArray = np.zeros(size, dtype=np.int64)
    defined = np.flatnonzero(np.isfinite(ema) & np.isfinite(lower) & np.isfinite(upper))
    if defined.size == 0:
        return most, trend
    start = int(defined[0])
    emas = ema[start:].tolist()
    lows = lower[start:].tolist()
    highs = upper[start:].tolist()
    up = float(close[start]) >= emas[0]
    line = lows[0] if up else highs[0]
    lines = [line]
    ups = [up]
    for e, low, high in zip(emas[1:], lows[1:], highs[1:], strict=True):
        if up:
            if e < line:
                up, line = False, high
            elif low > line:
                line = low
        elif e > line:
            up, line = True, low
        elif high < line:
            line = high
        lines.append(line)
        ups.append(up)
    most[start:] = lines
    trend[start:] = np.where(ups, 1, -1)
    return most, trend


def _sig(value: float) -> float:
    """A price for the context: 10 significant digits, without float noise."""
    return float(f"{value:.10g}")


class MostBot:
    """MOST line flips (and optional pullbacks to its EMA), stop on the MOST line."""

    name = "most_bot"
    params_model = MostParams

    def needs(self, params: MostParams, timeframe: str) -> DataNeeds:
        """The EMA, ATR and the MOST line need history to settle: ``lookback`` bars of the bot's timeframe."""
        return DataNeeds(lookback=params.lookback)

    def line(
        self, candles: Candles, params: MostParams
    ) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        """(EMA, ATR, MOST, trend) for every bar of ``candles``; NaN / 0 where not defined yet."""
        ema: FloatArray = talib.EMA(candles.close, timeperiod=params.ema_length)
        atr: FloatArray = talib.ATR(candles.high, candles.low, candles.close, timeperiod=params.atr_period)
        if params.mode == "percent":
            lower = ema * (1.0 - params.percent / 100.0)
            upper = ema * (1.0 + params.percent / 100.0)
        else:
            lower = ema - params.atr_mult * atr
            upper = ema + params.atr_mult * atr
        most, trend = most_line(candles.close, ema, lower, upper)
        return ema, atr, most, trend

    def trailing_stop(self, data: MarketData, params: MostParams, direction: Direction) -> FloatArray:
        """The MOST line as a trailing stop: where its trend is up for a LONG (down for a SHORT), else NaN.

        ``MOST[t]`` uses bars <= t only (it is the stop for bar t+1, known at t's close); within one
        trend it only ever moves in the trend's favour.
        """
        _, _, most, trend = self.line(data.candles, params)
        trail: FloatArray = np.where(trend == direction.sign, most, np.nan)
        return trail

    def scan(self, data: MarketData, params: MostParams) -> Sequence[Setup]:
        """Every MOST reversal (and, with ``pullbacks``, every pullback) in ``data.candles``, oldest first."""
        c = data.candles
        if len(c) < 2:
            return []
        ema, atr, most, trend = self.line(c, params)
        # Each bar's trend run: the bar where it started and how many bars it has lasted (1 on a flip).
        change = np.r_[True, trend[1:] != trend[:-1]]
        start_of = np.flatnonzero(change)[np.cumsum(change) - 1]
        runs = np.arange(len(c), dtype=np.int64) - start_of + 1
        previous_trend = np.r_[0, trend[:-1]]
        previous_run = np.r_[0, runs[:-1]]
        previous_most = np.r_[np.nan, most[:-1]]
        # A LONG needs a positive stop: an ATR-mode line can reach zero with a huge atr_mult.
        usable = (trend != 0) & (previous_trend != 0) & ~c.placeholder & ((trend < 0) | (most > 0))
        reversal = usable & (trend != previous_trend)
        pullback = np.zeros(len(c), dtype=np.bool_)
        if params.pullbacks:
            touched = (c.low <= ema) & (ema <= c.high)
            beyond = np.where(trend > 0, c.close > ema, c.close < ema)
            # The bar before stayed clear of its EMA on the trend's side: the price came back to the line.
            away = np.where(
                trend > 0, np.r_[False, c.low[:-1] > ema[:-1]], np.r_[False, c.high[:-1] < ema[:-1]]
            )
            pullback = usable & (trend == previous_trend) & touched & beyond & away

        setups = []
        for i in np.flatnonzero(reversal | pullback):
            direction = Direction.LONG if trend[i] > 0 else Direction.SHORT
            entry = float(c.close[i])
            floor_distance = entry * params.min_stop_pct / 100.0
            line = float(most[i])
            stop = (
                min(line, entry - floor_distance)
                if direction is Direction.LONG
                else max(line, entry + floor_distance)
            )
            atr_i = float(atr[i]) if np.isfinite(atr[i]) else None
            context: dict[str, ContextValue] = {
                "signal": "reversal" if reversal[i] else "pullback",
                "mode": params.mode,
                "ema_length": params.ema_length,
                "ema": _sig(float(ema[i])),
                "most": _sig(line),
            }
            if params.mode == "percent":
                context["percent"] = params.percent
            else:
                context["atr"] = _sig(float(atr[i]))
                context["atr_mult"] = params.atr_mult
            up = direction is Direction.LONG
            if reversal[i]:
                crossed = float(previous_most[i])
                context["previous_most"] = _sig(crossed)
                context["previous_trend_bars"] = int(previous_run[i])
                reason = (
                    f"MOST flipped {'up' if up else 'down'} after {int(previous_run[i])} bars "
                    f"{'down' if up else 'up'}: EMA {params.ema_length} {format_price(float(ema[i]))} "
                    f"crossed {'above' if up else 'below'} MOST {format_price(crossed)}"
                )
                points = (KeyPoint(ts=int(c.ts[i - 1]), price=_sig(crossed), label="MOST crossed"),)
            else:
                context["trend_bars"] = int(runs[i])
                reason = (
                    f"Pullback in a {int(runs[i])}-bar MOST {'uptrend' if up else 'downtrend'}: touched "
                    f"EMA {params.ema_length} {format_price(float(ema[i]))} and closed "
                    f"{'above' if up else 'below'} it; MOST {format_price(line)}"
                )
                first = int(start_of[i])
                points = (
                    KeyPoint(ts=int(c.ts[first]), price=_sig(float(most[first])), label="MOST trend start"),
                )
            setups.append(
                Setup(
                    direction=direction,
                    bar_ts=int(c.ts[i]),
                    entry=entry,
                    reason=reason,
                    atr=atr_i,
                    stop=stop,
                    context=context,
                    key_points=points,
                )
            )
        return setups
