"""Tests of common.cards: exact card and result texts, HTML escaping, the 4096 limit, price formatting."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from common.cards import (
    LATE_NOTE_ROOM,
    TRIM_MARKER,
    html_to_plain,
    late_note,
    record_line,
    result_message,
    signal_card,
)
from common.prices import format_price
from common.store import BotRecord
from common.tracker import Outcome
from common.types import Direction, Levels, Signal
from tests.fakes.telegram import parse_telegram_html

pytestmark = pytest.mark.unit

# An '&' that does not start one of the entities html.escape writes is a broken entity.
BROKEN_ENTITY = re.compile(r"&(?!(?:amp|lt|gt|quot|#x27);)")


def _ms(when: str) -> int:
    """Unix ms of an ISO time, read as UTC."""
    return int(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()) * 1000


def long_signal(
    reason: str = "Parabolic SAR flipped up after 12 bars down; ADX 35.2", symbol: str = "BTC/USDT"
) -> Signal:
    """LONG BTC/USDT 1h: entry 200, SL 196 (-2 %), TP1 206 (+3 %, 1.5R), TP2 210 (+5 %, 2.5R)."""
    return Signal(
        id="a1b2c3d4e5",
        bot="psar_bot",
        symbol=symbol,
        timeframe="1h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=200.0, sl=196.0, tps=(206.0, 210.0)),
        reason=reason,
        bar_ts=_ms("2024-01-01T00:00"),
        created_ms=_ms("2024-01-01T01:00"),
    )


def short_signal() -> Signal:
    """SHORT ETH/USDT 4h: entry 2500, SL 2550 (+2 %), TPs 2425 / 2375 / 2300 (-3 / -5 / -8 %)."""
    return Signal(
        id="ffee001122",
        bot="psar_bot",
        symbol="ETH/USDT",
        timeframe="4h",
        direction=Direction.SHORT,
        levels=Levels(Direction.SHORT, entry=2500.0, sl=2550.0, tps=(2425.0, 2375.0, 2300.0)),
        reason="Parabolic SAR flipped down after 7 bars up; ADX 41.0",
        bar_ts=_ms("2024-03-05T08:00"),
        created_ms=_ms("2024-03-05T12:00"),
    )


def test_long_card_exact_text() -> None:
    """The LONG card, with tick 0.01: prices, % from entry, R:R per target, id and the bar's CLOSE time."""
    assert signal_card(long_signal(), tick_size=0.01) == (
        "🟢 <b>LONG BTC/USDT</b> · 1h · psar_bot\n"
        "Entry: <code>200.00</code>\n"
        "SL: <code>196.00</code> (-2.00%)\n"
        "TP1: <code>206.00</code> (+3.00%) · R:R 1.50\n"
        "TP2: <code>210.00</code> (+5.00%) · R:R 2.50\n"
        "📝 Parabolic SAR flipped up after 12 bars down; ADX 35.2\n"
        "🆔 <code>a1b2c3d4e5</code> · 2024-01-01 01:00 UTC"
    )


def test_short_card_exact_text_without_tick() -> None:
    """The SHORT card without a tick (6 significant digits); a 4h bar opened 08:00 closes 12:00."""
    assert signal_card(short_signal()) == (
        "🔴 <b>SHORT ETH/USDT</b> · 4h · psar_bot\n"
        "Entry: <code>2500.00</code>\n"
        "SL: <code>2550.00</code> (+2.00%)\n"
        "TP1: <code>2425.00</code> (-3.00%) · R:R 1.50\n"
        "TP2: <code>2375.00</code> (-5.00%) · R:R 2.50\n"
        "TP3: <code>2300.00</code> (-8.00%) · R:R 4.00\n"
        "📝 Parabolic SAR flipped down after 7 bars up; ADX 41.0\n"
        "🆔 <code>ffee001122</code> · 2024-03-05 12:00 UTC"
    )


def test_special_characters_are_escaped_and_survive_html_to_plain() -> None:
    """< > & in symbol and reason are escaped (* and _ need none in HTML mode) and come back in plain text."""
    symbol = "A<B>&C*_/USDT"
    reason = "close > SAR && ADX < 50 *bold* _it_ <b>not a tag</b>"
    card = signal_card(long_signal(reason=reason, symbol=symbol), tick_size=0.01)
    lines = card.split("\n")
    assert lines[0] == "🟢 <b>LONG A&lt;B&gt;&amp;C*_/USDT</b> · 1h · psar_bot"
    assert lines[5] == "📝 close &gt; SAR &amp;&amp; ADX &lt; 50 *bold* _it_ &lt;b&gt;not a tag&lt;/b&gt;"
    plain = html_to_plain(card).split("\n")
    assert plain[0] == f"🟢 LONG {symbol} · 1h · psar_bot"
    assert plain[5] == f"📝 {reason}"
    # Telegram's own parser (the fake mirrors tdlib) accepts it, and the only entities are ours.
    parsed, entities = parse_telegram_html(card)
    assert parsed.split("\n")[5] == f"📝 {reason}"
    assert [e["type"] for e in entities] == ["bold", "code", "code", "code", "code", "code"]


#: A card leaves room for the late note the notifier may put in front of it.
CARD_LIMIT = 4096 - LATE_NOTE_ROOM


def _reason_line(card: str) -> str:
    [line] = [line for line in card.split("\n") if line.startswith("📝 ")]
    return line.removeprefix("📝 ")


def _budget(card: str) -> int:
    """How many characters the reason could use: 4096 less the late-note room and the rest of the card."""
    return CARD_LIMIT - (len(card) - len(_reason_line(card)))


@pytest.mark.parametrize(
    "reason",
    [
        "x" * 5000,  # plain text
        "a&" * 2500,  # every other character escapes to five
        "<>" * 2500,  # every character escapes to four
        ("ADX > 30 & close < SAR; " * 210)[:5000],
    ],
    ids=["plain", "amp-dense", "angle-dense", "mixed"],
)
def test_long_reason_is_trimmed_to_fit_4096_without_breaking_entities(reason: str) -> None:
    """A 5,000-character reason fits (with room for a late note), ends with the marker, cuts no entity."""
    assert len(reason) == 5000
    card = signal_card(long_signal(reason=reason), tick_size=0.01)
    assert len(card) <= CARD_LIMIT
    late = late_note(0, 10**12)  # the longest late note: days of delay
    assert len(late) + 1 <= LATE_NOTE_ROOM
    line = _reason_line(card)
    assert line.endswith(TRIM_MARKER)
    kept = line.removesuffix(TRIM_MARKER)
    assert BROKEN_ENTITY.search(card) is None
    # What is kept is the start of the reason, unescaped exactly.
    assert reason.startswith(html_to_plain(kept))
    # The trim keeps as much as fits: adding one more raw character would exceed the limit
    # (its escaped form is at most 5 characters long here), so at most 4 characters of room are left.
    assert _budget(card) - len(line) <= 4
    assert len(html_to_plain(kept)) > 0
    parse_telegram_html(card)  # valid Telegram HTML


def test_reason_that_fits_exactly_is_not_trimmed() -> None:
    """A reason exactly as long as the room left is kept whole, without the marker."""
    probe = signal_card(long_signal(reason="x"), tick_size=0.01)
    room = CARD_LIMIT - (len(probe) - 1)
    card = signal_card(long_signal(reason="y" * room), tick_size=0.01)
    assert len(card) == CARD_LIMIT
    assert _reason_line(card) == "y" * room


@pytest.mark.parametrize(
    ("value", "tick", "text"),
    [
        (43250.51, 0.01, "43250.51"),
        (43250.5, 0.01, "43250.50"),
        (0.0812345, 0.0001, "0.0812"),
        (1.23456789, 0.0001, "1.2346"),
        (43250.51, 1.0, "43251"),
        (0.00001234, 1e-8, "0.00001234"),
        (43250.51, None, "43250.51"),
        (0.0812345, None, "0.0812345"),
        (0.30000000000000004, None, "0.300000"),
        (2500.0, None, "2500.00"),
        (1234567.891, None, "1234567.89"),
        (0.0, None, "0.00000"),
    ],
)
def test_format_price(value: float, tick: float | None, text: str) -> None:
    """Prices use the tick's decimals, or 6 significant digits (at least 2 decimals) without a tick."""
    assert format_price(value, tick) == text


def test_result_message_tp_exact_text() -> None:
    """A TP1 result: icon, reason, exit price, net P&L (escaped &), R, time held since the bar close."""
    outcome = Outcome(
        reason="TP1", price=206.0, exit_ms=_ms("2024-01-01T06:00"), pnl_pct=2.9, r_multiple=1.45
    )
    assert result_message(long_signal(), outcome, tick_size=0.01) == (
        "✅ <b>TP1</b> · LONG BTC/USDT · psar_bot\n"
        "Exit: <code>206.00</code> · P&amp;L +2.90% · +1.45R · held 5h 0m\n"
        "🆔 <code>a1b2c3d4e5</code> · 2024-01-01 06:00 UTC"
    )


def test_result_message_sl_over_a_day() -> None:
    """An SL result held 26.5 h after the bar close shows days and hours."""
    outcome = Outcome(
        reason="SL", price=2550.0, exit_ms=_ms("2024-03-06T14:30"), pnl_pct=-2.1, r_multiple=-1.05
    )
    assert result_message(short_signal(), outcome) == (
        "❌ <b>SL</b> · SHORT ETH/USDT · psar_bot\n"
        "Exit: <code>2550.00</code> · P&amp;L -2.10% · -1.05R · held 1d 2h\n"
        "🆔 <code>ffee001122</code> · 2024-03-06 14:30 UTC"
    )
    assert html_to_plain(result_message(short_signal(), outcome)).split("\n")[1] == (
        "Exit: 2550.00 · P&L -2.10% · -1.05R · held 1d 2h"
    )


def test_result_message_flat_timeout() -> None:
    """A break-even TIMEOUT gets the neutral icon and +0.00 values; held 45 min."""
    outcome = Outcome(
        reason="TIMEOUT", price=200.0, exit_ms=_ms("2024-01-01T01:45"), pnl_pct=0.0, r_multiple=0.0
    )
    assert result_message(long_signal(), outcome, tick_size=0.01).split("\n")[:2] == [
        "➖ <b>TIMEOUT</b> · LONG BTC/USDT · psar_bot",
        "Exit: <code>200.00</code> · P&amp;L +0.00% · +0.00R · held 0h 45m",
    ]


def test_record_line_counts_trades_wins_and_profit_factor() -> None:
    """Three trades (+2 %, -1 %, +1 %): 67 % wins, profit factor 3.00; no loss yet shows infinity."""
    record = BotRecord(0, 0, 0.0, 0.0).plus(2.0).plus(-1.0).plus(1.0)
    assert record_line("psar_bot", record) == "📊 psar_bot: 3 trades · win rate 67% · profit factor 3.00"
    assert record_line("a<b", BotRecord(0, 0, 0.0, 0.0).plus(0.5)) == (
        "📊 a&lt;b: 1 trade · win rate 100% · profit factor ∞"
    )
    assert record_line("x", BotRecord(0, 0, 0.0, 0.0)) == "📊 x: 0 trades · win rate 0% · profit factor –"


def test_late_note_says_when_the_signal_fired_and_how_long_ago() -> None:
    """An alert sent 95 minutes late names the signal time and the delay."""
    created = 1_704_067_200_000  # 2024-01-01 00:00 UTC
    assert late_note(created, created + 95 * 60_000) == (
        "⏰ <b>Late alert</b>: signalled 2024-01-01 00:00 UTC, 1h 35m ago; check the price before acting."
    )
