"""psar_bot end to end: real ccxt and python-telegram-bot clients, the real CLI, the local fakes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest
import talib

from bots.base import MarketData
from bots.psar_bot import PsarBot, PsarParams
from common.types import Candles, Setup
from tests.fakes.csvdata import OhlcvArrays
from tests.fakes.mexc import FakeMexc
from tests.fakes.telegram import PNG_SIGNATURE, FakeTelegram, Fault
from tests.harness import (
    CHAT,
    H4_MS,
    TOKEN,
    avoid_candle_boundary,
    cli_env,
    run_cli,
    sample_4h,
    serve_until,
    write_config,
)
from tp_sl_calculator import LevelsRejected, RiskSettings, calculate_levels

pytestmark = pytest.mark.integration

LOOKBACK = 300
RISK = RiskSettings(sl_method="structure", tp_method="atr", tp_multiples=(3.0, 5.0), min_rr=1.5)


def _window(data: OhlcvArrays, last: int) -> Candles:
    """The LOOKBACK closed candles ending at index ``last``, as the runner hands them to the bot."""
    start = last - LOOKBACK + 1
    return Candles(
        symbol="BTC/USDT",
        timeframe="4h",
        ts=data.ts[start : last + 1],
        open=data.open[start : last + 1],
        high=data.high[start : last + 1],
        low=data.low[start : last + 1],
        close=data.close[start : last + 1],
        volume=data.volume[start : last + 1],
    )


def _first_signal_bar(data: OhlcvArrays, first: int = LOOKBACK - 1) -> int:
    """Index of the first bar (from ``first`` on) where psar_bot fires on its window and the levels
    are accepted."""
    for last in range(first, len(data.ts) - 1):
        for setup in bot_scan_last(_window(data, last)):
            try:
                calculate_levels(setup, RISK, 0.01)
            except LevelsRejected:
                continue
            return last
    raise AssertionError("no psar_bot signal in the bundled BTC 4h history")


def bot_scan_last(window: Candles) -> list[Setup]:
    """Setups of psar_bot on the newest bar of ``window`` (used only to choose the test's bar)."""
    setups = PsarBot().scan(MarketData(candles=window), PsarParams())
    return [s for s in setups if s.bar_ts == int(window.ts[-1])]


def _floor(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def _ceil(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def expected_card(window: Candles) -> tuple[str, dict[str, float]]:
    """The alert text computed independently from TA-Lib and the documented rule and format."""
    sar = talib.SAR(window.high, window.low, acceleration=0.02, maximum=0.2)
    adx = talib.ADX(window.high, window.low, window.close, timeperiod=14)[-1]
    atr = talib.ATR(window.high, window.low, window.close, timeperiod=14)[-1]
    above = window.close > sar
    long = bool(above[-1])
    prior = 0
    for i in range(len(window) - 2, 0, -1):  # bars of the previous trend, before the flip bar
        if above[i] == long:
            break
        prior += 1
    entry = Decimal(repr(float(window.close[-1]))).quantize(Decimal("0.01"))
    floor_stop = float(entry) * (1 - 0.005) if long else float(entry) * (1 + 0.005)
    raw_stop = min(float(sar[-1]), floor_stop) if long else max(float(sar[-1]), floor_stop)
    sl = _floor(raw_stop) if long else _ceil(raw_stop)  # away from entry
    tps = [(_floor(float(entry) + m * atr) if long else _ceil(float(entry) - m * atr)) for m in (3.0, 5.0)]
    risk = abs(entry - sl)
    bar_ts = int(window.ts[-1])
    direction = "LONG" if long else "SHORT"
    signal_id = hashlib.blake2b(
        f"psar_bot|BTC/USDT|4h|{bar_ts}|{direction}".encode(), digest_size=5
    ).hexdigest()
    closed = datetime.fromtimestamp((bar_ts + H4_MS) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

    def pct(price: Decimal) -> str:
        return f"{float((price - entry) / entry * 100):+.2f}%"

    lines = [
        f"{'🟢' if long else '🔴'} <b>{direction} BTC/USDT</b> · 4h · psar_bot",
        f"Entry: <code>{entry}</code>",
        f"SL: <code>{sl}</code> ({pct(sl)})",
        *(
            f"TP{k + 1}: <code>{tp}</code> ({pct(tp)}) · R:R {float(abs(tp - entry) / risk):.2f}"
            for k, tp in enumerate(tps)
        ),
        f"📝 Parabolic SAR flipped {'up' if long else 'down'} after {prior} bars {'down' if long else 'up'}; "
        f"ADX {adx:.1f}",
        f"🆔 <code>{signal_id}</code> · {closed}",
    ]
    levels = {
        "entry": float(entry),
        "sl": float(sl),
        "tp1": float(tps[0]),
        "tp2": float(tps[1]),
        "bar_ts": bar_ts,
    }
    return "\n".join(lines), levels


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeMexc, FakeTelegram]]:
    """Both fakes running on 127.0.0.1, BTC/USDT spot registered with a 0.01 tick."""
    avoid_candle_boundary(H4_MS)
    async with FakeMexc() as mexc, FakeTelegram(tokens=[TOKEN], chats=[int(CHAT)]) as telegram:
        mexc.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        yield mexc, telegram


def _stored(tmp_path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(tmp_path / "state" / "signals.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM signals").fetchall()
    finally:
        db.close()


async def test_alert_reaches_telegram_exactly_and_is_stored(
    fakes: tuple[FakeMexc, FakeTelegram], tmp_path: Path
) -> None:
    """`run psar_bot --once` sends the exact card computed independently and stores the signal; a
    rerun inside the cooldown sends nothing."""
    mexc, telegram = fakes
    data = sample_4h()
    last = _first_signal_bar(data)
    served_ts = serve_until(mexc, data, last)
    shifted = OhlcvArrays(
        ts=served_ts[:-1],
        open=data.open[: last + 1],
        high=data.high[: last + 1],
        low=data.low[: last + 1],
        close=data.close[: last + 1],
        volume=data.volume[: last + 1],
    )
    text, levels = expected_card(_window(shifted, last))
    write_config(tmp_path)
    env = cli_env(tmp_path, mexc.base_url, telegram.url)

    first = await run_cli(["run", "psar_bot", "--once"], env, tmp_path)

    assert first.returncode == 0, first.stderr
    sent = telegram.messages()
    assert [m.text for m in sent] == [text]
    # The card is the caption of the alert's chart (it fits in Telegram's 1024 characters).
    assert (sent[0].method.lower(), sent[0].photo_head) == ("sendphoto", PNG_SIGNATURE)
    assert sent[0].chat_id == int(CHAT)
    assert sent[0].parse_mode == "HTML"
    rows = _stored(tmp_path)
    assert len(rows) == 1
    row = rows[0]
    assert (row["bot"], row["symbol"], row["timeframe"], row["status"]) == (
        "psar_bot",
        "BTC/USDT",
        "4h",
        "OPEN",
    )
    assert (row["entry"], row["sl"], row["tp1"], row["tp2"], row["tp3"]) == (
        levels["entry"],
        levels["sl"],
        levels["tp1"],
        levels["tp2"],
        None,
    )
    assert row["bar_ts"] == levels["bar_ts"]

    second = await run_cli(["run", "psar_bot", "--once"], env, tmp_path)

    assert second.returncode == 0, second.stderr
    assert len(telegram.messages()) == 1
    assert len(_stored(tmp_path)) == 1


async def test_alert_survives_telegram_flood_control(
    fakes: tuple[FakeMexc, FakeTelegram], tmp_path: Path
) -> None:
    """A 429 retry_after=1 on the first send delays the alert; it still arrives once, after the wait."""
    mexc, telegram = fakes
    data = sample_4h()
    serve_until(mexc, data, _first_signal_bar(data))
    telegram.inject(Fault.retry_after(1), method="sendPhoto")
    write_config(tmp_path)

    run = await run_cli(
        ["run", "psar_bot", "--once"], cli_env(tmp_path, mexc.base_url, telegram.url), tmp_path
    )

    assert run.returncode == 0, run.stderr
    assert len(telegram.rejected) == 1
    assert len(telegram.messages()) == 1
    assert telegram.messages()[0].monotonic - telegram.rejected[0].monotonic >= 1.0
    assert telegram.violations == []


async def test_forming_candle_never_reaches_the_strategy(
    fakes: tuple[FakeMexc, FakeTelegram], tmp_path: Path
) -> None:
    """When only the still-forming candle would flip the SAR, no signal is sent or stored."""
    mexc, telegram = fakes
    data = sample_4h()
    flip = _first_signal_bar(data)
    # The flip bar is served as the forming candle: the last closed candle is the one before it.
    serve_until(mexc, data, flip - 1)
    with_forming = _window(data, flip)
    assert bot_scan_last(with_forming), "the forming candle must be a flip for this test to mean anything"
    assert not bot_scan_last(_window(data, flip - 1))
    write_config(tmp_path)

    run = await run_cli(
        ["run", "psar_bot", "--once"], cli_env(tmp_path, mexc.base_url, telegram.url), tmp_path
    )

    assert run.returncode == 0, run.stderr
    assert telegram.messages() == []
    assert _stored(tmp_path) == []
    klines = [r for r in mexc.requests if r.path.endswith("/klines")]
    assert len(klines) == 1


def test_sample_series_is_long_enough() -> None:
    """The bundled BTC 4h history holds more than the lookback, so the e2e tests have data to cut."""
    assert len(sample_4h().ts) > LOOKBACK + 10
    assert np.all(np.diff(sample_4h().ts) == H4_MS)
