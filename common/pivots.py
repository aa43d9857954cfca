"""Swing pivots: the highs and lows that structure-based strategies measure from.

:func:`swing_pivots` finds fractal swing points. With ``lookback`` L:

* bar i is a **swing high** when ``high[i]`` is the highest high of the 2L + 1 bars ``i - L .. i + L``:
  strictly above every high of the L bars before it and at least as high as every high of the L bars
  after it;
* bar i is a **swing low** when ``low[i]`` is the lowest low of the same window: strictly below every
  low before it and at most every low after it.

Ties: a run of equal highs inside one window (a flat top) gives exactly one swing high, at the FIRST
bar of the run (it is ``numpy.argmax``'s first maximum of its window; the later equal bars are not
strictly above it). A rule strict on both sides would drop such a top altogether (an equal high a
few bars later, common at tick resolution, would erase a real swing), and a rule loose on both sides
would report one top several times. Equal lows mirror this.

Only bars with a complete window can be pivots: the first and the last L bars never are.

**Confirmation.** A pivot needs the L bars after it, so it is known only at the close of bar
``i + L``: ``confirmed_at``. A strategy deciding at bar t may use only the pivots with
``confirmed_at <= t`` (:func:`known_at`, :func:`known_counts`); then its result at t depends on bars
<= t only, and scanning the first t + 1 bars finds exactly the pivots that scanning the whole series
reports as known at t (the tests check this).

:func:`zigzag` finds alternating highs and lows that are each at least a minimum move (an absolute
amount per bar, e.g. 3 x ATR, or a percent of the pivot's price) and at least ``min_bars`` bars
apart; its own section is in the function's docstring.

:class:`Pivots` is the container both pivot finders return: parallel read-only arrays ordered by
``confirmed_at`` (then bar, then kind, lows first), so that the pivots known at any bar are a prefix
of the arrays. A bar that is both a swing high and a swing low (an outside bar towering over its
neighbours both ways) gives two pivots, the low first; OHLC data does not tell which extreme came
first within the bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from common.types import FloatArray, IntArray

__all__ = ["HIGH", "LOW", "Pivots", "known_at", "known_counts", "swing_pivots", "zigzag"]

#: ``Pivots.kind`` of a swing high.
HIGH = 1
#: ``Pivots.kind`` of a swing low.
LOW = -1

BoolArray = npt.NDArray[np.bool_]


def _frozen(values: npt.ArrayLike, dtype: type[np.generic]) -> Any:
    array = np.ascontiguousarray(values, dtype=dtype).view()
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Pivots:
    """Swing points of one series as parallel read-only arrays, ordered by ``confirmed_at``.

    * ``index``: the pivot's bar (position in the series the pivots were found in);
    * ``price``: its high (swing high) or low (swing low);
    * ``kind``: :data:`HIGH` (+1) or :data:`LOW` (-1);
    * ``confirmed_at``: the bar at whose close the pivot becomes known (>= ``index``).

    Construction checks the sizes, the kinds and the order. ``eq=False``: numpy arrays do not compare
    to a single bool.
    """

    index: IntArray
    price: FloatArray
    kind: IntArray
    confirmed_at: IntArray

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "index", _frozen(self.index, np.int64))
        set_(self, "price", _frozen(self.price, np.float64))
        set_(self, "kind", _frozen(self.kind, np.int64))
        set_(self, "confirmed_at", _frozen(self.confirmed_at, np.int64))
        size = self.index.size
        for name in ("index", "price", "kind", "confirmed_at"):
            array = getattr(self, name)
            if array.ndim != 1 or array.size != size:
                raise ValueError(f"pivots.{name} must be one-dimensional with {size} values")
        if not bool(np.isin(self.kind, (HIGH, LOW)).all()):
            raise ValueError("pivots.kind must be +1 (high) or -1 (low)")
        if bool((self.confirmed_at < self.index).any()):
            raise ValueError("a pivot cannot be confirmed before its own bar")
        if size > 1 and bool((np.diff(self.confirmed_at) < 0).any()):
            raise ValueError("pivots must be ordered by confirmed_at")

    def __len__(self) -> int:
        return int(self.index.size)

    def select(self, which: slice | BoolArray | IntArray) -> Pivots:
        """The pivots picked by a slice, a boolean mask or ascending positions (order is kept)."""
        return Pivots(
            index=self.index[which],
            price=self.price[which],
            kind=self.kind[which],
            confirmed_at=self.confirmed_at[which],
        )

    @property
    def highs(self) -> Pivots:
        """Only the swing highs."""
        return self.select(self.kind == HIGH)

    @property
    def lows(self) -> Pivots:
        """Only the swing lows."""
        return self.select(self.kind == LOW)


def _price_arrays(high: npt.ArrayLike, low: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``high`` and ``low`` as float arrays, checked: one-dimensional, equally long, finite."""
    highs = np.asarray(high, dtype=np.float64)
    lows = np.asarray(low, dtype=np.float64)
    if highs.ndim != 1 or highs.shape != lows.shape:
        raise ValueError(
            f"high and low must be one-dimensional and equally long, got {highs.shape}, {lows.shape}"
        )
    if not (bool(np.isfinite(highs).all()) and bool(np.isfinite(lows).all())):
        raise ValueError("high and low must be finite (no NaN or infinite values)")
    return highs, lows


def _window_extremes(values: FloatArray, lookback: int, *, highest: bool) -> IntArray:
    """Bars whose value is the first maximum (``highest``) or first minimum of their centred window."""
    width = 2 * lookback + 1
    if values.size < width:
        return np.empty(0, dtype=np.int64)
    windows = sliding_window_view(values, width)
    # argmax / argmin return the FIRST extreme of each window: the centre wins only when it is strictly
    # beyond every earlier bar of the window and at least equal to every later one.
    first = windows.argmax(axis=1) if highest else windows.argmin(axis=1)
    centres: IntArray = np.flatnonzero(first == lookback).astype(np.int64) + lookback
    return centres


def swing_pivots(high: npt.ArrayLike, low: npt.ArrayLike, lookback: int) -> Pivots:
    """Swing highs and lows of ``lookback`` bars each side (see the module docstring), oldest first.

    ``confirmed_at`` is ``index + lookback``. Raises ValueError for arrays of different lengths or not
    one-dimensional, NaN or infinite values, or ``lookback`` < 1.
    """
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 1:
        raise ValueError(f"lookback must be an integer >= 1, got {lookback!r}")
    highs, lows = _price_arrays(high, low)
    lookback = int(lookback)
    top = _window_extremes(highs, lookback, highest=True)
    bottom = _window_extremes(lows, lookback, highest=False)
    index = np.concatenate([top, bottom])
    kind = np.concatenate([np.full(top.size, HIGH, np.int64), np.full(bottom.size, LOW, np.int64)])
    price = np.concatenate([highs[top], lows[bottom]])
    order = np.lexsort((kind, index))  # by bar, then lows (-1) before highs (+1)
    return Pivots(
        index=index[order],
        price=price[order],
        kind=kind[order],
        confirmed_at=index[order] + lookback,
    )


def known_at(pivots: Pivots, t: int) -> BoolArray:
    """Mask of the pivots known at the close of bar ``t`` (confirmed at or before it)."""
    mask: BoolArray = pivots.confirmed_at <= t
    return mask


def known_counts(pivots: Pivots, bars: npt.ArrayLike) -> IntArray:
    """For each bar of ``bars``: how many pivots are known at its close.

    Pivots are ordered by ``confirmed_at``, so the pivots known at bar t are ``pivots.select(slice(0,
    known_counts(pivots, [t])[0]))``: the last known one is at position count - 1.
    """
    counts: IntArray = np.searchsorted(pivots.confirmed_at, np.asarray(bars, dtype=np.int64), side="right")
    return counts.astype(np.int64, copy=False)


def _zigzag_thresholds(
    highs: FloatArray, lows: FloatArray, min_move: npt.ArrayLike | None, min_move_pct: float | None
) -> tuple[FloatArray, FloatArray, int]:
    """(move a high pivot needs, move a low pivot needs, first usable bar) at each bar; checks the inputs."""
    if (min_move is None) == (min_move_pct is None):
        raise ValueError("give exactly one of min_move and min_move_pct")
    if min_move_pct is not None:
        if isinstance(min_move_pct, bool) or not (math.isfinite(min_move_pct) and min_move_pct > 0):
            raise ValueError(f"min_move_pct must be a positive finite percent, got {min_move_pct!r}")
        return highs * (min_move_pct / 100.0), lows * (min_move_pct / 100.0), 0
    moves = np.asarray(min_move, dtype=np.float64)
    if moves.ndim == 0:
        moves = np.full(highs.shape, float(moves))
    if moves.shape != highs.shape:
        raise ValueError(f"min_move must be a number or one value per bar ({highs.size}), got {moves.shape}")
    finite = np.isfinite(moves)
    start = int(np.argmax(finite)) if bool(finite.any()) else moves.size
    if not bool(finite[start:].all()):
        raise ValueError("min_move may be NaN only before its first value (a warm-up), not after it")
    if bool((moves[start:] < 0).any()):
        raise ValueError("min_move must not be negative")
    return moves, moves, start


def zigzag(
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    *,
    min_move: npt.ArrayLike | None = None,
    min_move_pct: float | None = None,
    min_bars: int = 3,
) -> Pivots:
    """Zigzag pivots: alternating highs and lows, each confirmed once price has left it far enough.

    The minimum move is exactly one of:

    * ``min_move``: an absolute price move per bar (an array as long as the series, e.g.
      ``3 * talib.ATR(high, low, close, 14)``, or one number for every bar). Leading NaNs are a warm-up:
      the zigzag starts at the first bar with a value. A NaN after that or a negative value is an error.
    * ``min_move_pct``: a percent of the pivot's own price (``5.0``: a high at 100 needs a fall to 95).

    The move a pivot needs is the threshold **at the pivot's bar** (fixed once the pivot is set; the
    confirming bar's volatility does not move the goalposts), and it must be positive as well as at
    least the threshold (a zero threshold still needs a strictly lower low / higher high).

    The rule, walking forward one bar at a time (the recursion is sequential by nature, so this is a
    plain loop over Python floats: about 15 ms for 50,000 bars, see bench/bench_harmonic_bot.py):

    * There is always one **tentative** pivot. A bar whose high is strictly above a tentative high
      replaces it (a new extreme in the current direction; equal highs keep the first bar); lows mirror.
    * A tentative high at bar i is **confirmed** at the first bar t >= i + ``min_bars`` whose low is at
      least the threshold below it. That bar's low becomes the tentative low (no bar from i +
      ``min_bars`` to t - 1 went as low, or it would have confirmed the high). Mirror for a low.
      The bars between i and i + ``min_bars`` neither confirm the high nor become the next low: a
      reversal faster than ``min_bars`` is part of the leg, not a pivot (a top ``min_bars`` - 1 bars
      after a low is passed over for the highest high from the low's confirming bar on).
    * Start: until the first confirmation both the highest high and the lowest low so far are
      tentative; whichever is confirmed first is the first pivot (both on the same bar: the earlier
      one, the low when they are the same bar), and the search continues from there.

    Guarantees, which the tests check: highs and lows alternate; consecutive pivots are at least
    ``min_bars`` bars apart (each leg has at least ``min_bars`` candles after its first pivot) and at
    least the first one's threshold apart in price, a high above the low before and after it;
    ``confirmed_at >= index + min_bars``; a confirmed pivot never changes. Only confirmed pivots are
    returned (the last tentative one is not), and each is confirmed using bars <= ``confirmed_at`` only:
    the zigzag of bars 0..t holds exactly the pivots of the full series' zigzag with ``confirmed_at <=
    t``. ``confirmed_at`` is strictly increasing.

    Raises ValueError for bad arrays (as :func:`swing_pivots`), not exactly one of ``min_move`` and
    ``min_move_pct``, a bad threshold, or ``min_bars`` < 1.
    """
    if isinstance(min_bars, bool) or not isinstance(min_bars, int | np.integer) or min_bars < 1:
        raise ValueError(f"min_bars must be an integer >= 1, got {min_bars!r}")
    highs, lows = _price_arrays(high, low)
    high_moves, low_moves, start = _zigzag_thresholds(highs, lows, min_move, min_move_pct)
    walk = _ZigzagWalk(highs.tolist(), lows.tolist(), high_moves.tolist(), low_moves.tolist(), int(min_bars))
    walk.run(start)
    return Pivots(
        index=np.array(walk.index, dtype=np.int64),
        price=np.array(walk.price, dtype=np.float64),
        kind=np.array(walk.kind, dtype=np.int64),
        confirmed_at=np.array(walk.confirmed, dtype=np.int64),
    )


class _ZigzagWalk:
    """The zigzag's sequential walk, over Python lists (indexing numpy arrays per bar is much slower)."""

    def __init__(
        self, hs: list[float], ls: list[float], up: list[float], down: list[float], bars: int
    ) -> None:
        self.hs, self.ls, self.up, self.down, self.bars = hs, ls, up, down, bars
        self.index: list[int] = []
        self.price: list[float] = []
        self.kind: list[int] = []
        self.confirmed: list[int] = []

    def _confirm(self, index: int, price: float, kind: int, at: int) -> None:
        self.index.append(index)
        self.price.append(price)
        self.kind.append(kind)
        self.confirmed.append(at)

    def run(self, start: int) -> None:
        """Find the first pivot from bar ``start``, then walk on from its confirming bar."""
        hs, ls, up, down, bars = self.hs, self.ls, self.up, self.down, self.bars
        if start >= len(hs):
            return
        # Start: the highest high and the lowest low so far are both tentative.
        top_i, top, bottom_i, bottom = start, hs[start], start, ls[start]
        for t in range(start + 1, len(hs)):
            h, lo = hs[t], ls[t]
            if h > top:
                top_i, top = t, h
            if lo < bottom:
                bottom_i, bottom = t, lo
            high_done = t - top_i >= bars and top - lo >= up[top_i] and lo < top
            low_done = t - bottom_i >= bars and h - bottom >= down[bottom_i] and h > bottom
            if low_done and (not high_done or bottom_i <= top_i):
                self._confirm(bottom_i, bottom, LOW, t)
                self._walk(t + 1, HIGH, t, h)
                return
            if high_done:
                self._confirm(top_i, top, HIGH, t)
                self._walk(t + 1, LOW, t, lo)
                return

    def _walk(self, start: int, tentative: int, pivot_i: int, pivot: float) -> None:
        """From bar ``start`` on, with a tentative pivot of kind ``tentative`` at ``pivot_i``."""
        hs, ls, up, down, bars = self.hs, self.ls, self.up, self.down, self.bars
        for t in range(start, len(hs)):
            if tentative == HIGH:
                h = hs[t]
                if h > pivot:
                    pivot_i, pivot = t, h
                elif t - pivot_i >= bars and pivot - ls[t] >= up[pivot_i] and ls[t] < pivot:
                    self._confirm(pivot_i, pivot, HIGH, t)
                    tentative, pivot_i, pivot = LOW, t, ls[t]
            else:
                lo = ls[t]
                if lo < pivot:
                    pivot_i, pivot = t, lo
                elif t - pivot_i >= bars and hs[t] - pivot >= down[pivot_i] and hs[t] > pivot:
                    self._confirm(pivot_i, pivot, LOW, t)
                    tentative, pivot_i, pivot = HIGH, t, hs[t]
