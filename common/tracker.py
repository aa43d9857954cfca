"""Follows open signals to their outcome from closed candles' highs and lows.

Checking highs and lows (not a sampled last price) catches wicks: a candle whose high touched TP1
and closed back below entry still hit TP1. When one candle touches both the stop and a target we
cannot know which came first, so the stop counts (conservative).

A signal is a position of size 1 followed candle by candle (:func:`advance`), its progress kept in
a :class:`Position` that the store persists between cycles and across restarts:

* the stop in force during a candle is the one known at the previous candle's close: the original
  stop, the entry once TP1 was hit (break-even, when the bot's :class:`ExitPlan` asks for it), or a
  strategy's trailing line (psar_bot's SAR, most_bot's MOST) as of the previous close, moving only
  in the trade's favour. A stop touched closes what remains at the stop's price: reason ``SL``,
  ``BE`` or ``TRAIL`` after the kind of stop that was hit;
* otherwise each target the candle reaches closes its share of the original size at the target's
  price (``ExitPlan.tp_fractions``); the signal's last target closes whatever remains;
* otherwise a candle that ends ``timeout_ms`` or more after the alert closes the rest at its close
  (``TIMEOUT``). ``MANUAL`` exits come from the CLI (:func:`close_manually`).

Fills are stamped with the close time of their candle: that is when the fleet can know of them.
Prices are the levels themselves (no slippage model): a candle that opens beyond a level fills at
the level.

P&L (:func:`settle`), in percent of the entry notional: the size-weighted gross move, minus a taker
fee of ``fee_pct_per_side`` on entry and on exit (both on the entry notional, so 2 x fee in all),
plus funding for perpetual swaps: each settlement strictly after the alert and at or before the
final exit costs a LONG ``rate`` x the size still open (a SHORT earns it; negative rates reverse).
R multiple: that net move over the original risk (|entry - stop|). MFE / MAE: the furthest the
candles went for / against the position while it was open, in percent of entry (0 or more).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from common.types import Candles, Direction, FloatArray, Signal

if TYPE_CHECKING:
    from common.market.extras import FundingRates

#: A remaining size below this is a closed position (float sums of fractions).
_CLOSED = 1e-9

STOP_REASONS = ("SL", "BE", "TRAIL")
EXIT_REASONS = ("TP1", "TP2", "TP3", *STOP_REASONS, "TIMEOUT", "MANUAL")


@dataclass(frozen=True)
class ExitPlan:
    """How one bot's signals are closed: timeout, fees, partial take-profits and stop moves.

    ``tp_fractions[k]`` is the share of the original size closed at target k+1; None splits the
    size equally over the signal's targets. Whatever the fractions, the signal's last target
    closes all that remains.
    """

    timeout_ms: int
    fee_pct_per_side: float
    tp_fractions: tuple[float, ...] | None = None
    break_even_after_tp1: bool = False
    trailing: bool = False

    def share_at(self, target: int, targets: int) -> float:
        """The share of the original size closed at target index ``target`` (0-based) of ``targets``."""
        if self.tp_fractions is None:
            return 1.0 / targets
        return self.tp_fractions[target] if target < len(self.tp_fractions) else 0.0


@dataclass(frozen=True)
class Fill:
    """One exit of part (or all) of a position."""

    reason: str  # one of EXIT_REASONS
    price: float
    ts_ms: int  # the close time of the candle it happened in (or the CLI's time for MANUAL)
    fraction: float  # share of the original size


def fills_to_rows(fills: tuple[Fill, ...]) -> list[list[object]]:
    """Fills as JSON-ready rows ``[reason, price, ts_ms, fraction]`` (the store's format)."""
    return [[f.reason, f.price, f.ts_ms, f.fraction] for f in fills]


def fills_from_rows(rows: list[list[object]]) -> tuple[Fill, ...]:
    """Fills back from rows written by :func:`fills_to_rows`."""
    return tuple(Fill(str(r), float(str(p)), int(str(t)), float(str(f))) for r, p, t, f in rows)


@dataclass(frozen=True)
class Position:
    """An open signal's progress: what is left, its stop, its fills and excursions so far."""

    stop: float
    stop_reason: str  # SL (the original stop), BE or TRAIL
    targets_hit: int
    remaining: float
    fills: tuple[Fill, ...]
    mfe_pct: float
    mae_pct: float
    checked_until: int  # open time of the newest candle examined

    @classmethod
    def opened(cls, signal: Signal) -> Position:
        """A signal's position before any candle after its own was examined."""
        return cls(
            stop=signal.levels.sl,
            stop_reason="SL",
            targets_hit=0,
            remaining=1.0,
            fills=(),
            mfe_pct=0.0,
            mae_pct=0.0,
            checked_until=signal.bar_ts,
        )

    @property
    def closed(self) -> bool:
        """True once nothing of the position remains."""
        return self.remaining <= _CLOSED

    def to_json(self) -> str:
        """The position as JSON, for the store."""
        body = {
            "stop": self.stop,
            "stop_reason": self.stop_reason,
            "targets_hit": self.targets_hit,
            "remaining": self.remaining,
            "fills": fills_to_rows(self.fills),
            "mfe_pct": self.mfe_pct,
            "mae_pct": self.mae_pct,
            "checked_until": self.checked_until,
        }
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Position:
        """A position stored by :meth:`to_json`."""
        body = json.loads(text)
        return cls(
            stop=float(body["stop"]),
            stop_reason=str(body["stop_reason"]),
            targets_hit=int(body["targets_hit"]),
            remaining=float(body["remaining"]),
            fills=fills_from_rows(body["fills"]),
            mfe_pct=float(body["mfe_pct"]),
            mae_pct=float(body["mae_pct"]),
            checked_until=int(body["checked_until"]),
        )


@dataclass(frozen=True)
class Outcome:
    """How a signal ended: its final exit, its net P&L and what happened on the way."""

    reason: str  # the final fill's reason
    price: float  # the final fill's price
    exit_ms: int
    pnl_pct: float  # net of fees and funding, percent of the entry notional
    r_multiple: float
    mfe_pct: float = 0.0
    mae_pct: float = 0.0
    funding_pct: float | None = 0.0  # None: a perpetual whose funding the source could not give
    fills: tuple[Fill, ...] = ()


def advance(
    signal: Signal,
    position: Position,
    candles: Candles,
    plan: ExitPlan,
    trail: FloatArray | None = None,
) -> Position:
    """Examine the closed candles after ``position.checked_until``, oldest first, until the signal closes.

    ``trail`` (aligned with ``candles``) is a strategy's trailing-stop line, used only when the plan
    trails; its value at a candle's close becomes the stop for the candles after it.
    """
    start = int(np.searchsorted(candles.ts, max(position.checked_until, signal.bar_ts), side="right"))
    levels = signal.levels
    sign = signal.direction.sign
    long = signal.direction is Direction.LONG
    tps = levels.tps
    for i in range(start, len(candles)):
        if position.closed:
            break
        high, low, close = float(candles.high[i]), float(candles.low[i]), float(candles.close[i])
        close_ts = candles.close_time(i)
        favourable, adverse = (high, low) if long else (low, high)
        position = replace(
            position,
            checked_until=int(candles.ts[i]),
            mfe_pct=max(position.mfe_pct, (favourable - levels.entry) / levels.entry * 100.0 * sign),
            mae_pct=max(position.mae_pct, (levels.entry - adverse) / levels.entry * 100.0 * sign),
        )
        if low <= position.stop if long else high >= position.stop:
            fill = Fill(position.stop_reason, position.stop, close_ts, position.remaining)
            position = replace(position, remaining=0.0, fills=(*position.fills, fill))
            break
        while position.targets_hit < len(tps) and (
            high >= tps[position.targets_hit] if long else low <= tps[position.targets_hit]
        ):
            k = position.targets_hit
            last = k == len(tps) - 1
            share = position.remaining if last else min(plan.share_at(k, len(tps)), position.remaining)
            fills = position.fills
            if share > _CLOSED:
                fills = (*fills, Fill(f"TP{k + 1}", tps[k], close_ts, share))
            position = replace(position, targets_hit=k + 1, remaining=position.remaining - share, fills=fills)
            if k == 0 and plan.break_even_after_tp1 and position.stop_reason == "SL":
                position = replace(position, stop=levels.entry, stop_reason="BE")
        if position.closed:
            position = replace(position, remaining=0.0)
            break
        if close_ts - signal.created_ms >= plan.timeout_ms:
            fill = Fill("TIMEOUT", close, close_ts, position.remaining)
            position = replace(position, remaining=0.0, fills=(*position.fills, fill))
            break
        if plan.trailing and trail is not None:
            position = _trailed(position, float(trail[i]), close, long)
    return position


def _trailed(position: Position, line: float, close: float, long: bool) -> Position:
    """The stop after a candle closed with the trailing line at ``line``: tighter, never looser.

    A line value on the wrong side of the close (the indicator flipped) is ignored: taking it would
    put the stop beyond the market.
    """
    if math.isnan(line) or (line >= close if long else line <= close):
        return position
    if line > position.stop if long else line < position.stop:
        return replace(position, stop=line, stop_reason="TRAIL")
    return position


def close_manually(position: Position, price: float, now_ms: int) -> Position:
    """The position with what remains closed at ``price`` now (``MANUAL``, from the CLI)."""
    fill = Fill("MANUAL", price, now_ms, position.remaining)
    return replace(position, remaining=0.0, fills=(*position.fills, fill))


def funding_paid_pct(signal: Signal, fills: tuple[Fill, ...], funding: FundingRates) -> float:
    """Funding over the holding time in percent of entry notional: positive when received.

    Each settlement strictly after the alert and at or before the final exit counts with the size
    still open at that moment (fills stamped at or before the settlement already left).
    """
    if not fills:
        return 0.0
    exit_ms = fills[-1].ts_ms
    total = 0.0
    for ts, rate in zip(funding.ts.tolist(), funding.rate.tolist(), strict=True):
        if signal.created_ms < ts <= exit_ms:
            open_size = 1.0 - sum(f.fraction for f in fills if f.ts_ms <= ts)
            total += rate * max(open_size, 0.0)
    return -signal.direction.sign * total * 100.0


def settle(signal: Signal, position: Position, plan: ExitPlan, funding_pct: float | None) -> Outcome:
    """The outcome of a closed position; ``funding_pct`` from :func:`funding_paid_pct` (0 on spot)."""
    if not position.closed or not position.fills:
        raise ValueError(f"signal {signal.id} is still open")
    levels = signal.levels
    sign = signal.direction.sign
    gross_pct = sum(
        f.fraction * (f.price - levels.entry) / levels.entry * 100.0 * sign for f in position.fills
    )
    net_pct = gross_pct - 2.0 * plan.fee_pct_per_side + (funding_pct or 0.0)
    last = position.fills[-1]
    return Outcome(
        reason=last.reason,
        price=last.price,
        exit_ms=last.ts_ms,
        pnl_pct=net_pct,
        r_multiple=net_pct / 100.0 * levels.entry / levels.risk,
        mfe_pct=position.mfe_pct,
        mae_pct=position.mae_pct,
        funding_pct=funding_pct,
        fills=position.fills,
    )
