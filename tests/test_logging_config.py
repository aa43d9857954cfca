"""Tests of common.logging_config: one chain for structlog and stdlib, redaction, files, modes."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
import structlog

from common.logging_config import (
    QUIET_LIBRARY_LOGGERS,
    configure_logging,
    get_logger,
    new_correlation_id,
    redact,
)

TOKEN = "123456789:AAFakeSentinelTokenXXXXXXXXXXXXXXXXXX"
SECRET = "Sentinel/Secret+Value=="
# Fragments that must never reach a log, whatever form the sentinels take there.
FORBIDDEN = (
    TOKEN,
    "AAFakeSentinelToken",
    SECRET,
    "Secret+Value",
    quote(SECRET, safe=""),
    "Secret%2BValue",
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def _assert_clean(text: str) -> None:
    for fragment in FORBIDDEN:
        assert fragment not in text, f"{fragment!r} leaked into: {text}"


def _records(path: Path) -> list[dict[str, object]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert isinstance(record, dict)
        assert TIMESTAMP.match(record.pop("timestamp"))
        records.append(record)
    return records


def _our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_signal_fleet_handler", False)]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leaves the root logger, library levels, structlog and contextvars as the test found them."""
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    saved_level = root.level
    saved_library_levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARY_LOGGERS}
    saved_structlog = structlog.get_config()
    yield
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved_level)
    for name, level in saved_library_levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.configure(**saved_structlog)
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def console() -> io.StringIO:
    """The console stream the tests read back (not a TTY: no colours)."""
    return io.StringIO()


@pytest.fixture
def log_dir(tmp_path: Path, console: io.StringIO) -> Path:
    """Logging configured with the sentinel secret, a log directory and the captured console."""
    directory = tmp_path / "logs"
    configure_logging(log_dir=directory, process_name="fleet", secrets=[SECRET], console_stream=console)
    return directory


@pytest.mark.unit
def test_redact_removes_telegram_token_with_or_without_bot_prefix() -> None:
    """A bot token goes whether it follows 'bot' in a URL, stands alone or has its colon encoded."""
    assert redact(f"https://api.telegram.org/bot{TOKEN}/sendMessage", ()) == (
        "https://api.telegram.org/bot***/sendMessage"
    )
    assert redact(f"token {TOKEN} rejected", ()) == "token *** rejected"
    assert redact("bot123456789%3AAAFakeSentinelTokenXXXXXXXXXXXXXXXXXX/getMe", ()) == "bot***/getMe"


@pytest.mark.unit
def test_redact_leaves_millisecond_timestamps_and_short_pairs_alone() -> None:
    """13-digit ms timestamps and short 'id:word' pairs are not mistaken for tokens."""
    text = "1710072000000:BTC_USDT_1h_psar_bot_long_dedupe_key and 12:30 and 42:short"
    assert redact(text, ()) == text


@pytest.mark.unit
def test_redact_removes_secret_and_its_url_encoded_forms() -> None:
    """A configured secret goes as itself, percent-encoded (either hex case) and plus-encoded."""
    encoded = quote(SECRET, safe="")
    assert encoded == "Sentinel%2FSecret%2BValue%3D%3D"
    text = f"raw={SECRET} enc={encoded} path=/x/{quote(SECRET)}"
    assert redact(text, [SECRET]) == "raw=*** enc=*** path=/x/***"
    mixed = "Sentinel%2fSecret%2bValue%3d%3d"
    assert redact(f"q={mixed}", [SECRET]) == "q=***"


@pytest.mark.unit
def test_redact_removes_credential_parameters_and_mexc_header() -> None:
    """apiKey=, secret=, signature= values and X-MEXC-APIKEY header values become ***."""
    url = "https://api.mexc.com/api/v3/account?apiKey=mx0abc&timestamp=1&signature=9f86d08&recvWindow=5"
    assert redact(url, ()) == (
        "https://api.mexc.com/api/v3/account?apiKey=***&timestamp=1&signature=***&recvWindow=5"
    )
    assert redact("secret=s3cr3tvalue&x=1", ()) == "secret=***&x=1"
    assert redact("X-MEXC-APIKEY: mx0vglXYZ\r\nAccept: */*", ()) == "X-MEXC-APIKEY: ***\r\nAccept: */*"
    assert redact("{'X-MEXC-APIKEY': 'mx0vglXYZ', 'Accept': 'json'}", ()) == (
        "{'X-MEXC-APIKEY': '***', 'Accept': 'json'}"
    )
    assert redact('{"x-mexc-apikey":"mx0vglXYZ"}', ()) == '{"x-mexc-apikey":"***"}'
    assert redact("[(b'X-MEXC-APIKEY', b'mx0vglXYZ')]", ()) == "[(b'X-MEXC-APIKEY', b'***')]"
    assert redact("invalid signature, please retry", ()) == "invalid signature, please retry"


@pytest.mark.unit
def test_redact_keeps_json_valid_when_a_sensitive_name_holds_a_number() -> None:
    """'"signature":12345' in a JSON line is left alone rather than broken into invalid JSON."""
    line = '{"signature":12345,"secret":true,"apiKey":"mx0abc"}'
    assert redact(line, ()) == '{"signature":12345,"secret":true,"apiKey":"***"}'
    assert json.loads(redact(line, ())) == {"signature": 12345, "secret": True, "apiKey": "***"}


@pytest.mark.unit
def test_redact_ignores_secrets_shorter_than_six_characters() -> None:
    """Short 'secrets' are not redacted: they would wipe ordinary words out of every line."""
    assert redact("a b abcde abcdef", ["a", "abcde"]) == "a b abcde abcdef"
    assert redact("a b abcde abcdef", ["abcdef"]) == "a b abcde ***"


@pytest.mark.unit
def test_structlog_message_fields_nested_values_and_traceback_are_redacted(
    log_dir: Path, console: io.StringIO
) -> None:
    """Sentinels in the message, fields, nested containers and an exception are gone from both outputs."""
    log = get_logger("tests.redaction")
    log.info(
        f"message with {TOKEN} and {SECRET}",
        token_field=TOKEN,
        nested={"list": [SECRET, ("tuple", TOKEN)], "url": "https://x/?apiKey=abc123&signature=deadbeef"},
        headers={"X-MEXC-APIKEY": "mx0vglXYZ", "api_secret": "plain"},
    )

    def fail() -> None:
        msg = f"Telegram refused token {TOKEN} with secret {SECRET}"
        raise RuntimeError(msg)

    try:
        fail()
    except RuntimeError:
        log.exception("send_failed", chat="@fleet")

    records = _records(log_dir / "fleet.log")
    assert records[0] == {
        "level": "info",
        "logger": "tests.redaction",
        "event": "message with *** and ***",
        "token_field": "***",
        "nested": {"list": ["***", ["tuple", "***"]], "url": "https://x/?apiKey=***&signature=***"},
        "headers": {"X-MEXC-APIKEY": "***", "api_secret": "***"},
    }
    exception = records[1].pop("exception")
    assert records[1] == {
        "level": "error",
        "logger": "tests.redaction",
        "event": "send_failed",
        "chat": "@fleet",
    }
    assert isinstance(exception, str)
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith("RuntimeError: Telegram refused token *** with secret ***")

    text = console.getvalue()
    assert "message with *** and ***" in text
    assert "RuntimeError: Telegram refused token *** with secret ***" in text
    _assert_clean(text)
    _assert_clean((log_dir / "fleet.log").read_text(encoding="utf-8"))


@pytest.mark.unit
def test_stdlib_library_records_are_redacted_after_percent_formatting(
    log_dir: Path, console: io.StringIO
) -> None:
    """httpx-style %-args (an httpx.URL holding the token) are merged, then redacted, even at DEBUG."""
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    url = httpx.URL(f"https://api.telegram.org/bot{TOKEN}/sendMessage")
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST", url, "HTTP/1.1", 200, "OK")
    logging.getLogger("httpcore.http11").debug("receive_response_body.started request=%s", url)
    try:
        raise ConnectionError(f"cannot reach /bot{TOKEN}/getMe with {quote(SECRET, safe='')}")
    except ConnectionError:
        logging.getLogger("telegram.ext").exception("network error for %s", SECRET)

    records = _records(log_dir / "fleet.log")
    assert records[0] == {
        "level": "info",
        "logger": "httpx",
        "event": 'HTTP Request: POST https://api.telegram.org/bot***/sendMessage "HTTP/1.1 200 OK"',
    }
    assert records[1] == {
        "level": "debug",
        "logger": "httpcore.http11",
        "event": "receive_response_body.started request=https://api.telegram.org/bot***/sendMessage",
    }
    exception = records[2].pop("exception")
    assert records[2] == {"level": "error", "logger": "telegram.ext", "event": "network error for ***"}
    assert isinstance(exception, str)
    assert exception.endswith("ConnectionError: cannot reach /bot***/getMe with ***")

    text = console.getvalue()
    assert 'HTTP Request: POST https://api.telegram.org/bot***/sendMessage "HTTP/1.1 200 OK"' in text
    assert "ConnectionError: cannot reach /bot***/getMe with ***" in text
    _assert_clean(text)
    _assert_clean((log_dir / "fleet.log").read_text(encoding="utf-8"))


@pytest.mark.unit
def test_sensitive_keys_numbers_numpy_and_odd_dict_keys(log_dir: Path) -> None:
    """Numbers under credential keys go, flags stay, numpy becomes JSON, non-text keys do not crash."""
    get_logger("t").info(
        "values",
        signature=12345,
        has_secret=True,
        rsi=np.float64(28.5),
        by_set={frozenset({1}): "x"},
    )
    assert _records(log_dir / "fleet.log") == [
        {
            "level": "info",
            "logger": "t",
            "event": "values",
            "signature": "***",
            "has_secret": True,
            "rsi": 28.5,
            "by_set": {"[1]": "x"},
        }
    ]


class _Leaky:
    """An object that is not a string but renders a secret (as an httpx.URL or an exception does)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def __str__(self) -> str:
        return f"Leaky({self.secret})"

    __repr__ = __str__


@pytest.mark.unit
def test_rendered_line_pass_catches_objects_and_escaped_secrets(tmp_path: Path, console: io.StringIO) -> None:
    """Secrets that only become text inside the renderer (and get JSON-escaped there) are still removed."""
    quoted_secret = 'quote"and\\backslash'
    configure_logging(
        log_dir=tmp_path, process_name="p", secrets=[quoted_secret, SECRET], console_stream=console
    )
    get_logger("tests.leaky").warning("objects", token=_Leaky(TOKEN), odd=_Leaky(quoted_secret))

    assert _records(tmp_path / "p.log") == [
        {
            "level": "warning",
            "logger": "tests.leaky",
            "event": "objects",
            "token": "Leaky(***)",
            "odd": "Leaky(***)",
        }
    ]
    text = console.getvalue()
    assert "odd=Leaky(***) token=Leaky(***)" in text
    for output in (text, (tmp_path / "p.log").read_text(encoding="utf-8")):
        _assert_clean(output)
        assert "quote" not in output
        assert "backslash" not in output


class _TelegramLikeHandler(BaseHTTPRequestHandler):
    """Answers every GET like the Bot API's getMe."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Reply 200 with a small JSON body."""
        body = b'{"ok":true,"result":{"id":123456789,"is_bot":true}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: http.server would print the request line, token included, to stderr."""


@pytest.fixture
def local_server() -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TelegramLikeHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.integration
def test_real_httpx_request_with_token_in_url_is_redacted(
    log_dir: Path, console: io.StringIO, local_server: str
) -> None:
    """A real httpx request to /bot<token>/getMe, httpx and httpcore at DEBUG, leaves no token anywhere."""
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    logging.getLogger("httpcore").setLevel(logging.DEBUG)
    structlog.contextvars.bind_contextvars(cycle_id="c0ffee000001")
    with httpx.Client(trust_env=False) as client:
        response = client.get(f"{local_server}/bot{TOKEN}/getMe")
    assert response.status_code == 200

    records = _records(log_dir / "fleet.log")
    request_lines = [r for r in records if r["logger"] == "httpx"]
    assert request_lines == [
        {
            "level": "info",
            "logger": "httpx",
            "event": f'HTTP Request: GET {local_server}/bot***/getMe "HTTP/1.1 200 OK"',
            "cycle_id": "c0ffee000001",
        }
    ]
    assert any(r["logger"] == "httpcore.connection" for r in records)  # DEBUG really was on
    text = console.getvalue()
    assert f'HTTP Request: GET {local_server}/bot***/getMe "HTTP/1.1 200 OK"' in text
    _assert_clean(text)
    _assert_clean((log_dir / "fleet.log").read_text(encoding="utf-8"))


@pytest.mark.unit
def test_json_lines_carry_timestamp_level_logger_event_and_contextvars(log_dir: Path) -> None:
    """Each file line is one JSON object with the standard keys first and the bound context."""
    structlog.contextvars.bind_contextvars(cycle_id="c0ffee123456", bot="psar_bot", signal_id="5a5a5a5a5a5a")
    get_logger("bots.runner").warning("scan_done", symbols=3, took_s=0.25)
    logging.getLogger("ccxt.base.exchange").warning("rate limited on %s", "BTC/USDT")

    lines = (log_dir / "fleet.log").read_text(encoding="utf-8").splitlines()
    assert list(json.loads(lines[0]))[:4] == ["timestamp", "level", "logger", "event"]
    context = {"cycle_id": "c0ffee123456", "bot": "psar_bot", "signal_id": "5a5a5a5a5a5a"}
    assert _records(log_dir / "fleet.log") == [
        {
            "level": "warning",
            "logger": "bots.runner",
            "event": "scan_done",
            "symbols": 3,
            "took_s": 0.25,
            **context,
        },
        {"level": "warning", "logger": "ccxt.base.exchange", "event": "rate limited on BTC/USDT", **context},
    ]


@pytest.mark.unit
def test_log_dir_is_0700_and_files_0600_under_umask_022(tmp_path: Path, console: io.StringIO) -> None:
    """The new directory, the log file and a rolled-over file are private despite umask 022."""
    old_umask = os.umask(0o022)
    try:
        directory = tmp_path / "var" / "logs"
        configure_logging(log_dir=directory, process_name="psar_bot", console_stream=console)
        get_logger("t").info("first")
        (handler,) = [h for h in _our_handlers() if isinstance(h, logging.handlers.RotatingFileHandler)]
        handler.doRollover()
        get_logger("t").info("second")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "psar_bot.log").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory / "psar_bot.log.1").st_mode) == 0o600
    assert [r["event"] for r in _records(directory / "psar_bot.log.1")] == ["first"]
    assert [r["event"] for r in _records(directory / "psar_bot.log")] == ["second"]


@pytest.mark.unit
def test_existing_loose_dir_and_file_are_tightened(tmp_path: Path, console: io.StringIO) -> None:
    """A 0755 directory and a 0644 file left by something else become 0700 and 0600."""
    directory = tmp_path / "logs"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    (directory / "fleet.log").write_text("")
    (directory / "fleet.log").chmod(0o644)
    configure_logging(log_dir=directory, process_name="fleet", console_stream=console)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "fleet.log").st_mode) == 0o600


@pytest.mark.unit
def test_configuring_twice_does_not_duplicate_lines(tmp_path: Path, console: io.StringIO) -> None:
    """A second configure_logging replaces the first one's handlers: one record, one line each."""
    configure_logging(log_dir=tmp_path, process_name="p", console_stream=console)
    configure_logging(log_dir=tmp_path, process_name="p", console_stream=console)
    get_logger("t").info("once")
    logging.getLogger("aiohttp.client").warning("also once")
    assert len(_our_handlers()) == 2
    assert [r["event"] for r in _records(tmp_path / "p.log")] == ["once", "also once"]
    assert console.getvalue().count("once") == 2
    assert len(console.getvalue().splitlines()) == 2


@pytest.mark.unit
def test_console_and_file_levels_filter_independently(tmp_path: Path, console: io.StringIO) -> None:
    """DEBUG reaches the DEBUG file but not the INFO console; WARNING reaches both."""
    configure_logging(
        log_dir=tmp_path, process_name="p", console_stream=console, console_level="INFO", file_level="DEBUG"
    )
    get_logger("t").debug("detail")
    get_logger("t").warning("problem")
    assert [r["event"] for r in _records(tmp_path / "p.log")] == ["detail", "problem"]
    assert "detail" not in console.getvalue()
    assert "problem" in console.getvalue()


@pytest.mark.unit
def test_console_only_when_no_log_dir(tmp_path: Path, console: io.StringIO) -> None:
    """Without a log directory only the console handler is installed and no file appears."""
    configure_logging(log_dir=None, process_name="p", console_stream=console)
    get_logger("t").info("hello")
    assert len(_our_handlers()) == 1
    assert "hello" in console.getvalue()
    assert list(tmp_path.iterdir()) == []


class _Terminal(io.StringIO):
    """A captured stream that claims to be a terminal."""

    def isatty(self) -> bool:
        """Pretend to be a TTY."""
        return True


@pytest.mark.unit
def test_colours_only_on_a_tty(monkeypatch: pytest.MonkeyPatch, console: io.StringIO) -> None:
    """ANSI colour codes go to a TTY and never to a pipe or file."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    configure_logging(log_dir=None, process_name="p", console_stream=console)
    get_logger("t").info("plain")
    assert "\x1b[" not in console.getvalue()

    terminal = _Terminal()
    configure_logging(log_dir=None, process_name="p", console_stream=terminal)
    get_logger("t").info("coloured")
    assert "\x1b[" in terminal.getvalue()


@pytest.mark.unit
def test_httpx_and_httpcore_default_to_warning(console: io.StringIO) -> None:
    """Request-URL chatter of httpx / httpcore is off unless someone lowers their level."""
    logging.getLogger("httpx").setLevel(logging.DEBUG)
    configure_logging(log_dir=None, process_name="p", console_stream=console)
    assert logging.getLogger("httpx").level == logging.WARNING
    assert logging.getLogger("httpcore").level == logging.WARNING
    logging.getLogger("httpx").info("HTTP Request: GET https://example.invalid/")
    assert console.getvalue() == ""


@pytest.mark.unit
def test_unknown_level_name_is_refused(console: io.StringIO) -> None:
    """A misspelt level fails loudly, naming the accepted ones."""
    with pytest.raises(ValueError, match=r"unknown log level 'VERBOSE'; use one of CRITICAL, DEBUG"):
        configure_logging(log_dir=None, process_name="p", console_level="VERBOSE", console_stream=console)


@pytest.mark.unit
def test_handler_error_report_does_not_print_raw_arguments(
    log_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When a record cannot be formatted, the stderr report names the error but not the raw args."""
    record = logging.LogRecord("httpx", logging.INFO, "lib.py", 7, "bad %d", (TOKEN,), None)
    for handler in _our_handlers():
        handler.handle(record)
    err = capsys.readouterr().err
    assert err.count("--- logging error in ") == 2
    assert "TypeError: %d format: a real number is required, not str" in err
    assert "record of logger 'httpx' at lib.py:7" in err
    _assert_clean(err)


@pytest.mark.unit
def test_new_correlation_id_is_12_random_hex_chars() -> None:
    """Correlation ids are 12 lowercase hex characters and do not repeat."""
    ids = {new_correlation_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{12}", value) for value in ids)
