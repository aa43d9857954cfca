"""``python -m bots health``: one look at a running installation, for cron or a monitoring system.

Three checks, each giving one line per problem:

1. the process: the HTTP ``/health`` endpoint the fleet serves on 127.0.0.1 (200 healthy, 503 with
   its list of problems), or, with ``units``, the systemd units (``signal-fleet.service`` and
   ``signal-bot@*.service``) through ``systemctl``;
2. the event log: the newest event must be recent (every running process writes STATUS at the end
   of its cycles, at most every ``runner.status_interval_s``), so a silent fleet is noticed even
   where nothing else is checked;
3. the outbox: how many messages wait in the store and how old the oldest is (Telegram down, a
   token revoked, a bot disabled with messages still queued).

Nothing here raises for what it finds: an unreachable endpoint, a missing directory or a locked
database is a problem line. ``ConfigError`` is raised only for a check that cannot be run as asked
(``units`` where there is no ``systemctl``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from common.config import FleetConfig
from common.errors import ConfigError
from common.events import newest_event
from common.types import timeframe_ms

#: The units ``units=[]`` looks for: the fleet and every per-bot instance.
UNIT_PATTERNS: Final = ("signal-fleet.service", "signal-bot@*.service")


@dataclass(frozen=True)
class HealthOptions:
    """What to check and the limits. ``url`` None skips HTTP; ``units`` None skips systemd, an empty
    list checks every unit matching ``UNIT_PATTERNS``."""

    url: str | None
    units: Sequence[str] | None
    max_event_age_s: float
    max_pending: int
    max_pending_age_s: float
    timeout_s: float = 5.0


@dataclass
class HealthReport:
    """The problems found (one line each) and a short note per check that passed."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """True when no check found a problem."""
        return not self.problems


def _age_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3_600:.1f} h"
    return f"{seconds / 86_400:.1f} days"


def check_http(url: str, timeout_s: float, report: HealthReport) -> None:
    """GET ``url`` (the fleet's ``/health``): 200 is healthy, 503 lists its problems."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) checked by the CLI
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except urllib.error.URLError as error:
        reason = error.reason.strerror if isinstance(error.reason, OSError) else error.reason
        report.problems.append(f"{url}: cannot connect: {reason or error.reason} (is the fleet running?)")
        return
    except TimeoutError:
        report.problems.append(f"{url}: no answer within {timeout_s:g} s")
        return
    except OSError as error:  # a reset connection, a refused read
        report.problems.append(f"{url}: {error.strerror or type(error).__name__}")
        return
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        report.problems.append(f"{url}: HTTP {status}, and the body is not a JSON object")
        return
    problems = document.get("problems")
    if status == 200 and document.get("status") == "ok":
        bots = document.get("bots")
        report.notes.append(f"{url} ok" + (f" ({len(bots)} bots)" if isinstance(bots, dict) else ""))
        return
    if isinstance(problems, list) and problems:
        report.problems.extend(f"health: {problem}" for problem in problems)
    else:
        report.problems.append(f"{url}: HTTP {status}, status {document.get('status')!r}")


@dataclass(frozen=True)
class UnitState:
    """One line of ``systemctl list-units``."""

    name: str
    load: str
    active: str
    sub: str


def _list_units(patterns: Sequence[str], timeout_s: float) -> list[UnitState] | str:
    """The units matching ``patterns`` (loaded ones, active or not), or the error systemctl gave."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise ConfigError("health --units: systemctl is not installed here; check the HTTP endpoint instead")
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [systemctl, "list-units", "--all", "--plain", "--no-legend", "--full", "--", *patterns],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout_s:g} s"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        return lines[0]
    units = []
    for line in result.stdout.splitlines():
        fields = line.split(None, 4)
        if len(fields) >= 4:
            units.append(UnitState(*fields[:4]))
    return units


def check_units(names: Sequence[str], timeout_s: float, report: HealthReport) -> None:
    """Named units must each be active; without names, no unit of the fleet may have failed or be
    restarting, and at least one must be active (the other layout's units are simply inactive)."""
    found = _list_units(names or UNIT_PATTERNS, timeout_s)
    if isinstance(found, str):
        report.problems.append(f"systemctl: {found}")
        return
    listed = {unit.name for unit in found}
    problems = [
        f"{name}: not loaded (is the unit file installed?)"
        for name in names
        if name not in listed and not any(wildcard in name for wildcard in "*?[")
    ]
    for unit in found:
        # Without names, an inactive unit is the other layout or a bot that is not enabled.
        if unit.active == "active" or (unit.active == "inactive" and not names):
            continue
        if unit.load == "not-found":
            problems.append(f"{unit.name}: not found (is the unit file installed?)")
        elif unit.active == "activating" and unit.sub == "auto-restart":
            problems.append(f"{unit.name}: restarting after a failure (journalctl -u {unit.name})")
        elif unit.active == "activating":
            problems.append(f"{unit.name}: starting, not ready yet (waiting for its first cycle)")
        else:
            problems.append(f"{unit.name}: {unit.active} ({unit.sub}); see journalctl -u {unit.name}")
    active = sum(1 for unit in found if unit.active == "active")
    if not names and not active:
        problems.append(f"no unit of the fleet is active ({', '.join(UNIT_PATTERNS)})")
    report.problems.extend(problems)
    if not problems:
        report.notes.append(f"{active} unit{'s' * (active != 1)} active")


def check_events(events_dir: Path, now_ms: int, max_age_s: float, report: HealthReport) -> None:
    """The newest event in ``events_dir`` must be at most ``max_age_s`` old."""
    if not events_dir.is_dir():
        report.problems.append(
            f"event log: {events_dir} does not exist (has the fleet run with this BOTS_LOG_DIR?)"
        )
        return
    try:
        newest = newest_event(events_dir)
    except OSError as error:
        report.problems.append(f"event log: {events_dir}: {error.strerror}")
        return
    if newest is None:
        report.problems.append(f"event log: no event in {events_dir}")
        return
    ts_ms = newest["ts_ms"]
    assert isinstance(ts_ms, int)  # newest_event returns only events with an integer ts_ms
    age_s = max(0.0, (now_ms - ts_ms) / 1000)
    what = f"newest event ({newest.get('event')}, {newest.get('ts')}) is {_age_text(age_s)} old"
    if age_s > max_age_s:
        report.problems.append(f"event log: {what}, over the {_age_text(max_age_s)} allowed")
    else:
        report.notes.append(what)


def check_outbox(
    state_dir: Path, now_ms: int, max_pending: int, max_age_s: float, report: HealthReport
) -> None:
    """The store's pending outbox messages: at most ``max_pending``, none older than ``max_age_s``."""
    path = state_dir / "signals.sqlite3"
    if not path.is_file():
        report.problems.append(f"outbox: no store at {path} (set BOTS_STATE_DIR)")
        return
    try:
        # Read-only: a health check must never create, migrate or lock the fleet's database.
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        ) as db:
            count, oldest_ms = db.execute(
                "SELECT COUNT(*), MIN(created_ms) FROM outbox WHERE status = 'pending'"
            ).fetchone()
            oldest_bot = None
            if count:
                oldest_bot = db.execute(
                    "SELECT bot FROM outbox WHERE status = 'pending' ORDER BY created_ms, id LIMIT 1"
                ).fetchone()[0]
    except sqlite3.Error as error:
        report.problems.append(f"outbox: {path}: {error}")
        return
    problems = []
    if count > max_pending:
        problems.append(f"outbox: {count} messages waiting, over the {max_pending} allowed")
    age_s = max(0.0, (now_ms - oldest_ms) / 1000) if count else 0.0
    if age_s > max_age_s:
        problems.append(
            f"outbox: the oldest waiting message ({oldest_bot}) is {_age_text(age_s)} old, "
            f"over the {_age_text(max_age_s)} allowed"
        )
    report.problems.extend(problems)
    if not problems:
        report.notes.append(f"outbox: {count} waiting" + (f", oldest {_age_text(age_s)}" if count else ""))


def default_event_age_s(config: FleetConfig) -> float:
    """How old the newest event may be: three STATUS intervals, or the shortest timeframe of an
    enabled bot plus 10 minutes when that is longer (STATUS is written at the end of a cycle, and a
    process whose bots are all on 1h cycles once an hour). 15 minutes with the shipped config."""
    timeframes = [timeframe_ms(bot.timeframe) for bot in config.bots.values() if bot.enabled]
    shortest_s = min(timeframes, default=0) / 1000
    return max(3 * config.runner.status_interval_s, shortest_s + 600)


def run_checks(options: HealthOptions, log_dir: Path, state_dir: Path, now_ms: int) -> HealthReport:
    """Every check ``options`` asks for, in order: process (HTTP and / or units), events, outbox."""
    report = HealthReport()
    if options.url is not None:
        check_http(options.url, options.timeout_s, report)
    if options.units is not None:
        check_units(options.units, options.timeout_s, report)
    check_events(log_dir / "events", now_ms, options.max_event_age_s, report)
    check_outbox(state_dir, now_ms, options.max_pending, options.max_pending_age_s, report)
    return report
