"""A fake Telegram Bot API server speaking the real wire protocol on 127.0.0.1.

The real python-telegram-bot ``Bot`` is pointed at it with
``Bot(token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")``; nothing in the client is
mocked, so the notifier's request encoding, error mapping and retry logic run exactly as in
production. Implemented methods: getMe, getChat, sendMessage, sendPhoto.

What it checks the way Telegram does:

* the token in the URL (unknown token -> 401 Unauthorized, which PTB raises as InvalidToken);
* the chat (unknown -> 400 "chat not found"; a chat the bot may not post to -> 403);
* HTML parse mode with tdlib's parser rules: supported tags only, properly nested and closed,
  ``&lt; &gt; &amp; &quot;`` and numeric entities; the error texts are tdlib's;
* lengths after entity parsing: text 1..4096 characters, caption 0..1024;
* replies to messages that do not exist (unless ``allow_sending_without_reply``);
* optional flood control (1 message/s per chat, 20/min per group or channel, 30/s per bot).

One deliberate difference: a bare ``&`` that starts no entity is rejected by default, although
tdlib lets it through as a literal. Telegram's documentation requires it to be escaped and an
unescaped ``&`` is the same bug as an unescaped ``<`` (a pattern or symbol name pasted into the
card without ``html.escape``), so the fake fails loudly. ``strict_ampersand=False`` restores the
exact tdlib behaviour.

Run as a separate process (for tests that kill peers)::

    python -m tests.fakes.telegram --port 0 --token T --chat C --record PATH

prints the URL on the first stdout line and appends one JSON object per request to PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import re
import signal
import struct
import sys
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, NoReturn, Self, TextIO

from aiohttp import web

__all__ = [
    "PNG_SIGNATURE",
    "FakeTelegram",
    "Fault",
    "Received",
    "TelegramHtmlError",
    "main",
    "parse_telegram_html",
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Telegram's documented limits (https://core.telegram.org/bots/api#sendmessage and #sendphoto),
# counted in Unicode characters of the text AFTER entity parsing: tdlib's maintainer confirms
# "4096 characters after entities parsing", and live probes with astral emoji show code points,
# not UTF-16 units, are what is counted (entity offsets, by contrast, are UTF-16).
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Telegram accepts multipart uploads up to 50 MB; above that its nginx answers 413.
MAX_REQUEST_BYTES = 50 * 1024 * 1024

FaultKind = Literal["retry_after", "server_error", "bad_request", "hang", "malformed"]
ChatKey = int | str


# --------------------------------------------------------------------------------------------
# Telegram HTML, as tdlib parses it (td/telegram/MessageEntity.cpp, parse_html)
# --------------------------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "code",
        "pre",
        "tg-spoiler",
        "span",
        "blockquote",
        "tg-emoji",
    }
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
# tdlib orders entities by offset, then longer first, then this type priority (lower first).
_TYPE_PRIORITY = {
    "blockquote": 0,
    "expandable_blockquote": 0,
    "pre": 11,
    "code": 20,
    "text_link": 49,
    "bold": 90,
    "italic": 91,
    "underline": 92,
    "strikethrough": 93,
    "spoiler": 94,
    "custom_emoji": 99,
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# tdlib's is_space(); it also counts '\0', which here is "past the end of the text".
_SPACE = frozenset(" \t\r\n\v\f")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEC = frozenset("0123456789")
_SURROGATE_ERROR = (
    "Text contains invalid Unicode characters after decoding HTML entities, "
    "check for unmatched surrogate code units"
)


class TelegramHtmlError(ValueError):
    """The text is not valid Telegram HTML; ``str()`` is the reason in tdlib's wording."""


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _decode_entity(text: str, pos: int) -> tuple[int, int] | None:
    """Decode the HTML entity at ``text[pos] == "&"``: (code point, position after it).

    Mirrors tdlib's decode_html_entity: only &lt; &gt; &amp; &quot; and decimal / hexadecimal
    (lowercase 'x') numeric references exist, the ';' is optional, and anything else is None,
    which tdlib then keeps as literal text.
    """
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        hexadecimal = end < n and text[end] == "x"
        if hexadecimal:
            end += 1
        digits = _HEX if hexadecimal else _DEC
        value = 0
        while end < n and text[end] in digits:
            value = value * (16 if hexadecimal else 10) + int(text[end], 16)
            end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        known = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if known is None:
            return None
        value = ord(known)
    if end < n and text[end] == ";":
        end += 1
    return value, end


def _checked_url(url: str) -> str | None:
    """An approximation of Telegram's link check: a usable URL, normalised, or None (dropped)."""
    if not url or any(char.isspace() for char in url):
        return None
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", url)
    if match is None:
        if not re.match(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}([/?#:]|$)", url):
            return None
        scheme, rest = "http", url
    else:
        scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in ("http", "https", "tg", "ton"):
        return None
    if scheme in ("http", "https"):
        host_end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
        if host_end == 0:
            return None
        if host_end == len(rest) or rest[host_end] != "/":
            rest = f"{rest[:host_end]}/{rest[host_end:]}"
    return f"{scheme}://{rest}"


@dataclass
class _Entity:
    """A MessageEntity under construction; offsets and lengths in UTF-16 code units."""

    type: str
    offset: int
    length: int
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"type": self.type, "offset": self.offset, "length": self.length, **self.extra}


@dataclass
class _OpenTag:
    name: str
    argument: str
    start16: int  # UTF-16 offset of the entity
    start_char: int  # index into the plain text, for <a> without href


class _HtmlParser:
    """One pass over the text: the same state machine, errors and byte offsets as tdlib.

    Cross-checked against the HTML cases of tdlib's test/message_entities.cpp. Not modelled:
    tg-time, tg://user mentions, and tdlib's later clean-up of overlapping entities.
    """

    def __init__(self, text: str, *, strict_ampersand: bool) -> None:
        self.text = text
        self.strict_ampersand = strict_ampersand
        self.out: list[str] = []
        self.pos16 = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[_Entity] = []
        self.decoded_surrogate = False

    def fail(self, message: str) -> NoReturn:
        raise TelegramHtmlError(message)

    def byte_offset(self, pos: int) -> int:
        # tdlib reports UTF-8 byte offsets into the original text.
        return len(self.text[:pos].encode("utf-8", "surrogatepass"))

    def emit(self, chunk: str) -> None:
        self.out.append(chunk)
        self.pos16 += _utf16_len(chunk)

    def ampersand(self, pos: int) -> tuple[str, int]:
        decoded = _decode_entity(self.text, pos)
        if decoded is not None:
            value, end = decoded
            if 0xD800 <= value <= 0xDFFF:
                self.decoded_surrogate = True  # tdlib decodes it, then rejects the whole text
            return chr(value), end
        if self.strict_ampersand:
            # Not a tdlib error (tdlib keeps the '&'): see the module docstring for why.
            self.fail(f'Unescaped "&" at byte offset {self.byte_offset(pos)}; write it as "&amp;"')
        return "&", pos + 1

    def run(self) -> tuple[str, list[_Entity]]:
        text, n, i = self.text, len(self.text), 0
        while i < n:
            char = text[i]
            if char == "&":
                decoded, i = self.ampersand(i)
                self.emit(decoded)
            elif char != "<":
                self.emit(char)
                i += 1
            elif i + 1 < n and text[i + 1] == "/":
                i = self.end_tag(i)
            else:
                i = self.start_tag(i)
        if self.stack:
            self.fail(f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"')
        if self.decoded_surrogate:
            self.fail(_SURROGATE_ERROR)
        for entity in self.entities:
            if entity.type == "code":
                entity.extra.pop("language", None)  # a language counts only on a pre
        self.entities.sort(key=lambda e: (e.offset, -e.length, _TYPE_PRIORITY.get(e.type, 50)))
        return "".join(self.out), self.entities

    def start_tag(self, begin: int) -> int:
        text, n = self.text, len(self.text)
        at = self.byte_offset(begin)
        i = begin + 1
        while i < n and text[i] not in _SPACE and text[i] != ">":
            i += 1
        if i >= n:
            self.fail(f"Unclosed start tag at byte offset {at}")
        name = text[begin + 1 : i].lower()
        if name not in _HTML_TAGS:
            self.fail(f'Unsupported start tag "{name}" at byte offset {at}')
        argument = ""
        while True:
            while i < n and text[i] in _SPACE:
                i += 1
            if i < n and text[i] == ">":
                break
            attr_begin = i
            while i < n and text[i] not in _SPACE and text[i] not in "=>/\"'":
                i += 1
            attribute = text[attr_begin:i]
            if not attribute:
                self.fail(f'Empty attribute name in the tag "{name}" at byte offset {at}')
            while i < n and text[i] in _SPACE:
                i += 1
            if i >= n:
                self.fail(f'Unclosed start tag "{name}" at byte offset {at}')
            if text[i] != "=":
                # An attribute without a value is ignored, except blockquote's "expandable".
                if name == "blockquote" and attribute == "expandable":
                    argument = "1"
                continue
            i += 1
            while i < n and text[i] in _SPACE:
                i += 1
            if i >= n:
                self.fail(f'Unclosed start tag "{name}" at byte offset {at}')
            value, i = self.attribute_value(i)
            if i >= n:
                self.fail(f"Unclosed start tag at byte offset {at}")
            if (name, attribute) in (("a", "href"), ("tg-emoji", "emoji-id")):
                argument = value
            elif name == "code" and attribute == "class" and value.startswith("language-"):
                argument = value.removeprefix("language-")
            elif name == "span" and attribute == "class" and value.startswith("tg-"):
                argument = value.removeprefix("tg-")
            elif name == "blockquote" and attribute == "expandable":
                argument = "1"
        if name == "span" and argument != "spoiler":
            self.fail(f'Tag "span" must have class "tg-spoiler" at byte offset {at}')
        self.stack.append(_OpenTag(name, argument, self.pos16, sum(map(len, self.out))))
        return i + 1

    def attribute_value(self, i: int) -> tuple[str, int]:
        text, n = self.text, len(self.text)
        if text[i] not in "'\"":
            # An HTML "name token": letters, digits, '.' and '-' only, case-insensitive.
            token_begin = i
            while i < n and ((text[i].isascii() and text[i].isalnum()) or text[i] in ".-"):
                i += 1
            if i < n and text[i] not in _SPACE and text[i] != ">":
                self.fail(f"Unexpected end of name token at byte offset {self.byte_offset(token_begin)}")
            return text[token_begin:i].lower(), i
        quote = text[i]
        i += 1
        chars: list[str] = []
        while i < n and text[i] != quote:
            if text[i] == "&":
                decoded, i = self.ampersand(i)
                chars.append(decoded)
            else:
                chars.append(text[i])
                i += 1
        if i < n:
            i += 1
        return "".join(chars), i

    def end_tag(self, begin: int) -> int:
        text, n = self.text, len(self.text)
        if not self.stack:
            self.fail(f"Unexpected end tag at byte offset {self.byte_offset(begin)}")
        i = begin + 2
        while i < n and text[i] not in _SPACE and text[i] != ">":
            i += 1
        end_name = text[begin + 2 : i].lower()
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] != ">":
            self.fail(f"Unclosed end tag at byte offset {self.byte_offset(begin)}")
        opened = self.stack[-1]
        if end_name and end_name != opened.name:  # "</>" closes whatever is open
            self.fail(
                f"Unmatched end tag at byte offset {self.byte_offset(begin)}, "
                f'expected "</{opened.name}>", found "</{end_name}>"'
            )
        self.stack.pop()
        self.close(opened)
        return i + 1

    def close(self, opened: _OpenTag) -> None:
        length = self.pos16 - opened.start16
        if length <= 0:
            return  # Telegram drops empty entities silently
        offset, name, argument = opened.start16, opened.name, opened.argument
        last = self.entities[-1] if self.entities else None
        same_span = last is not None and (last.offset, last.length) == (offset, length)
        if name in _SIMPLE_ENTITY:
            self.entities.append(_Entity(_SIMPLE_ENTITY[name], offset, length))
        elif name == "blockquote":
            self.entities.append(
                _Entity("expandable_blockquote" if argument else "blockquote", offset, length)
            )
        elif name == "tg-emoji":
            if not argument.isdigit() or not 0 < int(argument) < 2**63:
                self.fail("Invalid custom emoji identifier specified")
            self.entities.append(_Entity("custom_emoji", offset, length, {"custom_emoji_id": argument}))
        elif name == "a":
            url = _checked_url(argument or "".join(self.out)[opened.start_char :])
            if url is not None:  # an unusable link leaves plain text, as on Telegram
                self.entities.append(_Entity("text_link", offset, length, {"url": url}))
        elif name == "pre":
            # <pre><code class="language-x">..</code></pre>: ONE pre entity with a language.
            if last is not None and same_span and last.type == "code" and "language" in last.extra:
                last.type = "pre"
            else:
                self.entities.append(_Entity("pre", offset, length))
        elif last is not None and same_span and last.type == "pre" and argument:  # <code> inside <pre>
            last.extra["language"] = argument
        else:
            extra = {"language": argument} if argument else {}
            self.entities.append(_Entity("code", offset, length, extra))


def parse_telegram_html(text: str, *, strict_ampersand: bool = True) -> tuple[str, list[dict[str, object]]]:
    """Parse Telegram HTML into (plain text, MessageEntity dicts) or raise TelegramHtmlError.

    Usable without a server, e.g. to check a rendered card in a unit test. Entity offsets and
    lengths are in UTF-16 code units, as in the Bot API.
    """
    plain, entities = _HtmlParser(text, strict_ampersand=strict_ampersand).run()
    return plain, [entity.to_json() for entity in entities]


def _trim(text: str, entities: list[_Entity]) -> tuple[str, list[_Entity]]:
    """Strip leading/trailing whitespace the way Telegram does, moving entity offsets along."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    total = _utf16_len(stripped)
    kept: list[_Entity] = []
    for entity in entities:
        start = max(0, entity.offset - shift)
        end = min(total, entity.offset + entity.length - shift)
        if end > start:
            kept.append(_Entity(entity.type, start, end - start, dict(entity.extra)))
    return stripped, kept


# --------------------------------------------------------------------------------------------
# Images: Telegram needs real dimensions for PhotoSize, and rejects what it cannot decode.
# --------------------------------------------------------------------------------------------

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG, or None when the bytes are neither."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker in (0x01, 0xFF) or 0xD0 <= marker <= 0xD8:
                i += 2 if marker != 0xFF else 1
                continue
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            (segment,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(segment)
    return None


# --------------------------------------------------------------------------------------------
# Public records and faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A failure the fake answers instead of doing its work; build one with the class methods."""

    kind: FaultKind
    seconds: float = 0.0
    status: int = 500
    description: str = ""

    @classmethod
    def retry_after(cls, seconds: int) -> Fault:
        """HTTP 429 with ``parameters.retry_after`` (PTB raises RetryAfter)."""
        if seconds < 1:
            raise ValueError("Telegram's retry_after is a whole number of seconds >= 1")
        return cls(
            "retry_after",
            seconds=seconds,
            status=429,
            description=f"Too Many Requests: retry after {seconds}",
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """HTTP 5xx with a Telegram error body (PTB raises NetworkError)."""
        phrases = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return cls("server_error", status=status, description=phrases.get(status, "Internal Server Error"))

    @classmethod
    def bad_request(cls, description: str) -> Fault:
        """HTTP 400 with this description, e.g. "Bad Request: message thread not found"."""
        return cls("bad_request", status=400, description=description)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Sleep, then do the work and answer normally: the client's timeout should fire first.

        The message IS delivered (Telegram does not know the client gave up), which is exactly
        the situation in which a careless retry posts a duplicate.
        """
        return cls("hang", seconds=seconds, status=200)

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 whose body is not JSON (a proxy's HTML page); nothing is delivered."""
        return cls("malformed", status=200)


@dataclass(frozen=True)
class Received:
    """One HTTP request to the fake, as it arrived and as it was answered."""

    method: str
    token: str
    chat_id: ChatKey | None
    text: str | None  # the raw ``text`` (sendMessage) or ``caption`` (sendPhoto), before parsing
    parse_mode: str | None
    reply_to: int | None
    thread_id: int | None
    photo_size: int | None
    photo_head: bytes | None  # the first 8 bytes; PNG_SIGNATURE for a PNG
    monotonic: float  # time.monotonic() at arrival: compare with other arrivals for pacing
    wall: float  # time.time() at arrival
    params: dict[str, object]  # every parameter as decoded; a file part becomes a descriptor
    status: int  # HTTP status answered
    description: str | None  # Telegram's error description, None on success
    result: dict[str, object] | None = None  # the Message / User / Chat returned on success
    fault: str | None = None  # the injected fault, "flood" or "retry_window" that shaped the answer
    photo: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """True when the request succeeded (HTTP 200 with ok=true)."""
        return self.status == 200 and self.description is None

    @property
    def message_id(self) -> int | None:
        """The message_id Telegram assigned, for a successful send."""
        if self.result is None:
            return None
        value = self.result.get("message_id")
        return value if isinstance(value, int) else None

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable dict (photo bytes left out, the first 8 as hex)."""
        return {
            "method": self.method,
            "token": self.token,
            "chat_id": self.chat_id,
            "text": self.text,
            "parse_mode": self.parse_mode,
            "reply_to": self.reply_to,
            "thread_id": self.thread_id,
            "photo_size": self.photo_size,
            "photo_head": None if self.photo_head is None else self.photo_head.hex(),
            "monotonic": self.monotonic,
            "wall": self.wall,
            "params": self.params,
            "status": self.status,
            "description": self.description,
            "message_id": self.message_id,
            "fault": self.fault,
        }


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int
    method: str | None  # lower-cased; Bot API method names are case-insensitive
    chat: int | None = None  # only requests to this chat (resolved id), or any


@dataclass(frozen=True)
class _Limits:
    chat_interval: float
    group_per_minute: int
    bot_per_second: int


class _ApiError(Exception):
    """Raised inside request handling to answer with an error.

    ``fault`` is None for an answer the fake gives on the request's merits (recorded in
    ``received``); otherwise it names the injection / flood control (recorded in ``rejected``).
    """

    def __init__(
        self,
        status: int,
        description: str,
        *,
        fault: str | None = None,
        retry_after: int | None = None,
        window: tuple[str, int | None] | None = None,
        violation: bool = False,
        body: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.fault = fault
        self.retry_after = retry_after
        self.window = window  # (token, chat or None for the whole bot) that must now wait
        self.violation = violation
        self.body = body  # a raw non-JSON body (malformed fault)


class _Call:
    """The parts of one request every handler needs, extracted leniently for recording."""

    def __init__(self, method: str, token: str) -> None:
        self.method = method
        self.token = token
        self.monotonic = time.monotonic()
        self.wall = time.time()
        self.params: dict[str, object] = {}
        self.photo: bytes | None = None
        self.fault: str | None = None

    def str_param(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    @property
    def chat_id(self) -> ChatKey | None:
        raw = self.params.get("chat_id")
        return _chat_key(raw) if raw is not None else None

    @property
    def text(self) -> str | None:
        return self.str_param("caption" if self.method.lower() == "sendphoto" else "text")

    @property
    def reply_to(self) -> int | None:
        with contextlib.suppress(_ApiError):
            parameters = self.params.get("reply_parameters")
            if parameters not in (None, ""):
                return _int_value(
                    _json_object(parameters, "reply parameters").get("message_id"), "message_id"
                )
            return _int_value(self.params.get("reply_to_message_id"), "reply_to_message_id")
        return None

    @property
    def thread_id(self) -> int | None:
        with contextlib.suppress(_ApiError):
            return _int_value(self.params.get("message_thread_id"), "message_thread_id")
        return None


def _chat_key(raw: object) -> ChatKey | None:
    """Normalise a chat_id parameter: an int, a lower-cased "@username", or None if invalid."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        value = raw.strip()
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        if value.startswith("@") and len(value) > 1:
            return value.lower()
    return None


def _int_value(raw: object, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    raise _ApiError(400, f'Bad Request: field "{name}" must be of type Integer')


def _bool_value(raw: object) -> bool:
    if isinstance(raw, str):
        return raw.strip().lower() in ("true", "1")
    return bool(raw)


def _json_object(raw: object, what: str) -> dict[str, object]:
    value: object = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise _ApiError(400, f"Bad Request: can't parse {what} JSON object")
    return {str(key): item for key, item in value.items()}


def _chat_type(chat_id: int) -> str:
    if str(chat_id).startswith("-100"):
        return "channel"
    return "group" if chat_id < 0 else "private"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeTelegram:
    """A Telegram Bot API server on 127.0.0.1 that records every request.

    ``received`` holds the requests answered on their own merits (successes and genuine API
    errors such as 400 chat not found), in the order they were answered; ``rejected`` holds the
    requests answered by an injected fault or by flood control; ``violations`` the requests that
    arrived while a retry_after the fake had announced was still running (they are in
    ``rejected`` too, answered with 429 for the remaining time, as Telegram does).
    """

    def __init__(
        self,
        tokens: Iterable[str],
        chats: Iterable[int | str] = (),
        *,
        forbidden_chats: Iterable[int | str] = (),
        strict_ampersand: bool = True,
        on_record: Callable[[Received, str], None] | None = None,
    ) -> None:
        """Accept only ``tokens``; ``chats`` exist, ``forbidden_chats`` exist but refuse the bot.

        ``on_record(entry, list_name)`` is called for every recorded request ("received" or
        "rejected"); the subprocess mode uses it to write JSON lines.
        """
        self._tokens = frozenset(tokens)
        self._chats: set[int] = set()
        self._forbidden: set[int] = set()
        self._usernames: dict[str, int] = {}
        for chat in chats:
            self.add_chat(chat)
        for chat in forbidden_chats:
            self.add_chat(chat, forbidden=True)
        self.strict_ampersand = strict_ampersand
        self._on_record = on_record
        self.received: list[Received] = []
        self.rejected: list[Received] = []
        self.violations: list[Received] = []
        self._faults: list[_PendingFault] = []
        self._limits: _Limits | None = None
        self._windows: dict[tuple[str, int | None], float] = {}
        self._chat_sends: dict[tuple[str, int], deque[float]] = defaultdict(deque)
        self._bot_sends: dict[str, deque[float]] = defaultdict(deque)
        self._next_message_id: dict[int, int] = defaultdict(lambda: 1)
        self._stored: dict[int, dict[int, dict[str, object]]] = defaultdict(dict)
        self._files: dict[str, list[dict[str, object]]] = {}
        self._file_counter = itertools.count(1)
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # ---- configuration -----------------------------------------------------------------

    def add_chat(self, chat: int | str, *, forbidden: bool = False) -> int:
        """Make a chat exist (an id, or "@username" of a channel); returns its numeric id."""
        key = _chat_key(chat)
        if key is None:
            raise ValueError(f"not a chat id or @username: {chat!r}")
        if isinstance(key, str):
            # A channel username resolves to a stable numeric -100... id, as on Telegram.
            chat_id = -(10**12) - zlib.crc32(key.encode()) % 10**9
            self._usernames[key] = chat_id
        else:
            chat_id = key
        (self._forbidden if forbidden else self._chats).add(chat_id)
        return chat_id

    def inject(
        self, fault: Fault, *, times: int = 1, method: str | None = None, chat: int | str | None = None
    ) -> None:
        """Answer the next ``times`` requests (of ``method`` and to ``chat``, or any) with ``fault``.

        Faults queue up and apply to matching requests in arrival order. Remember that entering
        ``async with Bot(...)`` calls getMe: pass ``method="sendMessage"`` to leave it alone.
        """
        if times < 1:
            raise ValueError("times must be >= 1")
        target = None if chat is None else self._resolve_known(chat)
        self._faults.append(_PendingFault(fault, times, None if method is None else method.lower(), target))

    def enforce_limits(
        self, per_chat_per_second: float = 1, per_group_per_minute: int = 20, per_bot_per_second: int = 30
    ) -> None:
        """Apply Telegram's flood limits to sendMessage/sendPhoto, answering 429 + retry_after.

        Per (bot, chat): at most ``per_chat_per_second`` messages a second; per (bot, group or
        channel): ``per_group_per_minute`` in any 60 s; per bot: ``per_bot_per_second`` in any 1 s.
        """
        self._limits = _Limits(1.0 / per_chat_per_second, per_group_per_minute, per_bot_per_second)

    @property
    def pending_faults(self) -> int:
        """How many injected fault answers are still waiting for a request."""
        return sum(pending.remaining for pending in self._faults)

    # ---- inspection --------------------------------------------------------------------

    def messages(self, chat_id: int | str | None = None) -> list[Received]:
        """Successful sendMessage/sendPhoto calls (optionally to one chat) in arrival order."""
        wanted = None if chat_id is None else self._resolve_known(chat_id)
        sends = [
            entry
            for entry in self.received
            if entry.ok
            and entry.method.lower() in ("sendmessage", "sendphoto")
            and (wanted is None or self._resolve_known(entry.chat_id) == wanted)
        ]
        return sorted(sends, key=lambda entry: entry.monotonic)

    async def wait_for_messages(self, count: int, chat_id: int | str | None = None) -> list[Received]:
        """Wait until at least ``count`` messages were delivered; wrap in ``asyncio.timeout``."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.messages(chat_id)) >= count)
        return self.messages(chat_id)

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. "http://127.0.0.1:43121" (after ``start``)."""
        if self._url is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._url

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1 (a free port by default) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("FakeTelegram is already started")
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        # handler_cancellation=False: a request whose client timed out still completes, as on
        # Telegram's side; shutdown_timeout is short because hangs are cut by _closing anyway.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runner = runner
        self._closing.clear()
        self._url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self._url

    async def stop(self) -> None:
        """Stop listening; requests still hanging end at once. Safe to call twice."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        """Start the server."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        await self.stop()

    # ---- request handling ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call = _Call(request.match_info["method"], request.match_info["token"])
        try:
            await self._read_params(request, call)
            if call.token not in self._tokens:
                raise _ApiError(401, "Unauthorized")
            handler = self._handlers().get(call.method.lower())
            if handler is None:
                raise _ApiError(404, "Not Found")
            self._check_window(call)
            await self._apply_fault(call)
            result = handler(call)
        except _ApiError as answer:
            return await self._answer_error(call, answer)
        entry = self._entry(call, 200, None, result=result)
        await self._record(entry, "received")
        return web.json_response({"ok": True, "result": result})

    def _handlers(self) -> dict[str, Callable[[_Call], dict[str, object]]]:
        return {
            "getme": self._get_me,
            "getchat": self._get_chat,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
        }

    async def _read_params(self, request: web.Request, call: _Call) -> None:
        """Merge query string and body: Telegram accepts GET query, urlencoded, multipart, JSON."""
        call.params.update(request.query)
        if not request.body_exists:
            return
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _ApiError(400, "Bad Request: can't parse JSON object") from None
            if not isinstance(body, dict):
                raise _ApiError(400, "Bad Request: can't parse JSON object")
            call.params.update({str(key): value for key, value in body.items()})
            return
        if request.content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                value.file.close()
                call.params[key] = {
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": len(data),
                }
                if key == "photo":
                    call.photo = data
            elif isinstance(value, bytes | bytearray):
                call.params[key] = bytes(value).decode("utf-8", "replace")
            else:
                call.params[key] = value

    def _check_window(self, call: _Call) -> None:
        """A request inside an announced retry_after window is a client bug: 429 it again."""
        chat = self._resolve_known(call.chat_id)
        now = time.monotonic()
        until = max(
            self._windows.get((call.token, None), 0.0),
            self._windows.get((call.token, chat), 0.0) if chat is not None else 0.0,
        )
        # 1 ms of grace covers timer rounding: the window opens before the 429 leaves the server,
        # so a client that slept the full retry_after always arrives after it closes.
        if now < until - 0.001:
            remaining = max(1, math.ceil(until - now))
            raise _ApiError(
                429,
                f"Too Many Requests: retry after {remaining}",
                fault="retry_window",
                retry_after=remaining,
                violation=True,
            )

    async def _apply_fault(self, call: _Call) -> None:
        lowered = call.method.lower()
        chat_id = self._resolve_known(call.chat_id)
        pending = next(
            (p for p in self._faults if p.method in (None, lowered) and p.chat in (None, chat_id)), None
        )
        if pending is None:
            return
        pending.remaining -= 1
        if pending.remaining == 0:
            self._faults.remove(pending)
        fault = pending.fault
        call.fault = fault.kind
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=fault.seconds)
            if self._closing.is_set():
                raise _ApiError(503, "Service Unavailable: fake server stopping", fault="hang")
            return
        if fault.kind == "malformed":
            raise _ApiError(
                200, "malformed body", fault="malformed", body="<html><body>502 Bad Gateway</body></html>"
            )
        retry_after = int(fault.seconds) if fault.kind == "retry_after" else None
        chat = self._resolve_known(call.chat_id)
        raise _ApiError(
            fault.status,
            fault.description,
            fault=fault.kind,
            retry_after=retry_after,
            window=(call.token, chat) if retry_after is not None else None,
        )

    async def _answer_error(self, call: _Call, answer: _ApiError) -> web.Response:
        if answer.window is not None and answer.retry_after is not None:
            self._windows[answer.window] = time.monotonic() + answer.retry_after
        entry = self._entry(call, answer.status, answer.description, fault=answer.fault)
        if answer.violation:
            self.violations.append(entry)
        await self._record(entry, "received" if answer.fault is None else "rejected")
        if answer.body is not None:
            return web.Response(status=answer.status, text=answer.body, content_type="text/html")
        body: dict[str, object] = {
            "ok": False,
            "error_code": answer.status,
            "description": answer.description,
        }
        if answer.retry_after is not None:
            body["parameters"] = {"retry_after": answer.retry_after}
        return web.json_response(body, status=answer.status)

    def _entry(
        self,
        call: _Call,
        status: int,
        description: str | None,
        *,
        result: dict[str, object] | None = None,
        fault: str | None = None,
    ) -> Received:
        return Received(
            method=call.method,
            token=call.token,
            chat_id=call.chat_id,
            text=call.text,
            parse_mode=call.str_param("parse_mode"),
            reply_to=call.reply_to,
            thread_id=call.thread_id,
            photo_size=None if call.photo is None else len(call.photo),
            photo_head=None if call.photo is None else call.photo[:8],
            monotonic=call.monotonic,
            wall=call.wall,
            params=dict(call.params),
            status=status,
            description=description,
            result=result,
            fault=fault or call.fault,
            photo=call.photo,
        )

    async def _record(self, entry: Received, list_name: str) -> None:
        (self.received if list_name == "received" else self.rejected).append(entry)
        if self._on_record is not None:
            self._on_record(entry, list_name)
        async with self._changed:
            self._changed.notify_all()

    # ---- chats -------------------------------------------------------------------------

    def _resolve_known(self, chat: object) -> int | None:
        """The numeric id of a chat given as int, numeric string or known @username."""
        key = _chat_key(chat)
        if isinstance(key, str):
            return self._usernames.get(key)
        return key

    def _require_chat(self, call: _Call) -> int:
        raw = call.params.get("chat_id")
        if raw is None or raw == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        chat_id = self._resolve_known(raw)
        if chat_id is None or (chat_id not in self._chats and chat_id not in self._forbidden):
            raise _ApiError(400, "Bad Request: chat not found")
        if chat_id in self._forbidden:
            kind = _chat_type(chat_id)
            if kind == "private":
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            raise _ApiError(403, f"Forbidden: bot is not a member of the {kind} chat")
        return chat_id

    def _chat(self, chat_id: int) -> dict[str, object]:
        kind = _chat_type(chat_id)
        chat: dict[str, object] = {"id": chat_id, "type": kind}
        if kind == "private":
            chat["first_name"] = f"User {chat_id}"
        else:
            chat["title"] = f"Test {kind} {chat_id}"
        username = next((name for name, cid in self._usernames.items() if cid == chat_id), None)
        if username is not None:
            chat["username"] = username.removeprefix("@")
        return chat

    @staticmethod
    def _bot_user(token: str) -> dict[str, object]:
        prefix = token.split(":", 1)[0]
        bot_id = int(prefix) if prefix.isdigit() else 1
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Signal Fleet Test Bot",
            "username": f"signal_fleet_{bot_id}_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    # ---- methods -----------------------------------------------------------------------

    def _get_me(self, call: _Call) -> dict[str, object]:
        return self._bot_user(call.token)

    def _get_chat(self, call: _Call) -> dict[str, object]:
        chat = self._chat(self._require_chat(call))
        # ChatFullInfo's required fields (Bot API 7.3+), with Telegram's defaults.
        chat.update(
            {
                "accent_color_id": 0,
                "max_reaction_count": 11,
                "accepted_gift_types": {
                    "unlimited_gifts": False,
                    "limited_gifts": False,
                    "unique_gifts": False,
                    "premium_subscription": False,
                    "gifts_from_channels": False,
                },
            }
        )
        return chat

    def _formatted(
        self, call: _Call, raw: str | None, *, limit: int, too_long: str, required: bool
    ) -> tuple[str, list[dict[str, object]]]:
        """Parse text/caption per parse_mode, trim it, and apply Telegram's length limits."""
        mode = (call.str_param("parse_mode") or "").lower()
        if mode not in ("", "html", "markdown", "markdownv2"):
            raise _ApiError(400, "Bad Request: unsupported parse_mode")
        if required and not raw:
            raise _ApiError(400, "Bad Request: message text is empty")
        text, entities = raw or "", list[_Entity]()
        if mode == "html":
            try:
                text, entities = _HtmlParser(text, strict_ampersand=self.strict_ampersand).run()
            except TelegramHtmlError as exc:
                raise _ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
        # Markdown modes are passed through unchecked: the fleet formats in HTML only.
        text, entities = _trim(text, entities)
        if required and not text:
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > limit:
            raise _ApiError(400, too_long)
        return text, [entity.to_json() for entity in entities]

    def _reply_target(self, call: _Call, chat_id: int) -> dict[str, object] | None:
        """The stored message being replied to; 400 if it does not exist and that is not allowed."""
        allow = _bool_value(call.params.get("allow_sending_without_reply", False))
        target_chat = chat_id
        raw = call.params.get("reply_parameters")
        if raw not in (None, ""):
            parameters = _json_object(raw, "reply parameters")
            message_id = _int_value(parameters.get("message_id"), "message_id")
            if message_id is None:
                raise _ApiError(400, 'Bad Request: field "message_id" must be of type Integer')
            allow = _bool_value(parameters.get("allow_sending_without_reply", allow))
            if parameters.get("chat_id") not in (None, ""):
                target_chat = self._resolve_known(parameters["chat_id"]) or 0
        else:
            message_id = _int_value(call.params.get("reply_to_message_id"), "reply_to_message_id")
        if message_id is None:
            return None
        stored = self._stored[target_chat].get(message_id)
        if stored is None and not allow:
            raise _ApiError(400, "Bad Request: message to be replied not found")
        return stored

    def _check_flood(self, call: _Call, chat_id: int) -> None:
        """Telegram's flood control; the 429 opens a retry window the client must respect."""
        if self._limits is None:
            return
        now = time.monotonic()
        chat_sends = self._chat_sends[(call.token, chat_id)]
        bot_sends = self._bot_sends[call.token]
        while chat_sends and chat_sends[0] <= now - 60:
            chat_sends.popleft()
        while bot_sends and bot_sends[0] <= now - 1:
            bot_sends.popleft()
        wait_chat = 0.0
        if chat_sends:
            wait_chat = self._limits.chat_interval - (now - chat_sends[-1])
        if chat_id < 0 and len(chat_sends) >= self._limits.group_per_minute:
            wait_chat = max(wait_chat, chat_sends[-self._limits.group_per_minute] + 60 - now)
        wait_bot = bot_sends[0] + 1 - now if len(bot_sends) >= self._limits.bot_per_second else 0.0
        if wait_chat <= 0 and wait_bot <= 0:
            chat_sends.append(now)
            bot_sends.append(now)
            return
        # The per-bot limit blocks every chat; the per-chat limits only that chat.
        scope = None if wait_bot > wait_chat else chat_id
        retry_after = max(1, math.ceil(max(wait_chat, wait_bot)))
        raise _ApiError(
            429,
            f"Too Many Requests: retry after {retry_after}",
            fault="flood",
            retry_after=retry_after,
            window=(call.token, scope),
        )

    def _deliver(self, call: _Call, chat_id: int, content: dict[str, object]) -> dict[str, object]:
        reply = self._reply_target(call, chat_id)
        thread_id = _int_value(call.params.get("message_thread_id"), "message_thread_id")
        self._check_flood(call, chat_id)
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] = message_id + 1
        chat = self._chat(chat_id)
        message: dict[str, object] = {"message_id": message_id}
        if chat["type"] == "channel":
            message["sender_chat"] = chat  # channel posts are signed by the channel, not the bot
        else:
            message["from"] = self._bot_user(call.token)
        message.update({"chat": chat, "date": int(call.wall)})
        if thread_id is not None:
            message["message_thread_id"] = thread_id
        message.update(content)
        self._stored[chat_id][message_id] = dict(message)
        if reply is not None:
            message["reply_to_message"] = reply
        return message

    def _send_message(self, call: _Call) -> dict[str, object]:
        chat_id = self._require_chat(call)
        text, entities = self._formatted(
            call,
            call.str_param("text"),
            limit=MAX_TEXT,
            too_long="Bad Request: message is too long",
            required=True,
        )
        content: dict[str, object] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._deliver(call, chat_id, content)

    def _send_photo(self, call: _Call) -> dict[str, object]:
        chat_id = self._require_chat(call)
        sizes = self._photo_sizes(call)
        caption, entities = self._formatted(
            call,
            call.str_param("caption"),
            limit=MAX_CAPTION,
            too_long="Bad Request: message caption is too long",
            required=False,
        )
        content: dict[str, object] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        message = self._deliver(call, chat_id, content)
        self._files[str(sizes[-1]["file_id"])] = sizes
        return message

    def _photo_sizes(self, call: _Call) -> list[dict[str, object]]:
        """Validate the photo like Telegram and describe it as a thumbnail plus a full size."""
        if call.photo is None:
            raw = call.params.get("photo")
            if isinstance(raw, str) and raw:
                known = self._files.get(raw)
                if known is None:
                    raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
                return known
            raise _ApiError(400, "Bad Request: there is no photo in the request")
        dimensions = _image_size(call.photo)
        if dimensions is None:
            raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        width, height = dimensions
        # Documented rules: width + height <= 10000 and aspect ratio <= 20.
        if (
            width == 0
            or height == 0
            or width + height > 10000
            or max(width, height) > 20 * min(width, height)
        ):
            raise _ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        if len(call.photo) > MAX_PHOTO_BYTES:
            # Best recollection of Telegram's wording for a photo over 10 MB.
            raise _ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        number = next(self._file_counter)
        sizes: list[dict[str, object]] = []
        for side in (90, 1280):
            scale = min(1.0, side / max(width, height))
            sizes.append(
                {
                    "file_id": f"AgACAgIAAxkfake{number:06d}x{side}",
                    "file_unique_id": f"AQADfake{number:06d}x{side}",
                    "width": max(1, round(width * scale)),
                    "height": max(1, round(height * scale)),
                    "file_size": len(call.photo)
                    if scale == 1.0
                    else max(1, int(len(call.photo) * scale * scale)),
                }
            )
        return sizes


# --------------------------------------------------------------------------------------------
# Subprocess mode
# --------------------------------------------------------------------------------------------


def _parse_fault(spec: str) -> tuple[Fault, int, str | None]:
    """Parse ``KIND[:ARG][@METHOD][*TIMES]``, e.g. ``retry_after:5@sendMessage*2``, ``hang:3``."""
    times, method = 1, None
    head, star, count = spec.rpartition("*")
    if star and count.isdigit():
        spec, times = head, int(count)
    head, at, name = spec.rpartition("@")
    if at and name.isidentifier():
        spec, method = head, name
    kind, _, argument = spec.partition(":")
    builders: dict[str, Callable[[], Fault]] = {
        "retry_after": lambda: Fault.retry_after(int(argument or "1")),
        "server_error": lambda: Fault.server_error(int(argument or "500")),
        "bad_request": lambda: Fault.bad_request(argument or "Bad Request: injected"),
        "hang": lambda: Fault.hang(float(argument or "30")),
        "malformed": Fault.malformed,
    }
    if kind not in builders:
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r}; one of {sorted(builders)}")
    return builders[kind](), times, method


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.telegram", description="Fake Telegram Bot API server"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument(
        "--token", action="append", default=[], required=True, help="a valid token (repeatable)"
    )
    parser.add_argument(
        "--chat", action="append", default=[], help="an existing chat id or @username (repeatable)"
    )
    parser.add_argument(
        "--forbidden-chat", action="append", default=[], help="a chat that answers 403 (repeatable)"
    )
    parser.add_argument("--record", help="append one JSON line per request to this file")
    parser.add_argument("--enforce-limits", action="store_true", help="apply Telegram's flood limits")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_parse_fault,
        help="KIND[:ARG][@METHOD][*TIMES] (repeatable)",
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace, record_file: TextIO | None) -> int:
    def write(entry: Received, list_name: str) -> None:
        if record_file is not None:
            # One line per request, flushed at once: a test may kill this process at any moment.
            record_file.write(json.dumps({"list": list_name, **entry.to_json()}) + "\n")
            record_file.flush()

    fake = FakeTelegram(args.token, args.chat, forbidden_chats=args.forbidden_chat, on_record=write)
    if args.enforce_limits:
        fake.enforce_limits()
    for fault, times, method in args.fault:
        fake.inject(fault, times=times, method=method)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        url = await fake.start(args.port)
        print(url, flush=True)
        await stop.wait()
    finally:
        await fake.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake as its own process until SIGTERM / SIGINT."""
    args = _parse_args(argv)
    if args.record is None:
        return asyncio.run(_serve(args, None))
    with open(args.record, "a", encoding="utf-8") as record_file:
        return asyncio.run(_serve(args, record_file))


if __name__ == "__main__":
    sys.exit(main())
