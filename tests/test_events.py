"""Tests of common.events: day files by the injected clock, pruning, redaction, failures, reading."""

from __future__ import annotations

import enum
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import structlog

from common.clock import SimulatedClock
from common.events import EventLog, EventType, read_events
from common.logging_config import QUIET_LIBRARY_LOGGERS, configure_logging

TOKEN = "123456789:AAFakeSentinelTokenXXXXXXXXXXXXXXXXXX"
SECRET = "Sentinel/Secret+Value=="


def _ms(when: str, milli: int = 0) -> int:
    """Unix ms of ``when`` ('YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM:SS', UTC) plus ``milli``."""
    moment = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + milli


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class _Side(enum.Enum):
    """A plain (non-str) Enum, as a strategy might use."""

    LONG = "long"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leaves the root logger, library levels and structlog as the test found them."""
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


@pytest.mark.unit
def test_event_type_values_are_their_names() -> None:
    """The ``event`` field holds the enum name, e.g. SHUTDOWN_INITIATED."""
    assert [str(e) for e in EventType] == [e.name for e in EventType]
    assert {e.name for e in EventType} == {
        "SIGNAL_EMITTED",
        "SIGNAL_CLOSED",
        "SIGNAL_PARTIAL_EXIT",
        "SIGNAL_REJECTED",
        "SIGNAL_UPDATED",
        "STATUS",
        "SHUTDOWN_INITIATED",
        "SHUTDOWN_COMPLETE",
        "STATE_RECOVERED",
    }


@pytest.mark.unit
def test_emit_writes_one_line_to_the_clock_day_file_and_returns_it(tmp_path: Path) -> None:
    """The record has ts (ms precision, UTC), ts_ms and event first, and lands in that UTC day's file."""
    clock = SimulatedClock(_ms("2024-03-10T12:00:00", 7))
    with EventLog(tmp_path, clock) as events:
        record = events.emit(EventType.STATUS, open_signals=3, bots=["psar_bot"])
    expected = {
        "ts": "2024-03-10T12:00:00.007Z",
        "ts_ms": 1710072000007,
        "event": "STATUS",
        "open_signals": 3,
        "bots": ["psar_bot"],
    }
    assert record == expected
    assert [p.name for p in tmp_path.iterdir()] == ["events-2024-03-10.jsonl"]
    text = (tmp_path / "events-2024-03-10.jsonl").read_text(encoding="utf-8")
    assert text == (
        '{"ts":"2024-03-10T12:00:00.007Z","ts_ms":1710072000007,"event":"STATUS",'
        '"open_signals":3,"bots":["psar_bot"]}\n'
    )


@pytest.mark.unit
def test_day_file_rotates_exactly_at_utc_midnight(tmp_path: Path) -> None:
    """23:59:59.999 goes to the old day's file and 00:00:00.000 to the new one."""
    clock = SimulatedClock(_ms("2024-03-10T23:59:59", 999))
    with EventLog(tmp_path, clock) as events:
        events.emit(EventType.STATUS, n=1)
        clock.set(_ms("2024-03-11"))
        events.emit(EventType.STATUS, n=2)
    assert _lines(tmp_path / "events-2024-03-10.jsonl") == [
        {"ts": "2024-03-10T23:59:59.999Z", "ts_ms": 1710115199999, "event": "STATUS", "n": 1}
    ]
    assert _lines(tmp_path / "events-2024-03-11.jsonl") == [
        {"ts": "2024-03-11T00:00:00.000Z", "ts_ms": 1710115200000, "event": "STATUS", "n": 2}
    ]


@pytest.mark.unit
def test_files_older_than_keep_days_are_deleted_when_a_day_file_opens(tmp_path: Path) -> None:
    """With keep_days=30 on 2024-03-31, 03-01 stays, 02-29 goes; other names are never touched."""
    for name in (
        "events-2024-01-01.jsonl",
        "events-2024-02-29.jsonl",
        "events-2024-03-01.jsonl",
        "events-2024-13-45.jsonl",
        "events-2024-02-01.jsonl.bak",
        "notes.txt",
    ):
        (tmp_path / name).write_text("{}\n")
    clock = SimulatedClock(_ms("2024-03-31T08:00:00"))
    events = EventLog(tmp_path, clock, keep_days=30)
    events.emit(EventType.STATE_RECOVERED, open_signals=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events-2024-02-01.jsonl.bak",
        "events-2024-03-01.jsonl",
        "events-2024-03-31.jsonl",
        "events-2024-13-45.jsonl",
        "notes.txt",
    ]

    # Pruning runs when a day's file is opened, not on every line.
    (tmp_path / "events-2024-02-15.jsonl").write_text("{}\n")
    events.emit(EventType.STATUS)
    assert (tmp_path / "events-2024-02-15.jsonl").exists()
    clock.set(_ms("2024-04-01"))
    events.emit(EventType.STATUS)
    events.close()
    assert sorted(p.name for p in tmp_path.glob("events-2024-0*.jsonl")) == [
        "events-2024-03-31.jsonl",
        "events-2024-04-01.jsonl",
    ]


@pytest.mark.unit
def test_secrets_and_tokens_are_redacted_from_every_field(tmp_path: Path) -> None:
    """Configured secrets, bot tokens and credential parameters never reach the event file."""
    clock = SimulatedClock(_ms("2024-03-10"))
    with EventLog(tmp_path, clock, secrets=[SECRET]) as events:
        record = events.emit(
            EventType.SIGNAL_REJECTED,
            reason=f"telegram said: token {TOKEN} invalid",
            context={"url": "https://api.mexc.com/x?apiKey=mx0abc&signature=ff00", "notes": [SECRET]},
        )
    expected = {
        "ts": "2024-03-10T00:00:00.000Z",
        "ts_ms": 1710028800000,
        "event": "SIGNAL_REJECTED",
        "reason": "telegram said: token *** invalid",
        "context": {"url": "https://api.mexc.com/x?apiKey=***&signature=***", "notes": ["***"]},
    }
    assert record == expected
    text = (tmp_path / "events-2024-03-10.jsonl").read_text(encoding="utf-8")
    assert json.loads(text) == expected
    for fragment in (TOKEN, "AAFakeSentinelToken", SECRET, "mx0abc", "ff00"):
        assert fragment not in text


@pytest.mark.unit
def test_numpy_enum_datetime_path_and_nan_values_are_serialised(tmp_path: Path) -> None:
    """numpy scalars/arrays become numbers/lists, Enums values, datetimes ISO, Paths text, NaN null."""
    clock = SimulatedClock(_ms("2024-03-10"))
    with EventLog(tmp_path, clock) as events:
        record = events.emit(
            EventType.SIGNAL_EMITTED,
            rsi=np.float64(28.5),
            bars=np.int64(144),
            above_ema=np.bool_(True),
            closes=np.array([1.5, 2.5]),
            side=_Side.LONG,
            event_type=EventType.STATUS,
            bar_time=datetime(2024, 3, 9, 23, 0, tzinfo=UTC),
            source=Path("/data/BTC_USDT-1h.csv.gz"),
            atr=float("nan"),
            ratio=np.float32(0.5),
            by_level={1: np.float64(0.25)},
        )
    expected = {
        "ts": "2024-03-10T00:00:00.000Z",
        "ts_ms": 1710028800000,
        "event": "SIGNAL_EMITTED",
        "rsi": 28.5,
        "bars": 144,
        "above_ema": True,
        "closes": [1.5, 2.5],
        "side": "long",
        "event_type": "STATUS",
        "bar_time": "2024-03-09T23:00:00+00:00",
        "source": "/data/BTC_USDT-1h.csv.gz",
        "atr": None,
        "ratio": 0.5,
        "by_level": {"1": 0.25},
    }
    assert record == expected
    assert _lines(tmp_path / "events-2024-03-10.jsonl") == [expected]
    assert type(record["bars"]) is int
    assert type(record["rsi"]) is float


@pytest.mark.unit
def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    """ts, ts_ms and event are set by the log itself; passing them is a programming error."""
    events = EventLog(tmp_path, SimulatedClock(0))
    with pytest.raises(ValueError, match=r"event fields may not be named \['ts', 'ts_ms'\]"):
        events.emit(EventType.STATUS, ts=1, ts_ms=2)
    with pytest.raises(ValueError, match="keep_days must be 0 or more, not -1"):
        EventLog(tmp_path, SimulatedClock(0), keep_days=-1)


@pytest.mark.unit
def test_write_failure_is_logged_not_raised_and_the_next_emit_recovers(tmp_path: Path) -> None:
    """A directory where the day file should be makes emit log one error, return, and later succeed."""
    clock = SimulatedClock(_ms("2024-03-10"))
    blocker = tmp_path / "events-2024-03-10.jsonl"
    blocker.mkdir()
    events = EventLog(tmp_path, clock)
    with structlog.testing.capture_logs() as logs:
        record = events.emit(EventType.SHUTDOWN_INITIATED, signal="SIGTERM")
    assert record == {
        "ts": "2024-03-10T00:00:00.000Z",
        "ts_ms": 1710028800000,
        "event": "SHUTDOWN_INITIATED",
        "signal": "SIGTERM",
    }
    assert logs == [
        {
            "event": "event_log_write_failed",
            "path": str(blocker),
            "error": f"[Errno 21] Is a directory: '{blocker}'",
            "log_level": "error",
        },
        {
            "event": "SHUTDOWN_INITIATED",
            "ts": "2024-03-10T00:00:00.000Z",
            "ts_ms": 1710028800000,
            "signal": "SIGTERM",
            "log_level": "info",
        },
    ]
    blocker.rmdir()
    events.emit(EventType.SHUTDOWN_COMPLETE)
    events.close()
    assert [r["event"] for r in _lines(blocker)] == ["SHUTDOWN_COMPLETE"]


@pytest.mark.unit
def test_unusable_directory_is_logged_not_raised(tmp_path: Path) -> None:
    """An events directory path that is a regular file is reported, and emit still returns."""
    not_a_dir = tmp_path / "events"
    not_a_dir.write_text("")
    events = EventLog(not_a_dir, SimulatedClock(_ms("2024-03-10")))
    with structlog.testing.capture_logs() as logs:
        events.emit(EventType.STATUS)
    assert logs[0] == {
        "event": "event_log_write_failed",
        "path": str(not_a_dir / "events-2024-03-10.jsonl"),
        "error": f"[Errno 17] File exists: '{not_a_dir}'",
        "log_level": "error",
    }


@pytest.mark.unit
def test_directory_is_0700_and_files_0600_under_umask_022(tmp_path: Path) -> None:
    """Event files are private from creation, whatever the umask."""
    old_umask = os.umask(0o022)
    try:
        directory = tmp_path / "state" / "events"
        with EventLog(directory, SimulatedClock(_ms("2024-03-10"))) as events:
            events.emit(EventType.STATUS)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(directory / "events-2024-03-10.jsonl").st_mode) == 0o600


@pytest.mark.unit
def test_two_writers_append_whole_lines_to_one_day_file(tmp_path: Path) -> None:
    """Two EventLogs (as two bot processes) interleave whole lines in one file, none lost or torn."""
    clock = SimulatedClock(_ms("2024-03-10T09:00:00"))
    first, second = EventLog(tmp_path, clock), EventLog(tmp_path, clock)
    for n in range(3):
        first.emit(EventType.STATUS, bot="psar_bot", n=n, payload="x" * 10_000)
        second.emit(EventType.STATUS, bot="most_bot", n=n, payload="y" * 10_000)
    first.close()
    second.close()
    lines = _lines(tmp_path / "events-2024-03-10.jsonl")
    assert [(r["bot"], r["n"]) for r in lines] == [
        ("psar_bot", 0),
        ("most_bot", 0),
        ("psar_bot", 1),
        ("most_bot", 1),
        ("psar_bot", 2),
        ("most_bot", 2),
    ]


@pytest.mark.unit
def test_read_events_in_day_order_skipping_a_torn_last_line(tmp_path: Path) -> None:
    """read_events yields every whole record across days, warns about and skips a torn last line."""
    clock = SimulatedClock(_ms("2024-03-10T23:00:00"))
    with EventLog(tmp_path, clock) as events:
        a = events.emit(EventType.SIGNAL_EMITTED, signal_id="a")
        clock.set(_ms("2024-03-11T01:00:00"))
        b = events.emit(EventType.SIGNAL_CLOSED, signal_id="a", reason="TP1", pnl_pct=1.25)
    last = tmp_path / "events-2024-03-11.jsonl"
    with last.open("ab") as handle:
        handle.write(b'{"ts":"2024-03-11T01:00:00.001Z","ts_ms":17101')
    (tmp_path / "notes.txt").write_text("not events")

    with structlog.testing.capture_logs() as logs:
        assert list(read_events(tmp_path)) == [a, b]
    assert logs == [{"event": "event_log_torn_line", "path": str(last), "line": 2, "log_level": "warning"}]

    assert list(read_events(tmp_path, since_ms=_ms("2024-03-11"))) == [b]
    b_ms = b["ts_ms"]
    assert isinstance(b_ms, int)
    assert list(read_events(tmp_path, since_ms=b_ms)) == [b]
    assert list(read_events(tmp_path, since_ms=b_ms + 1)) == []
    assert list(read_events(tmp_path, since_ms=_ms("2024-03-12"))) == []


@pytest.mark.unit
def test_a_torn_line_left_by_a_killed_writer_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    """On opening a file that ends mid-line, the log ends that line first, so its own record survives."""
    path = tmp_path / "events-2024-03-10.jsonl"
    path.write_bytes(b'{"ts":"2024-03-10T00:00:00.000Z","ts_ms":1710028800000,"event":"ST')
    with EventLog(tmp_path, SimulatedClock(_ms("2024-03-10T01:00:00"))) as events:
        record = events.emit(EventType.STATE_RECOVERED, open_signals=2)
    with structlog.testing.capture_logs() as logs:
        assert list(read_events(tmp_path)) == [record]
    assert logs == [{"event": "event_log_bad_line", "path": str(path), "line": 1, "log_level": "warning"}]


@pytest.mark.unit
def test_each_event_is_also_logged_at_info_by_the_events_logger(tmp_path: Path) -> None:
    """The process log gets a line from logger 'events' with the event name and its fields."""
    console = io.StringIO()
    configure_logging(
        log_dir=tmp_path / "logs", process_name="fleet", secrets=[SECRET], console_stream=console
    )
    with EventLog(tmp_path / "events", SimulatedClock(_ms("2024-03-10")), secrets=[SECRET]) as events:
        events.emit(EventType.SHUTDOWN_INITIATED, signal="SIGTERM", detail=SECRET)
    (line,) = _lines(tmp_path / "logs" / "fleet.log")
    del line["timestamp"]
    assert line == {
        "level": "info",
        "logger": "events",
        "event": "SHUTDOWN_INITIATED",
        "ts": "2024-03-10T00:00:00.000Z",
        "ts_ms": 1710028800000,
        "signal": "SIGTERM",
        "detail": "***",
    }
    assert "SHUTDOWN_INITIATED" in console.getvalue()
    assert SECRET not in console.getvalue()
