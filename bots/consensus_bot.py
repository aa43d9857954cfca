"""consensus_bot: several other bots agreeing on a symbol and a direction within a short window.

The bot reads no candles' prices to decide: it reads the signals the OTHER bots emitted on the
symbol (``MarketData.peer_signals``, handed over by the runner from the store, never their files)
and uses the candles only as its bar grid.

Rule (on each closed candle t of the bot's timeframe, close time ``c_t = ts[t] + period``):

* **Group**: per direction, the peer signals on the candles' symbol created within the window
  before the close: ``c_t - window < created_ms <= c_t + close_slack_s`` (a signal exactly
  ``window_minutes`` older than the close is out; see the slack below). Signals of any timeframe
  count (a 1h bot's signal created at the same close counts for the 15m bar). A bot counts once per
  group, with its newest signal in the window (the later one in ``peer_signals`` on a tie);
  consensus_bot's own signals and those of bots weighing 0 are ignored.
* **Weight**: the sum of the members' bot weights, ``weights[bot]`` (defaults below), a bot missing
  from ``weights`` weighing ``default_weight``. The group has **consensus** when the sum is at
  least ``min_weight``. Label: >= 7 LEGENDARY, >= 5 EXTREME, >= 3.5 HIGH, else MODERATE.
* **Fires** on a bar where the group has consensus and either did not have it at the previous close
  (``c_t - period``, evaluated the same way), or a bot joined it that was not a member then (a
  *newcomer*: an update; context ``update`` true, ``newcomer`` its names, reason ``"+strat_bot
  joined: HIGH consensus LONG: ..."``). A group that keeps its members fires once. The gate refuses
  a second open signal of the bot on the same symbol and direction; the runner turns an update on
  an open consensus into a reply to its alert.
* **Levels**, from the members' counted signals: entry = the mean of their entries weighted by bot
  weight x recency, recency falling linearly from 1 for a signal created at (or after) the close to
  ``recency_floor`` for one created a whole window before it (``1 - (1 - recency_floor) x age /
  window``). SL = the plain mean of their stops; TPk = the plain mean of their TPk, for k up to the
  fewest TPs any member has (at least 1, at most 3: every member has those, and the means of
  increasing targets are increasing). Rejected (no setup) unless the SL is on the loss side of the
  entry and TP1's reward:risk on these mean levels is at least ``min_rr``.
* The setup: direction, ``entry`` = the weighted entry, ``stop`` = the mean SL, ``targets`` = the
  mean TPs. The bot's risk block places them as given: ``{"sl_method": "structure", "tp_method":
  "setup", "min_rr": 1.7}`` (the calculator's own checks then only add tick rounding and the stop
  bounds). Key points: each member's entry at its signal's bar, labelled with the bot's name.

Parameters (``bots.consensus_bot.params``), with defaults: window_minutes 30; weights harmonic_bot 2,
liquidation_bot 1.75, volume_bot / strat_bot / mtf_bot 1.5, fib_reversal_bot / fib_swing_bot 1.25,
diy_bot / candlestick_bot / funding_bot / volume_profile_bot / orb_bot 1, most_bot / psar_bot 0.75
(weights given in the configuration replace these bot by bot; the others keep their defaults);
default_weight 1; min_weight 3; recency_floor 0.5; min_rr 1.7; close_slack_s 60; lookback 10 (the
candles are only the bar grid: the result at bar t depends on the peer signals and c_t alone).

Where this differs from the rule as given, and why:

* ``close_slack_s``: the rule counts signals created up to the bar's close. In a replay the runner
  stamps a signal with its bar's close, but live it stamps it with the cycle's clock, which is the
  close plus ``exchange.candle_close_delay_s`` (3 s by default): with no slack a peer of the same
  close would only count one bar later, live but not in a replay. A signal created up to 60 s after
  the close therefore counts for that close (at recency 1); 0 restores the rule exactly. The slack
  must be shorter than one candle (``needs`` raises ValueError otherwise), so a signal counts from
  the last close before its creation on, never for an earlier bar.
* Weight sums are compared with a tolerance of 1e-9, so that configured weights such as 1.1 + 1.9
  reach 3 despite float rounding; the rule's own weights are exact binary fractions.
* Entry is the members' weighted entry, not the close of the signal bar (the rule's own choice); the
  close is in the context (``bar_close``).
* A consensus that appears on a placeholder candle does not fire, and the next bar is then no longer
  "the first bar" of it: it fires again only when a newcomer joins (outages are rare and short).
* An update whose first consensus was rejected for its reward:risk is still marked ``update`` (the
  group had consensus at the previous close).

Reason: ``"HIGH consensus LONG: psar_bot, volume_bot, mtf_bot (weight 3.75)"`` (members in the order
their counted signals were created). Context: ``weight`` (sum of bot weights), ``label``, ``members``
(comma-joined, in the same order), ``member_count``, ``update``, ``newcomer`` ("" on a first firing),
``entry`` / ``sl`` / ``tp1``..``tpN`` (the mean levels, 8 significant digits), ``rr`` (TP1's
reward:risk, 3 decimals), ``bar_close``, ``window_minutes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.types import ContextValue, Direction, IntArray, KeyPoint, Setup, Signal, timeframe_ms

#: The rule's bot weights; a bot missing here weighs ``default_weight``.
DEFAULT_WEIGHTS: dict[str, float] = {
    "harmonic_bot": 2.0,
    "liquidation_bot": 1.75,
    "volume_bot": 1.5,
    "strat_bot": 1.5,
    "mtf_bot": 1.5,
    "fib_reversal_bot": 1.25,
    "fib_swing_bot": 1.25,
    "diy_bot": 1.0,
    "candlestick_bot": 1.0,
    "funding_bot": 1.0,
    "volume_profile_bot": 1.0,
    "orb_bot": 1.0,
    "most_bot": 0.75,
    "psar_bot": 0.75,
}

#: Labels by weight sum, highest first; below the last threshold the label is MODERATE.
LABELS: tuple[tuple[float, str], ...] = ((7.0, "LEGENDARY"), (5.0, "EXTREME"), (3.5, "HIGH"))

#: Absolute tolerance of weight-sum comparisons (sums of decimal weights such as 1.1 carry float noise).
WEIGHT_TOL = 1e-9

_Weight = Annotated[float, Field(ge=0, le=100)]


class ConsensusParams(StrategyParams):
    """consensus_bot's parameters (see the module docstring)."""

    window_minutes: int = Field(30, ge=1, le=1_440)
    weights: dict[str, _Weight] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_weight: float = Field(1.0, ge=0, le=100)
    min_weight: float = Field(3.0, gt=0, le=1_000)
    recency_floor: float = Field(0.5, ge=0, le=1)
    min_rr: float = Field(1.7, ge=0, le=100)
    close_slack_s: int = Field(60, ge=0, le=3_600)
    lookback: int = Field(10, ge=1, le=5_000)

    @field_validator("weights", mode="before")
    @classmethod
    def _over_the_defaults(cls, value: Any) -> Any:
        # The configuration names the bots whose weight it changes; the others keep the rule's.
        if isinstance(value, Mapping):
            return {**DEFAULT_WEIGHTS, **value}
        return value

    @field_validator("weights")
    @classmethod
    def _named_bots(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not name.strip() for name in value):
            raise ValueError("weights: bot names must not be empty")
        return value

    def weight_of(self, bot: str) -> float:
        """The bot's weight: ``weights[bot]``, else ``default_weight``."""
        return self.weights.get(bot, self.default_weight)


def consensus_label(weight: float) -> str:
    """LEGENDARY (>= 7), EXTREME (>= 5), HIGH (>= 3.5) or MODERATE, for a group's weight sum."""
    for threshold, label in LABELS:
        if weight >= threshold - WEIGHT_TOL:
            return label
    return "MODERATE"


@dataclass(frozen=True)
class _BotTrack:
    """One bot's signals in one direction: creation times (sorted) and the signals in that order."""

    bot: str
    weight: float
    created: IntArray
    signals: tuple[Signal, ...]

    def window_bounds(self, ends: IntArray, window_ms: int, slack_ms: int) -> tuple[IntArray, IntArray]:
        """Per close in ``ends``: [lo, hi) of this bot's signals created in (end - window, end + slack]."""
        lo = np.searchsorted(self.created, ends - window_ms, side="right")
        hi = np.searchsorted(self.created, ends + slack_ms, side="right")
        return lo.astype(np.int64), hi.astype(np.int64)


def _sig(value: float) -> float:
    """A price for the context: 8 significant digits."""
    return float(f"{value:.8g}")


def _tracks(
    peers: Sequence[Signal], symbol: str, own_name: str, params: ConsensusParams
) -> dict[Direction, list[_BotTrack]]:
    """The peers grouped by direction and bot, each bot's signals sorted by creation (stable)."""
    grouped: dict[tuple[Direction, str], list[Signal]] = {}
    for signal in peers:
        if signal.symbol != symbol or signal.bot == own_name or params.weight_of(signal.bot) <= 0:
            continue
        grouped.setdefault((signal.direction, signal.bot), []).append(signal)
    tracks: dict[Direction, list[_BotTrack]] = {Direction.LONG: [], Direction.SHORT: []}
    for (direction, bot), signals in sorted(grouped.items()):
        ordered = tuple(sorted(signals, key=lambda s: s.created_ms))
        created = np.fromiter((s.created_ms for s in ordered), dtype=np.int64, count=len(ordered))
        tracks[direction].append(_BotTrack(bot, params.weight_of(bot), created, ordered))
    return tracks


class ConsensusBot:
    """Weighted agreement of the other bots' recent signals on a symbol and direction."""

    name = "consensus_bot"
    params_model = ConsensusParams

    def needs(self, params: ConsensusParams, timeframe: str) -> DataNeeds:
        """A few candles (the bar grid) and the peers of the window before the previous close.

        The previous close's group decides whether a bar is a first firing or an update, so the
        peers reach back one window and two candles (covering the runner's delay after the close).
        """
        period = timeframe_ms(timeframe)
        slack = params.close_slack_s * 1_000
        if slack >= period:
            raise ValueError(
                f"close_slack_s {params.close_slack_s} must be shorter than one {timeframe} candle"
            )
        return DataNeeds(
            lookback=params.lookback, peer_signals_ms=params.window_minutes * 60_000 + 2 * period + slack
        )

    def scan(self, data: MarketData, params: ConsensusParams) -> Sequence[Setup]:
        """Every consensus (first firing or update) on the bars of ``data.candles``, oldest first."""
        c = data.candles
        if len(c) == 0 or not data.peer_signals:
            return []
        period = c.period_ms
        window = params.window_minutes * 60_000
        slack = params.close_slack_s * 1_000
        closes: IntArray = c.ts + period
        found: list[tuple[int, Setup]] = []
        for direction, tracks in _tracks(data.peer_signals, c.symbol, self.name, params).items():
            if not tracks:
                continue
            now_bounds = [track.window_bounds(closes, window, slack) for track in tracks]
            before_bounds = [track.window_bounds(closes - period, window, slack) for track in tracks]
            member = np.vstack([hi > lo for lo, hi in now_bounds])
            before = np.vstack([hi > lo for lo, hi in before_bounds])
            weights = np.array([track.weight for track in tracks], dtype=np.float64)
            total = weights @ member
            had = (weights @ before) >= params.min_weight - WEIGHT_TOL
            has = total >= params.min_weight - WEIGHT_TOL
            joined = (member & ~before).any(axis=0)
            fires: npt.NDArray[np.bool_] = has & (~had | joined) & ~c.placeholder
            for i in np.flatnonzero(fires):
                newest = [
                    track.signals[int(now_bounds[k][1][i]) - 1]
                    for k, track in enumerate(tracks)
                    if member[k, i]
                ]
                newcomers = {track.bot for k, track in enumerate(tracks) if member[k, i] and not before[k, i]}
                setup = self._setup(
                    direction,
                    int(c.ts[i]),
                    int(closes[i]),
                    float(c.close[i]),
                    newest,
                    newcomers if bool(had[i]) else set(),
                    bool(had[i]),
                    params,
                )
                if setup is not None:
                    found.append((int(i), setup))
        found.sort(key=lambda item: (item[0], item[1].direction is Direction.SHORT))
        return [setup for _, setup in found]

    @staticmethod
    def _setup(
        direction: Direction,
        bar_ts: int,
        close_ms: int,
        bar_close: float,
        signals: list[Signal],
        newcomers: set[str],
        update: bool,
        params: ConsensusParams,
    ) -> Setup | None:
        """The setup of one group at one close, or None when its mean levels fail the R:R rule."""
        window = params.window_minutes * 60_000
        members = sorted(signals, key=lambda s: (s.created_ms, s.bot))
        bot_weights = [params.weight_of(s.bot) for s in members]
        recency = [
            1.0 - (1.0 - params.recency_floor) * max(0, close_ms - s.created_ms) / window for s in members
        ]
        entry_weights = [w * r for w, r in zip(bot_weights, recency, strict=True)]
        entry = sum(w * s.levels.entry for w, s in zip(entry_weights, members, strict=True)) / sum(
            entry_weights
        )
        sl = sum(s.levels.sl for s in members) / len(members)
        count = min(len(s.levels.tps) for s in members)
        targets = tuple(sum(s.levels.tps[k] for s in members) / len(members) for k in range(count))
        sign = direction.sign
        risk = sign * (entry - sl)
        if risk <= 0:
            return None
        rr = sign * (targets[0] - entry) / risk
        if rr < params.min_rr * (1 - WEIGHT_TOL):
            return None
        weight = sum(bot_weights)
        label = consensus_label(weight)
        names = [s.bot for s in members]
        newcomer = ", ".join(name for name in names if name in newcomers)
        reason = f"{label} consensus {direction}: {', '.join(names)} (weight {weight:g})"
        if update:
            reason = f"+{newcomer} joined: {reason}"
        context: dict[str, ContextValue] = {
            "weight": round(weight, 6),
            "label": label,
            "members": ",".join(names),
            "member_count": len(members),
            "update": update,
            "newcomer": ",".join(name for name in names if name in newcomers),
            "entry": _sig(entry),
            "sl": _sig(sl),
            **{f"tp{k + 1}": _sig(target) for k, target in enumerate(targets)},
            "rr": round(rr, 3),
            "bar_close": bar_close,
            "window_minutes": params.window_minutes,
        }
        return Setup(
            direction=direction,
            bar_ts=bar_ts,
            entry=entry,
            stop=sl,
            targets=targets,
            reason=reason,
            context=context,
            key_points=tuple(KeyPoint(s.bar_ts, s.levels.entry, s.bot) for s in members),
        )
