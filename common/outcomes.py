"""Recording a signal's end: the store row, the result reply and the SIGNAL_CLOSED event, together.

The runner (TP / SL / BE / TRAIL / TIMEOUT found on candles) and ``python -m bots close`` (MANUAL)
both end signals through :func:`record_close`, so a closed signal looks the same whoever closed it.
"""

from __future__ import annotations

from common.cards import result_message
from common.events import EventLog, EventType
from common.store import Store
from common.tracker import Outcome
from common.types import Signal


def record_close(
    store: Store,
    events: EventLog,
    signal: Signal,
    outcome: Outcome,
    checked_until: int,
    tick_size: float | None,
) -> bool:
    """Close ``signal`` with ``outcome`` and queue its result reply in one transaction, then log it.

    False (and nothing written) when the signal was no longer open: another process or a manual
    close got there first.
    """
    record = store.bot_record(signal.bot).plus(outcome.pnl_pct, outcome.r_multiple)
    message = result_message(signal, outcome, tick_size, record)
    if not store.close_signal(signal.id, outcome, checked_until, message):
        return False
    events.emit(
        EventType.SIGNAL_CLOSED,
        signal_id=signal.id,
        bot=signal.bot,
        symbol=signal.symbol,
        exit_reason=outcome.reason,
        exit_price=outcome.price,
        pnl_pct=round(outcome.pnl_pct, 4),
        r_multiple=round(outcome.r_multiple, 4),
        mfe_pct=round(outcome.mfe_pct, 4),
        mae_pct=round(outcome.mae_pct, 4),
        funding_pct=None if outcome.funding_pct is None else round(outcome.funding_pct, 4),
        duration_s=max(0, outcome.exit_ms - signal.created_ms) // 1000,
        fills=len(outcome.fills),
    )
    return True
