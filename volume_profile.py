"""Volume profile of a candle window: POC, value area (VAH / VAL) and high-volume nodes.

Each candle's volume is spread evenly over its [low, high] range (the usual assumption when only
OHLCV is known), so a row receives the share of the candle's range that it overlaps. Everything is
vectorised with numpy: one candles x rows overlap matrix, no Python loop per candle or per row.

:func:`analyze_volume_profile` turns a profile, RSI and the last candle's TA-Lib pattern into a
LONG / SHORT / NEUTRAL reading with levels from :mod:`tp_sl_calculator`. Both functions are pure.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import talib

from common.types import Candles, Direction, FloatArray, Levels, Setup
from tp_sl_calculator import LevelsRejected, RejectReason, RiskSettings, atr, calculate_levels

__all__ = [
    "PATTERNS",
    "Bias",
    "ProfileAnalysis",
    "VolumeProfile",
    "analyze_volume_profile",
    "calculate_volume_profile",
]

# The value area is reached when the accumulated volume is within this relative slack of the
# target: with value_area_pct=100, float summation can end a hair below the total and would
# otherwise drag every empty row at the edges into the value area.
_VA_REL_TOL = 1e-12

#: TA-Lib candlestick patterns checked on the last closed candle. TA-Lib returns +100 (bullish),
#: -100 (bearish), +-80 for a weaker variant of some patterns, 0 for none; only the sign is used.
#: Hammer and morning star are bullish-only, shooting star and evening star bearish-only, engulfing
#: either way.
PATTERNS: tuple[str, ...] = (
    "CDLENGULFING",
    "CDLHAMMER",
    "CDLSHOOTINGSTAR",
    "CDLMORNINGSTAR",
    "CDLEVENINGSTAR",
)

#: RSI thresholds of the analysis: below OVERSOLD counts for LONG, above OVERBOUGHT for SHORT.
RSI_OVERSOLD = 30.0
RSI_OVERBOUGHT = 70.0

#: |score| needed for a LONG or SHORT reading: two agreeing factors, so no single one decides.
BIAS_THRESHOLD = 2

#: ATR period used for the levels of an analysis (the risk settings carry no period).
ATR_PERIOD = 14


def _readonly(array: FloatArray) -> FloatArray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class VolumeProfile:
    """Volume by price row for one window of candles.

    * ``edges``: ``n_rows + 1`` ascending prices; row ``i`` spans ``[edges[i], edges[i + 1]]``.
    * ``row_volume``: volume per row (base units, like the candles' volume); sums to ``total_volume``.
    * ``poc_index`` / ``poc_price``: the point of control, the row with the most volume (ties: the lowest
      row) and its midpoint.
    * ``val`` / ``vah``: lower edge of the lowest and upper edge of the highest value-area row;
      ``value_area_rows`` is that (lowest, highest) pair of row indices.
    * ``value_area_pct``: the target share of volume of the value area, in percent (70.0 = 70 %).
    * ``hvn_indices``: high-volume nodes, rows with volume > ``hvn_factor`` x the mean row volume.

    Arrays are read-only (profiles are shared like candles). ``eq=False`` because numpy arrays do not
    compare to a single bool.
    """

    edges: FloatArray
    row_volume: FloatArray
    poc_index: int
    poc_price: float
    vah: float
    val: float
    value_area_pct: float
    hvn_indices: tuple[int, ...]
    total_volume: float
    value_area_rows: tuple[int, int]

    @property
    def n_rows(self) -> int:
        """Number of price rows."""
        return int(self.row_volume.size)

    @property
    def row_height(self) -> float:
        """Height of one row in price (0 when every candle traded at one single price)."""
        return float(self.edges[1] - self.edges[0])


def _check_finite(candles: Candles, names: tuple[str, ...]) -> None:
    for name in names:
        values: FloatArray = getattr(candles, name)
        if not bool(np.isfinite(values).all()):
            raise ValueError(
                f"{candles.symbol} {candles.timeframe}: candles.{name} has NaN or infinite values"
            )


def _value_area(row_volume: FloatArray, poc: int, target: float) -> tuple[int, int]:
    """Rows (lowest, highest) of the value area grown from ``poc`` toward the larger neighbour.

    The reference procedure is a loop: start at the POC and add, one row at a time, the larger of the
    next row below and the next row above (tie: the row below) until the target is reached. That
    greedy walk is a merge of two sequences (rows going down, rows going up) by comparing their heads,
    and such a merge takes the elements in descending order of their running minimum along their own
    side: a row cannot be taken before a smaller row in front of it on its side, and once a side's
    running minimum drops below the other side's head, the other side goes first. So: key = running
    minimum per side, stable-sort by key descending (ties: below before above, then nearer first), take
    the cumulative sum in that order and cut where it reaches the target. The tests check this against
    the plain loop.
    """
    below = row_volume[:poc][::-1]  # rows poc-1, poc-2, ..., 0
    above = row_volume[poc + 1 :]  # rows poc+1, ..., n-1
    keys = np.concatenate([np.minimum.accumulate(below), np.minimum.accumulate(above)])
    side = np.concatenate([np.zeros(below.size, np.int64), np.ones(above.size, np.int64)])
    step = np.concatenate([np.arange(below.size), np.arange(above.size)])
    rows = np.where(side == 0, poc - 1 - step, poc + 1 + step)
    order = np.lexsort((step, side, -keys))  # last key is the primary one
    # Accumulate in the same order as the loop does, starting from the POC row: identical floats.
    accumulated = np.cumsum(np.concatenate([row_volume[poc : poc + 1], row_volume[rows[order]]]))
    reached = accumulated >= target * (1 - _VA_REL_TOL)
    taken = int(np.argmax(reached)) if bool(reached.any()) else accumulated.size - 1
    included = rows[order][:taken]
    low = min(poc, int(included.min())) if included.size else poc
    high = max(poc, int(included.max())) if included.size else poc
    return low, high


def calculate_volume_profile(
    candles: Candles, rows: int = 24, value_area_pct: float = 70.0, hvn_factor: float = 1.5
) -> VolumeProfile:
    """Volume profile of ``candles`` over ``rows`` equal price rows between the lowest low and highest high.

    Distribution: a candle's volume is spread evenly over its [low, high]; each row gets the fraction
    of the range it overlaps (the fractions are normalised so a candle hands out exactly its volume).
    A candle with high == low puts all its volume in the row containing its price; rows are half-open
    ``[lower edge, upper edge)`` for this, except the top row, which also holds the top edge. When every
    candle has high == low at one single price the profile has zero height: all edges equal that price
    and row 0 holds all the volume (POC, VAH and VAL are that price).

    POC: the row with the most volume; ties go to the lowest row. Value area: starting at the POC,
    the larger of the next row below and the next row above is added, one row at a time (tie: the row
    below), until at least ``value_area_pct`` percent of the volume is inside. HVN: rows with volume
    above ``hvn_factor`` x the mean row volume.

    Raises ValueError for no candles, NaN/infinite high, low or volume, a non-positive price, a high
    below its low, negative volume, zero total volume (a profile of nothing has no POC), ``rows`` < 1,
    ``value_area_pct`` outside (0, 100] or a non-positive ``hvn_factor``.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be an integer >= 1, got {rows!r}")
    if not (math.isfinite(value_area_pct) and 0 < value_area_pct <= 100):
        raise ValueError(f"value_area_pct is a percent in (0, 100], got {value_area_pct!r}")
    if not (math.isfinite(hvn_factor) and hvn_factor > 0):
        raise ValueError(f"hvn_factor must be a positive finite number, got {hvn_factor!r}")
    where = f"{candles.symbol} {candles.timeframe}"
    if len(candles) == 0:
        raise ValueError(f"{where}: no candles to build a volume profile from")
    _check_finite(candles, ("high", "low", "volume"))
    low, high, volume = candles.low, candles.high, candles.volume
    if bool((low <= 0).any()):
        raise ValueError(f"{where}: candles.low has zero or negative prices")
    if bool((high < low).any()):
        first = int(np.flatnonzero(high < low)[0])
        raise ValueError(
            f"{where}: candle {first} has high {float(high[first])!r} below low {float(low[first])!r}"
        )
    if bool((volume < 0).any()):
        raise ValueError(f"{where}: candles.volume has negative values")
    total = float(volume.sum())
    if total <= 0:
        raise ValueError(f"{where}: the candles have no volume, so there is no profile")

    bottom, top = float(low.min()), float(high.max())
    row_volume = np.zeros(rows, dtype=np.float64)
    if top == bottom:
        edges = np.full(rows + 1, bottom, dtype=np.float64)
        row_volume[0] = total
    else:
        # linspace pins the last edge to `top` exactly, so the highest high lands inside the profile.
        edges = np.linspace(bottom, top, rows + 1)
        span = high - low
        ranged = span > 0
        if bool(ranged.any()):
            lows, highs = low[ranged, None], high[ranged, None]
            overlap = np.minimum(highs, edges[None, 1:]) - np.maximum(lows, edges[None, :-1])
            np.clip(overlap, 0.0, None, out=overlap)
            # Dividing by the summed overlap rather than by high - low makes each candle hand out
            # exactly its volume, whatever the float error of the edges.
            row_volume += overlap.T @ (volume[ranged] / overlap.sum(axis=1))
        flat = ~ranged
        if bool(flat.any()):
            index = np.clip(np.searchsorted(edges, low[flat], side="right") - 1, 0, rows - 1)
            row_volume += np.bincount(index, weights=volume[flat], minlength=rows)

    poc = int(np.argmax(row_volume))  # argmax returns the first maximum: the lowest row wins ties
    va_low, va_high = _value_area(row_volume, poc, total * value_area_pct / 100.0)
    hvn = np.flatnonzero(row_volume > hvn_factor * row_volume.mean())
    return VolumeProfile(
        edges=_readonly(edges),
        row_volume=_readonly(row_volume),
        poc_index=poc,
        poc_price=float((edges[poc] + edges[poc + 1]) / 2),
        vah=float(edges[va_high + 1]),
        val=float(edges[va_low]),
        value_area_pct=float(value_area_pct),
        hvn_indices=tuple(int(i) for i in hvn),
        total_volume=total,
        value_area_rows=(va_low, va_high),
    )


class Bias(enum.StrEnum):
    """The reading of an analysis. NEUTRAL is no setup (it has no :class:`Direction`)."""

    LONG = "LONG"
    SHORT = "SHORT"
    NEUTRAL = "NEUTRAL"

    @property
    def direction(self) -> Direction | None:
        """The trade direction, None for NEUTRAL."""
        return None if self is Bias.NEUTRAL else Direction(self.value)


@dataclass(frozen=True, eq=False)
class ProfileAnalysis:
    """A profile read together with RSI and the last candle's pattern.

    ``score`` is the sum of the factors (+ for LONG, - for SHORT); ``factors`` lists each factor that
    contributed, as ``"+1 <what>"`` / ``"-1 <what>"``. ``rsi`` is None while there are too few candles
    (TA-Lib's RSI lookback equals its period). ``patterns`` maps each pattern of :data:`PATTERNS` that
    fired on the last candle to TA-Lib's value. ``levels`` is set for LONG / SHORT unless the level
    calculator rejected them, in which case ``rejection`` and ``rejection_message`` say why.
    """

    profile: VolumeProfile
    bias: Bias
    score: int
    factors: tuple[str, ...]
    close: float
    rsi: float | None
    patterns: Mapping[str, int]
    levels: Levels | None
    rejection: RejectReason | None
    rejection_message: str | None

    @property
    def direction(self) -> Direction | None:
        """LONG / SHORT, or None when NEUTRAL."""
        return self.bias.direction


def _num(value: float) -> str:
    return f"{value:.6g}"


# A factor is (weight, description): +1 counts for LONG, -1 for SHORT.
_Factor = tuple[int, str]


def _location_factor(close: float, profile: VolumeProfile) -> list[_Factor]:
    if close < profile.val:
        return [(1, f"close {_num(close)} below VAL {_num(profile.val)}")]
    if close > profile.vah:
        return [(-1, f"close {_num(close)} above VAH {_num(profile.vah)}")]
    return []


def _rsi_factor(rsi: float | None, period: int) -> list[_Factor]:
    if rsi is not None and rsi < RSI_OVERSOLD:
        return [(1, f"RSI({period}) {rsi:.1f} below {RSI_OVERSOLD:g}")]
    if rsi is not None and rsi > RSI_OVERBOUGHT:
        return [(-1, f"RSI({period}) {rsi:.1f} above {RSI_OVERBOUGHT:g}")]
    return []


def _pattern_factor(patterns: Mapping[str, int]) -> list[_Factor]:
    bullish = [name for name, value in patterns.items() if value > 0]
    bearish = [name for name, value in patterns.items() if value < 0]
    if len(bullish) > len(bearish):
        return [(1, f"bullish pattern {', '.join(bullish)}")]
    if len(bearish) > len(bullish):
        return [(-1, f"bearish pattern {', '.join(bearish)}")]
    return []


def _setup(
    candles: Candles,
    *,
    profile: VolumeProfile,
    direction: Direction,
    factors: tuple[str, ...],
    score: int,
    rsi: float | None,
) -> Setup:
    last_atr = float(atr(candles, ATR_PERIOD)[-1])
    bottom, top = float(profile.edges[0]), float(profile.edges[-1])
    context: dict[str, float | int | str | bool] = {
        "score": score,
        "poc": profile.poc_price,
        "vah": profile.vah,
        "val": profile.val,
    }
    if rsi is not None:
        context["rsi"] = rsi
    return Setup(
        direction=direction,
        bar_ts=int(candles.ts[-1]),
        entry=float(candles.close[-1]),
        reason="volume profile: " + "; ".join(factors),
        atr=last_atr if math.isfinite(last_atr) else None,
        swing=(bottom, top) if bottom < top else None,
        context=context,
    )


def analyze_volume_profile(
    candles: Candles,
    profile: VolumeProfile | None = None,
    rsi_period: int = 14,
    risk: RiskSettings | None = None,
    tick_size: float | None = None,
) -> ProfileAnalysis:
    """Read the last closed candle against the window's volume profile, RSI and candle patterns.

    Scoring (each factor is +1 for LONG or -1 for SHORT; the reading is LONG at score >= 2, SHORT at
    score <= -2, NEUTRAL otherwise, so two agreeing factors are needed and opposite ones cancel):

    * location: close below VAL +1 (price below value tends back to it); close above VAH -1;
    * RSI(``rsi_period``) of the closes: below 30 +1, above 70 -1;
    * candle pattern of the last candle (:data:`PATTERNS`): +1 if the bullish ones that fired outnumber
      the bearish ones, -1 for the reverse; together they count once, because one event often fires
      several (a morning star's third candle is usually a bullish engulfing too).

    For LONG / SHORT, levels come from :func:`tp_sl_calculator.calculate_levels` with ``risk``
    (RiskSettings() when None) on a setup whose entry is the last close, whose ATR is ATR(14) at the
    last candle (absent while too short) and whose swing is the profile's range (lowest low, highest
    high). ``profile`` must have been computed from the same ``candles``; it is computed when None.
    Raises ValueError for bad candles (see :func:`calculate_volume_profile`; open and close are checked
    too) or ``rsi_period`` < 2.
    """
    if not 2 <= rsi_period <= 100_000:
        raise ValueError(f"rsi_period must be 2..100000, got {rsi_period!r}")
    if profile is None:
        profile = calculate_volume_profile(candles)
    _check_finite(candles, ("open", "high", "low", "close"))
    close = float(candles.close[-1])
    if close <= 0 or float(candles.open[-1]) <= 0:
        raise ValueError(f"{candles.symbol} {candles.timeframe}: the last candle has a non-positive price")

    rsi_value = float(talib.RSI(candles.close, timeperiod=rsi_period)[-1])
    rsi = rsi_value if math.isfinite(rsi_value) else None
    ohlc = (candles.open, candles.high, candles.low, candles.close)
    fired = {name: int(getattr(talib, name)(*ohlc)[-1]) for name in PATTERNS}
    patterns = {name: value for name, value in fired.items() if value != 0}
    weighted = [*_location_factor(close, profile), *_rsi_factor(rsi, rsi_period), *_pattern_factor(patterns)]
    score = sum(weight for weight, _ in weighted)
    factors = tuple(f"{weight:+d} {text}" for weight, text in weighted)
    if score >= BIAS_THRESHOLD:
        bias = Bias.LONG
    elif score <= -BIAS_THRESHOLD:
        bias = Bias.SHORT
    else:
        bias = Bias.NEUTRAL

    levels: Levels | None = None
    rejection: RejectReason | None = None
    rejection_message: str | None = None
    direction = bias.direction
    if direction is not None:
        setup = _setup(candles, profile=profile, direction=direction, factors=factors, score=score, rsi=rsi)
        try:
            levels = calculate_levels(setup, risk if risk is not None else RiskSettings(), tick_size)
        except LevelsRejected as rejected:
            rejection, rejection_message = rejected.reason, str(rejected)

    return ProfileAnalysis(
        profile=profile,
        bias=bias,
        score=score,
        factors=factors,
        close=close,
        rsi=rsi,
        patterns=MappingProxyType(patterns),
        levels=levels,
        rejection=rejection,
        rejection_message=rejection_message,
    )
