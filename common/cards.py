"""The text of every Telegram message: the signal card and the result message.

Telegram's HTML parse mode accepts only a few tags and requires ``<``, ``>`` and ``&`` in text to be
escaped, otherwise the whole message is refused ("can't parse entities"). Every dynamic value goes
through :func:`html.escape`. A message may not exceed 4096 characters (after entity parsing; we
count the raw HTML, which is never shorter, so the bound is safe): the free-text reason is trimmed
with a marker to fit.
"""

from __future__ import annotations

import html
import math
import re
from decimal import Decimal

from common.clock import utc_text
from common.store import Outcome
from common.types import Direction, Signal, timeframe_ms

TELEGRAM_TEXT_LIMIT = 4096
TRIM_MARKER = "… [trimmed]"


def format_price(value: float, tick_size: float | None = None) -> str:
    """A price with the market's decimals (from its tick) or, without a tick, 6 significant digits.

    Six significant digits keep BTC at 2 decimals (43250.51) and small coins readable (0.0812345)
    without float noise such as 0.30000000000000004.
    """
    if tick_size is not None and tick_size > 0:
        # As many decimals as the tick itself has: 0.01 -> 2, 0.25 -> 2, 5 -> 0.
        exponent = Decimal(repr(tick_size)).normalize().as_tuple().exponent
        decimals = max(0, -int(exponent))
    else:
        magnitude = math.floor(math.log10(abs(value))) if value else 0
        decimals = max(2, 5 - magnitude)
    return f"{value:.{decimals}f}"


def _pct(value: float) -> str:
    return f"{value:+.2f}%"


def signal_card(signal: Signal, tick_size: float | None = None) -> str:
    """The alert for a new signal, in Telegram HTML, at most 4096 characters."""
    levels = signal.levels
    arrow = "🟢" if signal.direction is Direction.LONG else "🔴"

    def price(value: float) -> str:
        return format_price(value, tick_size)

    lines = [
        f"{arrow} <b>{signal.direction.value} {html.escape(signal.symbol)}</b> · "
        f"{html.escape(signal.timeframe)} · {html.escape(signal.bot)}",
        f"Entry: <code>{price(levels.entry)}</code>",
        f"SL: <code>{price(levels.sl)}</code> ({_pct(levels.pct_from_entry(levels.sl))})",
    ]
    for index, tp in enumerate(levels.tps):
        lines.append(
            f"TP{index + 1}: <code>{price(tp)}</code> ({_pct(levels.pct_from_entry(tp))}) · "
            f"R:R {levels.risk_reward(index):.2f}"
        )
    closed_at = utc_text(signal.bar_ts + timeframe_ms(signal.timeframe))
    footer = f"🆔 <code>{html.escape(signal.id)}</code> · {closed_at}"
    head = "\n".join(lines)
    reason = _fit(signal.reason, TELEGRAM_TEXT_LIMIT - len(head) - len(footer) - len("\n📝 \n"))
    return f"{head}\n📝 {reason}\n{footer}"


def _fit(text: str, budget: int) -> str:
    """Escape ``text`` and trim it (on the raw text, so no entity is cut) to fit ``budget`` characters."""
    escaped = html.escape(text)
    if len(escaped) <= budget:
        return escaped
    # html.escape works character by character: keep the longest raw prefix whose escaped form
    # fits with the marker (an escaped character may be up to six long, so count each one).
    room, keep = budget - len(TRIM_MARKER), 0
    for char in text:
        room -= len(html.escape(char))
        if room < 0:
            break
        keep += 1
    return html.escape(text[:keep]) + TRIM_MARKER


def result_message(signal: Signal, outcome: Outcome, tick_size: float | None = None) -> str:
    """The message sent (as a reply to the alert) when a signal closes."""
    icon = "✅" if outcome.r_multiple > 0 else "❌" if outcome.r_multiple < 0 else "➖"
    held_min = max(0, outcome.exit_ms - (signal.bar_ts + timeframe_ms(signal.timeframe))) // 60_000
    held = (
        f"{held_min // 1440}d {held_min % 1440 // 60}h"
        if held_min >= 1440
        else (f"{held_min // 60}h {held_min % 60}m")
    )
    return (
        f"{icon} <b>{html.escape(outcome.reason)}</b> · "
        f"{signal.direction.value} {html.escape(signal.symbol)} · {html.escape(signal.bot)}\n"
        f"Exit: <code>{format_price(outcome.price, tick_size)}</code> · P&amp;L {_pct(outcome.pnl_pct)} · "
        f"{outcome.r_multiple:+.2f}R · held {held}\n"
        f"🆔 <code>{html.escape(signal.id)}</code> · {utc_text(outcome.exit_ms)}"
    )


_TAG = re.compile(r"<[^>]+>")


def html_to_plain(text: str) -> str:
    """Telegram HTML to plain text (tags removed, entities decoded): for the console and the fallback."""
    return html.unescape(_TAG.sub("", text))
