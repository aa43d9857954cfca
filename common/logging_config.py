"""Logging for the whole fleet: one structlog processor chain, configured here and nowhere else.

Every log line of the process goes through the same chain, whether it was written by our code
(``get_logger(__name__).info("scan_done", symbols=12)``) or by a library through the standard
logging module (httpx, httpcore, telegram, ccxt, aiohttp, asyncio). structlog renders into the
standard logging module (``structlog.stdlib`` + ``ProcessorFormatter``), and the two handlers on the
root logger each own a ``ProcessorFormatter``:

* the file handler writes one JSON object a line to ``<log_dir>/<process_name>.log``, rotated at
  10 MB with 5 backups, file 0600 in a 0700 directory;
* the console handler writes readable ``key=value`` lines, in colour only when the stream is a TTY.

Both lines carry ``timestamp`` (ISO 8601, UTC, wall time even in replay: the log tells when the
process did something; the event log carries the simulated time), ``level``, ``logger``, the
context bound with ``structlog.contextvars.bind_contextvars`` (``cycle_id``, ``bot``,
``signal_id``) and a formatted ``exception`` when there is one.

Redaction. Secrets are removed in the formatter, after the library's %-args were merged into its
message and after the traceback was rendered to text, in two passes:

1. on the event dict, every string recursively (message, fields, nested dicts / lists / tuples,
   the ``exception`` text). This pass sees the raw strings, before a renderer escapes them: the
   JSON renderer escapes quotes, backslashes and control characters and the console renderer
   ``repr()``\\ s strings with spaces or quotes, after which a secret containing such a character
   is no longer a literal substring of the line;
2. on the rendered line. This pass sees what the first cannot: objects that are not strings
   (an exception or an ``httpx.URL`` passed as a field, any object whose ``str`` / ``repr``
   contains a token) only become text inside the renderer.

Neither pass alone is enough; together they cover both escaping and late stringification.
Secrets shorter than 6 characters are ignored: redacting "a" or "123" everywhere would destroy the
logs and such a value protects nothing anyway.

Only the handlers installed here redact. A handler someone adds to the root logger later (or a
library that calls ``logging.basicConfig``) bypasses redaction: add handlers only through this
module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from enum import Enum
from functools import lru_cache
from io import TextIOWrapper
from pathlib import Path
from secrets import token_hex
from typing import Final, TextIO
from urllib.parse import quote, quote_plus

import numpy as np
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "MIN_SECRET_LENGTH",
    "QUIET_LIBRARY_LOGGERS",
    "Redactor",
    "configure_logging",
    "get_logger",
    "new_correlation_id",
    "redact",
    "to_json_text",
    "to_jsonable",
]

MIN_SECRET_LENGTH: Final = 6
"""Configured secrets shorter than this are not redacted (they would match everywhere)."""

QUIET_LIBRARY_LOGGERS: Final = ("httpx", "httpcore", "ccxt")
"""Set to WARNING by ``configure_logging``: httpx logs every request URL at INFO, and our
Telegram URLs contain the bot token (redacted, but still noise at one line per message); ccxt
logs every request with its headers and the whole response body at DEBUG (30 kB per candle
request: a 50-symbol fleet would rotate the log files away within an hour)."""

REPLACEMENT: Final = "***"

_LOG_FILE_BYTES: Final = 10 * 1024 * 1024
_LOG_FILE_BACKUPS: Final = 5
_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
# Marks the handlers this module installs, so a second configure_logging() replaces exactly
# those and leaves alone handlers that test tools (pytest's caplog) attach to the root logger.
_HANDLER_MARK: Final = "_signal_fleet_handler"

# A Telegram bot token is "<bot id>:<35 chars>", and the Bot API puts it in the URL path as
# ".../bot<id>:<secret>/sendMessage". No leading \b: "bot123..." has no word boundary before the
# digits, and the token must go whether or not "bot" precedes it. The id is capped at 12 digits so
# 13-digit millisecond timestamps followed by a colon are left alone. The colon may be URL-encoded.
_TELEGRAM_TOKEN: Final = re.compile(r"(?<![0-9])[0-9]{3,12}(?::|%3[Aa])[A-Za-z0-9_-]{30,}")

# "name=value" (query strings, form bodies, console key=value), "name: value" (HTTP headers),
# "'name': 'value'" / '"name": "value"' (dict reprs, JSON) and "(b'name', b'value')" (header
# tuples). The lookbehind (not \b) lets "mexc_api_secret=" match on its "api_secret" part.
# After a quoted name the value must be quoted too: '"signature":12345' in a JSON line is left
# alone rather than turned into the invalid '"signature":***' (the dict pass has redacted it).
_SENSITIVE_NAME: Final = (
    r"x-mexc-apikey|api[_-]?key|api[_-]?secret|secret[_-]?key|secret|signature|passphrase|password"
)
_KEY_VALUE: Final = re.compile(
    rf"(?i)(?<![A-Za-z0-9])(?P<key>{_SENSITIVE_NAME})"
    r"(?P<sep>[ \t]*[:=][ \t]*b?['\"]?|['\"][ \t]*[:,][ \t]*b?['\"])"
    r"(?P<value>[^\s&'\",;})\]<>#]+)"
)
# Dict keys whose string values are always replaced, whatever the value looks like (a config
# dict or a headers dict passed as a field). Compared lower-cased without '-' and '_', by suffix.
_SENSITIVE_KEY_SUFFIXES: Final = (
    "apikey",
    "apisecret",
    "secret",
    "secretkey",
    "signature",
    "password",
    "passphrase",
    "accesstoken",
    "bottoken",
    "authorization",
)
_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")


class Redactor:
    """Replaces configured secrets and credential-shaped text with ``***``.

    What goes: every configured secret of at least ``MIN_SECRET_LENGTH`` characters (as an exact
    substring, and in its URL-encoded, JSON-escaped and ``repr`` forms), every Telegram bot token
    (``<digits>:<30+ chars of [A-Za-z0-9_-]>``, with or without a leading ``bot``), the values of
    ``apiKey=`` / ``secret=`` / ``signature=`` style parameters and of the ``X-MEXC-APIKEY``
    header, and string values stored under credential-named keys in dicts.

    An instance is also a structlog processor: it redacts every string of the event dict.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            encoded = quote(secret, safe="")
            forms.update(
                {
                    secret,
                    encoded,
                    # Some encoders write lower-case hex ("%2f"); both appear in real URLs.
                    _PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), encoded),
                    quote_plus(secret),
                    quote(secret),
                    repr(secret)[1:-1],
                    _json_string_body(secret),
                }
            )
        # Longest first, so a secret that contains another is removed whole.
        ordered = sorted((form for form in forms if form), key=len, reverse=True)
        self._secrets: re.Pattern[str] | None = (
            re.compile("|".join(re.escape(form) for form in ordered)) if ordered else None
        )

    def text(self, text: str) -> str:
        """``text`` with every secret and credential-shaped substring replaced by ``***``."""
        if self._secrets is not None:
            text = self._secrets.sub(REPLACEMENT, text)
        text = _TELEGRAM_TOKEN.sub(REPLACEMENT, text)
        return _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('sep')}{REPLACEMENT}", text)

    def value(self, value: object) -> object:
        """``value`` with every string inside it redacted (dicts, lists, tuples, sets recursively).

        Other objects are returned as they are: they become text only in a renderer, which is why
        the rendered line is redacted again (see the module docstring).
        """
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.text(bytes(value).decode("utf-8", errors="backslashreplace"))
        if isinstance(value, Mapping):
            return {self._key(key): self._keyed_value(key, item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            items = [self.value(item) for item in value]
            return tuple(items) if isinstance(value, tuple) else items
        return value

    def _key(self, key: object) -> object:
        # Only text keys change: a tuple or frozenset key must stay hashable.
        return self.text(key) if isinstance(key, str) else key

    def _keyed_value(self, key: object, item: object) -> object:
        # A number under "signature" is as secret as a string; True / False / None only tell
        # whether something is set, and containers are walked.
        scalar = isinstance(item, str | bytes | bytearray | int | float) and not isinstance(item, bool)
        if scalar and isinstance(key, str) and _is_sensitive_key(key):
            return REPLACEMENT
        return self.value(item)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """structlog processor: redacts every value (and key) of ``event_dict``."""
        return {str(self._key(key)): self._keyed_value(key, item) for key, item in event_dict.items()}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with ``secrets`` (those of 6+ characters) and credential patterns replaced by ``***``.

    Shorter secrets are ignored on purpose: they would match all over the log.
    """
    return _redactor_for(tuple(secrets)).text(text)


@lru_cache(maxsize=16)
def _redactor_for(secrets: tuple[str, ...]) -> Redactor:
    # Compiling the alternation costs more than applying it; callers pass the same secrets each time.
    return Redactor(secrets)


def _is_sensitive_key(key: str) -> bool:
    normalized = key.lower().replace("-", "").replace("_", "")
    return normalized.endswith(_SENSITIVE_KEY_SUFFIXES)


def _json_string_body(text: str) -> str:
    # How the text looks inside a JSON string, for the pass over the rendered JSON line.
    encoded = to_json_text(text)
    return encoded[1:-1]


def to_jsonable(value: object) -> object:  # noqa: PLR0911 - one return per JSON type reads best
    """``value`` converted to what ``json.dumps`` encodes, recursively.

    numpy scalars and arrays become Python numbers and lists, an Enum its value, dates and times
    ISO 8601 text, bytes text, NaN and infinities ``None`` (JSON has no NaN; ``null`` is what
    every JSON reader understands), dict keys text, and anything else ``str(value)``.
    """
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    # Before float and int: numpy.float64 subclasses float, and must come out a plain float.
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {_json_key(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value)


def _json_key(key: object) -> str:
    converted = to_jsonable(key)
    return converted if isinstance(converted, str) else to_json_text(converted)


def to_json_text(value: object) -> str:
    """``value`` as compact JSON text (UTF-8 kept readable, not ``\\u`` escaped), via ``to_jsonable``."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (use ``__name__``) that goes through the fleet's chain."""
    return structlog.stdlib.get_logger(name)


def new_correlation_id() -> str:
    """A 12-character random hex id for a scan cycle or a signal (``cycle_id``, ``signal_id``)."""
    return token_hex(6)


def configure_logging(
    *,
    log_dir: Path | None,
    process_name: str,
    secrets: Iterable[str] = (),
    console_level: str = "INFO",
    file_level: str = "DEBUG",
    console_stream: TextIO | None = None,
) -> None:
    """Install the fleet's logging: JSON lines to a rotating file, readable lines to the console.

    ``log_dir``: where ``<process_name>.log`` is written (created 0700, file 0600, rotated at
    10 MB, 5 backups); ``None`` logs to the console only. ``secrets``: values to redact from every
    line (those shorter than 6 characters are ignored). ``console_stream`` defaults to
    ``sys.stderr`` as it is at the time of the call; colours are used only if it is a TTY and
    ``NO_COLOR`` is not set.

    Calling it again replaces the handlers of the previous call (tests reconfigure freely).
    httpx and httpcore are set to WARNING; raising them to DEBUG later is safe, since redaction
    does not depend on levels.

    Raises ValueError for an unknown level name and OSError when the log directory cannot be
    created or made private: both are set-up mistakes to fix before the bots run.
    """
    console_level_no = _level_number(console_level)
    file_level_no = _level_number(file_level)
    redactor = Redactor(secrets)
    stream: TextIO = console_stream if console_stream is not None else sys.stderr

    structlog.configure(
        processors=[
            # Cheap early exit for disabled levels, before any work on the event dict.
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: structlog.testing.capture_logs() and a second configure_logging() must
        # reach loggers that modules created at import time.
        cache_logger_on_first_use=False,
    )

    # New handlers are built before the old ones go: if the log directory is unusable, the
    # previous configuration keeps working and the error propagates.
    handlers: list[logging.Handler] = []
    console = _ConsoleHandler(stream, redactor)
    console.setLevel(console_level_no)
    console.setFormatter(_formatter(_console_renderer(stream), redactor))
    handlers.append(console)
    levels = [console_level_no]

    if log_dir is not None:
        _make_private_dir(log_dir)
        file_handler = _PrivateRotatingFileHandler(
            log_dir / f"{process_name}.log",
            redactor,
            maxBytes=_LOG_FILE_BYTES,
            backupCount=_LOG_FILE_BACKUPS,
            encoding="utf-8",
        )
        file_handler.setLevel(file_level_no)
        file_handler.setFormatter(_formatter(_JSON_RENDERER, redactor))
        handlers.append(file_handler)
        levels.append(file_level_no)

    root = logging.getLogger()
    for previous in [handler for handler in root.handlers if getattr(handler, _HANDLER_MARK, False)]:
        root.removeHandler(previous)
        previous.close()
    for handler in handlers:
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    # The root passes what the most verbose handler wants; each handler filters for itself.
    root.setLevel(min(levels))
    for name in QUIET_LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _level_number(level: str) -> int:
    names = logging.getLevelNamesMapping()
    try:
        return names[level.upper()]
    except KeyError:
        allowed = ", ".join(sorted(name for name in names if name != "NOTSET"))
        msg = f"unknown log level {level!r}; use one of {allowed}"
        raise ValueError(msg) from None


def _shared_processors() -> list[Processor]:
    # Run for structlog's own events (before wrap_for_formatter) and, as foreign_pre_chain, for
    # stdlib records of libraries, so both kinds of line carry the same keys.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        _add_timestamp,
        # Rendering the traceback to text here puts it in the event dict, where the redactor
        # sees it; the formatter never appends a traceback of its own (keep_exc_info=False).
        structlog.processors.format_exc_info,
    ]


def _add_timestamp(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # A stdlib record carries its creation time; using it (instead of "now" at formatting time)
    # gives the file and the console line of one record the same timestamp.
    record = event_dict.get("_record")
    seconds = record.created if isinstance(record, logging.LogRecord) else None
    moment = datetime.now(UTC) if seconds is None else datetime.fromtimestamp(seconds, UTC)
    event_dict["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return event_dict


_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")


def _json_serializer(event_dict: Mapping[str, object], **_: object) -> str:
    # The same keys first on every line, so the file reads well with `less` and `head`.
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return to_json_text(ordered)


_JSON_RENDERER: Final = structlog.processors.JSONRenderer(serializer=_json_serializer)


def _console_renderer(stream: TextIO) -> Processor:
    isatty = getattr(stream, "isatty", None)
    colors = bool(isatty is not None and isatty()) and "NO_COLOR" not in os.environ
    return structlog.dev.ConsoleRenderer(colors=colors)


class _RedactedRenderer:
    """Renders with ``renderer``, then redacts the rendered line (the second pass)."""

    def __init__(self, renderer: Processor, redactor: Redactor) -> None:
        self._renderer = renderer
        self._redactor = redactor

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._renderer(logger, method_name, event_dict)
        if isinstance(rendered, bytes):
            rendered = rendered.decode("utf-8", errors="backslashreplace")
        return self._redactor.text(str(rendered))


def _formatter(renderer: Processor, redactor: Redactor) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redactor,
            _RedactedRenderer(renderer, redactor),
        ],
    )


class _RedactingHandlerMixin:
    """Handler behaviour shared by our two handlers.

    ``logging.Handler.handleError`` prints the record's raw message and arguments to stderr when
    formatting fails: that would print a library's unredacted URL. This version prints one
    redacted line instead. It also formats a record only once: RotatingFileHandler formats each
    record twice (once to decide on rollover, once to write), which would run the chain twice.
    """

    _redactor: Redactor
    _last_record: logging.LogRecord | None = None
    _last_text: str = ""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, cached for the duration of one ``handle`` call."""
        if record is self._last_record:
            return self._last_text
        text = super().format(record)  # type: ignore[misc]
        assert isinstance(text, str)
        self._last_record, self._last_text = record, text
        return text

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Report a failure to format or write ``record`` on stderr, without its raw content."""
        if not logging.raiseExceptions:
            return
        error = sys.exc_info()[1]
        line = (
            f"--- logging error in {type(self).__name__}: {type(error).__name__}: {error} "
            f"(record of logger {record.name!r} at {record.pathname}:{record.lineno})\n"
        )
        # If stderr is gone too, nothing is left to tell: never let logging crash the caller.
        with contextlib.suppress(Exception):
            sys.stderr.write(self._redactor.text(line))


class _ConsoleHandler(_RedactingHandlerMixin, logging.StreamHandler[TextIO]):
    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        super().__init__(stream)
        self._redactor = redactor


class _PrivateRotatingFileHandler(_RedactingHandlerMixin, logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose files (the current one and every rollover) are created 0600."""

    def __init__(
        self,
        filename: Path,
        redactor: Redactor,
        *,
        maxBytes: int,  # noqa: N803 - logging's own parameter names
        backupCount: int,  # noqa: N803
        encoding: str,
    ) -> None:
        self._redactor = redactor
        super().__init__(filename, maxBytes=maxBytes, backupCount=backupCount, encoding=encoding)

    def _open(self) -> TextIOWrapper:
        def opener(path: str, flags: int) -> int:
            # The mode passed to os.open is applied at creation, so the file is never readable by
            # others, not even for an instant; umask can only remove bits.
            return os.open(path, flags, _FILE_MODE)

        # Always append ("a", the handler's default): a restart continues the same file.
        stream = open(  # noqa: SIM115 - the handler owns and closes this stream
            self.baseFilename, "a", encoding=self.encoding, errors=self.errors, opener=opener
        )
        # A file left by an older run (or another tool) may have looser bits than ours.
        os.fchmod(stream.fileno(), _FILE_MODE)
        return stream


def _make_private_dir(directory: Path) -> None:
    directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode does not apply to a directory that already existed (systemd's LogsDirectory=
    # defaults to 0755); tighten it.
    directory.chmod(_DIR_MODE)
