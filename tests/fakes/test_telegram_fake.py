"""The fake Telegram server, driven by the real python-telegram-bot ``Bot`` over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
import json
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from telegram import Bot, MessageEntity, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from tests.fakes.telegram import PNG_SIGNATURE, FakeTelegram, Fault, TelegramHtmlError, parse_telegram_html

pytestmark = pytest.mark.integration

TOKEN = "123456:AAEfakefakefakefakefakefakefakefake"
CHANNEL = -1001234567890
USER = 42
LOCKED = -1009876543210  # exists, but the bot was removed from it
REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_png(width: int, height: int) -> bytes:
    """A valid RGB PNG, built by hand so the tests need no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x20\x80\xff" * width for _ in range(height))
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def make_bot(url: str, token: str = TOKEN, request: HTTPXRequest | None = None) -> Bot:
    """A real PTB Bot aimed at the fake."""
    return Bot(token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot", request=request)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A running fake with one channel, one private chat and one chat the bot was removed from."""
    async with FakeTelegram([TOKEN], [CHANNEL, USER], forbidden_chats=[LOCKED]) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    """An initialised Bot (initialize() already called getMe once)."""
    async with make_bot(fake.url) as client:
        yield client


async def test_get_me_returns_the_bot_user(fake: FakeTelegram, bot: Bot) -> None:
    """getMe answers a bot User whose id is the token's numeric prefix."""
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username, me.first_name) == (
        123456,
        True,
        "signal_fleet_123456_bot",
        "Signal Fleet Test Bot",
    )
    assert [entry.method for entry in fake.received] == ["getMe", "getMe"]
    assert fake.received[0].token == TOKEN


async def test_get_chat_types_follow_the_id(bot: Bot) -> None:
    """getChat: -100... ids are channels with a title, positive ids private chats."""
    channel = await bot.get_chat(CHANNEL)
    private = await bot.get_chat(USER)
    assert (channel.id, channel.type, channel.title) == (CHANNEL, "channel", f"Test channel {CHANNEL}")
    assert (private.id, private.type, private.first_name) == (USER, "private", "User 42")


async def test_escaped_html_arrives_intact(fake: FakeTelegram, bot: Bot) -> None:
    """Escaped '<', '&', quotes arrive as plain text; <b> becomes a bold entity; ids count from 1."""
    name = 'BTC<USDT & "Bull" O\'Neil'
    raw = f"<b>{html.escape(name)}</b> long"
    first = await bot.send_message(CHANNEL, raw, parse_mode=ParseMode.HTML)
    second = await bot.send_message(CHANNEL, "plain", parse_mode=ParseMode.HTML)
    assert first.text == 'BTC<USDT & "Bull" O\'Neil long'
    assert first.entities == (MessageEntity(MessageEntity.BOLD, 0, len(name)),)
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.sender_chat is not None
    assert first.sender_chat.id == CHANNEL
    delivered = fake.messages(CHANNEL)
    assert [(m.method, m.text, m.parse_mode, m.message_id) for m in delivered] == [
        ("sendMessage", raw, "HTML", 1),
        ("sendMessage", "plain", "HTML", 2),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<b", "unclosed start tag at byte offset 0"),
        ("RSI < 30", 'unsupported start tag "" at byte offset 4'),
        ("<Hammer> at support", 'unsupported start tag "hammer" at byte offset 0'),
        ("<b>BTC</i>", 'unmatched end tag at byte offset 6, expected "</b>", found "</i>"'),
        ("<b>BTC", 'can\'t find end tag corresponding to start tag "b"'),
        ("AT&T", 'unescaped "&" at byte offset 2; write it as "&amp;"'),
    ],
)
async def test_unescaped_markup_is_a_bad_request(
    fake: FakeTelegram, bot: Bot, text: str, reason: str
) -> None:
    """Unescaped '<' or '&' and broken tags raise BadRequest with Telegram's wording; nothing is sent."""
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(CHANNEL, text, parse_mode=ParseMode.HTML)
    # PTB strips "Bad Request: " and capitalize()s the rest, lower-casing tdlib's own capitals.
    assert caught.value.message == f"Can't parse entities: {reason}"
    assert fake.messages() == []
    assert fake.received[-1].status == 400


async def test_text_limit_counts_characters_after_parsing(bot: Bot) -> None:
    """4096 characters after entity parsing pass (even if longer raw); 4097 are 'message is too long'."""
    at_limit = await bot.send_message(USER, "&amp;" * 4096, parse_mode=ParseMode.HTML)
    assert at_limit.text == "&" * 4096
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(USER, "x" * 4097)
    assert caught.value.message == "Message is too long"


async def test_send_photo_records_png_and_caption(fake: FakeTelegram, bot: Bot) -> None:
    """sendPhoto uploads multipart: the fake sees the PNG bytes and the caption, and answers sizes."""
    png = tiny_png(64, 32)
    caption = "<b>BTC/USDT</b> 1h chart"
    message = await bot.send_photo(CHANNEL, photo=png, caption=caption, parse_mode=ParseMode.HTML)
    assert message.caption == "BTC/USDT 1h chart"
    assert message.caption_entities == (MessageEntity(MessageEntity.BOLD, 0, 8),)
    assert [(size.width, size.height) for size in message.photo] == [(64, 32), (64, 32)]
    (record,) = fake.messages()
    assert (record.method, record.text, record.photo_size, record.photo_head) == (
        "sendPhoto",
        caption,
        len(png),
        PNG_SIGNATURE,
    )
    assert record.photo == png


async def test_photo_caption_limit_and_non_image(bot: Bot) -> None:
    """A caption over 1024 characters and bytes that are no image are both BadRequest."""
    with pytest.raises(BadRequest) as too_long:
        await bot.send_photo(CHANNEL, photo=tiny_png(8, 8), caption="x" * 1025)
    with pytest.raises(BadRequest) as not_image:
        await bot.send_photo(CHANNEL, photo=b"GIF89a-not-a-png")
    assert too_long.value.message == "Message caption is too long"
    assert not_image.value.message == "Image_process_failed"


async def test_reply_and_thread_are_recorded(fake: FakeTelegram, bot: Bot) -> None:
    """reply_to_message_id (sent by PTB v22 as reply_parameters) and message_thread_id reach the fake."""
    signal_message = await bot.send_message(CHANNEL, "signal")
    result = await bot.send_message(
        CHANNEL, "TP1 hit", reply_to_message_id=signal_message.message_id, message_thread_id=7
    )
    assert result.reply_to_message is not None
    assert result.reply_to_message.text == "signal"
    assert result.message_thread_id == 7
    record = fake.messages()[-1]
    assert (record.reply_to, record.thread_id) == (1, 7)
    assert json.loads(str(record.params["reply_parameters"])) == {"message_id": 1}


async def test_reply_to_a_missing_message(bot: Bot) -> None:
    """Replying to an unknown message is a BadRequest unless allow_sending_without_reply is set."""
    with pytest.raises(BadRequest) as caught:
        await bot.send_message(CHANNEL, "TP1 hit", reply_to_message_id=999)
    assert caught.value.message == "Message to be replied not found"
    sent = await bot.send_message(
        CHANNEL, "TP1 hit", reply_parameters=ReplyParameters(999, allow_sending_without_reply=True)
    )
    assert (sent.message_id, sent.reply_to_message) == (1, None)


async def test_retry_after_fault_and_window_violation(
    fake: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An injected 429 raises RetryAfter(3); sending again at once is recorded as a violation."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as timedelta, no warning
    fake.inject(Fault.retry_after(3), method="sendMessage")
    with pytest.raises(RetryAfter) as first:
        await bot.send_message(CHANNEL, "signal")
    with pytest.raises(RetryAfter) as again:
        await bot.send_message(CHANNEL, "signal")
    other_chat = await bot.send_message(USER, "signal")  # the window is per chat
    assert first.value.retry_after == dtm.timedelta(seconds=3)
    assert again.value.retry_after == dtm.timedelta(seconds=3)
    assert [(entry.fault, entry.status) for entry in fake.rejected] == [
        ("retry_after", 429),
        ("retry_window", 429),
    ]
    assert [entry.chat_id for entry in fake.violations] == [CHANNEL]
    assert [entry.chat_id for entry in fake.messages()] == [USER]
    assert other_chat.message_id == 1


async def test_server_error_is_a_network_error(fake: FakeTelegram, bot: Bot) -> None:
    """A 500 raises plain NetworkError; two injected faults hit two requests, the third succeeds."""
    fake.inject(Fault.server_error(), times=2, method="sendMessage")
    for _ in range(2):
        with pytest.raises(NetworkError) as caught:
            await bot.send_message(CHANNEL, "signal")
        assert type(caught.value) is NetworkError
        assert caught.value.message == "Internal Server Error"
    await bot.send_message(CHANNEL, "signal")
    assert (len(fake.rejected), len(fake.messages()), fake.pending_faults) == (2, 1, 0)


async def test_injected_bad_request_and_malformed_body(fake: FakeTelegram, bot: Bot) -> None:
    """Fault.bad_request raises BadRequest; Fault.malformed raises TelegramError 'Invalid server response'."""
    fake.inject(Fault.bad_request("Bad Request: message thread not found"))
    fake.inject(Fault.malformed())
    with pytest.raises(BadRequest) as bad:
        await bot.send_message(CHANNEL, "signal")
    with pytest.raises(TelegramError) as malformed:
        await bot.send_message(CHANNEL, "signal")
    assert bad.value.message == "Message thread not found"
    assert (type(malformed.value), malformed.value.message) == (TelegramError, "Invalid server response")
    assert [entry.fault for entry in fake.rejected] == ["bad_request", "malformed"]
    assert fake.messages() == []


async def test_wrong_token_is_invalid_token(fake: FakeTelegram) -> None:
    """An unknown token gets 401, which PTB's initialize() reports as InvalidToken."""
    client = make_bot(fake.url, token="999:wrong")
    try:
        with pytest.raises(InvalidToken) as caught:
            await client.initialize()
    finally:
        await client.shutdown()
    assert caught.value.message == "The token `999:wrong` was rejected by the server."
    assert [(entry.token, entry.status, entry.description) for entry in fake.received] == [
        ("999:wrong", 401, "Unauthorized")
    ]


async def test_unknown_and_forbidden_chats(bot: Bot) -> None:
    """An unknown chat is BadRequest 'chat not found'; a chat without rights is Forbidden."""
    with pytest.raises(BadRequest) as unknown:
        await bot.send_message(-100555, "signal")
    with pytest.raises(Forbidden) as forbidden:
        await bot.send_message(LOCKED, "signal")
    assert unknown.value.message == "Chat not found"
    assert forbidden.value.message == "Forbidden: bot is not a member of the channel chat"


async def test_hang_times_out_but_is_delivered(fake: FakeTelegram) -> None:
    """A hang beyond read_timeout raises TimedOut, yet the server still delivers the message."""
    fake.inject(Fault.hang(1.0), method="sendMessage")
    async with make_bot(fake.url, request=HTTPXRequest(read_timeout=0.5, connect_timeout=2)) as client:
        with pytest.raises(TimedOut):
            await client.send_message(CHANNEL, "signal")
    async with asyncio.timeout(3):
        (delivered,) = await fake.wait_for_messages(1)
    assert (delivered.text, delivered.fault, delivered.message_id) == ("signal", "hang", 1)


async def test_flood_limits(fake: FakeTelegram, bot: Bot, monkeypatch: pytest.MonkeyPatch) -> None:
    """enforce_limits: a 2nd message within 1 s and a 4th within a minute to a channel get 429."""
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    fake.enforce_limits(per_chat_per_second=1, per_group_per_minute=3)
    await bot.send_message(USER, "one")
    with pytest.raises(RetryAfter) as per_second:
        await bot.send_message(USER, "two")
    assert per_second.value.retry_after == dtm.timedelta(seconds=1)

    fake.enforce_limits(per_chat_per_second=1000, per_group_per_minute=3)
    for number in range(3):
        await bot.send_message(CHANNEL, f"signal {number}")
    with pytest.raises(RetryAfter) as per_minute:
        await bot.send_message(CHANNEL, "signal 3")
    assert per_minute.value.retry_after == dtm.timedelta(seconds=60)
    assert [entry.fault for entry in fake.rejected] == ["flood", "flood"]
    assert len(fake.messages()) == 4
    assert fake.violations == []


async def test_form_json_and_get_encodings(fake: FakeTelegram) -> None:
    """Raw clients may send JSON with native types or GET query parameters; both are accepted."""
    async with aiohttp.ClientSession() as session:
        api = f"{fake.url}/bot{TOKEN}"
        async with session.post(
            f"{api}/sendMessage",
            json={"chat_id": CHANNEL, "text": "json", "reply_parameters": {"message_id": 5}},
        ) as response:
            assert (response.status, await response.json()) == (
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message to be replied not found",
                },
            )
        async with session.post(
            f"{api}/sendMessage", json={"chat_id": str(CHANNEL), "text": "json"}
        ) as response:
            body = await response.json()
            assert (response.status, body["ok"], body["result"]["text"]) == (200, True, "json")
        async with session.get(f"{api}/sendMessage", params={"chat_id": USER, "text": "query"}) as response:
            assert response.status == 200
        async with session.post(f"{api}/noSuchMethod") as response:
            assert (response.status, (await response.json())["description"]) == (404, "Not Found")
    assert [(entry.chat_id, entry.text) for entry in fake.messages()] == [(CHANNEL, "json"), (USER, "query")]


def test_parser_is_usable_without_a_server() -> None:
    """parse_telegram_html gives UTF-16 offsets, and raises TelegramHtmlError on broken markup."""
    text, entities = parse_telegram_html('📈 <a href="https://x.io/?a=1&amp;b=2">chart</a>')
    assert text == "📈 chart"
    assert entities == [{"type": "text_link", "offset": 3, "length": 5, "url": "https://x.io/?a=1&b=2"}]
    with pytest.raises(TelegramHtmlError, match="Unsupported start tag"):
        parse_telegram_html("<br>")


async def test_subprocess_mode_records_json_lines(tmp_path: Path) -> None:
    """`python -m tests.fakes.telegram` prints its URL first and writes one JSON line per request."""
    record = tmp_path / "requests.jsonl"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.telegram",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--chat",
        str(CHANNEL),
        "--record",
        str(record),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(5):
            url = (await process.stdout.readline()).decode().strip()
        async with make_bot(url) as client:
            await client.send_message(CHANNEL, "<b>from a peer</b>", parse_mode=ParseMode.HTML)
    finally:
        process.terminate()
        async with asyncio.timeout(5):
            returncode = await process.wait()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert returncode == 0
    assert url.startswith("http://127.0.0.1:")
    assert [
        (line["list"], line["method"], line["chat_id"], line["text"], line["message_id"]) for line in lines
    ] == [
        ("received", "getMe", None, None, None),
        ("received", "sendMessage", CHANNEL, "<b>from a peer</b>", 1),
    ]
