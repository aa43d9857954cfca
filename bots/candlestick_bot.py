"""candlestick_bot: TA-Lib candlestick patterns on the closed candle, with the trend.

Rule (on each closed candle t):

* Every pattern of ``patterns`` (TA-Lib function names) is computed over the history. A pattern
  **counts** on bar t when its TA-Lib value at t is non-zero and at least ``min_strength`` in absolute
  value; a positive value is bullish (LONG), a negative one bearish (SHORT).
* ``CDLENGULFING`` counts only when bar t traded more volume than bar t-1 (strictly more).
* When several patterns count on one bar they must agree: all bullish -> LONG, all bearish -> SHORT; if
  they disagree there is no signal. The reason names every pattern that counted.
* With ``trend_filter``: a LONG only when the close of t is above ``SMA(close, sma_period)`` at t, a
  SHORT only when it is below (equal is neither).
* Entry is the close of t. The stop goes beyond the pattern's extreme: the lowest low (LONG) / highest
  high (SHORT) of the bars the pattern spans, ending at t (1 bar for hammer and shooting star; 2 for
  engulfing, piercing and dark cloud cover; 3 for the morning / evening stars, three white soldiers and
  three black crows; see ``PATTERN_SPANS`` for the others, 3 for a name not in the table; when several
  patterns count, the widest span), then ``stop_buffer_pct`` percent of the entry price further.
  Targets come from ``tp_sl_calculator`` with the bot's risk settings: the rule's 1.5R and 2.5R are
  ``{"sl_method": "structure", "tp_method": "r", "tp_multiples": [1.5, 2.5], "min_rr": 1.5}``.
* Never on a bar where any bar of the pattern's span is an exchange placeholder candle or has a
  non-finite price or volume, nor (with ``trend_filter``) where the SMA is not defined yet. A stop that
  would not be a positive price (a pattern spanning a fall of ~100 %) gives no setup.

Parameters (``bots.candlestick_bot.params``), with defaults: patterns [CDLHAMMER, CDLSHOOTINGSTAR,
CDLENGULFING, CDLMORNINGSTAR, CDLEVENINGSTAR, CDLPIERCING, CDLDARKCLOUDCOVER, CDL3WHITESOLDIERS,
CDL3BLACKCROWS] (any of TA-Lib's "Pattern Recognition" group except the indecision patterns in
``NON_DIRECTIONAL``; an unknown name is a validation error naming it), min_strength 100, trend_filter
true, sma_period 50, stop_buffer_pct 0.1, lookback 100 (bars of history per scan; at least the SMA
period and every pattern's TA-Lib lookback + 1).

Where this differs from the original bot it replaces:

* ``min_strength`` 100 (the original took any non-zero value). TA-Lib (C library 0.8.1 in the ta-lib
  wheel used here) grades CDLENGULFING (and CDLHARAMI / CDLHARAMICROSS) +-80 when the two real bodies
  share an end (an "engulfing" whose open equals the previous close), +-100 when the second body
  strictly engulfs the first. On Binance data
  about half the candles open exactly at the previous close, so the +-80 grade turns almost any
  reversal candle a little bigger than the one before into an engulfing (52-76 % of the engulfings
  on 24 real series). With every grade counted the rule fired on 7.0-8.5 % of the bars of every 5m to
  4h series tried (BTC, ETH, SOL, XRP spot; six USDT perpetuals 1h; two 15m), over the fleet's limit of
  5 %; with full-strength patterns only it fires on 3.1-4.4 % (daily: 1.2-2.8 %).
  ``min_strength: 80`` restores the original behaviour.
* The indecision patterns of ``NON_DIRECTIONAL`` are refused in ``patterns``: TA-Lib returns +100 for
  "found" on the doji family (a gravestone doji, bearish by convention, is +100) and the candle's colour
  for spinning tops and high waves, so the "positive is bullish" reading does not apply to them.
* A pattern whose span includes a placeholder candle does not count (the original only looked at the
  last candle); a flat zero-volume placeholder before an engulfing candle would otherwise pass the
  volume check trivially and invent the pattern's shape.

TA-Lib conventions relied on:

* The pattern functions return int arrays: 0 for no pattern, +100 / -100 for bullish / bearish (+-80
  for the weaker grade above, +-200 for a confirmed hikkake). CDLHAMMER, CDLMORNINGSTAR, CDLPIERCING
  and CDL3WHITESOLDIERS only ever return +100; CDLSHOOTINGSTAR, CDLEVENINGSTAR, CDLDARKCLOUDCOVER and
  CDL3BLACKCROWS only -100; CDLENGULFING either sign.
* Their first ``lookback`` values (``talib.abstract.Function(name).lookback``: 11 for hammer and
  shooting star, 2 for engulfing, 11 for piercing and dark cloud, 12 for the stars and the soldiers, 13
  for the crows) are 0: they compare bodies and shadows to averages of the previous ~10 candles. Those
  averages are trailing windows, so the value at t depends only on bars t - lookback .. t, not on where
  the history starts (beyond float rounding in TA-Lib's running sums). A scan of the last ``lookback``
  bars, as the runner hands it, gives the whole-history scan's setup on its newest bar: checked on all
  58,524 windows of BTC/USDT 1h perpetual (and in the tests on ETH/USDT 15m).
* They check candle shapes only, not the trend before the pattern (TA-Lib's hammer needs its body near
  the previous candle's low, its shooting star a gap above the previous body, its three black crows a
  white candle before the three). The morning / evening star and dark cloud cover use TA-Lib's default
  penetration (0.3, 0.3, 0.5).
* ``SMA(n)`` has lookback n - 1: the first n - 1 values are NaN.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import talib
import talib.abstract
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, field_validator, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import ContextValue, Direction, KeyPoint, Setup

# TA-Lib's stubs type the indicator functions but not get_function_groups or abstract.Function.
_TALIB: Any = talib
_ABSTRACT: Any = talib.abstract

#: TA-Lib's candlestick functions (the "Pattern Recognition" group).
TALIB_PATTERNS: frozenset[str] = frozenset(_TALIB.get_function_groups()["Pattern Recognition"])

#: Bars of history each TA-Lib pattern needs before its first non-zero value.
TALIB_LOOKBACK: dict[str, int] = {name: int(_ABSTRACT.Function(name).lookback) for name in TALIB_PATTERNS}

#: Patterns whose TA-Lib value carries no direction: +100 means "found" (the doji family) or the sign is
#: the candle's colour (spinning top, high wave). Refused in ``patterns``.
NON_DIRECTIONAL: frozenset[str] = frozenset(
    {
        "CDLDOJI",
        "CDLDRAGONFLYDOJI",
        "CDLGRAVESTONEDOJI",
        "CDLLONGLEGGEDDOJI",
        "CDLRICKSHAWMAN",
        "CDLSPINNINGTOP",
        "CDLHIGHWAVE",
    }
)

DEFAULT_PATTERNS: tuple[str, ...] = (
    "CDLHAMMER",
    "CDLSHOOTINGSTAR",
    "CDLENGULFING",
    "CDLMORNINGSTAR",
    "CDLEVENINGSTAR",
    "CDLPIERCING",
    "CDLDARKCLOUDCOVER",
    "CDL3WHITESOLDIERS",
    "CDL3BLACKCROWS",
)

#: Span used for a pattern missing from ``PATTERN_SPANS``.
DEFAULT_SPAN = 3

#: How many bars (ending at the signal bar) each pattern spans: the bars whose extreme the stop goes
#: beyond. The hikkakes' confirmation can come up to three bars after the pattern: their span covers it.
PATTERN_SPANS: dict[str, int] = {
    # one candle
    "CDLHAMMER": 1,
    "CDLSHOOTINGSTAR": 1,
    "CDLHANGINGMAN": 1,
    "CDLINVERTEDHAMMER": 1,
    "CDLTAKURI": 1,
    "CDLMARUBOZU": 1,
    "CDLCLOSINGMARUBOZU": 1,
    "CDLBELTHOLD": 1,
    "CDLLONGLINE": 1,
    "CDLSHORTLINE": 1,
    # two candles
    "CDLENGULFING": 2,
    "CDLPIERCING": 2,
    "CDLDARKCLOUDCOVER": 2,
    "CDLHARAMI": 2,
    "CDLHARAMICROSS": 2,
    "CDLDOJISTAR": 2,
    "CDLCOUNTERATTACK": 2,
    "CDLHOMINGPIGEON": 2,
    "CDLINNECK": 2,
    "CDLONNECK": 2,
    "CDLTHRUSTING": 2,
    "CDLKICKING": 2,
    "CDLKICKINGBYLENGTH": 2,
    "CDLMATCHINGLOW": 2,
    "CDLSEPARATINGLINES": 2,
    # three candles
    "CDLMORNINGSTAR": 3,
    "CDLEVENINGSTAR": 3,
    "CDL3WHITESOLDIERS": 3,
    "CDL3BLACKCROWS": 3,
    "CDLMORNINGDOJISTAR": 3,
    "CDLEVENINGDOJISTAR": 3,
    "CDLABANDONEDBABY": 3,
    "CDL2CROWS": 3,
    "CDL3INSIDE": 3,
    "CDL3OUTSIDE": 3,
    "CDL3STARSINSOUTH": 3,
    "CDLADVANCEBLOCK": 3,
    "CDLIDENTICAL3CROWS": 3,
    "CDLSTALLEDPATTERN": 3,
    "CDLSTICKSANDWICH": 3,
    "CDLTASUKIGAP": 3,
    "CDLTRISTAR": 3,
    "CDLUNIQUE3RIVER": 3,
    "CDLUPSIDEGAP2CROWS": 3,
    "CDLGAPSIDESIDEWHITE": 3,
    "CDLXSIDEGAP3METHODS": 3,
    # four and five candles
    "CDL3LINESTRIKE": 4,
    "CDLCONCEALBABYSWALL": 4,
    "CDLBREAKAWAY": 5,
    "CDLLADDERBOTTOM": 5,
    "CDLMATHOLD": 5,
    "CDLRISEFALL3METHODS": 5,
    # a pattern plus a confirmation up to three bars later
    "CDLHIKKAKE": 6,
    "CDLHIKKAKEMOD": 7,
}

#: Short names for the reason and the chart; other patterns use TA-Lib's own display name.
_LABELS: dict[str, str] = {
    "CDLHAMMER": "Hammer",
    "CDLSHOOTINGSTAR": "Shooting star",
    "CDLENGULFING": "Engulfing",
    "CDLMORNINGSTAR": "Morning star",
    "CDLEVENINGSTAR": "Evening star",
    "CDLPIERCING": "Piercing",
    "CDLDARKCLOUDCOVER": "Dark cloud cover",
    "CDL3WHITESOLDIERS": "Three white soldiers",
    "CDL3BLACKCROWS": "Three black crows",
}

_ENGULFING = "CDLENGULFING"


def pattern_span(name: str) -> int:
    """Bars the pattern ``name`` spans (``PATTERN_SPANS``, else ``DEFAULT_SPAN``)."""
    return PATTERN_SPANS.get(name, DEFAULT_SPAN)


def pattern_label(name: str) -> str:
    """A human name for the pattern: a short one for the defaults, else TA-Lib's display name."""
    label = _LABELS.get(name)
    if label is None:
        label = str(_ABSTRACT.Function(name).info["display_name"])
    return label


class CandlestickParams(StrategyParams):
    """candlestick_bot's parameters (see the module docstring)."""

    patterns: tuple[str, ...] = Field(DEFAULT_PATTERNS, min_length=1, max_length=len(TALIB_PATTERNS))
    min_strength: int = Field(100, ge=1, le=200)
    trend_filter: bool = True
    sma_period: int = Field(50, ge=2, le=1_000)
    stop_buffer_pct: float = Field(0.1, ge=0, le=10)
    lookback: int = Field(100, ge=2, le=5_000)

    @field_validator("patterns")
    @classmethod
    def _known_directional_patterns(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if name not in TALIB_PATTERNS:
                close = difflib.get_close_matches(name.upper(), sorted(TALIB_PATTERNS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(
                    f"unknown TA-Lib pattern {name!r}{hint}: use a name of "
                    "talib.get_function_groups()['Pattern Recognition']"
                )
            if name in NON_DIRECTIONAL:
                raise ValueError(
                    f"pattern {name!r} has no direction (TA-Lib's value says 'found' or gives the "
                    "candle's colour), so it cannot make a LONG or SHORT signal"
                )
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"patterns listed twice: {', '.join(duplicates)}")
        return names

    @model_validator(mode="after")
    def _lookback_covers_the_indicators(self) -> CandlestickParams:
        needed = minimum_bars(self)
        if self.lookback < needed:
            raise ValueError(
                f"lookback {self.lookback} is too short: the SMA and the patterns need {needed} bars"
            )
        return self


def minimum_bars(params: CandlestickParams) -> int:
    """The fewest bars a scan needs to find anything: each pattern's lookback + 1, and the SMA's period."""
    patterns = max(TALIB_LOOKBACK[name] for name in params.patterns) + 1
    return max(patterns, params.sma_period if params.trend_filter else 1)


def _sig(value: float, digits: int = 10) -> float:
    """``value`` rounded to ``digits`` significant digits (prices of any magnitude stay readable)."""
    return float(f"{value:.{digits}g}")


def _windows_clean(ok: npt.NDArray[np.bool_], span: int) -> npt.NDArray[np.bool_]:
    """For each bar t: the ``span`` bars t - span + 1 .. t exist and are all ``ok``."""
    bad = np.concatenate(([0], np.cumsum(~ok)))
    clean = np.zeros(ok.size, dtype=np.bool_)
    if ok.size >= span:
        clean[span - 1 :] = (bad[span:] - bad[: ok.size - span + 1]) == 0
    return clean


class CandlestickBot:
    """TA-Lib candlestick patterns that agree on a direction, with the SMA trend."""

    name = "candlestick_bot"
    params_model = CandlestickParams

    def needs(self, params: CandlestickParams, timeframe: str) -> DataNeeds:
        """The patterns' averages and the SMA need ``lookback`` bars of the bot's timeframe."""
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: CandlestickParams) -> Sequence[Setup]:
        """Every bar where the counted patterns agree and the trend allows it, oldest first."""
        c = data.candles
        size = len(c)
        if size < minimum_bars(params):
            return []
        names = params.patterns
        values = np.vstack(
            [
                np.asarray(getattr(talib, name)(c.open, c.high, c.low, c.close), dtype=np.int64)
                for name in names
            ]
        )
        ok = (
            np.isfinite(c.open)
            & np.isfinite(c.high)
            & np.isfinite(c.low)
            & np.isfinite(c.close)
            & np.isfinite(c.volume)
            & ~c.placeholder
        )
        more_volume = np.r_[False, c.volume[1:] > c.volume[:-1]]
        spans = np.array([pattern_span(name) for name in names], dtype=np.int64)
        counts = np.abs(values) >= params.min_strength
        for row, name in enumerate(names):
            counts[row] &= _windows_clean(ok, int(spans[row]))
            if name == _ENGULFING:
                counts[row] &= more_volume
        bullish: npt.NDArray[np.bool_] = np.logical_or.reduce(counts & (values > 0), axis=0)
        bearish: npt.NDArray[np.bool_] = np.logical_or.reduce(counts & (values < 0), axis=0)
        sma = talib.SMA(c.close, timeperiod=params.sma_period)
        long_ = bullish & ~bearish
        short = bearish & ~bullish
        if params.trend_filter:
            long_ &= c.close > sma  # NaN compares False: no signal before the SMA exists
            short &= c.close < sma
        fired = np.flatnonzero(long_ | short)
        if fired.size == 0:
            return []
        # Per signal: the widest span of its counted patterns, the bar of that span's extreme, the stop.
        counted = counts[:, fired]
        span = np.where(counted, spans[:, None], 0).max(axis=0)
        is_long = long_[fired]
        at = _extreme_bars(c.low, c.high, fired, span, is_long)
        extreme = np.where(is_long, c.low[at], c.high[at])
        entry = c.close[fired]
        buffer = entry * params.stop_buffer_pct / 100.0
        stop = np.where(is_long, extreme - buffer, extreme + buffer)
        labels = [pattern_label(name) for name in names]
        previous_volume = np.r_[np.nan, c.volume[:-1]]
        setups = []
        for k, i in enumerate(fired.tolist()):
            if stop[k] <= 0:
                continue
            rows = np.flatnonzero(counted[:, k]).tolist()
            setups.append(
                _setup(
                    params,
                    long_=bool(is_long[k]),
                    ts=int(c.ts[i]),
                    entry=float(entry[k]),
                    stop=float(stop[k]),
                    patterns=[(names[row], labels[row], int(values[row, i])) for row in rows],
                    span=int(span[k]),
                    extreme=float(extreme[k]),
                    extreme_ts=int(c.ts[at[k]]),
                    volume=(float(c.volume[i]), float(previous_volume[i])),
                    sma=float(sma[i]),
                )
            )
        return setups


def _extreme_bars(
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    bars: npt.NDArray[np.int64],
    spans: npt.NDArray[np.int64],
    is_long: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """For each bar b with span s: the bar of the lowest low (LONG) / highest high of bars b - s + 1 .. b.

    The first such bar on a tie. Every ``bars - spans + 1`` is >= 0 (a pattern only counts on full spans).
    """
    at = np.empty(bars.size, dtype=np.int64)
    for span in np.unique(spans).tolist():
        chosen = spans == span
        first = bars[chosen] - span + 1
        lows = sliding_window_view(low, span)[first]
        highs = sliding_window_view(high, span)[first]
        at[chosen] = first + np.where(is_long[chosen], lows.argmin(axis=1), highs.argmax(axis=1))
    return at


def _setup(
    params: CandlestickParams,
    *,
    long_: bool,
    ts: int,
    entry: float,
    stop: float,
    patterns: list[tuple[str, str, int]],
    span: int,
    extreme: float,
    extreme_ts: int,
    volume: tuple[float, float],
    sma: float,
) -> Setup:
    """One setup from its numbers; ``patterns`` are the counted ones as (TA-Lib name, label, value)."""
    names = [name for name, _, _ in patterns]
    labels = " + ".join(label for _, label, _ in patterns)
    side = "low" if long_ else "high"
    context: dict[str, ContextValue] = {"patterns": ",".join(names)}
    context.update({name: value for name, _, value in patterns})
    context["pattern_bars"] = span
    context[f"pattern_{side}"] = extreme
    reason = f"{'Bullish' if long_ else 'Bearish'} {labels}"
    if _ENGULFING in names:
        current, previous = volume
        context["volume"] = current
        context["previous_volume"] = previous
        if previous > 0:
            ratio = current / previous
            context["volume_vs_previous"] = round(ratio, 4)
            reason += f", volume {ratio:.2f}x previous"
    if math.isfinite(sma):
        context["sma"] = _sig(sma)
        context["close_vs_sma_pct"] = round((entry / sma - 1.0) * 100.0, 4)
    if params.trend_filter:
        reason += f"; close {entry:.8g} {'above' if long_ else 'below'} SMA {params.sma_period} {sma:.8g}"
    return Setup(
        direction=Direction.LONG if long_ else Direction.SHORT,
        bar_ts=ts,
        entry=entry,
        stop=stop,
        reason=reason,
        context=context,
        key_points=(KeyPoint(ts=extreme_ts, price=extreme, label=f"{labels} {side}"),),
    )
