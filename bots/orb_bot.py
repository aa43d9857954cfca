"""orb_bot: opening range breakout, one range per session of a 24/7 market.

Rule (on each closed candle t of the bot's timeframe; 5m is the one it is meant for):

* **Sessions** start at fixed UTC times ``sessions`` ("HH:MM"; default ["00:00"], e.g. ["00:00",
  "08:00", "13:30"] for the Asian, London and New York opens). A session lasts until the next session
  starts (the last one of the day until the first one of the next day). Times are UTC all year: there
  is no daylight-saving shift (13:30 UTC is the New York open in summer only).
* The **opening range** of a stage is the high and low of the session's first ``stage`` minutes
  (``stages``, default [60]; the multi-stage variant, e.g. [5, 15, 30, 60], tracks one range per stage,
  each with its own setups). The range counts only when it is complete: every one of its
  ``stage / timeframe`` candles is present (none missing from the history given, e.g. a window that
  starts mid-session, and none an exchange placeholder, whose flat price is not the market's range)
  and its high is above its low.
* A **breakout** is a close beyond the range, on a bar after the range's last candle closed and before
  the next session starts: LONG when close > range high x (1 + ``breakout_pct`` / 100), SHORT when
  close < range low x (1 - ``breakout_pct`` / 100). With ``require_volume`` (default off) the bar's
  volume must also be above its ``volume_period``-bar mean (TA-Lib's SMA: the last ``volume_period``
  bars, the bar itself included).
* **One signal per (session, stage, direction)**: the first breakout bar only (the first bar that
  meets every condition, the volume filter included). A session can give a LONG and, later, a SHORT
  (a failed breakout reversing through the other edge), per stage. With several stages one bar can
  break out of several ranges: each is its own setup (oldest first, then by stage).
* Entry is the close of the breakout bar. The stop is the opposite edge of the range (``stop_at``
  "edge"; "mid": the range's midpoint). The setup's ``atr`` is the range height and its ``swing``
  the range (low, high), so the risk block {"sl_method": "structure", "tp_method": "atr",
  "tp_multiples": [1.0, 2.0]} gives TP1 = entry + range height and TP2 = entry + 2 x range height
  (mirrored for a SHORT), as the rule asks. With the stop at the opposite edge the risk is the range
  height plus the close's overshoot beyond the edge, so TP1's reward:risk is below 1 by construction
  (height / (height + overshoot)); ``min_rr`` 0.5 then rejects exactly the breakouts whose close ran
  more than one range height past the edge (chasing), about 2-3 % of them on real 5m series. With
  the stop at the midpoint TP1's reward:risk is at most 2.

Parameters (``bots.orb_bot.params``), with defaults: sessions ["00:00"], stages [60] (minutes),
breakout_pct 0.1 (percent), require_volume false, volume_period 20, stop_at "edge", lookback 300 (bars
per scan: a session must fit in it, 288 five-minute bars for the default 24-hour session; ``needs``
refuses a shorter lookback).

The timeframe must divide every stage and every session start (in minutes): 5m divides them all for
the defaults, 1h does not divide 13:30 nor a 5-minute stage. ``needs`` and ``scan`` raise
:class:`OrbConfigError` (a ``ValueError``) naming the offending values; ``check-config`` and ``run``
report it as a one-line configuration error naming the bot (exit status 2).

Where it departs from the rule as the previous bot stated it: the opening range length N is the
one-element ``stages`` list rather than a parameter of its own (stages [60] is "the first 60
minutes"); a range with a missing or placeholder candle gives no setup for that session instead of a
range measured from the candles that are there; the volume mean includes the breakout bar (as
TA-Lib's SMA and a rolling mean do), and the first ``volume_period - 1`` bars of a history (no mean
yet) are never a signal even without ``require_volume``, since every setup reports its volume ratio;
stages must be shorter than the shortest session, so every range leaves bars to break out on; a
timeframe that does not divide the stages and session starts is an error, not rounded.

Conventions: the volume mean has TA-Lib ``SMA(n)``'s lookback: its first value is at index n - 1 and
earlier values are NaN; a bar with any NaN input is never a signal. Each window of the mean is summed
on its own rather than as a running total, so nothing in the scan depends on where the history
starts: a scan of the runner's ``lookback`` window gives exactly the setups a scan of the whole history
gives on the window's bars whose session started inside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import Candles, Direction, FloatArray, IntArray, KeyPoint, Setup, timeframe_ms

MINUTE_MS = 60_000
DAY_MINUTES = 1_440
DAY_MS = DAY_MINUTES * MINUTE_MS

_SESSION_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class OrbConfigError(ValueError):
    """The bot's timeframe or lookback does not fit its sessions and stages (a configuration mistake)."""


def session_minutes(text: str) -> int:
    """Minutes after midnight UTC of a session time "HH:MM" (00:00 to 23:59)."""
    match = _SESSION_TIME.match(text)
    if match is None:
        raise ValueError(f"session time {text!r} is not HH:MM (00:00 to 23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


class OrbParams(StrategyParams):
    """orb_bot's parameters (see the module docstring)."""

    sessions: tuple[str, ...] = Field(("00:00",), min_length=1, max_length=24)
    stages: tuple[int, ...] = Field((60,), min_length=1, max_length=8)
    breakout_pct: float = Field(0.1, ge=0, le=10)
    require_volume: bool = False
    volume_period: int = Field(20, ge=2, le=500)
    stop_at: Literal["edge", "mid"] = "edge"
    lookback: int = Field(300, ge=50, le=5_000)

    @field_validator("sessions")
    @classmethod
    def _sessions_sorted_and_unique(cls, sessions: tuple[str, ...]) -> tuple[str, ...]:
        minutes = [session_minutes(text) for text in sessions]
        if len(set(minutes)) != len(minutes):
            raise ValueError(f"session times must be distinct, got {list(sessions)}")
        return tuple(text for _, text in sorted(zip(minutes, sessions, strict=True)))

    @field_validator("stages")
    @classmethod
    def _stages_sorted_and_unique(cls, stages: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= stage <= DAY_MINUTES - 1 for stage in stages):
            raise ValueError(f"stages must be 1 to {DAY_MINUTES - 1} minutes, got {list(stages)}")
        if len(set(stages)) != len(stages):
            raise ValueError(f"stages must be distinct, got {list(stages)}")
        return tuple(sorted(stages))

    @model_validator(mode="after")
    def _ranges_fit_in_sessions(self) -> OrbParams:
        shortest = min(session_lengths(self.sessions))
        if max(self.stages) >= shortest:
            raise ValueError(
                f"the longest stage ({max(self.stages)} minutes) must be shorter than the shortest "
                f"session ({shortest} minutes), or no bar is left for a breakout"
            )
        if self.volume_period > self.lookback:
            raise ValueError(f"volume_period {self.volume_period} exceeds lookback {self.lookback}")
        return self


def session_lengths(sessions: Sequence[str]) -> list[int]:
    """Each session's length in minutes, from its start to the next start (the last wraps to the next day)."""
    starts = sorted(session_minutes(text) for text in sessions)
    following = [*starts[1:], starts[0] + DAY_MINUTES]
    return [later - start for start, later in zip(starts, following, strict=True)]


def bar_minutes(params: OrbParams, timeframe: str) -> int:
    """The timeframe in minutes; raises OrbConfigError unless it divides every stage and session start."""
    try:
        minutes = timeframe_ms(timeframe) // MINUTE_MS
    except ValueError as exc:
        raise OrbConfigError(str(exc)) from exc
    stages = [stage for stage in params.stages if stage % minutes]
    starts = [text for text in params.sessions if session_minutes(text) % minutes]
    if stages or starts:
        what = []
        if stages:
            what.append(f"the opening range stage(s) {stages} minutes")
        if starts:
            what.append(f"the session start(s) {starts}")
        raise OrbConfigError(
            f"timeframe {timeframe} does not divide {' nor '.join(what)}; "
            "use 5m or a timeframe that divides every stage and session start"
        )
    return minutes


@dataclass(frozen=True)
class SessionBars:
    """Where each bar sits: its session's start (ms), its offset in the session (ms), its session's group."""

    start_ms: IntArray
    offset_ms: IntArray
    group: IntArray
    session_index: IntArray


def session_bars(ts: IntArray, sessions: Sequence[str]) -> SessionBars:
    """Assign every bar (open time ``ts``, UTC ms) to the session it opens in, vectorised.

    A bar belongs to the latest session start at or before its open time; bars before the day's first
    start belong to the previous day's last session. ``group`` numbers the runs of consecutive bars of
    one session (0, 1, ...), ``session_index`` is the index of its start time in ``sessions``.
    """
    starts = np.array([session_minutes(text) for text in sessions], dtype=np.int64)
    day_ms = ts - ts % DAY_MS
    minute = (ts % DAY_MS) // MINUTE_MS
    which = np.searchsorted(starts, minute, side="right") - 1
    yesterday = which < 0
    which = np.where(yesterday, starts.size - 1, which)
    start_ms = day_ms - yesterday * DAY_MS + starts[which] * MINUTE_MS
    new_group = np.r_[True, start_ms[1:] != start_ms[:-1]]
    group = np.cumsum(new_group) - 1
    return SessionBars(start_ms=start_ms, offset_ms=ts - start_ms, group=group, session_index=which)


@dataclass(frozen=True)
class StageRanges:
    """One stage's opening range broadcast to every bar: NaN where the bar's session has no complete range."""

    high: FloatArray
    low: FloatArray


def stage_ranges(c: Candles, bars: SessionBars, stage_ms: int, bar_ms: int) -> StageRanges:
    """High and low of each session's first ``stage_ms``, for sessions whose range is complete.

    Complete: ``stage_ms / bar_ms`` candles, the first one at the session's start, none a placeholder,
    and a high above the low. Every bar of the session carries its range (NaN otherwise).
    """
    groups = int(bars.group[-1]) + 1
    high = np.full(groups, np.nan)
    low = np.full(groups, np.nan)
    in_range = np.flatnonzero(bars.offset_ms < stage_ms)
    if in_range.size:
        range_group = bars.group[in_range]
        run_start = np.flatnonzero(np.r_[True, range_group[1:] != range_group[:-1]])
        counts = np.diff(np.r_[run_start, in_range.size])
        highs = np.maximum.reduceat(c.high[in_range], run_start)
        lows = np.minimum.reduceat(c.low[in_range], run_start)
        holes = np.logical_or.reduceat(c.placeholder[in_range], run_start)
        complete = (
            (counts == stage_ms // bar_ms)
            & (bars.offset_ms[in_range[run_start]] == 0)
            & ~holes
            & (highs > lows)
        )
        ids = range_group[run_start][complete]
        high[ids] = highs[complete]
        low[ids] = lows[complete]
    return StageRanges(high=high[bars.group], low=low[bars.group])


def first_per_group(fires: npt.NDArray[np.bool_], group: IntArray) -> IntArray:
    """Indices of the first True of ``fires`` in each run of equal ``group`` values."""
    index = np.flatnonzero(fires)
    if index.size == 0:
        return index.astype(np.int64)
    first: IntArray = index[np.r_[True, group[index][1:] != group[index][:-1]]].astype(np.int64)
    return first


def rolling_mean(values: FloatArray, period: int) -> FloatArray:
    """Mean of the last ``period`` values at each index (NaN before the first full window).

    The value TA-Lib's ``SMA`` gives, but every window is summed on its own, in the same order
    (elementwise, oldest first), instead of a running total: the result at a bar is bit-identical
    whatever bar the history starts at, so a scan over the runner's ``lookback`` window and a scan
    over the whole history agree exactly.
    """
    size = values.size
    mean = np.full(size, np.nan)
    if size >= period:
        count = size - period + 1
        total = values[:count].copy()
        for k in range(1, period):
            total += values[k : k + count]
        mean[period - 1 :] = total / period
    return mean


def _price(value: float) -> str:
    return f"{value:.10g}"


def _sig(value: float) -> float:
    """``value`` to 10 significant digits: a derived price without float noise (101.10000000000001)."""
    return float(f"{value:.10g}")


@dataclass(frozen=True)
class Breakout:
    """One first breakout: its bar (index, open time, close, volume ratio), stage and direction, and the
    range it broke (high, low, the level beyond which a close counts, start time, session index)."""

    index: int
    bar_ts: int
    close: float
    volume_ratio: float
    stage: int
    direction: Direction
    high: float
    low: float
    level: float
    range_start: int
    session: int


class OrbBot:
    """Opening range breakout per UTC session and stage: the first close beyond the range, each way."""

    name = "orb_bot"
    params_model = OrbParams

    def needs(self, params: OrbParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars; the timeframe must divide stages and session starts; a session must fit."""
        minutes = bar_minutes(params, timeframe)
        longest = max(session_lengths(params.sessions)) // minutes
        if params.lookback < longest:
            raise OrbConfigError(
                f"lookback {params.lookback} is shorter than the longest session "
                f"({longest} bars of {timeframe}); set lookback to at least {longest}"
            )
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: OrbParams) -> Sequence[Setup]:
        """Every first breakout per (session, stage, direction) in ``data.candles``, oldest first."""
        c = data.candles
        bar_ms = bar_minutes(params, c.timeframe) * MINUTE_MS
        if len(c) < params.volume_period:
            return []
        bars = session_bars(c.ts, params.sessions)
        mean_volume = rolling_mean(c.volume, params.volume_period)
        ratio = np.full(len(c), np.nan)
        positive = mean_volume > 0
        ratio[positive] = c.volume[positive] / mean_volume[positive]
        ratio[mean_volume == 0] = 0.0  # the mean includes the bar: its volume is 0 too
        usable = np.isfinite(ratio) & ~c.placeholder
        if params.require_volume:
            usable &= c.volume > mean_volume
        breakouts: list[Breakout] = []
        for stage in params.stages:
            stage_ms = stage * MINUTE_MS
            ranges = stage_ranges(c, bars, stage_ms, bar_ms)
            eligible = usable & (bars.offset_ms >= stage_ms)
            above = ranges.high * (1.0 + params.breakout_pct / 100.0)
            below = ranges.low * (1.0 - params.breakout_pct / 100.0)
            for direction, level in ((Direction.LONG, above), (Direction.SHORT, below)):
                beyond = c.close > level if direction is Direction.LONG else c.close < level
                first = first_per_group(eligible & beyond, bars.group)
                # Whole columns to Python scalars at once: far cheaper than indexing per setup.
                columns = zip(
                    first.tolist(),
                    c.ts[first].tolist(),
                    c.close[first].tolist(),
                    ratio[first].tolist(),
                    ranges.high[first].tolist(),
                    ranges.low[first].tolist(),
                    level[first].tolist(),
                    bars.start_ms[first].tolist(),
                    bars.session_index[first].tolist(),
                    strict=True,
                )
                breakouts.extend(
                    Breakout(i, ts, close, volume, stage, direction, high, low, edge, start, session)
                    for i, ts, close, volume, high, low, edge, start, session in columns
                )
        breakouts.sort(key=lambda b: (b.index, b.stage, b.direction is Direction.SHORT))
        return [self._setup(params, b) for b in breakouts]

    @staticmethod
    def _setup(params: OrbParams, breakout: Breakout) -> Setup:
        stage, high, low, entry = breakout.stage, breakout.high, breakout.low, breakout.close
        session = params.sessions[breakout.session]
        long = breakout.direction is Direction.LONG
        edge_stop = low if long else high
        stop = (high + low) / 2.0 if params.stop_at == "mid" else edge_stop
        edge = f"high {_price(high)}" if long else f"low {_price(low)}"
        return Setup(
            direction=breakout.direction,
            bar_ts=breakout.bar_ts,
            entry=entry,
            reason=(
                f"Opening range breakout {'up' if long else 'down'}: close {_price(entry)} "
                f"{'above' if long else 'below'} the {session} UTC {stage}m range {edge} "
                f"{'+' if long else '-'} {params.breakout_pct:g} %; volume {breakout.volume_ratio:.2f}x its "
                f"{params.volume_period}-bar mean"
            ),
            atr=high - low,
            stop=stop,
            swing=(low, high),
            context={
                "session": session,
                "stage_minutes": stage,
                "range_high": high,
                "range_low": low,
                "range_height": _sig(high - low),
                "breakout_level": _sig(breakout.level),
                "volume_ratio": round(breakout.volume_ratio, 3),
            },
            key_points=(
                KeyPoint(ts=breakout.range_start, price=high, label=f"{stage}m range high"),
                KeyPoint(ts=breakout.range_start, price=low, label=f"{stage}m range low"),
            ),
        )
