"""diy_bot: the users' own rules from global_config.json, written in a small validated rule language.

Rule language (``bots.diy_bot.params``):

* An **operand** is one of

  - a TA-Lib function's output: ``{"indicator": "RSI", "params": {"timeperiod": 14}}``, or
    ``{"indicator": "MACD", "params": {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
    "output": "macdhist"}``. ``indicator`` is a name from ``talib.get_functions()`` (upper case, as
    TA-Lib spells it; MAVP, whose second input is not a price, is not offered); ``params`` are that
    function's parameters (``talib.abstract.Function(name).info["parameters"]``; those left out keep
    TA-Lib's defaults); ``output`` is one of its ``output_names`` and is required when it has more
    than one. ``"input": "volume"`` feeds a function that reads one price series (SMA, EMA, RSI, ...)
    another field than its default close (``{"indicator": "SMA", "params": {"timeperiod": 20},
    "input": "volume"}`` is the volume's 20-bar average). Integer outputs (candlestick patterns,
    +100 / -100) are compared as numbers.
  - a price field: ``{"price": "close"}`` (open, high, low, close or volume);
  - a number: ``30`` (only on the right).

* A **condition** is ``{"left": operand, "op": op, "right": operand}`` with op one of ``<``, ``<=``,
  ``>``, ``>=``, ``crosses_above`` (left > right at t and left <= right at t - 1) and
  ``crosses_below`` (the mirror). An optional ``"scale"`` multiplies the right operand (an indicator or
  a price, not a number): ``{"left": MOM 5, "op": ">", "right": ATR 14, "scale": 0.5}`` is
  MOM(5) > 0.5 x ATR(14), i.e. MOM(5) / ATR(14) > 0.5. A condition may instead be a group,
  ``{"all": [conditions]}`` (true when every one is) or ``{"any": [conditions]}`` (when one is),
  nested as deep as wanted. Each top-level condition or group carries a ``weight`` (default 1; the
  conditions inside a group have none of their own), a ``regime`` (below; default ``"any"``) and
  optionally a ``name`` used in the reason line instead of the generated text ("RSI 14 < 30").

* **Market regime**: a bar is *trending* when ``ADX(regime_adx_period)`` > ``regime_adx_threshold``
  (14, 25), otherwise *ranging*. A condition with ``"regime": "trending"`` only counts on trending
  bars, ``"ranging"`` only on ranging ones, ``"any"`` always. A condition that does not count on a
  bar is left out of that bar's score AND of its total, so the score is the share of the conditions
  that apply. (Per-regime weight multipliers were considered; two conditions with different regimes
  and weights express the same thing, so the language stays with one switch.) When no condition uses
  a regime, the regime ADX is not needed and only reported in the context when defined.

* ``long`` and ``short`` are rule sets ``{"min_score": 60, "conditions": [...]}`` (``null`` switches a
  side off; a side left out keeps the shipped default below). A side's **score** on bar t is
  ``100 x (sum of the weights of its counting conditions that hold) / (sum of the weights of its
  counting conditions)``, a percentage (0 when none counts).
  The side **qualifies** at t when its score is at least ``min_score`` (to within 1e-9) and the other
  side's score is lower. It **fires** only on the bar where it starts to qualify: it qualifies at t,
  did not at t - 1, and bar t - 1 was evaluable. A score that stays above the minimum for twenty bars
  gives one signal, on its first bar; the side fires again only after it stopped qualifying (its
  score fell below the minimum or the other side's caught up) and qualifies anew.

* A bar is **evaluable** when every operand of every condition of both sides is finite at t (and at
  t - 1 for the crossing conditions), and the regime ADX too if a condition uses a regime. Never on
  a non-evaluable bar, on a placeholder bar, or where ``ATR(atr_period)`` is not a positive number.

Validation happens when global_config.json is loaded: an unknown function, parameter, output, input
or operator, a wrong type, parameters TA-Lib refuses (``lookback`` -1, e.g. RSI timeperiod 1) and a
``lookback`` shorter than an indicator needs are each one ``ConfigError`` line naming the JSON path,
the offending value and the valid ones.

Each distinct indicator (function, parameters, input) is computed once per scan over the whole
history, each condition is a boolean numpy array over all bars, the scores are weighted sums of them.

Setup: entry = the close of t; ``Setup.atr`` = ``ATR(atr_period)`` at t and no stop of its own: the
levels come from the risk block ``{"sl_method": "atr", "sl_atr_mult": 1.5, "tp_method": "r",
"tp_multiples": [1.5, 2.5, 4.0], "min_rr": 1.5}`` (SL 1.5 ATR away, TPs at 1.5R, 2.5R, 4R). The reason
lists the firing side's conditions that held, then the score: "RSI 14 < 30, MACD 12/26/9 macdhist
crosses above 0, close > EMA 200: 72 % long". The context holds ``long_score`` and ``short_score``
(percent, 1 decimal), ``atr``, ``regime`` / ``regime_adx`` when the ADX is defined, and the value at t
of every operand of both sides under its label ("RSI 14", "close", "SMA 20 of volume"; 8 significant
digits).

The shipped default (the previous bot's confluence; weights sum to 120 a side, so min_score 60 means
72 points):

==========================================  ======  ===========================================
LONG condition                              weight  SHORT condition
==========================================  ======  ===========================================
RSI 14 < 30 (oversold)                      15      RSI 14 > 70
MACD 12/26/9 macdhist crosses above 0       20      MACD 12/26/9 macdhist crosses below 0
EMA 9 > EMA 21                              15      EMA 9 < EMA 21
ADX 14 > 20 (a trend to ride, both sides)   10      ADX 14 > 20
close < BBANDS 20/2/2 lowerband             10      close > BBANDS 20/2/2 upperband
volume > 1.2 x SMA 20 of volume (both)      10      volume > 1.2 x SMA 20 of volume
MOM 5 > 0.5 x ATR 14                        10      MOM 5 < -0.5 x ATR 14
STOCHRSI 14/14/3 fastk < 20                 10      STOCHRSI 14/14/3 fastk > 80
close > EMA 50                              10      close < EMA 50
close > EMA 200                             10      close < EMA 200
==========================================  ======  ===========================================

StochRSI "14/3" is TA-Lib's STOCHRSI with timeperiod 14 (the RSI), fastk_period 14 (the stochastic
window over it) and fastd_period 3; its fastk is the line compared.

Other parameters, with defaults: regime_adx_period 14, regime_adx_threshold 25, atr_period 14,
lookback 1000 (bars of history per scan: EMA 200 is the slowest input, its lookback is 199 bars and
the influence of its SMA seed has decayed to e^-8 after 800 more).

Where this differs from the previous bot: it fires once when the confluence forms (above), not on
every bar it lasts; the momentum condition compares MOM(5) with a multiple of ATR(14) instead of
dividing (the same test for a positive ATR, and no division by zero on a flat market). The previous
bot's code is not in this repository: the list of inputs and thresholds above is the one its users
gave (RSI 14, MACD 12/26/9, EMA 9/21, ADX 14 > 20, Bollinger 20/2, volume > 1.2 x SMA 20, MOM(5) /
ATR(14) > 0.5 / < -0.5, StochRSI 14/3, price vs EMA 50/200, confidence 60); the direction of each
comparison (RSI 30 / 70, StochRSI 20 / 80, price outside the bands, MACD histogram crossing zero) and
the weights are this module's reading of it, stated in the table. With them the default fires on about
2 % of bars on real 15m, 1h and 4h series.

TA-Lib conventions used: each function's leading values (its lookback) are NaN; candlestick functions
return integers (+100 / -100 / 0); ADX(n) has lookback 2n - 1, ATR(n) n, EMA(n) n - 1.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import talib
import talib.abstract
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictFloat,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import Candles, ContextValue, Direction, FloatArray, Setup

PriceField = Literal["open", "high", "low", "close", "volume"]
Operator = Literal["<", "<=", ">", ">=", "crosses_above", "crosses_below"]
Regime = Literal["any", "trending", "ranging"]

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
BoolArray = npt.NDArray[np.bool_]

# TA-Lib's stubs type the indicator functions but not get_functions or abstract.Function.
_TALIB: Any = talib
_ABSTRACT: Any = talib.abstract

_OPERATOR_TEXT = {
    "<": "<",
    "<=": "<=",
    ">": ">",
    ">=": ">=",
    "crosses_above": "crosses above",
    "crosses_below": "crosses below",
}
#: Scores are compared with the minimum to within this, so 100 x 72 / 120 counts as 60.
_SCORE_TOLERANCE = 1e-9


# -- TA-Lib's abstract API --------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionInfo:
    """What the rule language needs to know about one TA-Lib function."""

    name: str
    #: Parameter names and TA-Lib's defaults (an int default means an integer parameter).
    parameters: dict[str, int | float]
    output_names: tuple[str, ...]
    #: The input name and its default price when the function reads one price series, else None.
    single_input: tuple[str, str] | None


def _input_prices(info: dict[str, Any]) -> list[str]:
    prices: list[str] = []
    for value in info["input_names"].values():
        prices.extend(value if isinstance(value, list) else [value])
    return prices


@cache
def talib_functions() -> tuple[str, ...]:
    """Every TA-Lib function the language offers: those whose inputs are all OHLCV fields (not MAVP)."""
    return tuple(
        sorted(
            name
            for name in _TALIB.get_functions()
            if all(price in PRICE_FIELDS for price in _input_prices(_ABSTRACT.Function(name).info))
        )
    )


@cache
def function_info(name: str) -> FunctionInfo:
    """Parameters, outputs and single input of the TA-Lib function ``name`` (one of ``talib_functions``)."""
    info = _ABSTRACT.Function(name).info
    inputs = dict(info["input_names"])
    single: tuple[str, str] | None = None
    if len(inputs) == 1:
        (key, value), *_ = inputs.items()
        if isinstance(value, str):
            single = (key, value)
    return FunctionInfo(
        name=name,
        parameters=dict(info["parameters"]),
        output_names=tuple(info["output_names"]),
        single_input=single,
    )


def talib_lookback(name: str, params: dict[str, int | float]) -> int:
    """TA-Lib's lookback (leading NaN bars) of ``name`` with ``params``; -1 when TA-Lib refuses them."""
    function = _ABSTRACT.Function(name)
    if params:
        function.set_parameters(params)
    lookback: int = function.lookback
    return lookback


def _number_text(value: float) -> str:
    return f"{value:g}"


def _json_text(value: object) -> str:
    return json.dumps(value, default=str)


# -- the rule language --------------------------------------------------------------------------------


class _RuleModel(BaseModel):
    """Base of the rule language's models: frozen, unknown keys are errors, dumps only what was given.

    Dumping only the fields that were set makes ``model_dump(mode="json")`` give back the JSON the
    user wrote (global_config.json's entry and the dump of its parsed value are the same).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def __hash__(self) -> int:
        # Operand.params is a dict (as written in JSON); hash the canonical JSON so the models stay hashable.
        return hash((type(self).__name__, json.dumps(self.model_dump(mode="json"), sort_keys=True)))

    @model_serializer(mode="wrap")
    def _dump_given(self, handler: SerializerFunctionWrapHandler) -> Any:
        if isinstance(self, Operand) and self.value is not None:
            return self.value  # written as a bare number
        data = handler(self)
        return {key: value for key, value in data.items() if key in self.model_fields_set}


class Operand(_RuleModel):
    """A TA-Lib function's output, a price field or a number (written as a bare number in JSON)."""

    indicator: str | None = None
    params: dict[str, int | float] = Field(default_factory=dict)
    output: str | None = None
    input: PriceField | None = None
    price: PriceField | None = None
    value: StrictFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, data: Any) -> Any:
        if isinstance(data, bool):
            raise ValueError("an operand is an indicator, a price field or a number, not true / false")
        if isinstance(data, int | float):
            return {"value": data}
        return data

    @field_validator("indicator")
    @classmethod
    def _known_function(cls, name: str | None) -> str | None:
        if name is None or name in talib_functions():
            return name
        close = difflib.get_close_matches(name.upper(), talib_functions(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown TA-Lib function {name!r}{hint}; valid: {', '.join(talib_functions())}")

    @field_validator("params", mode="before")
    @classmethod
    def _known_parameters(cls, params: Any, info: ValidationInfo) -> Any:
        name = info.data.get("indicator")
        if name is None or not isinstance(params, dict):
            return params  # no (valid) function to check against: reported elsewhere
        known = function_info(name).parameters
        valid = ", ".join(known) or "none"
        checked: dict[str, int | float] = {}
        for key, value in params.items():
            if key not in known:
                raise ValueError(f"{name} has no parameter {key!r} (valid: {valid})")
            wanted_int = isinstance(known[key], int)
            if isinstance(value, bool) or not isinstance(value, int | float):
                kind = "an integer" if wanted_int else "a number"
                raise ValueError(f"{name} parameter {key} must be {kind}, got {_json_text(value)}")
            if wanted_int and not isinstance(value, int):
                raise ValueError(f"{name} parameter {key} must be an integer, got {_json_text(value)}")
            if not math.isfinite(value):
                raise ValueError(f"{name} parameter {key} must be finite, got {value!r}")
            checked[key] = value if wanted_int else float(value)  # TA-Lib takes 2.0, not 2, for a float
        if talib_lookback(name, checked) < 0:
            raise ValueError(
                f"TA-Lib refuses {name} with {json.dumps(params)} (TA_BAD_PARAM: a value is out of its range)"
            )
        return checked

    @field_validator("output")
    @classmethod
    def _known_output(cls, output: str | None, info: ValidationInfo) -> str | None:
        name = info.data.get("indicator")
        if output is None or name is None:
            return output
        outputs = function_info(name).output_names
        if output not in outputs:
            raise ValueError(f"{name} has no output {output!r} (valid: {', '.join(outputs)})")
        return output

    @field_validator("input")
    @classmethod
    def _single_input(cls, price: str | None, info: ValidationInfo) -> str | None:
        name = info.data.get("indicator")
        if price is None or name is None:
            return price
        if function_info(name).single_input is None:
            raise ValueError(f"{name} reads several price fields: it takes no 'input'")
        return price

    @model_validator(mode="after")
    def _one_kind(self) -> Operand:
        kinds = [key for key in ("indicator", "price", "value") if getattr(self, key) is not None]
        if len(kinds) != 1:
            raise ValueError("an operand needs exactly one of 'indicator', 'price' or a number")
        if self.indicator is None:
            extra = [key for key in ("params", "output", "input") if key in self.model_fields_set]
            if extra:
                raise ValueError(f"{', '.join(extra)} only go with an 'indicator'")
        elif self.output is None and len(outputs := function_info(self.indicator).output_names) > 1:
            names = ", ".join(outputs)
            raise ValueError(
                f"{self.indicator} has {len(outputs)} outputs: choose one with 'output' ({names})"
            )
        return self

    @property
    def is_number(self) -> bool:
        """True for a plain number."""
        return self.value is not None

    @property
    def label(self) -> str:
        """Short text for reasons and context keys: "RSI 14", "MACD 12/26/9 macdhist", "close", "30"."""
        if self.value is not None:
            return _number_text(self.value)
        if self.price is not None:
            return self.price
        assert self.indicator is not None
        order = list(function_info(self.indicator).parameters)
        given = [_number_text(self.params[key]) for key in order if key in self.params]
        text = self.indicator + (f" {'/'.join(given)}" if given else "")
        if self.output is not None and len(function_info(self.indicator).output_names) > 1:
            text += f" {self.output}"
        if self.input is not None:
            text += f" of {self.input}"
        return text

    @property
    def cache_key(self) -> tuple[str, tuple[int | float, ...], str | None]:
        """(function, every parameter with TA-Lib's defaults filled in, input): equal keys, equal arrays.

        "RSI" and "RSI" with ``{"timeperiod": 14}`` share one computation per scan.
        """
        assert self.indicator is not None
        info = function_info(self.indicator)
        values = tuple(self.params.get(key, default) for key, default in info.parameters.items())
        single = info.single_input
        return (self.indicator, values, self.input or (single[1] if single else None))

    def lookback(self) -> int:
        """Leading bars this operand is NaN for (0 for prices and numbers)."""
        if self.indicator is None:
            return 0
        return talib_lookback(self.indicator, dict(self.params))


class Condition(_RuleModel):
    """A comparison of two operands, or an ``all`` / ``any`` group of conditions; weighted at the top."""

    name: str | None = Field(None, min_length=1, max_length=80)
    left: Operand | None = None
    op: Operator | None = None
    right: Operand | None = None
    scale: StrictFloat = 1.0
    all: tuple[Condition, ...] | None = Field(None, min_length=1)
    any: tuple[Condition, ...] | None = Field(None, min_length=1)
    weight: StrictFloat = Field(1.0, gt=0, le=1000)
    regime: Regime = "any"

    @field_validator("left")
    @classmethod
    def _left_is_a_series(cls, left: Operand | None) -> Operand | None:
        if left is not None and left.is_number:
            raise ValueError("left must be an indicator or a price field, not a number (put numbers right)")
        return left

    @field_validator("scale")
    @classmethod
    def _scale_needs_a_series(cls, scale: float, info: ValidationInfo) -> float:
        right = info.data.get("right")
        if scale == 0:
            raise ValueError("scale must not be 0")
        if scale != 1.0 and isinstance(right, Operand) and right.is_number:
            raise ValueError("scale multiplies an indicator or a price; for a number write the product")
        return scale

    @field_validator("all", "any")
    @classmethod
    def _members_are_unweighted(cls, members: tuple[Condition, ...] | None) -> tuple[Condition, ...] | None:
        for member in members or ():
            own = [key for key in ("weight", "regime") if key in member.model_fields_set]
            if own:
                names = ", ".join(own)
                raise ValueError(
                    f"a condition inside all / any takes the group's weight and regime: remove {names}"
                )
        return members

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        compare = [key for key in ("left", "op", "right", "scale") if key in self.model_fields_set]
        groups = [key for key in ("all", "any") if key in self.model_fields_set]
        if groups:
            if len(groups) > 1 or compare:
                raise ValueError("a condition is either left / op / right or one of all / any, not both")
        elif self.left is None or self.op is None or self.right is None:
            raise ValueError("a condition needs left, op and right (or all / any)")
        return self

    @property
    def label(self) -> str:
        """The name, else generated text: "RSI 14 < 30", "volume > 1.2 x SMA 20 of volume", "all(a; b)"."""
        if self.name is not None:
            return self.name
        if self.all is not None or self.any is not None:
            kind, members = ("all", self.all) if self.all is not None else ("any", self.any)
            return f"{kind}({'; '.join(member.label for member in members or ())})"
        assert self.left is not None
        assert self.op is not None
        assert self.right is not None
        right = self.right.label if self.scale == 1.0 else f"{_number_text(self.scale)} x {self.right.label}"
        return f"{self.left.label} {_OPERATOR_TEXT[self.op]} {right}"

    def operands(self) -> Iterator[Operand]:
        """Every operand of the condition (of its members, for a group), in order."""
        for member in self.all or self.any or ():
            yield from member.operands()
        if self.left is not None and self.right is not None:
            yield self.left
            yield self.right

    def crosses(self) -> bool:
        """True when the condition (or a member) reads the previous bar too."""
        if self.op in ("crosses_above", "crosses_below"):
            return True
        return any(member.crosses() for member in self.all or self.any or ())


class RuleSet(_RuleModel):
    """One side's conditions and the score (percent of its total weight) it needs."""

    min_score: StrictFloat = Field(gt=0, le=100)
    conditions: tuple[Condition, ...] = Field(min_length=1)


def _rules(data: dict[str, Any]) -> RuleSet:
    return RuleSet.model_validate(data)


def _ind(name: str, **params: int | float) -> dict[str, Any]:
    return {"indicator": name, "params": params}


_BB = {"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0}
_STOCHRSI = {"timeperiod": 14, "fastk_period": 14, "fastd_period": 3}
_MACD = {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}
_VOLUME_SPIKE = {
    "left": {"price": "volume"},
    "op": ">",
    "right": {"indicator": "SMA", "params": {"timeperiod": 20}, "input": "volume"},
    "scale": 1.2,
    "weight": 10,
}
_ADX_TREND = {"left": _ind("ADX", timeperiod=14), "op": ">", "right": 20, "weight": 10}

#: The shipped LONG rules: the previous bot's confluence (see the module docstring).
DEFAULT_LONG = _rules(
    {
        "min_score": 60,
        "conditions": [
            {"left": _ind("RSI", timeperiod=14), "op": "<", "right": 30, "weight": 15},
            {
                "left": {"indicator": "MACD", "params": _MACD, "output": "macdhist"},
                "op": "crosses_above",
                "right": 0,
                "weight": 20,
            },
            {"left": _ind("EMA", timeperiod=9), "op": ">", "right": _ind("EMA", timeperiod=21), "weight": 15},
            _ADX_TREND,
            {
                "left": {"price": "close"},
                "op": "<",
                "right": {"indicator": "BBANDS", "params": _BB, "output": "lowerband"},
                "weight": 10,
            },
            _VOLUME_SPIKE,
            {
                "left": _ind("MOM", timeperiod=5),
                "op": ">",
                "right": _ind("ATR", timeperiod=14),
                "scale": 0.5,
                "weight": 10,
            },
            {
                "left": {"indicator": "STOCHRSI", "params": _STOCHRSI, "output": "fastk"},
                "op": "<",
                "right": 20,
                "weight": 10,
            },
            {"left": {"price": "close"}, "op": ">", "right": _ind("EMA", timeperiod=50), "weight": 10},
            {"left": {"price": "close"}, "op": ">", "right": _ind("EMA", timeperiod=200), "weight": 10},
        ],
    }
)

#: The shipped SHORT rules: the mirror of DEFAULT_LONG.
DEFAULT_SHORT = _rules(
    {
        "min_score": 60,
        "conditions": [
            {"left": _ind("RSI", timeperiod=14), "op": ">", "right": 70, "weight": 15},
            {
                "left": {"indicator": "MACD", "params": _MACD, "output": "macdhist"},
                "op": "crosses_below",
                "right": 0,
                "weight": 20,
            },
            {"left": _ind("EMA", timeperiod=9), "op": "<", "right": _ind("EMA", timeperiod=21), "weight": 15},
            _ADX_TREND,
            {
                "left": {"price": "close"},
                "op": ">",
                "right": {"indicator": "BBANDS", "params": _BB, "output": "upperband"},
                "weight": 10,
            },
            _VOLUME_SPIKE,
            {
                "left": _ind("MOM", timeperiod=5),
                "op": "<",
                "right": _ind("ATR", timeperiod=14),
                "scale": -0.5,
                "weight": 10,
            },
            {
                "left": {"indicator": "STOCHRSI", "params": _STOCHRSI, "output": "fastk"},
                "op": ">",
                "right": 80,
                "weight": 10,
            },
            {"left": {"price": "close"}, "op": "<", "right": _ind("EMA", timeperiod=50), "weight": 10},
            {"left": {"price": "close"}, "op": "<", "right": _ind("EMA", timeperiod=200), "weight": 10},
        ],
    }
)


class DiyParams(StrategyParams):
    """diy_bot's parameters: the LONG and SHORT rule sets and the regime / ATR settings (module docstring)."""

    long: RuleSet | None = DEFAULT_LONG
    short: RuleSet | None = DEFAULT_SHORT
    regime_adx_period: int = Field(14, ge=2, le=200)
    regime_adx_threshold: StrictFloat = Field(25.0, ge=0, le=100)
    atr_period: int = Field(14, ge=1, le=200)
    lookback: int = Field(1000, ge=50, le=10_000)

    @model_validator(mode="after")
    def _sides_and_history(self) -> DiyParams:
        if self.long is None and self.short is None:
            raise ValueError("long and short are both off: give at least one rule set")
        needed = max(self.atr_period, 2 * self.regime_adx_period - 1)
        slowest = "ATR" if self.atr_period >= 2 * self.regime_adx_period - 1 else "the regime ADX"
        for condition in self.conditions():
            for operand in condition.operands():
                if operand.lookback() > needed:
                    needed, slowest = operand.lookback(), operand.label
        # One more bar for t - 1 (crossings, and the "first reaches" test), one for t itself.
        if self.lookback < needed + 2:
            raise ValueError(
                f"lookback {self.lookback} is too short: {slowest} needs {needed} bars of history first, "
                f"so lookback must be at least {needed + 2}"
            )
        return self

    def conditions(self) -> Iterator[Condition]:
        """Every top-level condition of both sides, LONG first."""
        for side in (self.long, self.short):
            if side is not None:
                yield from side.conditions

    def uses_regime(self) -> bool:
        """True when a condition counts only in one regime."""
        return any(condition.regime != "any" for condition in self.conditions())


# -- evaluation ----------------------------------------------------------------------------------------


class _Evaluator:
    """Operand arrays over one series, each distinct TA-Lib indicator computed once."""

    def __init__(self, candles: Candles) -> None:
        self.candles = candles
        self.inputs = {name: np.asarray(getattr(candles, name), dtype=np.float64) for name in PRICE_FIELDS}
        self.indicators: dict[object, tuple[FloatArray, ...]] = {}

    def outputs(self, operand: Operand) -> tuple[FloatArray, ...]:
        """Every output of the operand's function (cached by function, parameters and input)."""
        assert operand.indicator is not None
        key = operand.cache_key
        if key not in self.indicators:
            function = _ABSTRACT.Function(operand.indicator)
            if operand.params:
                function.set_parameters(dict(operand.params))
            single = function_info(operand.indicator).single_input
            if operand.input is not None and single is not None:
                function.input_names = {single[0]: operand.input}
            result = function(self.inputs)
            arrays = result if isinstance(result, list) else [result]
            self.indicators[key] = tuple(np.asarray(array, dtype=np.float64) for array in arrays)
        return self.indicators[key]

    def series(self, operand: Operand) -> FloatArray | float:
        """The operand's value at every bar (a float for a number)."""
        if operand.value is not None:
            return float(operand.value)
        if operand.price is not None:
            return self.inputs[operand.price]
        assert operand.indicator is not None
        names = function_info(operand.indicator).output_names
        return self.outputs(operand)[names.index(operand.output) if operand.output else 0]

    def condition(self, condition: Condition) -> tuple[BoolArray, BoolArray]:
        """(holds, evaluable) at every bar; ``holds`` is False wherever the bar is not evaluable."""
        if condition.all is not None or condition.any is not None:
            members = [self.condition(member) for member in condition.all or condition.any or ()]
            holds_each = np.array([holds for holds, _ in members])
            valid = np.logical_and.reduce([valid for _, valid in members])
            holds = holds_each.all(axis=0) if condition.all is not None else holds_each.any(axis=0)
            return holds & valid, valid
        assert condition.left is not None
        assert condition.right is not None
        left = np.asarray(self.series(condition.left), dtype=np.float64)
        right = np.broadcast_to(np.asarray(self.series(condition.right), dtype=np.float64), left.shape)
        right = right * condition.scale
        valid = np.isfinite(left) & np.isfinite(right)
        op = condition.op
        if op in ("crosses_above", "crosses_below"):
            previous_left = np.r_[np.nan, left[:-1]]
            previous_right = np.r_[np.nan, right[:-1]]
            valid &= np.isfinite(previous_left) & np.isfinite(previous_right)
            if op == "crosses_above":
                holds = (left > right) & (previous_left <= previous_right)
            else:
                holds = (left < right) & (previous_left >= previous_right)
        elif op == "<":
            holds = left < right
        elif op == "<=":
            holds = left <= right
        elif op == ">":
            holds = left > right
        else:
            holds = left >= right
        return holds & valid, valid


@dataclass(frozen=True)
class _Side:
    """One side's per-bar score and per-condition arrays."""

    score: FloatArray
    holds: tuple[BoolArray, ...]
    counts: tuple[BoolArray, ...]
    valid: BoolArray


def _score_side(
    rules: RuleSet | None, evaluator: _Evaluator, trending: BoolArray, ranging: BoolArray
) -> _Side:
    size = len(evaluator.candles)
    if rules is None:
        return _Side(np.zeros(size), (), (), np.ones(size, dtype=np.bool_))
    won = np.zeros(size)
    total = np.zeros(size)
    valid = np.ones(size, dtype=np.bool_)
    holds_all: list[BoolArray] = []
    counts_all: list[BoolArray] = []
    everywhere = np.ones(size, dtype=np.bool_)
    for condition in rules.conditions:
        holds, condition_valid = evaluator.condition(condition)
        counts = {"any": everywhere, "trending": trending, "ranging": ranging}[condition.regime]
        won += np.where(holds & counts, condition.weight, 0.0)
        total += np.where(counts, condition.weight, 0.0)
        valid &= condition_valid
        holds_all.append(holds)
        counts_all.append(counts)
    score = np.divide(100.0 * won, total, out=np.zeros(size), where=total > 0)
    return _Side(score, tuple(holds_all), tuple(counts_all), valid)


def _first_bars(qualifies: BoolArray, evaluable: BoolArray) -> BoolArray:
    """Bars where ``qualifies`` starts: true at t, false at t - 1, and t - 1 evaluable."""
    before = np.r_[False, qualifies[:-1]]
    evaluable_before = np.r_[False, evaluable[:-1]]
    starts: BoolArray = qualifies & ~before & evaluable_before
    return starts


def _rounded(value: float) -> float:
    return float(f"{value:.8g}")


class DiyBot:
    """The users' own weighted TA-Lib conditions, LONG and SHORT, from global_config.json."""

    name = "diy_bot"
    params_model = DiyParams

    def needs(self, params: DiyParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe (validated against its slowest indicator)."""
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: DiyParams) -> Sequence[Setup]:
        """Every bar where a side's score first reaches its minimum above the other side's, oldest first."""
        c = data.candles
        if len(c) < 2:
            return []
        evaluator = _Evaluator(c)
        adx = talib.ADX(c.high, c.low, c.close, timeperiod=params.regime_adx_period)
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
        adx_finite = np.isfinite(adx)
        trending = adx_finite & (adx > params.regime_adx_threshold)
        ranging = adx_finite & ~trending
        long = _score_side(params.long, evaluator, trending, ranging)
        short = _score_side(params.short, evaluator, trending, ranging)
        evaluable = long.valid & short.valid
        if params.uses_regime():
            evaluable &= adx_finite
        fires: dict[Direction, BoolArray] = {}
        for direction, side, rules, other in (
            (Direction.LONG, long, params.long, short),
            (Direction.SHORT, short, params.short, long),
        ):
            if rules is None:
                continue
            qualifies = (
                evaluable & (side.score >= rules.min_score - _SCORE_TOLERANCE) & (side.score > other.score)
            )
            fires[direction] = (
                _first_bars(qualifies, evaluable) & ~c.placeholder & np.isfinite(atr) & (atr > 0)
            )
        # The value of every operand (numbers aside) at every bar, under its label, for the context.
        values: dict[str, FloatArray] = {}
        for condition in params.conditions():
            for operand in condition.operands():
                if not operand.is_number and operand.label not in values:
                    values[operand.label] = np.asarray(evaluator.series(operand), dtype=np.float64)
        scores = {Direction.LONG: long.score, Direction.SHORT: short.score}
        side_name = {Direction.LONG: "long", Direction.SHORT: "short"}
        labels: dict[Direction, list[str]] = {}
        counted: dict[Direction, BoolArray] = {}
        for direction, side, rules in (
            (Direction.LONG, long, params.long),
            (Direction.SHORT, short, params.short),
        ):
            if rules is not None:
                labels[direction] = [condition.label for condition in rules.conditions]
                counted[direction] = np.array(side.holds) & np.array(side.counts)
        fired = sorted((int(i), direction) for direction, bars in fires.items() for i in np.flatnonzero(bars))
        setups = []
        for i, direction in fired:
            held = [
                label
                for label, holds in zip(labels[direction], counted[direction][:, i], strict=True)
                if holds
            ]
            context: dict[str, ContextValue] = {
                "long_score": round(float(long.score[i]), 1),
                "short_score": round(float(short.score[i]), 1),
                "atr": _rounded(float(atr[i])),
            }
            if adx_finite[i]:
                context["regime"] = "trending" if trending[i] else "ranging"
                context["regime_adx"] = round(float(adx[i]), 2)
            context.update((label, _rounded(float(array[i]))) for label, array in values.items())
            setups.append(
                Setup(
                    direction=direction,
                    bar_ts=int(c.ts[i]),
                    entry=float(c.close[i]),
                    atr=float(atr[i]),
                    reason=f"{', '.join(held)}: {float(scores[direction][i]):.0f} % {side_name[direction]}",
                    context=context,
                )
            )
        return setups
