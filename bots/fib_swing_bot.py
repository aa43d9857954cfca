"""fib_swing_bot: trend-following pullbacks to the Fibonacci retracements of the last swing impulse.

Rule (on each closed candle t; LONG shown, SHORT mirrors every comparison):

* **Trend**: up while ``EMA(ema_fast)`` > ``EMA(ema_slow)`` at t (TA-Lib EMA of the close), down while
  it is below; equal EMAs are no trend.
* **Swing pivots** of ``pivot_lookback`` bars each side (:func:`common.pivots.swing_pivots`: a bar
  whose high is the highest, or whose low is the lowest, of the ``2 x pivot_lookback + 1`` bars around
  it). A pivot is known only from its confirmation bar (``pivot_lookback`` bars after it) on, so bar t
  uses the pivots confirmed at or before t: no look-ahead.
* **Impulse** (LONG): from the origin, the last swing low BEFORE the last swing high known at t, to
  the end, that swing high. Range R = high - low; no impulse while R <= 0 or no such pair is known.
  (SHORT: from the last swing high before the last known swing low, down to that low.)
* **Levels**, checked in this order: 0.65, 0.618, 0.5, 0.382 retracements of the impulse, at price
  ``high - r x R`` (SHORT: ``low + r x R``). The first level the bar **touches** is the signal's level:
  the bar's low lies within ``tolerance_pct`` % of R of the level (``|low - level| <= tolerance``, both
  edges included) and the close stays on the trend side, strictly above the level (SHORT: the high
  within the tolerance, the close strictly below). The 0.65 and 0.618 bands overlap; checking 0.65
  first gives a low between them to 0.65 when the close held above 0.65.
* **Quality**: PREMIUM at 0.65 and 0.618, CONFIRMED at 0.5, SHALLOW at 0.382, which counts only on a
  bar whose volume is above its ``volume_sma_period``-bar mean (``volume[t] > SMA(volume)[t]``, TA-Lib
  SMA, bar t included). The quality is in the reason and the context.
* **One signal per impulse**: the first bar that meets every condition fires; later touches of the same
  impulse (the same swing high for a LONG, the same swing low for a SHORT) do not. A new impulse starts
  when a new swing pivot of the end's kind is confirmed.
* **Levels of the trade**: entry is the close of t. The stop (``Setup.stop``) is beyond the impulse's
  origin by ``stop_buffer_pct`` % of R (LONG: ``low - 0.02 x R``; SHORT: ``high + 0.02 x R``).
  ``Setup.swing`` is the impulse (low, high); the targets are its Fibonacci extensions from the origin,
  1.0, 1.272 and 1.618 (LONG: ``low + e x R``: TP1 is the impulse's high), with the risk block
  ``{"sl_method": "structure", "tp_method": "fibonacci", "fib_extensions": [1.0, 1.272, 1.618],
  "min_rr": 1.0}``. With that ``min_rr`` the 0.5 and 0.382 setups are always rejected by the level
  calculator (from a close above the 0.5 level TP1, the impulse's end, is less than 0.5 R away and the
  stop more than 0.52 R, R the impulse's range): only PREMIUM setups become signals, and those only
  while the close is below the 0.51 retracement, unless the bot's ``min_rr`` is lowered.

Each setup's ``context``: ``ema<fast>`` and ``ema<slow>`` (``ema20``, ``ema50`` at the defaults; 10
significant digits), ``level`` (0.618, ...), ``level_price``, ``quality``, ``volume_ratio`` (volume /
SMA, 3 decimals), ``impulse_low`` and ``impulse_high``. Its ``key_points``: the impulse's origin and
end at their bars ("impulse low" / "impulse high"), then the level at the signal bar ("Fib 0.618").

Parameters (``bots.fib_swing_bot.params``), with defaults: ema_fast 20, ema_slow 50, pivot_lookback 10,
tolerance_pct 2.0 (% of the impulse's range), stop_buffer_pct 2.0 (% of the impulse's range),
volume_sma_period 20, lookback 300 (bars of history per scan: EMA 50 forgets its seed to a relative
weight of about 1e-5 in 300 bars, and on years of BTC, ETH, XRP and SOL data from 5m to 4h the impulse's
origin was at most 114 bars before the signal bar; scans of the last 300 bars gave the full scan's
setup on every one of about 8,000 bars tried).

Never a signal: on a placeholder bar, where an EMA or the volume SMA is not defined yet (the first
``ema_slow - 1`` bars) or the SMA is zero, and (LONG) when the stop would not be a positive price.

Where it differs from the bot it replaces:

* Both directions: the old bot tracked only long pullbacks; SHORT mirrors every rule.
* The 2 % tolerance is of the impulse's range (the rule did not say of what). 2 % of the price would
  be a band 4 % of the price wide: wider than the whole median impulse on 15m (BTC 1.9 %, XRP 2.5 % of
  the price) and most of it on 1h (BTC 4.6 %), so the bar would "touch" several levels at once and the
  checking order alone would pick the quality.
* The touch rule is written out (the low within the band around the level and the close beyond it on
  the trend side); a low that went through the band and closed back above it is a deeper retracement
  than the level, not a touch of it.
* An impulse is spent once price has traded beyond its origin (LONG: any low below the swing low since
  the swing high's bar): a 100 % retracement ends the impulse, and a later bounce back up to one of its
  levels would be a touch from the wrong side with a stop already traded through.
* Ties of equal highs or lows are settled in :mod:`common.pivots` (the first bar of a flat top is the
  pivot); the old bot did not say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.pivots import Pivots, known_counts, swing_pivots
from common.prices import format_price
from common.types import Candles, Direction, FloatArray, IntArray, KeyPoint, Setup

#: The retracements, in the order they are checked (the deepest first).
LEVELS = (0.65, 0.618, 0.5, 0.382)
#: The quality of a setup at each level of :data:`LEVELS`.
QUALITIES = ("PREMIUM", "PREMIUM", "CONFIRMED", "SHALLOW")
#: The position in :data:`LEVELS` of the one level that needs above-average volume.
VOLUME_LEVEL = 3


class FibSwingParams(StrategyParams):
    """fib_swing_bot's parameters (see the module docstring)."""

    ema_fast: int = Field(20, ge=2, le=500)
    ema_slow: int = Field(50, ge=3, le=1_000)
    pivot_lookback: int = Field(10, ge=1, le=200)
    tolerance_pct: float = Field(2.0, ge=0, le=20)
    stop_buffer_pct: float = Field(2.0, ge=0, le=100)
    volume_sma_period: int = Field(20, ge=2, le=1_000)
    lookback: int = Field(300, ge=50, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> FibSwingParams:
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast {self.ema_fast} must be below ema_slow {self.ema_slow}")
        needed = max(self.ema_slow, self.volume_sma_period, 2 * self.pivot_lookback + 2)
        if self.lookback < needed:
            raise ValueError(
                f"lookback {self.lookback} is too short: the EMAs, the volume SMA and a confirmed swing "
                f"pair need at least {needed} bars"
            )
        return self


@dataclass(frozen=True)
class _Side:
    """One direction's impulses: at each bar, the impulse in force and its prices (NaN without one)."""

    direction: Direction
    end: Pivots  # LONG: the swing highs; SHORT: the swing lows
    origin: Pivots  # LONG: the swing lows; SHORT: the swing highs
    end_k: IntArray  # per bar: the position in ``end`` of the impulse's end, -1 without an impulse
    origin_of: IntArray  # per end pivot: the position in ``origin`` of its origin, -1 without one
    low: FloatArray  # per bar: the impulse's low (NaN without an impulse)
    high: FloatArray  # per bar: the impulse's high


def _side(direction: Direction, pivots: Pivots, n: int) -> _Side:
    """The impulse in force at every bar for ``direction`` (see the module docstring)."""
    long = direction is Direction.LONG
    end, origin = (pivots.highs, pivots.lows) if long else (pivots.lows, pivots.highs)
    # The last end pivot known at each bar, and for each end pivot the last origin pivot before its bar
    # (confirmed earlier, since every pivot is confirmed pivot_lookback bars after its own bar).
    end_k = known_counts(end, np.arange(n)) - 1
    origin_of = np.searchsorted(origin.index, end.index, side="left").astype(np.int64) - 1
    low = np.full(n, np.nan)
    high = np.full(n, np.nan)
    has = end_k >= 0
    has[has] = origin_of[end_k[has]] >= 0
    end_price = end.price[end_k[has]]
    origin_price = origin.price[origin_of[end_k[has]]]
    low[has] = origin_price if long else end_price
    high[has] = end_price if long else origin_price
    end_k = np.where(has & (high > low), end_k, -1)
    low[end_k < 0] = np.nan
    high[end_k < 0] = np.nan
    return _Side(direction, end, origin, end_k, origin_of, low, high)


def _touched_level(
    c: Candles, side: _Side, volume_ok: npt.NDArray[np.bool_], tolerance_pct: float
) -> IntArray:
    """Per bar: the position in :data:`LEVELS` of the first level touched, -1 for none (or no impulse)."""
    sign = side.direction.sign
    span = side.high - side.low
    ratios = np.array(LEVELS)[None, :]
    end = (side.high if sign > 0 else side.low)[:, None]
    prices = end - sign * ratios * span[:, None]  # NaN rows without an impulse compare False below
    tolerance = (span * tolerance_pct / 100.0)[:, None]
    extreme = (c.low if sign > 0 else c.high)[:, None]
    touched = (np.abs(extreme - prices) <= tolerance) & (sign * (c.close[:, None] - prices) > 0)
    touched[:, VOLUME_LEVEL] &= volume_ok
    first: IntArray = np.where(touched.any(axis=1), touched.argmax(axis=1), -1).astype(np.int64)
    return first


def _sig(value: float) -> float:
    """A derived price (EMA, level) to 10 significant digits, without float noise."""
    return float(f"{value:.10g}")


class FibSwingBot:
    """Pullback to a Fibonacci retracement of the last swing impulse, in the direction of the EMA trend."""

    name = "fib_swing_bot"
    params_model = FibSwingParams

    def needs(self, params: FibSwingParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe: the EMAs settle and the impulse in force fits."""
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: FibSwingParams) -> Sequence[Setup]:
        """Every first qualifying pullback of each impulse in ``data.candles``, oldest first."""
        c = data.candles
        n = len(c)
        if n < max(params.ema_slow, params.volume_sma_period, 2 * params.pivot_lookback + 2):
            return []  # an EMA, the volume SMA or a confirmed swing pair is undefined on every bar
        fast = talib.EMA(c.close, timeperiod=params.ema_fast)
        slow = talib.EMA(c.close, timeperiod=params.ema_slow)
        sma = talib.SMA(c.volume, timeperiod=params.volume_sma_period)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sma > 0, c.volume / sma, np.nan)
        usable = np.isfinite(fast) & np.isfinite(slow) & np.isfinite(ratio) & ~c.placeholder
        pivots = swing_pivots(c.high, c.low, params.pivot_lookback)

        found: list[tuple[int, Setup]] = []
        for direction in (Direction.LONG, Direction.SHORT):
            side = _side(direction, pivots, n)
            level = _touched_level(c, side, ratio > 1.0, params.tolerance_pct)
            trend = direction.sign * (fast - slow) > 0
            candidates = np.flatnonzero(usable & trend & (level >= 0))
            # One signal per impulse: the first candidate of each end pivot (np.unique keeps the first).
            _, first = np.unique(side.end_k[candidates], return_index=True)
            for i in candidates[first].tolist():
                setup = self._setup(c, i, side, int(level[i]), fast, slow, float(ratio[i]), params)
                if setup is not None:
                    found.append((i, setup))
        found.sort(key=lambda item: item[0])
        return [setup for _, setup in found]

    @staticmethod
    def _setup(
        c: Candles,
        i: int,
        side: _Side,
        level: int,
        fast: FloatArray,
        slow: FloatArray,
        ratio: float,
        params: FibSwingParams,
    ) -> Setup | None:
        """The setup of bar ``i``; None when the impulse was broken before it or the stop is not positive."""
        direction = side.direction
        sign = direction.sign
        k = int(side.end_k[i])
        m = int(side.origin_of[k])
        end_bar, origin_bar = int(side.end.index[k]), int(side.origin.index[m])
        low, high = float(side.low[i]), float(side.high[i])
        span = high - low
        origin = low if sign > 0 else high
        # Spent once price traded beyond the origin after the impulse's end (bars end+1 .. i).
        since = (c.low if sign > 0 else c.high)[end_bar + 1 : i + 1]
        if bool((sign * (since - origin) < 0).any()):
            return None
        stop = origin - sign * span * params.stop_buffer_pct / 100.0
        if stop <= 0:
            return None
        ratio_level = LEVELS[level]
        end = high if sign > 0 else low
        level_price = _sig(end - sign * ratio_level * span)
        quality = QUALITIES[level]
        entry = float(c.close[i])
        bar_ts = int(c.ts[i])
        trend = "an uptrend" if sign > 0 else "a downtrend"
        touch = "low" if sign > 0 else "high"
        touch_price = float(c.low[i] if sign > 0 else c.high[i])
        origin_label, end_label = (
            ("impulse low", "impulse high") if sign > 0 else ("impulse high", "impulse low")
        )
        return Setup(
            direction=direction,
            bar_ts=bar_ts,
            entry=entry,
            stop=stop,
            swing=(low, high),
            reason=(
                f"{quality} pullback to Fib {ratio_level:g} ({format_price(level_price)}) in {trend}: "
                f"{touch} {format_price(touch_price)}, close {format_price(entry)}; impulse "
                f"{format_price(origin)} -> {format_price(end)}; volume {ratio:.2f}x average"
            ),
            context={
                f"ema{params.ema_fast}": _sig(float(fast[i])),
                f"ema{params.ema_slow}": _sig(float(slow[i])),
                "level": ratio_level,
                "level_price": level_price,
                "quality": quality,
                "volume_ratio": round(ratio, 3),
                "impulse_low": low,
                "impulse_high": high,
            },
            key_points=(
                KeyPoint(ts=int(c.ts[origin_bar]), price=origin, label=origin_label),
                KeyPoint(ts=int(c.ts[end_bar]), price=end, label=end_label),
                KeyPoint(ts=bar_ts, price=level_price, label=f"Fib {ratio_level:g}"),
            ),
        )
