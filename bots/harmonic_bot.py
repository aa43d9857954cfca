"""harmonic_bot: harmonic XABCD patterns (Gartley, Bat, Butterfly, Crab, ...) completed at a zigzag pivot.

Rule (on each closed candle t):

* **Pivots**: :func:`common.pivots.zigzag` with a minimum move of ``zigzag_atr_mult`` x ATR(``atr_period``)
  (TA-Lib ATR at the pivot's bar), or of ``zigzag_pct`` % of the pivot's price when that is set, and
  at least ``min_leg_bars`` bars between consecutive pivots. A pivot is known only from the bar where
  price has moved away from it by the minimum move (its ``confirmed_at``, at least ``min_leg_bars``
  after it): the setup's time is that confirmation (or a later bar), never the pivot's own bar.
* The last five pivots confirmed at t are X, A, B, C, D (they alternate high / low). Ratios:
  XAB = |B-A|/|X-A|, ABC = |C-B|/|A-B|, BCD = |D-C|/|B-C|, XAD = |D-A|/|X-A|, and CD/AB = |D-C|/|B-A|.
* **Patterns**: a pattern matches when every ratio it names is inside its window (bounds included)
  and its **error**, the sum of |ratio - ideal| over the ratios that have an ideal, is at most its
  maximum error. Of several matches the smallest error wins (the table's order breaks a tie). The
  table (``PATTERNS``; ideal = the classical ratio where the pattern has one, else the window's
  midpoint; "-" = not checked):

  ===========  ====================  ======================  ======================  ============  =========
  pattern      XAB (ideal)           XAD (ideal)             ABC (ideal)             other         max error
  ===========  ====================  ======================  ======================  ============  =========
  Gartley      0.61-0.625 (0.618)    0.75-0.875 (0.786)      -                       -             0.10
  Bat          0.382-0.5 (0.441)     up to 0.886 (0.886)     -                       -             0.10
  Butterfly    up to 0.786 (0.786)   1.27-1.618 (1.444)      -                       -             0.15
  Crab         0.5-0.875 (0.6875)    1.382-5 (1.618)         -                       -             0.15
  Deep Crab    0.88-0.895 (0.886)    1.60-1.63 (1.618)       -                       -             0.08
  Shark        0.5-0.875 (0.6875)    0.886-1.13 (1.008)      1.13-1.618 (1.374)      -             0.15
  Cypher       0.382-0.618 (0.5)     0.76-0.80 (0.786)       1.13-1.414 (1.272)      -             0.12
  AB=CD        -                     -                       0.382-0.886 (gate)      BCD 1.13-2.618  0.10
                                                                                     (gate), CD/AB
                                                                                     0.9-1.1 (1.0)
  ===========  ====================  ======================  ======================  ============  =========

  The open-ended windows ("up to 0.886", "1.382-5") are the rule's; the maximum error bounds them in
  practice (a Bat needs XAD >= 0.786 even with a perfect XAB). AB=CD is "the AB leg equals the CD leg
  within 10 %": its error is |CD/AB - 1| alone, and the ABC and BCD windows are gates (in a perfect
  AB=CD BCD is 1 / ABC, so penalising BCD's distance from a fixed ideal would reject perfect ones).
* D must lie on X's side of A (below A when D is a low, above it when D is a high), as in every
  harmonic pattern; ratios alone would also accept a D beyond A.
* D a low -> bullish (LONG); D a high -> bearish (SHORT).
* **Filters**, at bar t: D was confirmed at most ``max_bars_since_d`` bars ago (and is still the last
  confirmed pivot); RSI(``rsi_period``) <= ``rsi_oversold`` for a LONG, >= ``rsi_overbought`` for a
  SHORT, read at t (``rsi_bar`` "signal") or at D's own bar (``rsi_bar`` "d"); the close of t within
  D +/- ``d_zone_atr`` x ATR(t) (bounds included). One setup per D pivot (so per pattern and D): on
  the first bar of that window that passes the filters, none if no bar does.
* **Levels**: entry = D + ``entry_offset_atr`` x ATR(t) for a LONG, D - that for a SHORT. The rule
  gives the entry explicitly, so ``Setup.entry`` is that price, NOT the close of the signal bar (which
  is within ``d_zone_atr`` ATR of it); ``tp_sl_calculator`` measures risk and targets from
  ``Setup.entry`` and accepts it like any other entry. Stop = D -/+ ``stop_cd_fraction`` x |D - C|
  (``Setup.stop``). ``Setup.swing`` is (D, A) for a LONG and (A, D) for a SHORT, so the risk block
  ``{"sl_method": "structure", "tp_method": "fibonacci", "fib_extensions": [0.382, 0.618, 1.0],
  "min_rr": 1.0}`` puts TP1..TP3 at the 0.382, 0.618 and 1.0 retracements of AD (D + e x (A - D);
  SHORT: D - e x (D - A)); ``"tp_method": "r"`` with ``tp_multiples`` gives R multiples instead.
  ``Setup.atr`` is ATR(t).

Each setup's ``reason`` names the pattern and its ratios ("Bullish Gartley: XAB 0.620, XAD 0.790, ABC
0.50, BCD 1.55"; AB=CD adds "CD/AB 1.00"); its ``context`` holds ``pattern`` (the name), the ratios
``xab``, ``xad``, ``abc``, ``bcd``, ``cd_ab`` and the ``error`` (4 decimals), ``rsi`` (the value the
filter read, 2 decimals), ``atr`` (10 significant digits), the pivot prices ``x`` .. ``d`` (as in
the data), ``d_confirmed_bars_ago`` and ``close_from_d_atr`` ((close - D) / ATR, 3 decimals); its
``key_points`` are X, A, B, C, D at their own bars (labels "X" .. "D").

Parameters (``bots.harmonic_bot.params``), with defaults: atr_period 14, zigzag_atr_mult 3.0,
zigzag_pct null (ATR mode), min_leg_bars 3, patterns all eight ("gartley", "bat", "butterfly", "crab",
"deep_crab", "shark", "cypher", "abcd"), rsi_period 14, rsi_oversold 30, rsi_overbought 70 (100 and
0 turn the RSI filter off), rsi_bar "signal", max_bars_since_d 3, d_zone_atr 0.5, entry_offset_atr
0.05, stop_cd_fraction 0.5, lookback 1000 (bars of history per scan: five confirmed pivots spanned at
most 430 bars on years of BTC 5m, 1h and ETH 4h data, and a zigzag started that far back had found
the same last five pivots as the whole-history one at every bar tried from 500 bars on; the tests
check that last-1000-bar scans give the whole scan's setups).

Never a signal: on a placeholder bar, where ATR or the RSI read is NaN (their warm-up) or ATR is 0
(a series that never moved), before five pivots are confirmed, or where the stop or the entry would
not be a positive price (a LONG whose |D - C| is more than twice D).

Where it differs from the rule as stated:

* The zigzag's details (threshold at the pivot's bar; the confirming move counted only from
  ``min_leg_bars`` bars after the pivot; ties) are :func:`common.pivots.zigzag`'s, documented there.
* The classical patterns check only the windows the rule names (XAB and XAD, ABC for Shark and
  Cypher), not ABC / BCD; AB=CD's error is its leg ratio (above); D must be on X's side of A.
* ``rsi_bar`` is an addition (the rule does not say where RSI is read; "signal" is the literal
  reading and the default).
* **With the defaults the bot almost never fires.** A confirmed D means price has already moved 3 ATR
  away from it, and the close must be back within 0.5 ATR of D no more than 3 bars later, with RSI
  still at an extreme: in practice only a bar that spikes 3 ATR away from D and closes next to it
  again passes. On the 1.69 million bars of the shared data (59 series) the defaults give 11 setups:
  8 on the 5m spot series (BTC 2, TRX 2, DOGE, ETH, LTC, XRP 1 each), one each on DOGE and SOL 5m and
  ETH 15m perpetuals, none on any 1h, 4h or 1d series, although about one D in 20 completes a
  pattern (120 matches on the 58,623 bars of BTC 1h, 123 on ETH 1h). Each filter blocks on its own:
  of those matches the zone passes 2 / 3 and RSI at the signal bar 3 / 6, never both. The filters
  read as written for a repainting zigzag, whose D is the running extreme with price (and an
  oversold RSI) right at it; issue 7 requires confirmed pivots. The defaults are kept as the rule
  gives them; ``rsi_bar`` "d" with ``d_zone_atr`` 3.5 (the zigzag's 3 ATR plus the rule's 0.5)
  reads the rule on confirmed pivots and gives 1,218 setups on the same data (36 on BTC 1h, 46 on
  ETH 1h; at most 0.15 % of the bars of any series).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.pivots import LOW, Pivots, zigzag
from common.types import Candles, ContextValue, Direction, FloatArray, KeyPoint, Setup

PatternKey = Literal["gartley", "bat", "butterfly", "crab", "deep_crab", "shark", "cypher", "abcd"]
RatioName = Literal["xab", "xad", "abc", "bcd", "cd_ab"]
RATIO_NAMES: tuple[RatioName, ...] = ("xab", "xad", "abc", "bcd", "cd_ab")


@dataclass(frozen=True)
class Window:
    """Allowed values of one ratio (bounds included) and its ideal; ``ideal`` None: a gate only."""

    low: float
    high: float
    ideal: float | None


@dataclass(frozen=True)
class Pattern:
    """One harmonic pattern: its windows per ratio and the largest error it accepts."""

    key: PatternKey
    name: str
    windows: Mapping[RatioName, Window]
    max_error: float


#: The pattern table of the module docstring, in tie-break order.
PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "gartley",
        "Gartley",
        {"xab": Window(0.61, 0.625, 0.618), "xad": Window(0.75, 0.875, 0.786)},
        0.10,
    ),
    Pattern("bat", "Bat", {"xab": Window(0.382, 0.5, 0.441), "xad": Window(0.0, 0.886, 0.886)}, 0.10),
    Pattern(
        "butterfly",
        "Butterfly",
        {"xab": Window(0.0, 0.786, 0.786), "xad": Window(1.27, 1.618, 1.444)},
        0.15,
    ),
    Pattern("crab", "Crab", {"xab": Window(0.5, 0.875, 0.6875), "xad": Window(1.382, 5.0, 1.618)}, 0.15),
    Pattern(
        "deep_crab",
        "Deep Crab",
        {"xab": Window(0.88, 0.895, 0.886), "xad": Window(1.60, 1.63, 1.618)},
        0.08,
    ),
    Pattern(
        "shark",
        "Shark",
        {
            "xab": Window(0.5, 0.875, 0.6875),
            "xad": Window(0.886, 1.13, 1.008),
            "abc": Window(1.13, 1.618, 1.374),
        },
        0.15,
    ),
    Pattern(
        "cypher",
        "Cypher",
        {
            "xab": Window(0.382, 0.618, 0.5),
            "xad": Window(0.76, 0.80, 0.786),
            "abc": Window(1.13, 1.414, 1.272),
        },
        0.12,
    ),
    Pattern(
        "abcd",
        "AB=CD",
        {
            "abc": Window(0.382, 0.886, None),
            "bcd": Window(1.13, 2.618, None),
            "cd_ab": Window(0.9, 1.1, 1.0),
        },
        0.10,
    ),
)

ALL_PATTERNS: tuple[PatternKey, ...] = tuple(pattern.key for pattern in PATTERNS)


class HarmonicParams(StrategyParams):
    """harmonic_bot's parameters (see the module docstring)."""

    atr_period: int = Field(14, ge=1, le=200)
    zigzag_atr_mult: float = Field(3.0, gt=0, le=50)
    zigzag_pct: float | None = Field(None, gt=0, le=100)
    min_leg_bars: int = Field(3, ge=1, le=200)
    patterns: tuple[PatternKey, ...] = Field(ALL_PATTERNS, min_length=1)
    rsi_period: int = Field(14, ge=2, le=200)
    rsi_oversold: float = Field(30.0, ge=0, le=100)
    rsi_overbought: float = Field(70.0, ge=0, le=100)
    rsi_bar: Literal["signal", "d"] = "signal"
    max_bars_since_d: int = Field(3, ge=0, le=200)
    d_zone_atr: float = Field(0.5, ge=0, le=50)
    entry_offset_atr: float = Field(0.05, ge=0, le=10)
    stop_cd_fraction: float = Field(0.5, gt=0, le=10)
    lookback: int = Field(1000, ge=100, le=20_000)

    @model_validator(mode="after")
    def _patterns_once(self) -> HarmonicParams:
        if len(set(self.patterns)) != len(self.patterns):
            raise ValueError(f"patterns must name each pattern at most once, got {list(self.patterns)}")
        return self


@dataclass(frozen=True)
class Ratios:
    """The ratios of every XABCD window of a pivot series: entry k belongs to D = pivot k + 4."""

    xab: FloatArray
    xad: FloatArray
    abc: FloatArray
    bcd: FloatArray
    cd_ab: FloatArray

    @classmethod
    def of(cls, prices: FloatArray) -> Ratios:
        """Ratios of each run of five consecutive pivot prices (pivots alternate, so no leg is zero)."""
        x, a, b, c, d = (prices[i : prices.size - 4 + i] for i in range(5))
        xa, ab, bc, cd = np.abs(a - x), np.abs(b - a), np.abs(c - b), np.abs(d - c)
        return cls(xab=ab / xa, xad=np.abs(d - a) / xa, abc=bc / ab, bcd=cd / bc, cd_ab=cd / ab)

    def get(self, name: RatioName) -> FloatArray:
        """The ratio called ``name``."""
        values: FloatArray = getattr(self, name)
        return values

    def at(self, k: int) -> dict[RatioName, float]:
        """The ratios of window ``k`` as plain floats."""
        return {name: float(self.get(name)[k]) for name in RATIO_NAMES}


def pattern_errors(ratios: Ratios, patterns: Sequence[PatternKey] = ALL_PATTERNS) -> FloatArray:
    """Error of each pattern (rows, in ``PATTERNS`` order) at each XABCD window; inf where it does not match.

    Patterns left out of ``patterns`` never match.
    """
    errors = np.full((len(PATTERNS), ratios.xab.size), np.inf)
    for row, pattern in enumerate(PATTERNS):
        if pattern.key not in patterns:
            continue
        error = np.zeros(ratios.xab.size)
        inside = np.ones(ratios.xab.size, dtype=np.bool_)
        for name, window in pattern.windows.items():
            values = ratios.get(name)
            inside &= (values >= window.low) & (values <= window.high)
            if window.ideal is not None:
                error += np.abs(values - window.ideal)
        errors[row] = np.where(inside & (error <= pattern.max_error), error, np.inf)
    return errors


def _significant(value: float) -> float:
    return float(f"{value:.10g}")


class HarmonicBot:
    """Harmonic XABCD patterns at the last five confirmed zigzag pivots, filtered by RSI and price."""

    name = "harmonic_bot"
    params_model = HarmonicParams

    def needs(self, params: HarmonicParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe: enough for five pivots and a settled zigzag."""
        return DataNeeds(lookback=params.lookback)

    def pivots(self, data: MarketData, params: HarmonicParams) -> Pivots:
        """The zigzag the scan reads its X, A, B, C, D from (ATR or percent minimum move)."""
        c = data.candles
        return _zigzag(c, params, talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period))

    def scan(self, data: MarketData, params: HarmonicParams) -> Sequence[Setup]:
        """Every harmonic setup in ``data.candles``, oldest first (at most one per D pivot)."""
        c = data.candles
        if len(c) <= max(params.atr_period, params.rsi_period):
            return []
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
        rsi = talib.RSI(c.close, timeperiod=params.rsi_period)
        pivots = _zigzag(c, params, atr)
        if len(pivots) < 5:
            return []
        ratios = Ratios.of(pivots.price)
        errors = pattern_errors(ratios, params.patterns)
        # D on X's side of A (below A when D is a low), as in every harmonic pattern.
        d_prices, a_prices = pivots.price[4:], pivots.price[1:-3]
        errors[:, np.where(pivots.kind[4:] == LOW, d_prices >= a_prices, d_prices <= a_prices)] = np.inf
        best = np.argmin(errors, axis=0)
        setups = []
        for k in np.flatnonzero(np.isfinite(errors.min(axis=0))).tolist():
            match = Match(pivots, k + 4, PATTERNS[int(best[k])], float(errors[best[k], k]), ratios.at(k))
            t = _first_bar(match, c, params, atr, rsi)
            if t is not None:
                setup = _setup(match, c, t, params, float(atr[t]), _rsi_of(match, t, params, rsi))
                if setup is not None:
                    setups.append(setup)
        return setups


def _zigzag(c: Candles, params: HarmonicParams, atr: FloatArray) -> Pivots:
    """Zigzag pivots of ``c``: ``zigzag_pct`` % moves when set, else ``zigzag_atr_mult`` x ``atr``."""
    if params.zigzag_pct is not None:
        return zigzag(c.high, c.low, min_move_pct=params.zigzag_pct, min_bars=params.min_leg_bars)
    return zigzag(c.high, c.low, min_move=params.zigzag_atr_mult * atr, min_bars=params.min_leg_bars)


@dataclass(frozen=True)
class Match:
    """A pattern found at the five pivots ending with pivot ``d``."""

    pivots: Pivots
    d: int
    pattern: Pattern
    error: float
    ratios: Mapping[RatioName, float]

    @property
    def long(self) -> bool:
        """Bullish: D is a low."""
        return int(self.pivots.kind[self.d]) == LOW

    @property
    def d_price(self) -> float:
        """D's price."""
        return float(self.pivots.price[self.d])


def _rsi_of(match: Match, t: int, params: HarmonicParams, rsi: FloatArray) -> float:
    """The RSI the filter reads for ``match`` on bar ``t``: at t, or at D's own bar (``rsi_bar``)."""
    return float(rsi[t] if params.rsi_bar == "signal" else rsi[int(match.pivots.index[match.d])])


def _first_bar(
    match: Match, c: Candles, params: HarmonicParams, atr: FloatArray, rsi: FloatArray
) -> int | None:
    """The first bar from D's confirmation on where every filter passes, or None."""
    pivots, d = match.pivots, match.d
    first = int(pivots.confirmed_at[d])
    last = min(first + params.max_bars_since_d, len(c) - 1)
    if d + 1 < len(pivots):  # D stops being the last confirmed pivot when the next one is
        last = min(last, int(pivots.confirmed_at[d + 1]) - 1)
    for t in range(first, last + 1):
        bar_atr, bar_rsi = float(atr[t]), _rsi_of(match, t, params, rsi)
        if bool(c.placeholder[t]) or not (math.isfinite(bar_atr) and bar_atr > 0 and math.isfinite(bar_rsi)):
            continue
        if abs(float(c.close[t]) - match.d_price) > params.d_zone_atr * bar_atr:
            continue
        if bar_rsi <= params.rsi_oversold if match.long else bar_rsi >= params.rsi_overbought:
            return t
    return None


def _setup(
    match: Match, c: Candles, t: int, params: HarmonicParams, bar_atr: float, bar_rsi: float
) -> Setup | None:
    """The setup of ``match`` on bar ``t``; None when the stop or entry would not be a positive price."""
    pivots, d = match.pivots, match.d
    a, cc, dd = (float(pivots.price[i]) for i in (d - 3, d - 1, d))
    direction = Direction.LONG if match.long else Direction.SHORT
    sign = direction.sign
    entry = dd + sign * params.entry_offset_atr * bar_atr
    stop = dd - sign * params.stop_cd_fraction * abs(dd - cc)
    if entry <= 0 or stop <= 0:
        return None
    r = match.ratios
    reason = (
        f"{'Bullish' if match.long else 'Bearish'} {match.pattern.name}: "
        f"XAB {r['xab']:.3f}, XAD {r['xad']:.3f}, ABC {r['abc']:.2f}, BCD {r['bcd']:.2f}"
    )
    if match.pattern.key == "abcd":
        reason += f", CD/AB {r['cd_ab']:.2f}"
    context: dict[str, ContextValue] = {"pattern": match.pattern.name}
    context.update({name: round(value, 4) for name, value in r.items()})
    context["error"] = round(match.error, 4)
    context["rsi"] = round(bar_rsi, 2)
    context["atr"] = _significant(bar_atr)
    context.update(
        {label: float(pivots.price[i]) for label, i in zip("xabcd", range(d - 4, d + 1), strict=True)}
    )
    context["d_confirmed_bars_ago"] = t - int(pivots.confirmed_at[d])
    context["close_from_d_atr"] = round((float(c.close[t]) - dd) / bar_atr, 3)
    key_points = tuple(
        KeyPoint(ts=int(c.ts[int(pivots.index[i])]), price=float(pivots.price[i]), label=label)
        for label, i in zip("XABCD", range(d - 4, d + 1), strict=True)
    )
    return Setup(
        direction=direction,
        bar_ts=int(c.ts[t]),
        entry=entry,
        reason=reason,
        atr=bar_atr,
        stop=stop,
        swing=(dd, a) if match.long else (a, dd),
        context=context,
        key_points=key_points,
    )
