"""The text of every Telegram message: the signal card and the result message.

Telegram's HTML parse mode accepts only a few tags and requires ``<``, ``>`` and ``&`` in text to be
escaped, otherwise the whole message is refused ("can't parse entities"). Every dynamic value goes
through :func:`html.escape`. A message may not exceed 4096 characters (after entity parsing; we
count the raw HTML, which is never shorter, so the bound is safe): the free-text reason is trimmed
with a marker to fit.
"""

from __future__ import annotations

import html
import re

from common.clock import utc_text
from common.prices import format_price
from common.store import BotRecord
from common.tracker import Fill, Outcome, Position
from common.types import Direction, Setup, Signal, timeframe_ms

TELEGRAM_TEXT_LIMIT = 4096
#: Telegram's limit for a photo caption (after entity parsing).
TELEGRAM_CAPTION_LIMIT = 1024
TRIM_MARKER = "… [trimmed]"
#: Room kept free in every card for the late-alert line the notifier may put in front of it.
LATE_NOTE_ROOM = 120


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
    budget = TELEGRAM_TEXT_LIMIT - LATE_NOTE_ROOM - len(head) - len(footer) - len("\n📝 \n")
    reason = _fit(signal.reason, budget)
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


def _held(ms: int) -> str:
    minutes = max(0, ms) // 60_000
    return (
        f"{minutes // 1440}d {minutes % 1440 // 60}h"
        if minutes >= 1440
        else f"{minutes // 60}h {minutes % 60}m"
    )


def result_message(
    signal: Signal, outcome: Outcome, tick_size: float | None = None, record: BotRecord | None = None
) -> str:
    """The message sent (as a reply to the alert) when a signal closes, with the bot's running record.

    A signal closed in parts lists each part; funding (perpetuals) is shown when it is known.
    """
    icon = "✅" if outcome.r_multiple > 0 else "❌" if outcome.r_multiple < 0 else "➖"
    lines = [
        f"{icon} <b>{html.escape(outcome.reason)}</b> · "
        f"{signal.direction.value} {html.escape(signal.symbol)} · {html.escape(signal.bot)}",
        f"Exit: <code>{format_price(outcome.price, tick_size)}</code> · P&amp;L {_pct(outcome.pnl_pct)} · "
        f"{outcome.r_multiple:+.2f}R · held {_held(outcome.exit_ms - signal.created_ms)}",
    ]
    if len(outcome.fills) > 1:
        parts = ", ".join(
            f"{f.fraction * 100:.0f}% {html.escape(f.reason)} {format_price(f.price, tick_size)}"
            for f in outcome.fills
        )
        lines.append(f"Parts: {parts}")
    if ":" in signal.symbol:
        funding = "unknown" if outcome.funding_pct is None else _pct(outcome.funding_pct)
        lines.append(f"Funding: {funding} (in the P&amp;L)")
    lines.append(f"🆔 <code>{html.escape(signal.id)}</code> · {utc_text(outcome.exit_ms)}")
    if record is not None:
        lines.append(record_line(signal.bot, record))
    return "\n".join(lines)


def progress_message(
    signal: Signal, new_fills: tuple[Fill, ...], position: Position, tick_size: float | None = None
) -> str:
    """A reply to an open signal's alert when targets were hit and part of it closed."""
    lines = [
        f"🎯 <b>{html.escape(fill.reason)} hit</b> · {signal.direction.value} {html.escape(signal.symbol)}"
        f" · {html.escape(signal.bot)}: {fill.fraction * 100:.0f}% closed at "
        f"<code>{format_price(fill.price, tick_size)}</code>"
        for fill in new_fills
    ]
    stop = format_price(position.stop, tick_size)
    moved = {"BE": " (break-even)", "TRAIL": " (trailing)"}.get(position.stop_reason, "")
    lines.append(f"{position.remaining * 100:.0f}% still open · stop <code>{stop}</code>{moved}")
    lines.append(f"🆔 <code>{html.escape(signal.id)}</code>")
    return "\n".join(lines)


def update_message(bot: str, setup: Setup) -> str:
    """A reply to an open signal's alert when the bot that sent it has news about it."""
    head = f"🔄 <b>{html.escape(bot.removesuffix('_bot').upper())} UPDATE</b> · {setup.direction.value}\n"
    return head + _fit(setup.reason, TELEGRAM_TEXT_LIMIT - len(head))


def record_line(bot: str, record: BotRecord) -> str:
    """The bot's running record in one line: trades, win rate, profit factor (net of fees)."""
    factor = record.profit_factor
    shown = "∞" if factor is None and record.wins else "–" if factor is None else f"{factor:.2f}"
    return (
        f"📊 {html.escape(bot)}: {record.trades} trade{'s' if record.trades != 1 else ''} · "
        f"win rate {record.win_rate * 100:.0f}% · profit factor {shown}"
    )


def late_note(created_ms: int, now_ms: int) -> str:
    """The line put in front of an alert sent long after its signal (Telegram was down, say)."""
    minutes = max(0, now_ms - created_ms) // 60_000
    age = f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes} min"
    return (
        f"⏰ <b>Late alert</b>: signalled {utc_text(created_ms)}, {age} ago; check the price before acting."
    )


def caption_fits(text: str) -> bool:
    """Whether ``text`` (Telegram HTML) fits in a photo caption once its tags are parsed."""
    return len(html_to_plain(text)) <= TELEGRAM_CAPTION_LIMIT


_TAG = re.compile(r"<[^>]+>")


def html_to_plain(text: str) -> str:
    """Telegram HTML to plain text (tags removed, entities decoded): for the console and the fallback."""
    return html.unescape(_TAG.sub("", text))
