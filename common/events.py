"""The event log: what the fleet did, one JSON object a line, one file per UTC day.

Where the process log (``common.logging_config``) tells a developer how the code ran, the event
log is the record a user reads and tools process: signals emitted and closed, refused setups,
periodic status, shutdowns and recoveries. Each line is::

    {"ts":"2024-03-10T12:00:00.000Z","ts_ms":1710072000000,"event":"STATUS", ...fields}

``ts`` comes from the injected clock, so a replay writes the simulated time and the day files of
a replay follow the simulated days. Files are ``events-YYYY-MM-DD.jsonl`` in a 0700 directory,
created 0600; files older than ``keep_days`` are deleted when a new day's file is opened.

Several processes (one per bot) append to the same day file: each line is written with one
``write`` call on a descriptor opened with ``O_APPEND``, so lines never interleave.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from common.clock import Clock
from common.logging_config import Redactor, get_logger, to_json_text, to_jsonable

__all__ = ["EventLog", "EventType", "newest_event", "parse_line", "read_events"]

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_FILE_NAME: Final = re.compile(r"^events-(\d{4}-\d{2}-\d{2})\.jsonl$")
_RESERVED_FIELDS: Final = frozenset({"ts", "ts_ms", "event"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_log = get_logger("events")


class EventType(enum.StrEnum):
    """The kinds of event; the value is the name written in the ``event`` field."""

    SIGNAL_EMITTED = "SIGNAL_EMITTED"
    """A signal was stored and queued for Telegram; fields carry the strategy's context."""
    SIGNAL_CLOSED = "SIGNAL_CLOSED"
    """An open signal closed (TP / SL / BE / TRAIL / TIMEOUT / MANUAL); fields carry the exit and P&L."""
    SIGNAL_PARTIAL_EXIT = "SIGNAL_PARTIAL_EXIT"
    """A target of an open signal was hit and part of it closed (the rest stays open)."""
    SIGNAL_REJECTED = "SIGNAL_REJECTED"
    """A setup the level calculator or the signal gate refused, with the reason."""
    SIGNAL_UPDATED = "SIGNAL_UPDATED"
    """An open signal got an update reply (another bot joined a live consensus)."""
    STATUS = "STATUS"
    """Periodic health line (every 5 minutes)."""
    SHUTDOWN_INITIATED = "SHUTDOWN_INITIATED"
    """SIGINT / SIGTERM received; the process stops taking new work."""
    SHUTDOWN_COMPLETE = "SHUTDOWN_COMPLETE"
    """Everything that could be flushed was flushed; the process exits."""
    STATE_RECOVERED = "STATE_RECOVERED"
    """At start: open signals and unsent messages found in the store and taken over."""


def _utc(ms: int) -> datetime:
    # Integer timedelta arithmetic: fromtimestamp(ms / 1000) goes through a float and could put
    # 23:59:59.999 on the wrong side of midnight.
    return _EPOCH + timedelta(milliseconds=ms)


def _iso_ms(ms: int) -> str:
    return _utc(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _file_name(day: date) -> str:
    return f"events-{day.isoformat()}.jsonl"


def _day_of(path: Path) -> date | None:
    match = _FILE_NAME.match(path.name)
    if match is None:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:  # "events-2024-13-45.jsonl": not ours
        return None


class EventLog:
    """Appends events to the day file of the injected clock and logs each one at INFO.

    ``keep_days``: a day file is deleted once its date is more than ``keep_days`` days before the
    clock's current day (with 30, on 2024-03-31 the file of 2024-03-01 stays and 2024-02-29 goes).
    ``secrets`` are redacted from every field, as in the process log.

    Writing never raises: an event log that cannot be written (disk full, permissions, a
    directory where the file should be) must not stop a bot from trading signals. A failed write
    is reported as one ERROR line in the process log, naming the file and the OS error, and the
    next ``emit`` tries again. The directory is created at the first ``emit``, not here.
    """

    def __init__(
        self, directory: Path, clock: Clock, *, keep_days: int = 30, secrets: Iterable[str] = ()
    ) -> None:
        if keep_days < 0:
            msg = f"keep_days must be 0 or more, not {keep_days}"
            raise ValueError(msg)
        self._directory = Path(directory)
        self._clock = clock
        self._keep_days = keep_days
        self._redactor = Redactor(secrets)
        self._fd: int | None = None
        self._day: date | None = None

    @property
    def directory(self) -> Path:
        """Where the day files are."""
        return self._directory

    def emit(self, event: EventType, /, **fields: object) -> dict[str, object]:
        """Write ``event`` with ``fields`` as one line of today's file and return the record.

        Field values are converted for JSON (numpy scalars and arrays to numbers and lists, Enums
        to their value, datetimes to ISO text, NaN to null, anything else to ``str``) and
        redacted. The record returned is exactly what the line holds, also when the write failed
        (then it was logged, not raised). ``ts``, ``ts_ms`` and ``event`` are set here; passing
        them as fields is a programming error (ValueError).
        """
        clash = _RESERVED_FIELDS.intersection(fields)
        if clash:
            msg = f"event fields may not be named {sorted(clash)}: the event log sets them"
            raise ValueError(msg)
        now_ms = self._clock.now_ms()
        raw: dict[str, object] = {
            "ts": _iso_ms(now_ms),
            "ts_ms": now_ms,
            "event": str(event),
            **fields,
        }
        jsonable = to_jsonable(raw)
        redacted = self._redactor.value(jsonable)
        assert isinstance(redacted, dict)
        record: dict[str, object] = redacted
        line = to_json_text(record)
        # Second pass on the text, as in the process log: cheap, and it catches a secret that only
        # appears once its surroundings are JSON-escaped.
        safe_line = self._redactor.text(line)
        if safe_line != line:
            record = json.loads(safe_line)
            line = safe_line

        self._write(_utc(now_ms).date(), (line + "\n").encode("utf-8"))
        _log.info(str(event), **{key: value for key, value in record.items() if key != "event"})
        return record

    def close(self) -> None:
        """Close the current day file. A later ``emit`` opens it again."""
        if self._fd is not None:
            fd, self._fd, self._day = self._fd, None, None
            try:
                os.close(fd)
            except OSError as error:
                _log.error("event_log_close_failed", directory=str(self._directory), error=str(error))

    def __enter__(self) -> Self:
        """Use as a context manager that closes the file on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the file."""
        self.close()

    def _write(self, day: date, data: bytes) -> None:
        path = self._directory / _file_name(day)
        try:
            if self._fd is None or self._day != day:
                self._open(day, path)
            assert self._fd is not None
            # One write call per line: with O_APPEND the kernel places the whole buffer at the end
            # of the file, so lines of several processes never interleave. No Python-level buffer
            # sits in between (a buffered file object may split a long line into two writes).
            written = os.write(self._fd, data)
            if written != len(data):
                # Only a full disk or a signal makes a regular-file write short; the line is torn.
                msg = f"short write ({written} of {len(data)} bytes)"
                raise OSError(msg)
        except OSError as error:
            _log.error("event_log_write_failed", path=str(path), error=str(error))
            # Start from scratch next time: the descriptor may be the cause (file replaced).
            self.close()

    def _open(self, day: date, path: Path) -> None:
        self.close()
        self._directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        if self._directory.stat().st_mode & 0o777 != _DIR_MODE:
            self._directory.chmod(_DIR_MODE)
        # The mode given to os.open applies at creation (umask can only remove bits), so the file
        # is private from its first byte.
        # Read access too, only to check the last byte (see _end_torn_line).
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        try:
            if os.fstat(fd).st_mode & 0o777 != _FILE_MODE:
                os.fchmod(fd, _FILE_MODE)
            self._end_torn_line(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._day = fd, day
        self._prune(day)

    @staticmethod
    def _end_torn_line(fd: int) -> None:
        # A process killed in the middle of a line (or a full disk) leaves a line without its
        # newline; our first line would be glued to it and both would be lost to readers.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")

    def _prune(self, today: date) -> None:
        oldest_kept = today - timedelta(days=self._keep_days)
        try:
            candidates = list(self._directory.iterdir())
        except OSError as error:
            _log.error("event_log_prune_failed", directory=str(self._directory), error=str(error))
            return
        for path in candidates:
            day = _day_of(path)
            if day is None or day >= oldest_kept:
                continue
            try:
                # missing_ok: another bot process may have pruned it first.
                path.unlink(missing_ok=True)
            except OSError as error:
                _log.error("event_log_prune_failed", path=str(path), error=str(error))
            else:
                _log.info("event_log_pruned", path=str(path))


#: Called with the file, the line number and whether the line was torn (no newline at its end).
BadLineHandler = Callable[[Path, int, bool], None]


def _log_bad_line(path: Path, number: int, torn: bool) -> None:
    _log.warning("event_log_torn_line" if torn else "event_log_bad_line", path=str(path), line=number)


def read_events(
    directory: Path, since_ms: int | None = None, on_bad_line: BadLineHandler = _log_bad_line
) -> Iterator[dict[str, object]]:
    """Every event in ``directory``, day file by day file, each file in the order it was written.

    ``since_ms`` keeps events with ``ts_ms >= since_ms``. A line that is not a JSON object is
    skipped and passed to ``on_bad_line`` (default: a WARNING in the process log): a killed
    process can leave a torn last line, and a report should still show everything else. Within a
    day, lines of several processes are in append order, which is time order up to the few
    milliseconds between processes.
    """
    since_day = None if since_ms is None else _utc(since_ms).date()
    files = sorted(
        (day, path) for path in Path(directory).glob("events-*.jsonl") if (day := _day_of(path)) is not None
    )
    for day, path in files:
        if since_day is not None and day < since_day:
            continue
        yield from _read_file(path, since_ms, on_bad_line)


def _read_file(path: Path, since_ms: int | None, on_bad_line: BadLineHandler) -> Iterator[dict[str, object]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue  # the newline written after a torn line leaves an empty line
            record = parse_line(raw)
            if record is None:
                on_bad_line(path, number, not raw.endswith(b"\n"))
                continue
            if since_ms is not None:
                ts_ms = record.get("ts_ms")
                if not isinstance(ts_ms, int) or ts_ms < since_ms:
                    continue
            yield record


def newest_event(directory: Path, tail_bytes: int = 65_536) -> dict[str, object] | None:
    """The last complete event (a JSON object with an integer ``ts_ms``) of the newest day file that
    has one, or None when ``directory`` holds none. Reads only the end of a file when it can."""
    files = sorted(
        (
            (day, path)
            for path in Path(directory).glob("events-*.jsonl")
            if (day := _day_of(path)) is not None
        ),
        reverse=True,
    )
    for _, path in files:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            for start in dict.fromkeys((max(0, size - tail_bytes), 0)):
                handle.seek(start)
                lines = handle.read().split(b"\n")
                if start > 0:
                    lines = lines[1:]  # the first piece may be the end of a line cut in two
                for raw in reversed(lines):
                    record = parse_line(raw) if raw.strip() else None
                    if record is not None and isinstance(record.get("ts_ms"), int):
                        return record
    return None


def parse_line(raw: bytes) -> dict[str, object] | None:
    """One JSON-lines line as a dict, or None when it is not a JSON object (torn, garbage)."""
    try:
        value = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    if not isinstance(value, dict):
        return None
    return value
