"""Volume profile of a candle window: POC, value area (VAH / VAL) and high-volume nodes.

Each candle's volume is spread evenly over its [low, high] range (the usual assumption when only
OHLCV is known), so a row receives the share of the candle's range that it overlaps. Everything is
vectorised with numpy: one candles x rows overlap matrix, no Python loop per candle or per row.

:func:`analyze_volume_profile` turns a profile, RSI and the last candle's TA-Lib pattern into a
LONG / SHORT / NEUTRAL reading with levels from :mod:`tp_sl_calculator`. Both functions are pure.

Command line (see :func:`main`)::

    python volume_profile.py BTC/USDT --timeframe 1h                  # live MEXC, a table
    python volume_profile.py BTC/USDT --source replay:data/sample --at 2024-06-01 --json
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import numpy as np
import talib
from dotenv import load_dotenv

from bots.cli_arguments import utc_ms
from common.clock import Clock, SimulatedClock, WallClock
from common.config import MEXC_TIMEFRAMES, FleetConfig, Settings, load_config
from common.errors import ConfigError, DataError, FleetError
from common.logging_config import configure_logging, get_logger
from common.market import MarketSource, SeriesKey
from common.market.replay import ReplaySource
from common.prices import format_price
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


# --------------------------------------------------------------------------- command line

log = get_logger("volume_profile")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: <message>`` on stderr and exit with status 2."""
        self.exit(2, f"error: {message} (see --help)\n")


def _symbol(text: str) -> str:
    base, _, rest = text.partition("/")
    quote, colon, settle = rest.partition(":")
    if not base or not quote or (colon and not settle) or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(
            f"symbol {text!r} is not a ccxt unified symbol like BTC/USDT or BTC/USDT:USDT"
        )
    return text


def _source(text: str) -> list[Path] | None:
    """None for live MEXC, else the replay folders of ``replay:DIR[,DIR...]``."""
    if text == "mexc":
        return None
    folders = [Path(part) for part in text.removeprefix("replay:").split(",") if part]
    if not text.startswith("replay:") or not folders:
        raise argparse.ArgumentTypeError(f"source {text!r}: use mexc or replay:DIR[,DIR...]")
    return folders


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 10000")
    return int(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1], e.g. 0.70 for 70 %")
    return value


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="volume_profile.py",
        description="Volume profile (POC, value area, HVN) of the last closed candles, and its reading.",
    )
    parser.add_argument("symbol", type=_symbol, metavar="SYMBOL", help="ccxt symbol: BTC/USDT, BTC/USDT:USDT")
    parser.add_argument("--timeframe", default="1h", choices=MEXC_TIMEFRAMES, help="candle length (1h)")
    parser.add_argument(
        "--source",
        type=_source,
        default=None,
        metavar="mexc|replay:DIR[,DIR...]",
        help="live MEXC (default) or history files read as of the end of the data (or --at)",
    )
    parser.add_argument("--candles", type=_count, default=200, help="closed candles in the profile (200)")
    parser.add_argument("--rows", type=_count, default=24, help="price rows of the profile (24)")
    parser.add_argument(
        "--value-area", type=_fraction, default=0.70, help="share of volume in the value area (0.70)"
    )
    parser.add_argument("--at", type=utc_ms, metavar="ISO-TIME", help="replay only: look as of this time")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument(
        "--config", type=Path, help="global_config.json (default: $BOTS_CONFIG or ./global_config.json)"
    )
    return parser


def _settings_and_config(args: argparse.Namespace) -> tuple[Settings, FleetConfig]:
    """The environment and global_config.json (its exchange and risk sections; defaults if absent)."""
    settings = Settings.from_env(config_override=args.config)
    if args.config is None and not os.environ.get("BOTS_CONFIG") and not settings.config_path.exists():
        return settings, FleetConfig.defaults()
    from bots import REGISTRY  # noqa: PLC0415  (bots may import this module: no import at load time)

    models = {name: strategy.params_model for name, strategy in REGISTRY.items()}
    return settings, load_config(settings.config_path, models)


def _levels_json(analysis: ProfileAnalysis) -> dict[str, Any] | None:
    levels = analysis.levels
    return None if levels is None else {"entry": levels.entry, "sl": levels.sl, "tps": list(levels.tps)}


def _report(
    args: argparse.Namespace, candles: Candles, analysis: ProfileAnalysis, now_ms: int, tick: float | None
) -> dict[str, Any]:
    profile = analysis.profile
    mid = (profile.edges[:-1] + profile.edges[1:]) / 2
    return {
        "symbol": args.symbol,
        "timeframe": args.timeframe,
        "source": "mexc" if args.source is None else "replay",
        "as_of": _iso(now_ms),
        "candles": len(candles),
        "first_open": _iso(int(candles.ts[0])),
        "last_close": _iso(int(candles.ts[-1]) + candles.period_ms),
        "tick_size": tick,
        "poc": profile.poc_price,
        "vah": profile.vah,
        "val": profile.val,
        "value_area_pct": profile.value_area_pct,
        "hvn": [float(mid[i]) for i in profile.hvn_indices],
        "rows": profile.n_rows,
        "row_height": profile.row_height,
        "total_volume": profile.total_volume,
        "edges": profile.edges.tolist(),
        "row_volume": profile.row_volume.tolist(),
        "analysis": {
            "bias": analysis.bias.value,
            "score": analysis.score,
            "factors": list(analysis.factors),
            "close": analysis.close,
            "rsi": analysis.rsi,
            "patterns": dict(analysis.patterns),
            "levels": _levels_json(analysis),
            "rejection": None if analysis.rejection is None else analysis.rejection.value,
            "rejection_message": analysis.rejection_message,
        },
    }


def _table(report: dict[str, Any], tick_size: float | None) -> str:
    def price(value: float) -> str:
        return format_price(value, tick_size)

    analysis = report["analysis"]
    lines = [
        f"{report['symbol']} {report['timeframe']} ({report['source']}): {report['candles']} closed candles, "
        f"{report['first_open']} to {report['last_close']}",
        f"{'POC':<12}{price(report['poc'])}",
        f"{'VAH':<12}{price(report['vah'])}",
        f"{'VAL':<12}{price(report['val'])}",
        f"{'Value area':<12}{report['value_area_pct']:g} % of the volume",
        f"{'HVN':<12}{', '.join(price(p) for p in report['hvn']) or 'none'}",
        f"{'Close':<12}{price(analysis['close'])}",
        f"{'RSI(14)':<12}{'n/a' if analysis['rsi'] is None else format(analysis['rsi'], '.1f')}",
        f"{'Bias':<12}{analysis['bias']} (score {analysis['score']:+d})",
    ]
    factors = analysis["factors"] or ["none"]
    lines += [f"{'Factors' if i == 0 else '':<12}{factor}" for i, factor in enumerate(factors)]
    levels = analysis["levels"]
    if levels is not None:
        lines.append(f"{'Entry':<12}{price(levels['entry'])}")
        lines.append(f"{'SL':<12}{price(levels['sl'])}")
        lines += [f"{f'TP{n}':<12}{price(tp)}" for n, tp in enumerate(levels["tps"], start=1)]
    elif analysis["rejection"] is not None:
        lines.append(f"{'No levels':<12}{analysis['rejection']}: {analysis['rejection_message']}")
    return "\n".join(lines)


async def _main(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """Open the source, fetch the closed candles, print the profile; FleetError propagates."""
    source: MarketSource
    clock: Clock
    replay: ReplaySource | None = None
    if args.source is None:
        from common.market.mexc import MexcSource  # noqa: PLC0415  (ccxt: only when going live)

        key, secret = settings.mexc_api_key, settings.mexc_api_secret
        clock = WallClock()
        source = MexcSource(
            config.exchange,
            clock,
            base_url=settings.mexc_api_base_url,
            api_key=key.get_secret_value() if key else None,
            api_secret=secret.get_secret_value() if secret else None,
        )
    else:
        simulated = SimulatedClock(0)
        clock = simulated
        source = replay = ReplaySource(args.source, simulated)
    try:
        problems = await source.open([SeriesKey(args.symbol, args.timeframe)])
        if problems:
            raise DataError(problems[0].text)
        if replay is not None:
            simulated.set(args.at if args.at is not None else replay.end_ms())
        candles = await source.closed_candles(args.symbol, args.timeframe, args.candles)
        tick_size = source.market(args.symbol).tick_size
    finally:
        await source.close()
    if len(candles) == 0:
        raise DataError(f"{args.symbol} {args.timeframe}: no candle closed by {_iso(clock.now_ms())}")
    try:
        # Rounded so that 0.3 is 30 %, not 30.000000000000004 %.
        profile = calculate_volume_profile(candles, args.rows, round(args.value_area * 100, 9))
        analysis = analyze_volume_profile(candles, profile, risk=config.risk, tick_size=tick_size)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    report = _report(args, candles, analysis, clock.now_ms(), tick_size)
    print(json.dumps(report) if args.json else _table(report, tick_size))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python volume_profile.py SYMBOL [options]``: print a volume profile; returns the exit status.

    Fetches the last ``--candles`` CLOSED candles of SYMBOL (live MEXC, or ``--source replay:DIR``
    as of the end of the data or ``--at``), computes :func:`calculate_volume_profile` (``--rows``,
    ``--value-area`` as a fraction) and :func:`analyze_volume_profile` (risk settings of
    global_config.json when present), and prints a table, or with ``--json`` one object:

    * ``symbol``, ``timeframe``, ``source`` ("mexc" / "replay"), ``as_of`` (the time looked at),
      ``candles`` (how many), ``first_open`` / ``last_close`` (ISO 8601 UTC), ``tick_size`` (the
      market's price tick, null in a replay);
    * ``poc``, ``vah``, ``val``, ``value_area_pct`` (percent), ``hvn`` (midpoints of the high-volume
      rows), ``rows``, ``row_height``, ``total_volume``, ``edges`` and ``row_volume`` (the profile);
    * ``analysis``: ``bias`` (LONG / SHORT / NEUTRAL), ``score``, ``factors``, ``close``, ``rsi`` (or
      null), ``patterns`` ({TA-Lib name: value}), ``levels`` ({``entry``, ``sl``, ``tps``} or null),
      ``rejection`` and ``rejection_message`` (why there are no levels, or null).

    Prices are unrounded numbers in JSON; the table formats them with the market's tick. Exit
    status: 0 done; 2 bad arguments or configuration; 1 the data or the exchange failed (one line
    ``error: ...`` on stderr, never a traceback).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.at is not None and args.source is None:
        parser.error("--at needs --source replay:DIR (live data is always as of now)")
    try:
        load_dotenv(Path(".env"), override=False)
        settings, config = _settings_and_config(args)
        configure_logging(
            log_dir=settings.log_dir,
            process_name="volume-profile",
            secrets=settings.secrets(),
            console_level="WARNING",
        )
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_main(args, settings, config))
    except KeyboardInterrupt:
        return 130
    except FleetError as exc:
        log.info("volume profile failed", error=str(exc))  # the file only: stderr gets one line
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Info keeps the traceback in the log file and off the console (WARNING and up).
        log.info("fatal error", exc_info=True)
        print(f"fatal: {type(exc).__name__}: {exc} (details in {settings.log_dir})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
