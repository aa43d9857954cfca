"""Entry, stop-loss and take-profit levels for a setup: the numbers every alert carries.

``calculate_levels`` turns a strategy's :class:`~common.types.Setup` into :class:`~common.types.Levels`
or rejects it with a :class:`LevelsRejected` that names the reason and the numbers. The same module
sizes positions (:func:`position_size`), trails stops (:class:`TrailingStop`) and wraps TA-Lib's ATR.

Conventions used throughout:

* Percentages are percent, not fractions: ``0.2`` means 0.2 % (a fifth of one percent).
* "Beyond" is direction-aware: for a LONG a stop is beyond a level when it is lower, a target when it
  is higher; a SHORT mirrors both.
* With a tick size, entry is rounded to the nearest tick (exact halves go to the even tick), stops and
  targets are rounded against the trade (stop away from entry, targets toward it), so rounding never
  makes a reported risk:reward look better than the unrounded one.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from itertools import pairwise
from typing import Annotated, Any, Literal

import numpy as np
import talib
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, field_validator, model_validator

from common.errors import FleetError
from common.types import Candles, Direction, FloatArray, Levels, Setup

__all__ = [
    "LevelsRejected",
    "PositionSize",
    "RejectReason",
    "RiskSettings",
    "TrailingStop",
    "atr",
    "calculate_levels",
    "normalise_direction",
    "position_size",
    "quick_calculate",
]

# Comparisons against configured bounds (min_stop_pct, max_stop_pct, min_rr) allow this relative slack,
# so a level that sits exactly on a bound is not rejected because (100 - 99.8) / 100 * 100 came out
# as 0.19999999999999574 instead of 0.2.
_BOUND_REL_TOL = 1e-9

# TA-Lib refuses time periods above this (TA_BAD_PARAM); checking first gives a readable message.
_TALIB_MAX_PERIOD = 100_000

_PositiveFloat = Annotated[StrictFloat, Field(gt=0)]


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


class RiskSettings(BaseModel):
    """How levels are placed and which ones are acceptable; layered global -> bot -> symbol.

    Percent fields are percent of the entry price (``0.2`` = 0.2 %). Numbers must be finite; ints are
    accepted where floats are expected, booleans and strings are not (``true`` for a multiplier in
    global_config.json is a mistake, not 1.0). Invalid values raise ``pydantic.ValidationError``.

    * ``sl_method``: ``atr`` (entry -/+ ``sl_atr_mult`` x ATR), ``structure`` (beyond the strategy's
      stop, or beyond the swing extreme when it has none) or ``fibonacci`` (beyond the swing's origin).
    * ``sl_buffer_pct``: extra distance beyond the stop, in percent of entry (all methods).
    * ``tp_method``: ``atr`` (``tp_multiples`` are ATR multiples), ``r`` (``tp_multiples`` are multiples
      of the risk, i.e. of the entry-to-stop distance), ``fibonacci`` (``fib_extensions`` of the swing)
      or ``setup`` (the strategy's own absolute ``Setup.targets``, e.g. consensus_bot's mean targets).
    * ``min_rr``: minimum reward:risk of TP1.
    * ``min_stop_pct`` / ``max_stop_pct``: allowed entry-to-stop distance, percent of entry.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    sl_method: Literal["atr", "structure", "fibonacci"] = "atr"
    sl_atr_mult: StrictFloat = Field(default=1.5, gt=0)
    sl_buffer_pct: StrictFloat = Field(default=0.0, ge=0)
    tp_method: Literal["atr", "r", "fibonacci", "setup"] = "r"
    tp_multiples: tuple[_PositiveFloat, ...] = Field(default=(1.5, 2.5, 4.0), min_length=1, max_length=3)
    fib_extensions: tuple[_PositiveFloat, ...] = Field(
        default=(1.0, 1.272, 1.618), min_length=1, max_length=3
    )
    min_rr: StrictFloat = Field(default=1.5, ge=0)
    min_stop_pct: StrictFloat = Field(default=0.2, ge=0)
    max_stop_pct: StrictFloat = Field(default=10.0, gt=0)

    @field_validator("tp_multiples", "fib_extensions")
    @classmethod
    def _strictly_increasing(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        # TP1 < TP2 < TP3 is a promise of Levels; equal multiples would build two identical targets.
        if any(later <= earlier for earlier, later in pairwise(values)):
            raise ValueError(f"values must be strictly increasing, got {list(values)}")
        return values

    @model_validator(mode="after")
    def _stop_bounds_ordered(self) -> RiskSettings:
        if self.min_stop_pct >= self.max_stop_pct:
            raise ValueError(
                f"min_stop_pct {self.min_stop_pct} must be below max_stop_pct {self.max_stop_pct}"
            )
        return self

    def merged(self, overrides: Mapping[str, Any]) -> RiskSettings:
        """A validated copy with ``overrides`` applied on top (unknown keys and bad values raise).

        Global defaults -> bot overrides -> symbol overrides are layered by chaining this call; the
        whole result is re-validated, so an override that breaks a cross-field rule (e.g. a bot's
        ``min_stop_pct`` above the global ``max_stop_pct``) is reported where it is applied.
        """
        return type(self).model_validate({**self.model_dump(), **dict(overrides)})


# --------------------------------------------------------------------------------------------------
# Rejections
# --------------------------------------------------------------------------------------------------


class RejectReason(enum.StrEnum):
    """Why a setup got no levels. The value is the name, so it reads the same in logs and events."""

    STOP_TOO_TIGHT = "STOP_TOO_TIGHT"
    STOP_TOO_WIDE = "STOP_TOO_WIDE"
    RR_TOO_LOW = "RR_TOO_LOW"
    WRONG_SIDE = "WRONG_SIDE"
    MISSING_SWING = "MISSING_SWING"
    MISSING_ATR = "MISSING_ATR"
    MISSING_TARGETS = "MISSING_TARGETS"


class LevelsRejected(FleetError):
    """A setup whose levels break a rule; ``reason`` says which, the message names the numbers."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# Tick rounding
# --------------------------------------------------------------------------------------------------


class _Round(enum.Enum):
    NEAREST = "nearest"
    DOWN = "down"
    UP = "up"


@lru_cache(maxsize=256)
def _tick_decimals(tick: float) -> int:
    # repr gives the shortest decimal that round-trips (0.01 -> '0.01', 1e-08 -> '1e-08'), so the
    # tick's own decimals are exact even though 0.01 is not exactly representable as a float.
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _round_to_tick(price: float, tick: float, mode: _Round) -> float:
    steps = price / tick
    nearest = round(steps)
    # 123.45 / 0.01 is 12344.999999999998 in floats: a price already on the grid must stay where it
    # is, so a value within float noise of a whole number of ticks counts as on the grid. The slack
    # grows with the magnitude (ulp) because the noise does.
    if abs(steps - nearest) <= max(1e-9, 16 * math.ulp(steps)):
        count = nearest
    elif mode is _Round.DOWN:
        count = math.floor(steps)
    elif mode is _Round.UP:
        count = math.ceil(steps)
    else:
        count = nearest
    # count * tick carries float noise (3 * 0.1 = 0.30000000000000004); rounding to the tick's
    # decimals returns the float closest to the exact grid value.
    # float(): an integer tick (1, 5) would otherwise return an int.
    return float(round(count * tick, _tick_decimals(tick)))


def _round_against(price: float, sign: int, tick: float | None) -> float:
    """Round a stop or a target against the trade: down for a LONG, up for a SHORT.

    For a LONG that moves the stop away from entry and a target toward it (SHORT: the mirror), which
    is exactly the rule that keeps rounding from improving the risk:reward.
    """
    if tick is None:
        return price
    return _round_to_tick(price, tick, _Round.DOWN if sign > 0 else _Round.UP)


def _check_tick(tick_size: float | None) -> None:
    if tick_size is not None and not (math.isfinite(tick_size) and tick_size > 0):
        raise ValueError(f"tick_size must be a positive finite number or None, got {tick_size!r}")


def _price(value: float) -> str:
    return f"{value:.10g}"


def _pct(value: float) -> str:
    return f"{value:.4g}%"


# --------------------------------------------------------------------------------------------------
# Levels
# --------------------------------------------------------------------------------------------------


def _require_inputs(setup: Setup, risk: RiskSettings) -> None:
    """Reject a setup that lacks what the configured methods measure from (ATR, a swing)."""
    if setup.atr is None and (risk.sl_method == "atr" or risk.tp_method == "atr"):
        user = "stop needs" if risk.sl_method == "atr" else "targets need"
        raise LevelsRejected(RejectReason.MISSING_ATR, f"ATR-based {user} setup.atr, which is missing")
    if risk.sl_method == "structure" and setup.stop is None and setup.swing is None:
        raise LevelsRejected(
            RejectReason.MISSING_SWING, "structure stop needs setup.stop or setup.swing; both are missing"
        )
    if risk.tp_method == "setup" and not setup.targets:
        raise LevelsRejected(
            RejectReason.MISSING_TARGETS, "setup targets are asked for, and setup.targets is empty"
        )
    if setup.swing is None and "fibonacci" in (risk.sl_method, risk.tp_method):
        user = "stop needs" if risk.sl_method == "fibonacci" else "targets need"
        raise LevelsRejected(RejectReason.MISSING_SWING, f"Fibonacci {user} setup.swing, which is missing")


def _stop_anchor(setup: Setup, risk: RiskSettings) -> float:
    """The structural price a structure or Fibonacci stop goes beyond."""
    long = setup.direction is Direction.LONG
    if risk.sl_method == "structure" and setup.stop is not None:
        return setup.stop
    assert setup.swing is not None  # _require_inputs ran first
    low, high = setup.swing
    return low if long else high


def _raw_stop(setup: Setup, risk: RiskSettings, entry: float, shift: float) -> float:
    sign = setup.direction.sign
    # The buffer is a distance measured on the setup's own entry, so rounding the entry never
    # shrinks it.
    buffer = setup.entry * risk.sl_buffer_pct / 100.0
    if risk.sl_method == "atr":
        assert setup.atr is not None  # _require_inputs ran first
        # A distance from entry: applied to the rounded entry, which the alert shows.
        return entry - sign * (risk.sl_atr_mult * setup.atr + buffer)
    anchor = _stop_anchor(setup, risk)
    if (setup.entry - anchor) * sign <= 0:
        side = "below" if sign > 0 else "above"
        raise LevelsRejected(
            RejectReason.WRONG_SIDE,
            f"{risk.sl_method} stop {_price(anchor)} is not {side} the {setup.direction} "
            f"entry {_price(setup.entry)}",
        )
    # An absolute price: it does not move with the entry, except that when rounding moved the entry
    # toward it (shift > 0) it moves by as much, so the risk never shrinks through rounding.
    return anchor - sign * (buffer + shift)


def _raw_targets(
    setup: Setup, risk: RiskSettings, entry: float, risk_distance: float, shift: float
) -> list[float]:
    sign = setup.direction.sign
    if risk.tp_method == "atr":
        assert setup.atr is not None  # _require_inputs ran first
        return [entry + sign * multiple * setup.atr for multiple in risk.tp_multiples]
    if risk.tp_method == "r":
        return [entry + sign * multiple * risk_distance for multiple in risk.tp_multiples]
    if risk.tp_method == "setup":
        targets = list(setup.targets)
        names = [f"setup TP{n} {_price(t)}" for n, t in enumerate(targets, start=1)]
    else:
        assert setup.swing is not None  # _require_inputs ran first
        low, high = setup.swing
        origin = low if sign > 0 else high
        targets = [origin + sign * extension * (high - low) for extension in risk.fib_extensions]
        names = [
            f"Fibonacci TP{n} {_price(t)} ({e:g} extension of {_price(low)}-{_price(high)})"
            for n, (t, e) in enumerate(zip(targets, risk.fib_extensions, strict=True), start=1)
        ]
    previous, label = setup.entry, "entry"
    for number, target in enumerate(targets, start=1):
        if (target - previous) * sign <= 0:
            raise LevelsRejected(
                RejectReason.WRONG_SIDE, f"{names[number - 1]} is not beyond {label} {_price(previous)}"
            )
        previous, label = target, f"TP{number}"
    # Absolute prices, shifted with the entry like an absolute stop, so the reward never grows
    # through rounding.
    return [target - sign * shift for target in targets]


def calculate_levels(setup: Setup, risk: RiskSettings, tick_size: float | None = None) -> Levels:
    """Place stop and targets for ``setup`` by ``risk``'s methods, check them, return :class:`Levels`.

    Stop (``risk.sl_method``), LONG shown, SHORT mirrors; every stop then goes ``sl_buffer_pct`` percent
    of entry further:

    * ``atr``: entry - ``sl_atr_mult`` x ``setup.atr``.
    * ``structure``: ``setup.stop``; when it is None, the swing low (``setup.swing[0]``).
    * ``fibonacci``: the swing's origin, the swing low.

    Targets (``risk.tp_method``): ``atr``: entry + m x atr; ``r``: entry + m x risk, where risk is the
    entry-to-stop distance AFTER rounding; ``fibonacci``: low + e x (high - low) (SHORT:
    high - e x (high - low)).

    With ``tick_size`` the entry goes to the nearest tick, then distances (ATR stop, ATR and R targets)
    are measured from the rounded entry; absolute prices (structure and Fibonacci stops, Fibonacci
    targets) stay put unless rounding moved the entry toward the stop, in which case they move with it
    by the same amount. Stops are then rounded away from entry and targets toward it. The result: no
    target's reported R:R is higher than it would be without a tick size.

    Checks, in this order; the first failure raises :class:`LevelsRejected`:

    1. MISSING_ATR / MISSING_SWING: a method lacks its input.
    2. WRONG_SIDE: a structure/Fibonacci stop that is not beyond the entry.
    3. STOP_TOO_WIDE if the rounded stop is at or below zero; STOP_TOO_TIGHT / STOP_TOO_WIDE when the
       rounded distance is outside [min_stop_pct, max_stop_pct] (the bounds themselves pass).
    4. WRONG_SIDE: a Fibonacci target not beyond entry or the previous target, or any target that is
       not a positive price (a SHORT target at or below zero cannot be reached).
    5. RR_TOO_LOW: rounding collapsed a target onto entry or onto the previous target (the tick is too
       coarse for the targets), or TP1's R:R is below ``min_rr``. That R:R uses the rounded entry and
       stop but TP1 before its own rounding: rounding a target toward entry by less than one tick never
       rejects a setup on its own (otherwise ``r`` targets at exactly ``min_rr`` would fail on every
       other setup), while a stop widened by rounding does count.

    Raises ``ValueError`` for a bad ``tick_size`` (not finite or <= 0) or an entry that rounds to zero.
    """
    _check_tick(tick_size)
    direction = setup.direction
    sign = direction.sign
    entry = setup.entry
    if tick_size is not None:
        entry = _round_to_tick(setup.entry, tick_size, _Round.NEAREST)
        if entry <= 0:
            raise ValueError(f"entry {_price(setup.entry)} rounds to 0 at tick size {tick_size:g}")
    # How far rounding moved the entry toward the stop (0 when it moved toward the targets).
    shift = max(0.0, sign * (setup.entry - entry))

    _require_inputs(setup, risk)
    sl = _round_against(_raw_stop(setup, risk, entry, shift), sign, tick_size)
    if sl <= 0:
        raise LevelsRejected(
            RejectReason.STOP_TOO_WIDE,
            f"{direction} stop {_price(sl)} is not a positive price (entry {_price(entry)})",
        )
    distance = sign * (entry - sl)
    distance_pct = distance / entry * 100.0
    if distance <= 0 or distance_pct < risk.min_stop_pct * (1 - _BOUND_REL_TOL):
        raise LevelsRejected(
            RejectReason.STOP_TOO_TIGHT,
            f"stop {_pct(distance_pct)} from entry is tighter than the minimum {_pct(risk.min_stop_pct)}",
        )
    if distance_pct > risk.max_stop_pct * (1 + _BOUND_REL_TOL):
        raise LevelsRejected(
            RejectReason.STOP_TOO_WIDE,
            f"stop {_pct(distance_pct)} from entry is wider than the maximum {_pct(risk.max_stop_pct)}",
        )

    raw_targets = _raw_targets(setup, risk, entry, distance, shift)
    for number, target in enumerate(raw_targets, start=1):
        if target <= 0:
            raise LevelsRejected(
                RejectReason.WRONG_SIDE, f"{direction} TP{number} {_price(target)} is not a positive price"
            )
    tps = tuple(_round_against(target, sign, tick_size) for target in raw_targets)
    previous, label = entry, "entry"
    for number, tp in enumerate(tps, start=1):
        if (tp - previous) * sign <= 0:
            at_tick = "" if tick_size is None else f" at tick size {tick_size:g}"
            raise LevelsRejected(
                RejectReason.RR_TOO_LOW,
                f"TP{number} {_price(tp)} is not beyond {label} {_price(previous)}{at_tick}",
            )
        previous, label = tp, f"TP{number}"
    rr = sign * (raw_targets[0] - entry) / distance
    if rr < risk.min_rr * (1 - _BOUND_REL_TOL):
        raise LevelsRejected(
            RejectReason.RR_TOO_LOW, f"TP1 risk:reward {rr:.3g} is below the minimum {risk.min_rr:g}"
        )
    return Levels(direction=direction, entry=entry, sl=sl, tps=tps)


def quick_calculate(
    entry: float,
    direction: str,
    atr: float,
    *,
    sl_mult: float = 1.5,
    tp_multiples: Sequence[float] = (1.5, 2.5, 4.0),
    tick_size: float | None = None,
) -> Levels:
    """ATR stop (``sl_mult`` x ``atr``) and R-multiple targets for a bare price, for scripts.

    ``tp_multiples`` are multiples of the risk (the ``r`` method), like RiskSettings' defaults; every
    other setting (min_rr 1.5, stop within 0.2 %..10 % of entry) is RiskSettings' default, so the
    answer is the one a bot with default settings would give. Raises LevelsRejected like
    :func:`calculate_levels`, ValueError (a pydantic ValidationError for bad multiples) for bad input.
    """
    risk = RiskSettings(sl_method="atr", sl_atr_mult=sl_mult, tp_method="r", tp_multiples=tuple(tp_multiples))
    setup = Setup(
        direction=normalise_direction(direction), bar_ts=0, entry=entry, reason="quick_calculate", atr=atr
    )
    return calculate_levels(setup, risk, tick_size)


def normalise_direction(value: str | Direction) -> Direction:
    """LONG for long/buy/bull/bullish/up, SHORT for short/sell/bear/bearish/down (any case, trimmed).

    Anything else raises ValueError naming the value (see :meth:`Direction.parse`).
    """
    if isinstance(value, Direction):
        return value
    return Direction.parse(value)


# --------------------------------------------------------------------------------------------------
# ATR
# --------------------------------------------------------------------------------------------------


def atr(candles: Candles, period: int = 14) -> FloatArray:
    """Average True Range, exactly ``talib.ATR(high, low, close, timeperiod=period)`` (Wilder).

    TA-Lib's conventions, relied on by every caller:

    * Lookback = ``period``: the first ``period`` values are NaN (the first true range needs a previous
      close, so bar 0 has none); with ``period`` candles or fewer the whole result is NaN.
    * The first value (index ``period``) is the simple mean of the true ranges of bars 1..period; after
      that Wilder's smoothing: ``atr[i] = (atr[i-1] x (period - 1) + tr[i]) / period``.
    * Wilder's smoothing remembers the whole history, so ATR at a bar computed from a shorter history
      differs slightly (TA-Lib's ATR "unstable period" is left at 0); strategies get the full history.

    Same unit as the prices. Raises ValueError for no candles, ``period`` outside 1..100000, or a
    NaN/infinite high, low or close (TA-Lib would silently return NaN from that bar on).
    """
    if not 1 <= period <= _TALIB_MAX_PERIOD:
        raise ValueError(f"ATR period must be 1..{_TALIB_MAX_PERIOD}, got {period}")
    if len(candles) == 0:
        raise ValueError(f"{candles.symbol} {candles.timeframe}: no candles to compute ATR from")
    for name in ("high", "low", "close"):
        values: FloatArray = getattr(candles, name)
        if not bool(np.isfinite(values).all()):
            raise ValueError(
                f"{candles.symbol} {candles.timeframe}: candles.{name} has NaN or infinite values"
            )
    result = talib.ATR(candles.high, candles.low, candles.close, timeperiod=period)
    return np.asarray(result, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Position sizing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionSize:
    """A position sized so that hitting the stop loses ``risk_amount``.

    ``quantity`` in base units; ``notional`` (quantity x entry), ``margin`` (notional / leverage) and
    ``risk_amount`` (quantity x |entry - stop|, what the stop costs before fees) in quote units.
    ``risk_amount`` can be below the requested risk when the quantity was rounded down or capped.
    """

    quantity: float
    notional: float
    margin: float
    risk_amount: float


def _require_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def position_size(
    entry: float,
    sl: float,
    account_size: float,
    risk_pct: float,
    leverage: float = 1.0,
    min_qty: float = 0.0,
    qty_step: float | None = None,
) -> PositionSize:
    """Quantity that loses ``risk_pct`` percent of ``account_size`` if the stop is hit.

    quantity = account_size x risk_pct / 100 / |entry - sl|, then capped so the margin
    (quantity x entry / leverage) never exceeds ``account_size``, then rounded DOWN to ``qty_step``
    (never up: rounding must not add risk). ``risk_pct`` is percent (1.0 = 1 %), 0 < risk_pct <= 100;
    ``leverage`` >= 1 (1 = spot). Raises ValueError with the numbers when the result is below
    ``min_qty`` or rounds to zero, and for non-finite, non-positive or inconsistent inputs.
    """
    _require_positive("entry", entry)
    _require_positive("sl", sl)
    _require_positive("account_size", account_size)
    _require_positive("risk_pct", risk_pct)
    if risk_pct > 100:
        raise ValueError(f"risk_pct is a percent of the account and must be at most 100, got {risk_pct!r}")
    if not (math.isfinite(leverage) and leverage >= 1):
        raise ValueError(f"leverage must be a finite number >= 1, got {leverage!r}")
    if not (math.isfinite(min_qty) and min_qty >= 0):
        raise ValueError(f"min_qty must be a finite number >= 0, got {min_qty!r}")
    if qty_step is not None:
        _require_positive("qty_step", qty_step)
    stop_distance = abs(entry - sl)
    if stop_distance == 0:
        raise ValueError(f"stop {sl!r} equals entry {entry!r}: the risk per unit is zero")

    risk_budget = account_size * risk_pct / 100.0
    quantity = min(risk_budget / stop_distance, account_size * leverage / entry)
    if qty_step is not None:
        quantity = _round_to_tick(quantity, qty_step, _Round.DOWN)
        # The on-grid snap in _round_to_tick can round up by float noise; the margin cap is a hard rule.
        if quantity * entry / leverage > account_size:
            quantity = _round_to_tick(quantity - qty_step, qty_step, _Round.DOWN)
    if quantity <= 0 or quantity < min_qty:
        raise ValueError(
            f"position size {quantity:.10g} is below the minimum quantity {min_qty:g} "
            f"(risk {risk_budget:.10g} over a stop distance of {stop_distance:.10g})"
        )
    notional = quantity * entry
    return PositionSize(
        quantity=quantity,
        notional=notional,
        margin=notional / leverage,
        risk_amount=quantity * stop_distance,
    )


# --------------------------------------------------------------------------------------------------
# Trailing stop
# --------------------------------------------------------------------------------------------------


class TrailingStop:
    """A stop that follows the best price of an open trade and never loosens.

    Created with the trade's direction, entry and initial stop, an optional activation and exactly one
    distance:

    * activation: ``activation_r`` (the best price has gone this many R in favour, R = |entry - initial
      stop|) or ``activation_pct`` (percent of entry); at most one. Neither means trailing from the start.
    * distance: ``distance_pct`` (percent of the best price) or ``distance_atr`` (multiples of the
      ``atr`` passed to :meth:`update`); exactly one.
    * ``tick_size``: trailed stops are rounded against the trade (LONG down, SHORT up).

    The best price is the highest high (LONG) or lowest low (SHORT) of the candles fed so far. Whether
    the stop was hit is the tracker's business; this class only says where it is.
    """

    __slots__ = (
        "_activation_move",
        "_active",
        "_best",
        "_distance_atr",
        "_distance_pct",
        "_stop",
        "_tick_size",
        "direction",
        "entry",
        "initial_sl",
    )

    def __init__(
        self,
        direction: Direction | str,
        entry: float,
        sl: float,
        *,
        activation_r: float | None = None,
        activation_pct: float | None = None,
        distance_pct: float | None = None,
        distance_atr: float | None = None,
        tick_size: float | None = None,
    ) -> None:
        self.direction = normalise_direction(direction)
        _require_positive("entry", entry)
        _require_positive("sl", sl)
        if (entry - sl) * self.direction.sign <= 0:
            raise ValueError(f"{self.direction} stop {sl!r} is not on the loss side of entry {entry!r}")
        if activation_r is not None and activation_pct is not None:
            raise ValueError("give activation_r or activation_pct, not both")
        if (distance_pct is None) == (distance_atr is None):
            raise ValueError("give exactly one of distance_pct and distance_atr")
        for name, value in (
            ("activation_r", activation_r),
            ("activation_pct", activation_pct),
            ("distance_pct", distance_pct),
            ("distance_atr", distance_atr),
        ):
            if value is not None:
                _require_positive(name, value)
        _check_tick(tick_size)
        self.entry = entry
        self.initial_sl = sl
        self._distance_pct = distance_pct
        self._distance_atr = distance_atr
        self._tick_size = tick_size
        # The favourable move (in price) that switches trailing on.
        if activation_r is not None:
            self._activation_move = activation_r * abs(entry - sl)
        elif activation_pct is not None:
            self._activation_move = entry * activation_pct / 100.0
        else:
            self._activation_move = 0.0
        self._best = entry
        self._stop = sl
        self._active = False

    @property
    def stop(self) -> float:
        """The current stop price."""
        return self._stop

    @property
    def active(self) -> bool:
        """Whether the activation move has been reached (the stop trails from then on)."""
        return self._active

    @property
    def best(self) -> float:
        """The best price seen: highest high for a LONG, lowest low for a SHORT (entry at the start)."""
        return self._best

    def update(self, high: float, low: float, atr: float | None = None) -> float:
        """Feed one closed candle; return the stop to use from the next candle on.

        The new stop is best -/+ distance when trailing is active, and is taken only if it is tighter
        than the current one: the stop never moves against the trade. ``atr`` is required (positive,
        finite) when the distance is in ATR multiples. Raises ValueError for NaN, non-positive prices
        or ``high < low``.
        """
        _require_positive("high", high)
        _require_positive("low", low)
        if high < low:
            raise ValueError(f"candle high {high!r} is below its low {low!r}")
        sign = self.direction.sign
        self._best = max(self._best, high) if sign > 0 else min(self._best, low)
        if not self._active and sign * (self._best - self.entry) >= self._activation_move:
            self._active = True
        if not self._active:
            return self._stop
        if self._distance_pct is not None:
            distance = self._best * self._distance_pct / 100.0
        else:
            if atr is None:
                raise ValueError("this trailing stop is measured in ATR: update() needs atr")
            _require_positive("atr", atr)
            assert self._distance_atr is not None  # exactly one distance is set (checked in __init__)
            distance = self._distance_atr * atr
        candidate = _round_against(self._best - sign * distance, sign, self._tick_size)
        if sign * (candidate - self._stop) > 0:
            self._stop = candidate
        return self._stop

    def __repr__(self) -> str:
        return (
            f"TrailingStop({self.direction}, entry={self.entry!r}, stop={self._stop!r}, "
            f"best={self._best!r}, active={self._active})"
        )
