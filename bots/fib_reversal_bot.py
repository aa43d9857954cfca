"""fib_reversal_bot: a confirmed reversal at a Fibonacci retracement of the last swing.

Rule (on each closed candle t):

* **Swing pivots** of ``swing_lookback`` bars each side (:func:`common.pivots.swing_pivots`: a bar whose
  high is the highest, or whose low is the lowest, of the ``2 x swing_lookback + 1`` bars around it). A
  pivot is known only from its confirmation bar on (``swing_lookback`` bars after it), so bar t uses the
  pivots confirmed at or before t: no look-ahead.
* **The swing** in force at t is made of the last two pivots known at t: a swing low L then a swing high H
  is an **up-swing** (L -> H), a high H then a low L a **down-swing** (H -> L). It is in force from the
  later pivot's confirmation bar until the next pivot is confirmed (the swing's *epoch*).
* **Retracement levels**, R = H - L: an up-swing retraces downwards, ratio r at ``H - r x R``; a down-swing
  upwards, at ``L + r x R``. Four levels, each a zone of ratios and a line:

  =============  ==================================================  =====
  level          zone (ratios of R)                                   line
  =============  ==================================================  =====
  golden pocket  0.618 - ``golden_pocket_tolerance`` .. 0.65 + it     0.618
  0.618          0.618 +/- ``level_tolerance``                        0.618
  0.5            0.5 +/- ``level_tolerance``                          0.5
  0.382          0.382 +/- ``level_tolerance``                        0.382
  =============  ==================================================  =====

  Both tolerances are fractions of the swing's range R (0.05 = 5 % of R), not of the price.
* **Touch**: bar j of the swing's epoch (not a placeholder) touches a level when its high-low range
  overlaps the level's zone and the retracement is *reaching* the zone: no bar since the swing's
  extreme (the later pivot's bar, up to j - 1) has traded beyond the zone's deep edge (LONG: below it).
* **Confirmation** on bar t within ``confirmation_bars`` N of a touch (the touch bar itself or up to
  N - 1 bars after it, both in the same epoch); the signal is on the confirming bar t, never earlier:

  - a reversal pattern at t (TA-Lib, any non-zero value of the trade's sign): for a LONG CDLENGULFING > 0,
    CDLHAMMER, CDLPIERCING, CDLMORNINGSTAR; for a SHORT CDLENGULFING < 0, CDLSHOOTINGSTAR,
    CDLDARKCLOUDCOVER, CDLEVENINGSTAR. A pattern whose bars include a placeholder candle does not count;
  - or a **close back beyond the level's line**: LONG, the close of t is above the line and a touch bar
    of the window (t included) traded at or below it; a SHORT mirrors this.

* Retracing an up-swing gives a **LONG**, a down-swing a **SHORT**. Entry is the close of t, which must
  lie between the stop and the swing's extreme (LONG: stop < close < H; SHORT: L < close < stop).
* **One signal per (swing, level)**: each level fires at most once per swing, on its first confirmation,
  and not after a deeper level of the same swing has fired (the levels from the deepest: golden pocket,
  0.618, 0.5, 0.382). Levels confirmed on the same bar give one setup naming the deepest of them and
  listing all of them in ``context["levels"]``; each of them has had its signal.
* **Levels**: ``Setup.stop`` is the ``stop_level`` retracement (0.786 by default; 1.0 is the swing's
  origin): ``H - 0.786 x R`` for a LONG, ``L + 0.786 x R`` for a SHORT; ``Setup.swing`` = (L, H). With
  the risk block ``{"sl_method": "structure", "tp_method": "fibonacci", "fib_extensions": [1.0, 1.272],
  "min_rr": 1.0}`` the calculator puts TP1 at the swing's extreme (LONG: L + 1.0 x R = H) and TP2 at its
  1.272 extension (L + 1.272 x R); a SHORT gets H - 1.0 x R = L and H - 1.272 x R.

Speed presets (``speed``): ``fast`` = swing lookback 5, confirmation 2 bars; ``medium`` (default) = 10
and 3; ``safe`` = 15 and 4. ``swing_lookback`` and ``confirmation_bars``, when given, override the
preset's value (null: take it from the preset).

Each setup's ``context``: ``swing`` ("up" / "down"), ``swing_low`` and ``swing_high`` (the pivots' prices),
``level`` (the level named), ``levels`` (every level signalled on the bar, comma-separated, deepest
first), ``level_price`` (its line, 10 significant digits), ``touch_price`` (the lowest low for a LONG,
the highest high for a SHORT, from the first touch bar of the window to t), ``touch_bars_ago`` (t minus
that touch bar) and ``confirmation`` (the patterns found, then "close back above" / "close back below",
joined by " + "). Its ``key_points``: the swing's two pivots ("swing low" / "swing high", oldest first),
then the level's line at the touch bar, labelled with the level's name.

Parameters (``bots.fib_reversal_bot.params``), with defaults: speed "medium", swing_lookback null (10 from
the preset), confirmation_bars null (3 from the preset), level_tolerance 0.05, golden_pocket_tolerance
0.02, stop_level 0.786 (any ratio beyond the deepest zone, up to 1.0), lookback 300 (bars of history per
scan). Every input depends on a bounded window: a pivot on ``2 x swing_lookback + 1`` bars, a pattern on
at most 13 bars, the swing's state on the bars since its older pivot. A scan of the last ``lookback``
bars therefore gives the whole-history scan's setups on its newest bar as long as the older pivot of the
swing in force and the ``swing_lookback`` bars before it fit in the window: at any bar of 1h, 15m, 5m and
4h series of BTC, ETH, XRP, DOGE and SOL that took at most 142 bars with the medium preset (205 with
safe), so 300 leaves room (the tests check it bar by bar on a real series).

Never a signal: on a placeholder bar, while fewer than two pivots are known, while the last two known
pivots are of the same kind (two highs or two lows: no swing) or on the same bar (an outside bar that is
both a swing high and a swing low: OHLC does not say which came first).

Where this differs from the original bot it replaces (the rule text of the brief):

* The tolerances are fractions of the swing's range, as the brief says for the golden pocket; a level
  5 % of the *price* away would cover the whole swing on most swings.
* A zone counts as reached only by the retracement: once price has traded beyond a zone's deep edge, it
  is passed, and price coming back to it from the far side (on its way back up, for an up-swing) is no
  touch. Without this the close back above a level on the way back up after a deeper retracement signalled
  again, and the rule fired on 5.1 to 7.3 % of the bars of real 5m, 15m, 1h and 4h series (medium
  preset; fast: 10.5 to 12.4 %), over the fleet's 5 % ceiling; with it (and the next point) 1.7 to 2.3 %
  (fast 3.3 to 4.6 %, safe 1.1 to 1.7 %).
* A signal at a level also ends the shallower levels of the swing: a retracement that touched 0.5, went
  on to the golden pocket and signalled there, then closed back above 0.5 within the window on its way
  up would otherwise signal a second LONG on the same move at a worse price. A deeper level can still
  fire after a shallower one (the retracement went further: a new, better entry).
* A "close back beyond the level" needs a touch bar of the window to have traded through the line first;
  a close on the trade side of a line price never crossed would confirm nearly every touch.
* The golden pocket's line (for the close-back confirmation) is its 0.618 edge: the close is back out of
  the pocket on the trend's side. With the default tolerances the pocket and the 0.618 zone nearly
  coincide, so the two usually fire together: one setup, named "golden pocket".
* The entry must lie between the stop and the swing's extreme: otherwise the stop or TP1 would be on the
  wrong side of the entry and the calculator would reject the setup anyway.
* Not a change, a consequence: with a 0.786 stop, a LONG entered at the 0.382 line risks 0.404 of the
  swing to make 0.382 at TP1 (R:R 0.95), so with ``min_rr`` 1.0 the calculator rejects nearly every
  0.382 setup (and the 0.5 setups whose close ended far above the line). The scan keeps them, as the rule
  says; the risk block decides.

TA-Lib conventions relied on: the pattern functions return 0 (none), +100 / -100 (+-80 for an engulfing
whose body shares an end with the previous one; counted too); their first values (lookback 2 for the
engulfing, 11 for hammer, shooting star, piercing and dark cloud cover, 12 for the stars) are 0. Their
averages are trailing windows, so a pattern at t depends only on the bars shortly before t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.pivots import HIGH, LOW, BoolArray, Pivots, known_counts, swing_pivots
from common.prices import format_price
from common.types import Candles, Direction, FloatArray, IntArray, KeyPoint, Setup

#: (swing lookback, confirmation bars) of each speed preset.
SPEEDS: dict[str, tuple[int, int]] = {"fast": (5, 2), "medium": (10, 3), "safe": (15, 4)}

#: The golden pocket's ratios.
POCKET = (0.618, 0.65)

#: Reversal patterns (TA-Lib function, name in the context, bars it spans): bullish ones confirm a LONG,
#: bearish ones a SHORT.
BULLISH_PATTERNS: tuple[tuple[str, str, int], ...] = (
    ("CDLENGULFING", "engulfing", 2),
    ("CDLHAMMER", "hammer", 1),
    ("CDLPIERCING", "piercing", 2),
    ("CDLMORNINGSTAR", "morning star", 3),
)
BEARISH_PATTERNS: tuple[tuple[str, str, int], ...] = (
    ("CDLENGULFING", "engulfing", 2),
    ("CDLSHOOTINGSTAR", "shooting star", 1),
    ("CDLDARKCLOUDCOVER", "dark cloud cover", 2),
    ("CDLEVENINGSTAR", "evening star", 3),
)


class FibReversalParams(StrategyParams):
    """fib_reversal_bot's parameters (see the module docstring)."""

    speed: Literal["fast", "medium", "safe"] = "medium"
    swing_lookback: int | None = Field(None, ge=1, le=100)
    confirmation_bars: int | None = Field(None, ge=1, le=20)
    level_tolerance: float = Field(0.05, gt=0, le=0.1)
    golden_pocket_tolerance: float = Field(0.02, ge=0, le=0.1)
    stop_level: float = Field(0.786, gt=0.65, le=1.0)
    lookback: int = Field(300, ge=50, le=10_000)

    @property
    def pivot_bars(self) -> int:
        """The swing lookback in force: the override, or the speed preset's."""
        return self.swing_lookback if self.swing_lookback is not None else SPEEDS[self.speed][0]

    @property
    def confirm_bars(self) -> int:
        """The confirmation window in force (bars, the touch bar included): the override or the preset's."""
        return self.confirmation_bars if self.confirmation_bars is not None else SPEEDS[self.speed][1]

    @model_validator(mode="after")
    def _consistent(self) -> FibReversalParams:
        deepest = max(POCKET[1] + self.golden_pocket_tolerance, 0.618 + self.level_tolerance)
        if self.stop_level <= deepest:
            raise ValueError(
                f"stop_level {self.stop_level} must be beyond the deepest level zone "
                f"({deepest:g} of the swing)"
            )
        needed = 4 * self.pivot_bars + 2 + self.confirm_bars
        if self.lookback < needed:
            raise ValueError(
                f"lookback {self.lookback} is too short: two confirmed pivots and the confirmation window "
                f"need at least {needed} bars"
            )
        return self


@dataclass(frozen=True)
class Level:
    """A retracement level: its name, its zone (ratios of the swing, low to high) and its line."""

    name: str
    zone: tuple[float, float]
    line: float


def levels_of(params: FibReversalParams) -> tuple[Level, ...]:
    """The four levels with ``params``' tolerances, deepest (highest priority) first."""
    pocket = params.golden_pocket_tolerance
    tolerance = params.level_tolerance
    return (
        Level("golden pocket", (POCKET[0] - pocket, POCKET[1] + pocket), POCKET[0]),
        *(
            Level(name, (ratio - tolerance, ratio + tolerance), ratio)
            for name, ratio in (
                ("0.618", 0.618),
                ("0.5", 0.5),
                ("0.382", 0.382),
            )
        ),
    )


@dataclass(frozen=True)
class _Swings:
    """Per bar: the swing in force (NaN / False where there is none)."""

    latest: IntArray  # position of the last known pivot (-1: none); the swing is (latest - 1, latest)
    up: BoolArray
    valid: BoolArray
    sign: FloatArray  # +1 up-swing (LONG), -1 down-swing (SHORT)
    low: FloatArray
    high: FloatArray
    end: FloatArray  # the extreme the retracement starts from: H for an up-swing, L for a down-swing
    epoch_start: IntArray  # the bar from which the swing is in force
    end_index: IntArray  # the bar of the swing's later pivot (its extreme)


def swings(pivots: Pivots, n: int) -> _Swings:
    """The swing of the last two pivots known at each of ``n`` bars (see the module docstring)."""
    latest = known_counts(pivots, np.arange(n)) - 1
    has_pair = latest >= 1
    if len(pivots) < 2:
        nothing = np.zeros(n, dtype=np.bool_)
        nan = np.full(n, np.nan)
        zeros = np.zeros(n, dtype=np.int64)
        return _Swings(latest, nothing, nothing, nan, nan, nan, nan, zeros, zeros)
    second = np.maximum(latest, 1)  # bars without a pair read pair (0, 1) here; ``valid`` masks them
    first = second - 1
    kind_a, kind_b = pivots.kind[first], pivots.kind[second]
    price_a, price_b = pivots.price[first], pivots.price[second]
    apart = pivots.index[first] < pivots.index[second]
    up = has_pair & apart & (kind_a == LOW) & (kind_b == HIGH) & (price_b > price_a)
    down = has_pair & apart & (kind_a == HIGH) & (kind_b == LOW) & (price_a > price_b)
    valid = up | down
    low = np.where(up, price_a, np.where(down, price_b, np.nan))
    high = np.where(up, price_b, np.where(down, price_a, np.nan))
    return _Swings(
        latest=latest,
        up=up,
        valid=valid,
        sign=np.where(up, 1.0, np.where(down, -1.0, np.nan)),
        low=low,
        high=high,
        end=np.where(up, high, low),
        epoch_start=pivots.confirmed_at[second],
        end_index=pivots.index[second],
    )


def _pattern_hits(c: Candles, patterns: tuple[tuple[str, str, int], ...], bullish: bool) -> BoolArray:
    """Column p: bar t shows pattern p (right sign, no placeholder among its bars)."""
    hits = np.zeros((len(c), len(patterns)), dtype=np.bool_)
    placeholder = c.placeholder.astype(np.int64)
    covered = np.cumsum(np.r_[0, placeholder])  # covered[t + 1] - covered[t + 1 - span]: placeholders in span
    index = np.arange(len(c))
    for p, (function_name, _, span) in enumerate(patterns):
        values = getattr(talib, function_name)(c.open, c.high, c.low, c.close)
        signed = values > 0 if bullish else values < 0
        start = np.maximum(index + 1 - span, 0)
        clean = covered[index + 1] - covered[start] == 0
        hits[:, p] = signed & clean
    return hits


def range_min(values: FloatArray, start: IntArray, stop: IntArray) -> FloatArray:
    """``min(values[start[q]:stop[q]])`` for every query q (+inf where the range is empty).

    A sparse table (the minimum of every run of 2^k values, for each k) answers a query with two
    lookups: the minima of the two runs of the largest 2^k that fit, one from each end of the range.
    """
    n = values.size
    begin = np.clip(start, 0, n)
    count = np.clip(stop, 0, n) - begin
    result = np.full(count.shape, np.inf)
    some = count > 0
    if not some.any():
        return result
    levels = int(count.max()).bit_length()  # runs of 1, 2, 4, ... up to the longest query
    table = np.full((levels, n), np.inf)
    table[0] = values
    for k in range(1, levels):
        half = 1 << (k - 1)
        table[k, : n - half] = np.minimum(table[k - 1, : n - half], table[k - 1, half:])
    begin, count = begin[some], count[some]
    level = (np.frexp(count)[1] - 1).astype(np.int64)  # floor(log2(count)), exact for integers
    width = np.left_shift(1, level)
    result[some] = np.minimum(table[level, begin], table[level, begin + count - width])
    return result


def _last_true(mask: BoolArray) -> IntArray:
    """Per column, for each row: the latest row <= it where ``mask`` is True (-1 where none)."""
    rows = np.arange(mask.shape[0])[:, None]
    marked: IntArray = np.maximum.accumulate(np.where(mask, rows, -1), axis=0)
    return marked


def _sig(value: float) -> float:
    """A derived price (a level's line) to 10 significant digits, without float noise."""
    return float(f"{value:.10g}")


@dataclass(frozen=True)
class _Touches:
    """Per bar (rows) and level (columns): its line, touches and the confirmation window's state."""

    line: FloatArray  # the level's line price (NaN where no swing is in force)
    touch: BoolArray  # the bar reached the level's zone
    touched: BoolArray  # a touch lies in the confirmation window ending at the bar
    crossed: BoolArray  # a touch bar of that window traded at or beyond the line
    back: BoolArray  # the bar closed on the trade side of the line
    window_start: IntArray  # first bar of the confirmation window (one column)


def touches(c: Candles, s: _Swings, levels: Sequence[Level], window: int) -> _Touches:
    """Where each level is touched, and crossed and closed back beyond, within ``window`` bars."""
    n = len(c)
    near = np.array([level.zone[0] for level in levels])
    far = np.array([level.zone[1] for level in levels])
    ratio = np.array([level.line for level in levels])
    span = (s.high - s.low)[:, None]
    end, sign = s.end[:, None], s.sign[:, None]
    shallow_edge = end - sign * near * span
    deep_edge = end - sign * far * span
    line = end - sign * ratio * span
    high, low = c.high[:, None], c.low[:, None]
    # How deep the retracement had gone before bar t, since the swing's extreme: a zone it has passed
    # is not reached any more (price coming back to it from the far side is not a retracement).
    index = np.arange(n)
    after_end = s.end_index + 1
    deepest = np.where(s.up, range_min(c.low, after_end, index), -range_min(-c.high, after_end, index))
    reached = sign * (deepest[:, None] - deep_edge) >= 0
    overlap = (high >= np.minimum(shallow_edge, deep_edge)) & (low <= np.maximum(shallow_edge, deep_edge))
    touch = (s.valid & ~c.placeholder)[:, None] & overlap & reached
    extreme = np.where(s.up, c.low, c.high)[:, None]  # the side a retracement trades towards
    through = touch & (sign * (line - extreme) >= 0)
    window_start = np.maximum(index - window + 1, s.epoch_start)[:, None]
    return _Touches(
        line=line,
        touch=touch,
        touched=_last_true(touch) >= window_start,
        crossed=_last_true(through) >= window_start,
        back=sign * (c.close[:, None] - line) > 0,
        window_start=window_start,
    )


def first_signals(candidate: BoolArray, epoch: IntArray) -> BoolArray:
    """Where each level (column, deepest first) signals: once per swing, and never after a deeper level.

    A level fires on its first candidate bar of the swing's ``epoch`` unless a deeper level of the same
    swing fired before that bar (a deeper level firing on the same bar fires with it).
    """
    n, columns = candidate.shape
    fires = np.zeros_like(candidate)
    ids = np.unique(epoch[candidate.any(axis=1)])
    if ids.size == 0:
        return fires
    first = np.full((ids.size, columns), n)  # n: no candidate
    for column in range(columns):
        rows = np.flatnonzero(candidate[:, column])
        found, position = np.unique(epoch[rows], return_index=True)
        first[np.searchsorted(ids, found), column] = rows[position]
    blocked_after = np.full(ids.size, n)  # the first bar a deeper level fired on (n: none yet)
    for column in range(columns):
        bar = first[:, column]
        fire = (bar < n) & (bar <= blocked_after)
        fires[bar[fire], column] = True
        blocked_after = np.where(fire, np.minimum(blocked_after, bar), blocked_after)
    return fires


class FibReversalBot:
    """A reversal pattern or a close back beyond a Fibonacci retracement of the last confirmed swing."""

    name = "fib_reversal_bot"
    params_model = FibReversalParams

    def needs(self, params: FibReversalParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe: the swing in force and its pivots fit in it."""
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: FibReversalParams) -> Sequence[Setup]:
        """Every confirmed retracement reversal in ``data.candles``, oldest first."""
        c = data.candles
        if len(c) < 2 * params.pivot_bars + 2:
            return []  # not two pivots yet
        pivots = swing_pivots(c.high, c.low, params.pivot_bars)
        s = swings(pivots, len(c))
        if not s.valid.any():
            return []
        levels = levels_of(params)
        at = touches(c, s, levels, params.confirm_bars)
        bullish = _pattern_hits(c, BULLISH_PATTERNS, bullish=True)
        bearish = _pattern_hits(c, BEARISH_PATTERNS, bullish=False)
        pattern = np.where(s.up, bullish.any(axis=1), bearish.any(axis=1))
        stop = s.end - s.sign * params.stop_level * (s.high - s.low)
        entry_ok = (s.sign * (c.close - stop) > 0) & (s.sign * (s.end - c.close) > 0) & ~c.placeholder
        confirmed = (at.back & at.crossed) | pattern[:, None]
        candidate = at.touched & confirmed & entry_ok[:, None]

        fires = first_signals(candidate, s.latest)

        setups = []
        for i in np.flatnonzero(fires.any(axis=1)):
            t = int(i)
            named = np.flatnonzero(fires[t]).tolist()
            primary = named[0]  # the deepest level signalled on the bar
            long = bool(s.up[t])
            patterns, hits = (BULLISH_PATTERNS, bullish[t]) if long else (BEARISH_PATTERNS, bearish[t])
            found = [label for (_, label, _), hit in zip(patterns, hits, strict=True) if hit]
            if at.back[t, primary] and at.crossed[t, primary]:
                found.append("close back above" if long else "close back below")
            start = int(at.window_start[t, 0])
            touch_bar = start + int(np.flatnonzero(at.touch[start : t + 1, primary])[0])
            setups.append(
                _setup(
                    c,
                    pivots,
                    s,
                    t,
                    levels[primary],
                    [levels[column].name for column in named],
                    float(at.line[t, primary]),
                    float(stop[t]),
                    touch_bar,
                    " + ".join(found),
                )
            )
        return setups


def _setup(
    c: Candles,
    pivots: Pivots,
    s: _Swings,
    t: int,
    level: Level,
    named: list[str],
    line: float,
    stop: float,
    touch_bar: int,
    confirmation: str,
) -> Setup:
    """The setup of bar ``t``: ``level`` (and every level of ``named``) confirmed by ``confirmation``."""
    long = bool(s.up[t])
    swing_low, swing_high = float(s.low[t]), float(s.high[t])
    k = int(s.latest[t])
    pivot_points = tuple(
        KeyPoint(
            ts=int(c.ts[int(pivots.index[j])]),
            price=float(pivots.price[j]),
            label="swing high" if int(pivots.kind[j]) == HIGH else "swing low",
        )
        for j in (k - 1, k)
    )
    bars = c.low[touch_bar : t + 1] if long else c.high[touch_bar : t + 1]
    touch_price = float(bars.min() if long else bars.max())
    if level.name == "golden pocket":
        deep = float(s.end[t]) - float(s.sign[t]) * POCKET[1] * (swing_high - swing_low)
        edges = sorted((line, deep))
        where = f"the golden pocket {format_price(edges[0])}-{format_price(edges[1])}"
    else:
        where = f"the {level.name} level {format_price(line)}"
    origin, extreme = (swing_low, swing_high) if long else (swing_high, swing_low)
    closed = f" {format_price(line)}" if confirmation.endswith(("above", "below")) else ""
    return Setup(
        direction=Direction.LONG if long else Direction.SHORT,
        bar_ts=int(c.ts[t]),
        entry=float(c.close[t]),
        reason=(
            f"{'Up' if long else 'Down'}-swing {format_price(origin)} -> {format_price(extreme)} retraced to "
            f"{where} ({'low' if long else 'high'} {format_price(touch_price)}); "
            f"confirmed by {confirmation}{closed}"
        ),
        stop=stop,
        swing=(swing_low, swing_high),
        context={
            "swing": "up" if long else "down",
            "swing_low": swing_low,
            "swing_high": swing_high,
            "level": level.name,
            "levels": ",".join(named),
            "level_price": _sig(line),
            "touch_price": touch_price,
            "touch_bars_ago": t - touch_bar,
            "confirmation": confirmation,
        },
        key_points=(*pivot_points, KeyPoint(ts=int(c.ts[touch_bar]), price=_sig(line), label=level.name)),
    )
