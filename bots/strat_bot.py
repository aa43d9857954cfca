"""strat_bot: The Strat (Rob Smith's bar scenarios and combos) on closed candles.

Bar types (each bar against the previous one; a level equal to the previous one is not broken):

* **1** inside: high <= previous high and low >= previous low.
* **2U**: high > previous high and low >= previous low. **2D**: low < previous low and high <= previous high.
* **3** outside: high > previous high and low < previous low.

Rule (on each closed candle t, the *signal bar*; t-2, t-1, t are "the last three closed bars"):

1. **Combo.** The first of these that the bar types of t-2, t-1, t match, in this priority order (X = any
   type; the direction is always that of the signal bar's 2, i.e. the way the last bar broke out):

   ==== ==================== ======================= =====================================
   #    combo                LONG                    SHORT
   ==== ==================== ======================= =====================================
   1    2-2 continuation     X-2U-2U                 X-2D-2D
   2    2-1-2 continuation   2U-1-2U                 2D-1-2D
   3    3-2-2 reversal       3-2D-2U                 3-2U-2D
   4    2-1-2 reversal       2D-1-2U                 2U-1-2D
   5    3-1-2                3-1-2U                  3-1-2D
   6    1-2-2 RevStrat       1-2D-2U                 1-2U-2D
   7    2-2 reversal         X-2D-2U                 X-2U-2D
   ==== ==================== ======================= =====================================

   3-2-2 and 1-2-2 are 2-2 reversals whose first bar is an outside or an inside bar; the priority gives
   them their own names. With ``confirm_close`` the signal bar must also CLOSE beyond the level it broke
   (LONG: close > the previous bar's high; SHORT: close < the previous bar's low).
2. **Fallback** when no combo holds: a **hammer** (open and close both within the top ``hammer_zone``
   of the bar's range: min(open, close) >= high - hammer_zone x (high - low)) is LONG, a **shooter**
   (both within the bottom ``hammer_zone``: max(open, close) <= low + hammer_zone x range) is SHORT. A
   2D bar that closes back up as a hammer (a "failed 2D", whose 2-2 / 2-1-2 pattern the close did not
   confirm) is therefore a LONG hammer, as The Strat reads it.
3. **Location** (``range_bars`` N; 0 switches it off): a continuation (combos 1, 2) only on a fresh
   break-out: the signal bar makes the highest high of the last N bars (itself included; SHORT: the
   lowest low) and the bar before had not made the highest high of its own last N bars; a reversal
   (combos 3, 4, 6, 7, hammer, shooter) only when its three bars hold the lowest low of the last N bars
   (LONG; SHORT: the highest high), i.e. it reverses a failed break to a new extreme; a 3-1-2 at either
   edge. Ties count as making the extreme.
4. **Filters.** ATR = TA-Lib ``ATR(atr_period)`` at t; no setup when ATR / close > ``max_atr_pct`` %.
   With ``ftfc`` (full timeframe continuity) every higher timeframe's last CLOSED candle at the signal
   bar's close (close time <= the signal bar's close time, and no older than one period: a series whose
   latest closed candle is missing gives no setup) must have the trade's colour (close > open for a
   LONG, < for a SHORT; a doji agrees with nothing). Never on a bar where an input is NaN, nor when one of
   bars t-3..t (they make the three bar types) is an exchange placeholder candle.

Entry is the close of t. The stop (``Setup.stop``) is the signal bar's opposite extreme: its low for a
LONG, its high for a SHORT (a bar closing at that extreme gives no setup). ``Setup.atr`` is the ATR
at t, so the bot's risk block ``{"sl_method": "structure", "tp_method": "atr", "tp_multiples": [2.5,
4.0], "min_rr": 1.8, "min_stop_pct": 0.3}`` places TP1 / TP2 at entry +/- 2.5 and 4 ATR and rejects a
stop closer than 0.3 % (STOP_TOO_TIGHT) or a TP1 under 1.8 R (RR_TOO_LOW). With ``targets`` =
"extremes" the setup also carries ``Setup.swing`` = (stop, target) for a LONG, (target, stop) for a
SHORT, where the target is the prior bars' extreme: the higher high of bars t-2 and t-1 (SHORT: the
lower low), as The Strat targets the previous bars' highs; with a Fibonacci risk block
(``"tp_method": "fibonacci", "fib_extensions": [1.0, 1.618]``) TP1 is that extreme. A setup whose close
is already beyond that extreme has no target and is not given in that mode.

Parameters (``bots.strat_bot.params``), with defaults: confirm_close true, hammer_zone 0.25,
range_bars 100, atr_period 14, max_atr_pct 8.0, targets "atr", ftfc false, ftfc_timeframes []
(empty: the next up to three of 15m, 1h, 4h, 1d, 1w above the bot's timeframe, e.g. 4h, 1d, 1w for
1h; 1d, 1w for 4h), lookback 300 (bars per scan; ATR depends slightly on where the history starts,
300 bars let it settle and cover range_bars).

Context: ``bars`` (the three bar types, "2D-1-2U"), ``combo``, ``atr_pct``; ``ftfc`` (the higher
timeframes and their colour) when on; ``target`` in "extremes" mode. Key points: the signal bar's high
and low.

Definitions used (The Strat, as the public references describe it): bar scenarios and combos from
https://forexbee.co/the-strat-cheat-sheet/ and https://successacademycourses.com/strat-reversals/
(2D-2U is the bullish 2-2 reversal, the first target the high of the bar before the 2D); RevStrat = an
inside bar, a break one way, then a break the other way (https://thetradingu.com/2024/05/13/
the-rev-strat-edge-and-rules/); hammer / shooter from the strat.trading "Strat Patterns" guide.

Where this bot deliberately differs from the bot it replaces:

* ``confirm_close`` (new, default on): the rule as stated takes any bar that broke the previous high
  as a 2U entry at its close, even one that closed back below that high. In The Strat such a bar is a
  "failed 2" (a reversal the other way: https://ninjastrat.com/indicators/failed2s); buying its close
  contradicts the combo, so the break must hold at the close.
* ``range_bars`` location filter (new, default 100): on real data the combos as stated match about
  60 % of all bars (the 2-2 continuation alone about 30 %: every bar of a trend; the hammer / shooter
  another 5 %), still about 35-45 % with the close confirmed, and issue 6 requires a bot to fire on
  fewer than 5 % of bars. Taking only reversals off a new N-bar extreme and the first bar to break one
  (the edges of the range, where The Strat's broadening formations say reversals and break-outs
  matter) leaves about 3-4 % of bars: 1h BTC / ETH perpetuals 3.1 / 3.4 %, 15m BTC 3.5 %, 4h BTC / ETH
  3.5 / 2.9 %, 5m SOL / DOGE 3.9 %. ``range_bars`` 0 and ``confirm_close`` false give the old bot's
  combos back.
* FTFC uses the last CLOSED higher-timeframe candles, not the still-forming ones The Strat usually
  reads (which a closed-candle strategy cannot see without rebuilding them from its own timeframe).
  Monthly candles, The Strat's usual top timeframe, are not offered by the fleet (no fixed length).
* The stop is the signal bar's own opposite extreme (as the old bot did), not the bar before it (The
  Strat's usual "other side of the setup bar"): for a 2U signal bar its low is never below the
  previous bar's low, so this stop is at least as tight.
* ATR / price above ``max_atr_pct`` is rejected in the scan; the 0.3 % minimum risk and the 1.8 R:R
  minimum are the risk block's (``tp_sl_calculator.calculate_levels``), not the scan's.

TA-Lib conventions used: ATR(n) has lookback n (first value at index n; Wilder's smoothing), MAX / MIN(n)
lookback n - 1; earlier values are NaN and a bar with a NaN input is never a signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, StrictBool, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import (
    Candles,
    ContextValue,
    Direction,
    FloatArray,
    IntArray,
    KeyPoint,
    Setup,
    timeframe_ms,
)

G = TypeVar("G", bound=np.generic)
BoolArray = npt.NDArray[np.bool_]

#: Bar scenarios as bar_types() codes them (0: the first bar, which has no previous bar).
INSIDE, UP, DOWN, OUTSIDE = 1, 2, -2, 3
LABELS = {0: "?", INSIDE: "1", UP: "2U", DOWN: "2D", OUTSIDE: "3"}

#: Pattern codes: 1..7 the combos in priority order, 8 hammer, 9 shooter (0: none).
PATTERNS = (
    "",
    "2-2 continuation",
    "2-1-2 continuation",
    "3-2-2 reversal",
    "2-1-2 reversal",
    "3-1-2",
    "1-2-2 RevStrat",
    "2-2 reversal",
    "hammer",
    "shooter",
)
HAMMER, SHOOTER = 8, 9
_CONTINUATION, _REVERSAL, _EITHER = 1, 2, 3
#: Where each pattern must sit in the range (see the module docstring, Location).
_KIND = np.array([0, 1, 1, 2, 2, 3, 2, 2, 2, 2], dtype=np.int64)

HigherTimeframe = Literal["15m", "30m", "1h", "4h", "8h", "1d", "1w"]
#: The default continuity ladder: the next up to three above the bot's timeframe.
FTFC_LADDER = ("15m", "1h", "4h", "1d", "1w")
_FTFC_DEFAULT_COUNT = 3
#: Higher-timeframe candles the runner hands each scan: the newest bar needs the last closed one.
FTFC_EXTRA_LOOKBACK = 3


class StratParams(StrategyParams):
    """strat_bot's parameters (see the module docstring)."""

    confirm_close: StrictBool = True
    hammer_zone: float = Field(0.25, gt=0, lt=0.5)
    range_bars: int = Field(100, ge=0, le=1_000)
    atr_period: int = Field(14, ge=1, le=200)
    max_atr_pct: float = Field(8.0, gt=0, le=100)
    targets: Literal["atr", "extremes"] = "atr"
    ftfc: StrictBool = False
    ftfc_timeframes: tuple[HigherTimeframe, ...] = Field((), max_length=5)
    lookback: int = Field(300, ge=20, le=5_000)

    @model_validator(mode="after")
    def _consistent(self) -> StratParams:
        if 0 < self.range_bars < 3:
            raise ValueError("range_bars must be 0 (off) or at least 3 (the pattern's own bars)")
        if self.lookback < self.min_bars():
            raise ValueError(
                f"lookback {self.lookback} is shorter than the {self.min_bars()} bars that "
                "range_bars and atr_period need"
            )
        lengths = [timeframe_ms(tf) for tf in self.ftfc_timeframes]
        if any(later <= earlier for earlier, later in pairwise(lengths)):
            raise ValueError("ftfc_timeframes must be distinct and ordered from the shortest up")
        return self

    def min_bars(self) -> int:
        """Fewest candles a scan can find anything in: ATR and the range window must exist."""
        return max(4, self.atr_period + 1, self.range_bars)


def higher_timeframes(params: StratParams, timeframe: str) -> tuple[str, ...]:
    """The timeframes whose continuity ``ftfc`` checks for a bot on ``timeframe``.

    ``params.ftfc_timeframes`` when given (each must be longer than ``timeframe``), otherwise the next up
    to three rungs of FTFC_LADDER above it. Raises ValueError when none is longer (the CLI reports it as
    a configuration error).
    """
    own = timeframe_ms(timeframe)
    if params.ftfc_timeframes:
        shorter = [tf for tf in params.ftfc_timeframes if timeframe_ms(tf) <= own]
        if shorter:
            raise ValueError(f"ftfc_timeframes {', '.join(shorter)} not longer than the bot's {timeframe}")
        return tuple(params.ftfc_timeframes)
    ladder = tuple(tf for tf in FTFC_LADDER if timeframe_ms(tf) > own)[:_FTFC_DEFAULT_COUNT]
    if not ladder:
        raise ValueError(f"ftfc needs a timeframe above {timeframe}; none is available")
    return ladder


def bar_types(high: FloatArray, low: FloatArray) -> IntArray:
    """The Strat scenario of each bar against the previous one: 1, 2 (2U), -2 (2D) or 3; 0 for bar 0."""
    up = np.r_[False, high[1:] > high[:-1]]
    down = np.r_[False, low[1:] < low[:-1]]
    types: IntArray = np.where(up & down, OUTSIDE, np.where(up, UP, np.where(down, DOWN, INSIDE))).astype(
        np.int64
    )
    if types.size:
        types[0] = 0
    return types


def _shift(values: npt.NDArray[G], bars: int, fill: Any) -> npt.NDArray[G]:
    """``values`` moved ``bars`` later (index t holds t - bars), the first ``bars`` set to ``fill``."""
    shifted = np.empty_like(values)
    shifted[:bars] = fill
    shifted[bars:] = values[: values.size - bars]
    return shifted


def combo_codes(types: IntArray) -> IntArray:
    """For each bar, the first combo (1..7, priority order) its last three bar types match; 0 for none."""
    last = types
    middle = _shift(types, 1, 0)
    first = _shift(types, 2, 0)
    two = (last == UP) | (last == DOWN)
    three_known = np.arange(types.size) >= 3  # bars t-3..t exist, so all three types are defined
    conditions = [
        two & (middle == last),
        two & (middle == INSIDE) & (first == last),
        two & (first == OUTSIDE) & (middle == -last),
        two & (middle == INSIDE) & (first == -last),
        two & (first == OUTSIDE) & (middle == INSIDE),
        two & (first == INSIDE) & (middle == -last),
        two & (middle == -last),
    ]
    codes: IntArray = np.select([c & three_known for c in conditions], list(range(1, 8)), 0).astype(np.int64)
    return codes


def htf_colours(htf: Candles, at_ms: IntArray) -> IntArray:
    """Colour (+1 green, -1 red, 0 doji or unknown) of ``htf``'s last candle closed at each ``at_ms``.

    The candle is the last one whose close time is <= the moment; it must have closed less than one
    period before it (otherwise the series lacks the latest closed candle, and the colour is unknown).
    """
    if len(htf) == 0:
        return np.zeros(at_ms.size, dtype=np.int64)
    period = htf.period_ms
    closes = htf.ts + period
    index = np.searchsorted(closes, at_ms, side="right") - 1
    found = np.maximum(index, 0)
    fresh = (index >= 0) & (closes[found] > at_ms - period)
    colour = np.sign(htf.close - htf.open).astype(np.int64)
    result: IntArray = np.where(fresh, colour[found], 0)
    return result


class StratBot:
    """The Strat: bar-type combos (and a hammer / shooter fallback) at the edges of the range."""

    name = "strat_bot"
    params_model = StratParams

    def needs(self, params: StratParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe; with ``ftfc`` the last few closed higher-timeframe ones.

        Raises ValueError when ``ftfc`` is on and no higher timeframe fits the bot's.
        """
        if not params.ftfc:
            return DataNeeds(lookback=params.lookback)
        return DataNeeds(
            lookback=params.lookback,
            extra_timeframes=higher_timeframes(params, timeframe),
            extra_lookback=FTFC_EXTRA_LOOKBACK,
        )

    def scan(self, data: MarketData, params: StratParams) -> Sequence[Setup]:
        """Every qualifying combo / hammer / shooter in ``data.candles``, oldest first."""
        c = data.candles
        if len(c) < params.min_bars():
            return []
        htfs: tuple[str, ...] = ()
        if params.ftfc:
            try:
                htfs = higher_timeframes(params, c.timeframe)
            except ValueError:
                return []
            if any(tf not in data.other_timeframes for tf in htfs):
                return []  # continuity cannot be known without the higher timeframes
        types, pattern, side = classify(c, params)
        fire = pattern > 0
        if params.range_bars:
            fire &= at_range_edge(c, pattern, side, params.range_bars)
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
        atr_pct = atr / c.close * 100.0
        fire &= np.isfinite(atr) & (atr_pct <= params.max_atr_pct)
        stop = np.where(side > 0, c.low, c.high)
        fire &= (c.close - stop) * side > 0
        fire &= ~_near_placeholder(c.placeholder)
        target = np.where(
            side > 0,
            np.fmax(_shift(c.high, 1, np.nan), _shift(c.high, 2, np.nan)),
            np.fmin(_shift(c.low, 1, np.nan), _shift(c.low, 2, np.nan)),
        )
        if params.targets == "extremes":
            fire &= (target - c.close) * side > 0
        bar_close = c.ts + c.period_ms
        for tf in htfs:
            fire &= htf_colours(data.other_timeframes[tf], bar_close) == side
        setups = []
        for i in np.flatnonzero(fire).tolist():
            direction = Direction.LONG if side[i] > 0 else Direction.SHORT
            code = int(pattern[i])
            bars = "-".join(LABELS[int(t)] for t in types[i - 2 : i + 1])
            context: dict[str, ContextValue] = {
                "bars": bars,
                "combo": PATTERNS[code],
                "atr_pct": round(float(atr_pct[i]), 3),
            }
            if htfs:
                context["ftfc"] = f"{' '.join(htfs)} {'green' if direction is Direction.LONG else 'red'}"
            swing = None
            if params.targets == "extremes":
                context["target"] = float(target[i])
                ends = (float(stop[i]), float(target[i]))
                swing = ends if direction is Direction.LONG else (ends[1], ends[0])
            setups.append(
                Setup(
                    direction=direction,
                    bar_ts=int(c.ts[i]),
                    entry=float(c.close[i]),
                    reason=_reason(code, bars, direction, c, i, params),
                    atr=float(atr[i]),
                    stop=float(stop[i]),
                    swing=swing,
                    context=context,
                    key_points=(
                        KeyPoint(int(c.ts[i]), float(c.high[i]), "setup high"),
                        KeyPoint(int(c.ts[i]), float(c.low[i]), "setup low"),
                    ),
                )
            )
        return setups


def classify(c: Candles, params: StratParams) -> tuple[IntArray, IntArray, IntArray]:
    """(bar types, pattern code, side) of every bar: steps 1 and 2 of the rule, before location and filters.

    The pattern is the highest-priority combo that holds (with ``confirm_close``, only where the close
    confirms the break), else hammer (8) or shooter (9), else 0; bars 0..2 are always 0. The side is +1
    (LONG), -1 (SHORT) or 0.
    """
    types = bar_types(c.high, c.low)
    combo = combo_codes(types)
    breakout = np.where(types == UP, 1, np.where(types == DOWN, -1, 0))
    if params.confirm_close:
        held = np.where(breakout > 0, c.close > _shift(c.high, 1, np.nan), c.close < _shift(c.low, 1, np.nan))
        combo = np.where(held, combo, 0)
    span = c.high - c.low
    zone = params.hammer_zone * span
    hammer = (span > 0) & (np.minimum(c.open, c.close) >= c.high - zone)
    shooter = (span > 0) & (np.maximum(c.open, c.close) <= c.low + zone)
    pattern: IntArray = np.where(combo > 0, combo, np.where(hammer, HAMMER, np.where(shooter, SHOOTER, 0)))
    pattern[:3] = 0
    side: IntArray = np.where(pattern == 0, 0, np.where(combo > 0, breakout, np.where(hammer, 1, -1)))
    return types, pattern, side


def at_range_edge(c: Candles, pattern: IntArray, side: IntArray, bars: int) -> BoolArray:
    """Step 3 of the rule: whether each bar's pattern sits at the edge of the last ``bars`` bars' range.

    A continuation needs a fresh break-out: the signal bar makes the range's high (LONG) / low (SHORT)
    and the bar before did not make its own range's; a reversal needs its three bars to hold the
    range's low (LONG) / high (SHORT); a 3-1-2 either. NaN (too little history) is never at an edge.
    """
    range_high = talib.MAX(c.high, timeperiod=bars)
    range_low = talib.MIN(c.low, timeperiod=bars)
    reversal = np.where(
        side > 0, talib.MIN(c.low, timeperiod=3) <= range_low, talib.MAX(c.high, timeperiod=3) >= range_high
    )
    # A fresh break-out: the signal bar makes the range's extreme and the bar before had not made its own.
    breakout = np.where(
        side > 0,
        (c.high >= range_high) & (_shift(c.high, 1, np.nan) < _shift(range_high, 1, np.nan)),
        (c.low <= range_low) & (_shift(c.low, 1, np.nan) > _shift(range_low, 1, np.nan)),
    )
    kind = _KIND[pattern]
    edge: BoolArray = np.where(
        kind == _CONTINUATION, breakout, np.where(kind == _REVERSAL, reversal, reversal | breakout)
    )
    return edge


def _near_placeholder(placeholder: BoolArray) -> BoolArray:
    """Bars t for which one of t-3..t (the bars behind the three bar types) is a placeholder candle."""
    near = placeholder.copy()
    for bars in (1, 2, 3):
        near |= _shift(placeholder, bars, False)
    return near


def _reason(code: int, bars: str, direction: Direction, c: Candles, i: int, params: StratParams) -> str:
    """One line: the pattern, its bar types and the price that made it."""
    long = direction is Direction.LONG
    if code in (HAMMER, SHOOTER):
        part = "top" if long else "bottom"
        return (
            f"{PATTERNS[code]} {bars}: open {c.open[i]:.8g} and close {c.close[i]:.8g} in the {part} "
            f"{params.hammer_zone * 100:g} % of the range {c.low[i]:.8g}-{c.high[i]:.8g}"
        )
    side, level = ("high", c.high[i - 1]) if long else ("low", c.low[i - 1])
    if params.confirm_close:
        where = "above" if long else "below"
        return f"{PATTERNS[code]} {bars}: closed {c.close[i]:.8g} {where} the previous {side} {level:.8g}"
    return f"{PATTERNS[code]} {bars}: broke the previous {side} {level:.8g}, closed {c.close[i]:.8g}"
