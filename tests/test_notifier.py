"""TelegramNotifier against the fake Telegram Bot API (the real python-telegram-bot client).

Alerts are put in the store's outbox the way the runner does (``Store.admit_signal``); the notifier
delivers them. What the fake received is what a channel would show.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from common.cards import TRIM_MARKER, result_message, signal_card
from common.charts import chart_spec, render_chart
from common.clock import SimulatedClock, WallClock
from common.config import Settings, TelegramSettings
from common.logging_config import configure_logging
from common.market.replay import ReplaySource, read_ohlcv_file
from common.notifier import TelegramNotifier
from common.runner import BotRuntime
from common.store import GateRules, GateVerdict, Store
from common.tracker import Outcome
from common.types import Direction, Levels, Signal
from tests.fakes.csvdata import require_shared_data
from tests.fakes.telegram import PNG_SIGNATURE, FakeTelegram, Fault, parse_telegram_html
from tests.harness import SAMPLE, bot_runtime, in_process_runner
from tests.test_market_live import Recorder, RecorderParams

pytestmark = pytest.mark.integration

TOKEN = "123456789:AAnotifierTestTokenXXXXXXXXXXXXXXXXXX"
OTHER_TOKEN = "222222222:AAsecondBotTokenYYYYYYYYYYYYYYYYYYYYY"
CHANNEL = "-1001111111111"
GROUP = "-1002222222222"
HOUR = 3_600_000
OPEN_ALL = GateRules(cooldown_ms=0, max_open_signals=100_000)


def settings(telegram: FakeTelegram, **env: str) -> Settings:
    """Settings pointing at the fake, with TOKEN and CHANNEL as defaults and ``env`` on top."""
    return Settings.from_env(
        {
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_CHAT_ID": CHANNEL,
            "TELEGRAM_API_BASE_URL": telegram.url,
            **env,
        }
    )


def alert(bot: str, number: int, *, reason: str = "", symbol: str = "") -> Signal:
    """A LONG alert of ``bot`` on its own symbol (COIN7/USDT), its reason naming its number ("alert #7")."""
    return Signal(
        id=f"{bot[:4]}{number:06d}",
        bot=bot,
        symbol=symbol or f"COIN{number}/USDT",
        timeframe="1h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=200.0, sl=196.0, tps=(206.0, 210.0)),
        reason=reason or f"alert #{number}",
        bar_ts=1_700_000_000_000 + number * HOUR,
        created_ms=int(time.time() * 1000),
    )


def queue(store: Store, signal: Signal, *, created_ms: int | None = None, chart: bool = False) -> str:
    """Put ``signal`` and its card in the outbox as the runner does; returns the card."""
    card = signal_card(signal, 0.01)
    verdict = store.admit_signal(signal, OPEN_ALL, created_ms or int(time.time() * 1000), card, chart=chart)
    assert verdict is GateVerdict.ACCEPTED
    return card


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """The fake Bot API with both tokens, a channel, a group, and a private chat."""
    async with FakeTelegram(tokens=[TOKEN, OTHER_TOKEN], chats=[int(CHANNEL), int(GROUP), 777000111]) as fake:
        yield fake


async def deliver_until(notifier: TelegramNotifier, done: int, store: Store, timeout: float) -> None:
    """Run delivery passes (as the runner's delivery task does) until ``done`` rows are sent."""
    async with asyncio.timeout(timeout):
        while sum(row["status"] == "sent" for row in store.outbox_rows()) < done:
            await notifier.deliver_pending()
            await asyncio.sleep(0.2)


def windows_over(times: list[float], span: float) -> int:
    """The most arrivals inside any half-open window of ``span`` seconds."""
    ordered = sorted(times)
    return max(int(np.searchsorted(ordered, t + span)) - i for i, t in enumerate(ordered))


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_hundred_alert_bursts_arrive_in_order_once_within_twenty_a_minute(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    """100 alerts each to two channels, one hit by random 429s: all arrive, in order, once, <= 20/min."""
    telegram.enforce_limits()  # Telegram's own flood control: any breach would be answered 429 "flood"
    store = Store(tmp_path)
    env = settings(telegram, TELEGRAM_CHAT_ALPHA=CHANNEL, TELEGRAM_CHAT_BETA=GROUP)
    notifier = TelegramNotifier(store, WallClock(), env, TelegramSettings())
    assert await notifier.start(["alpha", "beta"]) == {}
    for number in range(100):
        queue(store, alert("alpha", number))
        queue(store, alert("beta", number))
    rng = random.Random(42)

    async def storms() -> None:
        """Eight 429s with retry_after 1-4 s at random moments, to the beta group only."""
        for _ in range(8):
            await asyncio.sleep(rng.uniform(5, 25))
            telegram.inject(Fault.retry_after(rng.randint(1, 4)), method="sendMessage", chat=GROUP)

    storm = asyncio.create_task(storms())
    try:
        await deliver_until(notifier, 200, store, timeout=540)
    finally:
        storm.cancel()
        await notifier.close()
    for chat in (CHANNEL, GROUP):
        sent = telegram.messages(chat)
        assert [m.text.split("alert #")[1].split("\n")[0] for m in sent if m.text] == [
            str(n) for n in range(100)
        ], chat
        assert windows_over([m.monotonic for m in sent], 60.0) <= 20
        assert windows_over([m.monotonic for m in sent], 1.0) <= 1
    assert [r.fault for r in telegram.rejected if r.fault != "retry_after"] == []  # no flood, no window hit
    assert telegram.violations == []
    assert sum(r.fault == "retry_after" for r in telegram.rejected) >= 4


async def test_markup_characters_render_and_a_long_reason_is_trimmed(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    """<, >, &, * and _ in bot, symbol and pattern names show as typed; a 5,000-char reason still goes."""
    store = Store(tmp_path)
    env = settings(telegram, TELEGRAM_CHAT_WEIRD_BOT=GROUP)
    notifier = TelegramNotifier(store, WallClock(), env, TelegramSettings(per_chat_interval_s=0.1))
    assert await notifier.start(["weird_bot"]) == {}
    tricky = "Bullish <Engulfing> & *Morning_Star* _x_ 3 > 2 < 4"
    queue(store, alert("weird_bot", 1, reason=tricky, symbol="A&B<C>/U*S_D"))
    queue(store, alert("weird_bot", 2, reason="Z" * 5000))
    await deliver_until(notifier, 2, store, timeout=20)
    await notifier.close()
    first, second = telegram.messages(GROUP)
    shown = parse_telegram_html(first.text or "")[0]
    assert "A&B<C>/U*S_D" in shown
    assert tricky in shown
    assert "weird_bot" in shown
    long_text = parse_telegram_html(second.text or "")[0]
    assert len(long_text) <= 4096
    assert f"{'Z' * 100}{TRIM_MARKER}" in long_text


async def test_a_wrong_chat_is_one_line_at_start_and_the_other_bot_runs(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    """Bot alpha's chat does not exist: one problem line naming bot and chat; bot beta starts."""
    clock = SimulatedClock(0)
    source = ReplaySource(SAMPLE, clock)
    store_dir = tmp_path / "run"
    env = settings(telegram, TELEGRAM_CHAT_ALPHA="-1009999999999", TELEGRAM_CHAT_BETA=GROUP)
    alpha: BotRuntime = bot_runtime(Recorder("alpha"), "4h", ["BTC/USDT"], RecorderParams())
    beta: BotRuntime = bot_runtime(Recorder("beta"), "4h", ["ETH/USDT"], RecorderParams())
    runner = in_process_runner(store_dir, [alpha, beta], source, clock, asyncio.Event())
    store = Store(store_dir / "state")
    notifier = TelegramNotifier(store, clock, env, TelegramSettings())
    runner._notifier = notifier  # the real notifier instead of the console one
    try:
        problems = await runner.prepare()
    finally:
        await notifier.close()
    assert problems == ["bot alpha: Telegram chat -1009999999999: Chat not found"]
    assert [bot.name for bot in runner.bots] == ["beta"]


async def test_per_bot_token_topic_and_reply(telegram: FakeTelegram, tmp_path: Path) -> None:
    """A bot with its own token posts into its topic; its result replies to the alert's message id."""
    store = Store(tmp_path)
    env = settings(
        telegram,
        TELEGRAM_BOT_TOKEN_GAMMA=OTHER_TOKEN,
        TELEGRAM_CHAT_GAMMA=GROUP,
        TELEGRAM_TOPIC_GAMMA="42",
    )
    notifier = TelegramNotifier(store, WallClock(), env, TelegramSettings(per_chat_interval_s=0.1))
    assert await notifier.start(["gamma"]) == {}
    signal = alert("gamma", 1)
    queue(store, signal)
    await deliver_until(notifier, 1, store, timeout=20)
    outcome = Outcome(
        reason="TP1", price=206.0, exit_ms=signal.bar_ts + 5 * HOUR, pnl_pct=2.9, r_multiple=1.45
    )
    assert store.close_signal(
        signal.id, outcome, signal.bar_ts + 5 * HOUR, result_message(signal, outcome, 0.01)
    )
    await deliver_until(notifier, 2, store, timeout=20)
    await notifier.close()
    alert_sent, result_sent = telegram.messages(GROUP)
    assert {alert_sent.token, result_sent.token} == {OTHER_TOKEN}
    assert (alert_sent.thread_id, result_sent.thread_id) == (42, 42)
    assert result_sent.reply_to == alert_sent.message_id


async def test_an_alert_older_than_thirty_minutes_is_sent_marked_late(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    """An alert queued 95 minutes ago (Telegram was down) goes out with the late note in front."""
    store = Store(tmp_path)
    notifier = TelegramNotifier(store, WallClock(), settings(telegram), TelegramSettings())
    assert await notifier.start(["psar_bot"]) == {}
    card = queue(store, alert("psar_bot", 1), created_ms=int(time.time() * 1000) - 95 * 60_000)
    await deliver_until(notifier, 1, store, timeout=20)
    await notifier.close()
    [sent] = telegram.messages(CHANNEL)
    assert sent.text is not None
    late, rest = sent.text.split("\n", 1)
    assert late.startswith("⏰ <b>Late alert</b>: signalled ")
    assert "1h 35m ago" in late
    assert rest == card


def real_chart(tmp_path: Path, signal: Signal) -> Path:
    """The chart of ``signal`` over the real BTC/USDT 4h series ending at its bar."""
    candles = read_ohlcv_file(require_shared_data("binance_spot/BTC_USDT-4h.csv.gz"), "BTC/USDT", "4h")
    path = tmp_path / f"{signal.id}.png"
    render_chart(chart_spec(signal, candles.head(len(candles) - 10), bars=100, tick_size=0.01), path)
    return path


def chart_alert(number: int, reason: str, bar_ts: int) -> Signal:
    """A 4h alert on the last candles of the real series (so its chart has a history to draw)."""
    signal = alert("psar_bot", number, reason=reason)
    return Signal(
        id=signal.id,
        bot=signal.bot,
        symbol="BTC/USDT" if number == 1 else "ETH/USDT",
        timeframe="4h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=57_000.0, sl=55_500.0, tps=(59_000.0, 61_000.0)),
        reason=reason,
        bar_ts=bar_ts,
        created_ms=signal.created_ms,
    )


async def test_the_chart_goes_with_the_card_as_caption_or_the_card_follows_as_a_reply(
    telegram: FakeTelegram, tmp_path: Path
) -> None:
    """A real-series chart is sent with sendPhoto: a short card is its caption; a long one replies to it."""
    candles = read_ohlcv_file(require_shared_data("binance_spot/BTC_USDT-4h.csv.gz"), "BTC/USDT", "4h")
    bar_ts = int(candles.ts[-11])
    store = Store(tmp_path / "state")
    notifier = TelegramNotifier(
        store, WallClock(), settings(telegram), TelegramSettings(per_chat_interval_s=0.1)
    )
    assert await notifier.start(["psar_bot"]) == {}
    short = chart_alert(1, "SAR flip", bar_ts)
    long = chart_alert(2, "long reason " * 150, bar_ts - 4 * HOUR)
    short_card = queue(store, short, chart=True)
    long_card = queue(store, long, chart=True)
    await notifier.deliver_pending()
    assert telegram.messages() == []  # both wait for their charts
    for signal in (short, long):
        store.attach_chart(signal.id, str(real_chart(tmp_path, signal)))
    await deliver_until(notifier, 2, store, timeout=20)
    await notifier.close()
    photo_short, photo_long, card_reply = telegram.messages(CHANNEL)
    assert (photo_short.method.lower(), photo_short.photo_head, photo_short.text) == (
        "sendphoto",
        PNG_SIGNATURE,
        short_card,
    )
    assert photo_short.photo == (tmp_path / f"{short.id}.png").read_bytes()
    assert photo_long.method.lower() == "sendphoto"
    assert photo_long.text == long_card.split("\n", 1)[0]
    assert (card_reply.method.lower(), card_reply.text, card_reply.reply_to) == (
        "sendmessage",
        long_card,
        photo_long.message_id,
    )
    assert [row["message_id"] for row in store.outbox_rows()] == [
        photo_short.message_id,
        card_reply.message_id,
    ]


async def test_an_alert_whose_chart_never_comes_goes_as_text(telegram: FakeTelegram, tmp_path: Path) -> None:
    """A chart still pending when a new process starts is given up: the card goes out as text."""
    store = Store(tmp_path)
    card = queue(store, alert("psar_bot", 1), chart=True)
    notifier = TelegramNotifier(store, WallClock(), settings(telegram), TelegramSettings())
    assert await notifier.start(["psar_bot"]) == {}  # the previous process died while drawing
    await deliver_until(notifier, 1, store, timeout=20)
    await notifier.close()
    [sent] = telegram.messages(CHANNEL)
    assert (sent.method.lower(), sent.text) == ("sendmessage", card)


async def test_the_token_is_in_no_log_line_even_at_debug(telegram: FakeTelegram, tmp_path: Path) -> None:
    """With httpx, httpcore and telegram at DEBUG, sending, a 5xx and a 429 leave the token in no log line."""
    configure_logging(
        log_dir=tmp_path / "logs", process_name="notifier", secrets=[TOKEN], console_level="ERROR"
    )
    for name in ("httpx", "httpcore", "telegram", "common"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    store = Store(tmp_path / "state")
    notifier = TelegramNotifier(
        store, WallClock(), settings(telegram), TelegramSettings(per_chat_interval_s=0.1)
    )
    try:
        assert await notifier.start(["psar_bot"]) == {}
        telegram.inject(Fault.server_error(), method="sendMessage")
        telegram.inject(Fault.retry_after(1), method="sendMessage")
        queue(store, alert("psar_bot", 1))
        queue(store, alert("psar_bot", 2))
        await deliver_until(notifier, 2, store, timeout=30)
    finally:
        await notifier.close()
        configure_logging(log_dir=None, process_name="tests", console_level="WARNING")
    text = (tmp_path / "logs" / "notifier.log").read_text(encoding="utf-8")
    assert "HTTP Request" in text or "sendMessage" in text  # the client's request lines are there
    secret = TOKEN.split(":", 1)[1]
    assert TOKEN not in text
    assert secret not in text
    assert len(telegram.messages(CHANNEL)) == 2
