"""``python -m bots logs summary``: what the fleet did, read back from its logs.

Two sources, both under ``BOTS_LOG_DIR``:

* the event log (``events/events-YYYY-MM-DD.jsonl``, see ``common.events``): events per type,
  alerts (SIGNAL_EMITTED) per bot, closes (SIGNAL_CLOSED) per bot with their exit reasons and
  total R, and refused setups (SIGNAL_REJECTED) by reason;
* the process logs (``<process>.log`` and their rotations ``<process>.log.1`` .. ``.5``, JSON
  lines, see ``common.logging_config``): warning and error lines grouped by their level and event
  message.

A replay writes ``replay-events/`` and ``replay-<process>.log`` instead; ``replay=True`` reads
those. A line that is not a JSON object is counted and named (``file:line``) once in the report;
reading never raises for what a file contains (an unreadable file or directory raises OSError).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from common.events import EventType, parse_line, read_events

#: How many malformed lines the report names one by one (all of them are counted).
NAMED_BAD_LINES: Final = 20
#: Levels of the process log lines the summary groups.
PROBLEM_LEVELS: Final = ("critical", "error", "warning")

_REPLAY_PREFIX: Final = "replay-"


@dataclass
class LogSummary:
    """Counts read from the event log and the process logs."""

    events_dir: Path
    event_files: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    events: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    closes: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    close_r: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    rejected: Counter[str] = field(default_factory=Counter)
    log_files: list[str] = field(default_factory=list)
    log_problems: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad_lines: int = 0
    bad_line_places: list[str] = field(default_factory=list)

    def bad_line(self, path: Path, number: int, torn: bool = False) -> None:
        """Count a line that is not a JSON object; name the first ``NAMED_BAD_LINES`` of them."""
        self.bad_lines += 1
        if len(self.bad_line_places) < NAMED_BAD_LINES:
            self.bad_line_places.append(f"{path}:{number}" + (" (torn)" if torn else ""))


def summarize(log_dir: Path, since_ms: int | None = None, *, replay: bool = False) -> LogSummary:
    """Read the event log and the process logs under ``log_dir`` (events with ``ts_ms >= since_ms``,
    log lines with a ``timestamp`` at or after it)."""
    events_dir = log_dir / ("replay-events" if replay else "events")
    summary = LogSummary(events_dir=events_dir)
    if events_dir.is_dir():
        summary.event_files = sum(1 for _ in events_dir.glob("events-*.jsonl"))
        for record in read_events(events_dir, since_ms, on_bad_line=summary.bad_line):
            _count_event(summary, record)
    for path in _process_logs(log_dir, replay):
        summary.log_files.append(path.name)
        _count_log_file(summary, path, since_ms)
    return summary


def _count_event(summary: LogSummary, record: dict[str, object]) -> None:
    kind = str(record.get("event"))
    summary.events[kind] += 1
    ts_ms = record.get("ts_ms")
    if isinstance(ts_ms, int):
        summary.first_ms = ts_ms if summary.first_ms is None else min(summary.first_ms, ts_ms)
        summary.last_ms = ts_ms if summary.last_ms is None else max(summary.last_ms, ts_ms)
    bot = str(record.get("bot", "?"))
    if kind == EventType.SIGNAL_EMITTED:
        summary.alerts[bot] += 1
    elif kind == EventType.SIGNAL_CLOSED:
        summary.closes[bot][str(record.get("exit_reason", "?"))] += 1
        r_multiple = record.get("r_multiple")
        if isinstance(r_multiple, int | float):
            summary.close_r[bot] += float(r_multiple)
    elif kind == EventType.SIGNAL_REJECTED:
        reason = str(record.get("reason", "?"))
        # The gate's reasons are fixed sentences (GateVerdict) worth telling apart; a level
        # rejection's detail carries numbers, so only its reason code is kept.
        if reason == "GATE":
            reason = f"GATE: {record.get('detail', '?')}"
        summary.rejected[reason] += 1


def _process_logs(log_dir: Path, replay: bool) -> list[Path]:
    """The process log files (current and rotated) of live runs, or of replays."""
    if not log_dir.is_dir():
        return []
    found = []
    for path in log_dir.iterdir():
        stem, dot, rotation = path.name.partition(".log")
        if not dot or (rotation and not rotation[1:].isdigit()) or not path.is_file():
            continue
        if stem.startswith(_REPLAY_PREFIX) == replay:
            found.append(path)
    return sorted(found)


def _count_log_file(summary: LogSummary, path: Path, since_ms: int | None) -> None:
    since = None if since_ms is None else datetime.fromtimestamp(since_ms / 1000, UTC)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            record = parse_line(raw)
            if record is None:
                summary.bad_line(path, number, not raw.endswith(b"\n"))
                continue
            level = str(record.get("level", ""))
            if level not in PROBLEM_LEVELS:
                continue
            if since is not None and not _at_or_after(record.get("timestamp"), since):
                continue
            summary.log_problems[(level, str(record.get("event", "?")))] += 1


def _at_or_after(timestamp: object, since: datetime) -> bool:
    if not isinstance(timestamp, str):
        return False
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) >= since


def _utc_text(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def summary_dict(summary: LogSummary) -> dict[str, object]:
    """The summary as plain JSON-ready data (what ``--json`` prints)."""
    return {
        "events_dir": str(summary.events_dir),
        "event_files": summary.event_files,
        "first": _utc_text(summary.first_ms),
        "last": _utc_text(summary.last_ms),
        "events": dict(sorted(summary.events.items())),
        "alerts_per_bot": dict(sorted(summary.alerts.items())),
        "closes_per_bot": {
            bot: {
                "closed": sum(reasons.values()),
                "exit_reasons": dict(sorted(reasons.items())),
                "total_r": round(summary.close_r[bot], 4),
            }
            for bot, reasons in sorted(summary.closes.items())
        },
        "rejected_by_reason": dict(summary.rejected.most_common()),
        "process_logs": summary.log_files,
        "log_problems": [
            {"level": level, "event": event, "count": count}
            for (level, event), count in summary.log_problems.most_common()
        ],
        "malformed_lines": summary.bad_lines,
        "malformed_named": summary.bad_line_places,
    }


def summary_json(summary: LogSummary) -> str:
    """The summary as one indented JSON document."""
    return json.dumps(summary_dict(summary), indent=2, ensure_ascii=False)


def _counts(title: str, counts: Counter[str], empty: str) -> list[str]:
    lines = ["", title]
    if not counts:
        return [*lines, f"  {empty}"]
    width = max(len(name) for name in counts)
    lines.extend(f"  {name:<{width}}  {count:>7}" for name, count in counts.most_common())
    return lines


def summary_text(summary: LogSummary) -> str:
    """The summary as readable sections, largest counts first."""
    period = (
        f"{_utc_text(summary.first_ms)} .. {_utc_text(summary.last_ms)}"
        if summary.first_ms is not None
        else "no events"
    )
    lines = [f"Event log {summary.events_dir} ({summary.event_files} day files): {period}"]
    lines += _counts("Events by type", summary.events, "none")
    lines += _counts("Alerts (SIGNAL_EMITTED) per bot", summary.alerts, "none")
    lines += ["", "Closes (SIGNAL_CLOSED) per bot"]
    if not summary.closes:
        lines.append("  none")
    width = max((len(bot) for bot in summary.closes), default=0)
    for bot, reasons in sorted(summary.closes.items()):
        detail = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
        lines.append(
            f"  {bot:<{width}}  {sum(reasons.values()):>5} closed  {summary.close_r[bot]:+8.2f} R  ({detail})"
        )
    lines += _counts("Refused setups (SIGNAL_REJECTED) by reason", summary.rejected, "none")
    logs = ", ".join(summary.log_files) or "none found"
    problems = Counter({f"{level:<8} {event}": n for (level, event), n in summary.log_problems.items()})
    lines += _counts(f"Process log warnings and errors ({logs})", problems, "none")
    if summary.bad_lines:
        lines += ["", f"Malformed lines (not a JSON object), skipped: {summary.bad_lines}"]
        lines += [f"  {place}" for place in summary.bad_line_places]
        if summary.bad_lines > len(summary.bad_line_places):
            lines.append(f"  ... and {summary.bad_lines - len(summary.bad_line_places)} more")
    return "\n".join(lines)
