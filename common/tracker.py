"""Follows open signals to their outcome from closed candles' highs and lows.

Checking highs and lows (not a sampled last price) catches wicks: a candle whose high touched TP1
and closed back below entry still hit TP1. When one candle touches both the stop and a target we
cannot know which came first, so the stop counts (conservative).

The position exits whole at the first level touched: SL, or the furthest take-profit touched by
that candle; or TIMEOUT at the close of the first candle that ends after the bot's timeout.
P&L is net of a taker fee on entry and on exit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.store import Outcome
from common.types import Candles, Direction, Signal


@dataclass(frozen=True)
class TrackResult:
    """What checking new candles against one open signal found."""

    outcome: Outcome | None
    checked_until: int  # open time of the newest candle examined


def net_result(signal: Signal, exit_price: float, fee_pct_per_side: float) -> tuple[float, float]:
    """(P&L in percent of entry, R multiple), both after fees on entry and exit."""
    levels = signal.levels
    gross_pct = (exit_price - levels.entry) / levels.entry * 100.0 * signal.direction.sign
    net_pct = gross_pct - 2.0 * fee_pct_per_side
    r_multiple = net_pct / 100.0 * levels.entry / levels.risk
    return net_pct, r_multiple


def track(
    signal: Signal, candles: Candles, checked_until: int, timeout_ms: int, fee_pct_per_side: float
) -> TrackResult:
    """Check the closed candles after ``checked_until`` against the signal's levels, oldest first."""
    start = int(np.searchsorted(candles.ts, max(checked_until, signal.bar_ts), side="right"))
    levels = signal.levels
    long = signal.direction is Direction.LONG
    last_checked = checked_until
    for i in range(start, len(candles)):
        high, low, close_ts = float(candles.high[i]), float(candles.low[i]), candles.close_time(i)
        last_checked = int(candles.ts[i])
        stop_hit = low <= levels.sl if long else high >= levels.sl
        tps_hit = [k for k, tp in enumerate(levels.tps) if (high >= tp if long else low <= tp)]
        reason, price = None, 0.0
        if stop_hit:
            reason, price = "SL", levels.sl
        elif tps_hit:
            reason, price = f"TP{tps_hit[-1] + 1}", levels.tps[tps_hit[-1]]
        elif close_ts - signal.created_ms >= timeout_ms:
            reason, price = "TIMEOUT", float(candles.close[i])
        if reason is not None:
            pnl_pct, r_multiple = net_result(signal, price, fee_pct_per_side)
            outcome = Outcome(
                reason=reason, price=price, exit_ms=close_ts, pnl_pct=pnl_pct, r_multiple=r_multiple
            )
            return TrackResult(outcome=outcome, checked_until=last_checked)
    return TrackResult(outcome=None, checked_until=last_checked)
