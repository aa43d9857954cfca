"""`python -m bots health`: the HTTP, systemd, event-log and outbox checks, their lines and exit statuses."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from common.clock import SimulatedClock
from common.events import EventLog, EventType, newest_event
from common.healthcheck import HealthOptions, HealthReport, check_events, check_outbox, run_checks
from common.store import GateVerdict, Store
from tests.harness import cli_env, run_cli, write_config
from tests.test_store import OPEN_RULES, make_signal

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE = 60_000


def _emit_status(log_dir: Path, at_ms: int) -> None:
    with EventLog(log_dir / "events", SimulatedClock(at_ms)) as events:
        events.emit(EventType.STATUS, uptime_s=1.0, cycles=1, open_signals={})


def _queue(state_dir: Path, *created_ms: int, bot: str = "psar_bot") -> None:
    """One pending alert per creation time (each on its own symbol), through the store's own gate."""
    store = Store(state_dir)
    try:
        for index, created in enumerate(created_ms):
            signal = make_signal(bot=bot, symbol=f"C{index}/USDT", created_ms=created)
            assert store.admit_signal(signal, OPEN_RULES, created, "alert text") is GateVerdict.ACCEPTED
    finally:
        store.close()


# -- the checks, at a chosen "now" ---------------------------------------------------------------


@pytest.mark.unit
def test_a_recent_event_and_a_short_outbox_are_healthy(tmp_path: Path) -> None:
    """STATUS 4 minutes ago and two messages queued 1 minute ago pass, with one note per check."""
    now = T0 + 60 * MINUTE
    _emit_status(tmp_path / "logs", now - 4 * MINUTE)
    _queue(tmp_path / "state", now - MINUTE, now - MINUTE)
    options = HealthOptions(url=None, units=None, max_event_age_s=900, max_pending=200, max_pending_age_s=900)

    report = run_checks(options, tmp_path / "logs", tmp_path / "state", now)

    assert report.problems == []
    assert report.notes == [
        "newest event (STATUS, 2024-01-01T00:56:00.000Z) is 4 min old",
        "outbox: 2 waiting, oldest 60 s",
    ]


@pytest.mark.unit
def test_an_old_event_and_a_stuck_outbox_are_one_line_each(tmp_path: Path) -> None:
    """A 20-minute-old newest event and a 3-message backlog whose oldest is 2 hours old are named."""
    now = T0 + 200 * MINUTE
    _emit_status(tmp_path / "logs", now - 20 * MINUTE)
    _queue(tmp_path / "state", now - 120 * MINUTE, now - 5 * MINUTE, now - MINUTE, bot="orb_bot")
    report = HealthReport()

    check_events(tmp_path / "logs" / "events", now, 900, report)
    check_outbox(tmp_path / "state", now, 2, 900, report)

    assert report.problems == [
        "event log: newest event (STATUS, 2024-01-01T03:00:00.000Z) is 20 min old, over the 15 min allowed",
        "outbox: 3 messages waiting, over the 2 allowed",
        "outbox: the oldest waiting message (orb_bot) is 2.0 h old, over the 15 min allowed",
    ]
    assert report.notes == []


@pytest.mark.unit
def test_missing_directories_are_problems_not_errors(tmp_path: Path) -> None:
    """No event log and no store: one line each, naming the path."""
    report = HealthReport()

    check_events(tmp_path / "logs" / "events", T0, 900, report)
    check_outbox(tmp_path / "state", T0, 200, 900, report)

    assert report.problems == [
        f"event log: {tmp_path}/logs/events does not exist (has the fleet run with this BOTS_LOG_DIR?)",
        f"outbox: no store at {tmp_path}/state/signals.sqlite3 (set BOTS_STATE_DIR)",
    ]


@pytest.mark.unit
def test_the_outbox_check_leaves_the_database_file_as_it_was(tmp_path: Path) -> None:
    """The store is opened read-only: no schema set-up, no migration, the database file's bytes unchanged."""
    _queue(tmp_path / "state", T0)
    database = tmp_path / "state" / "signals.sqlite3"
    before = database.read_bytes()

    report = HealthReport()
    check_outbox(tmp_path / "state", T0 + MINUTE, 200, 900, report)

    assert report.problems == []
    assert report.notes == ["outbox: 1 waiting, oldest 60 s"]
    assert database.read_bytes() == before


@pytest.mark.unit
def test_newest_event_skips_a_torn_line_and_an_empty_newer_day(tmp_path: Path) -> None:
    """A torn last line is skipped, and a newest day file without a whole event falls back a day."""
    events = tmp_path / "events"
    clock = SimulatedClock(T0)
    with EventLog(events, clock) as log:
        log.emit(EventType.STATUS, cycles=1)
        clock.set(T0 + MINUTE)
        log.emit(EventType.STATUS, cycles=2)
    with (events / "events-2024-01-01.jsonl").open("ab") as handle:
        handle.write(b'{"ts":"2024-01-01T00:02:00.000Z","ts_ms":17040673')
    (events / "events-2024-01-02.jsonl").write_bytes(b"not json\n")

    newest = newest_event(events)

    assert newest is not None
    assert (newest["ts_ms"], newest["cycles"]) == (T0 + MINUTE, 2)


@pytest.mark.unit
def test_newest_event_reads_past_the_tail_when_the_tail_is_one_long_line(tmp_path: Path) -> None:
    """An event line longer than the tail read is still found by reading the whole file."""
    with EventLog(tmp_path, SimulatedClock(T0)) as log:
        log.emit(EventType.STATUS, cycles=7, note="x" * 5_000)

    newest = newest_event(tmp_path, tail_bytes=100)

    assert newest is not None
    assert newest["cycles"] == 7


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
async def health_server() -> AsyncIterator[tuple[str, list[tuple[int, str]]]]:
    """A stand-in for the fleet's /health on 127.0.0.1: answers with the queued (status, body) pairs."""
    answers: list[tuple[int, str]] = []

    async def health(_: web.Request) -> web.Response:
        status, body = answers.pop(0)
        return web.Response(status=status, text=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/health", answers
    await runner.cleanup()


def _fresh_installation(tmp_path: Path) -> dict[str, str]:
    """A config, a STATUS event from just now and an empty store; the CLI's environment for them."""
    write_config(tmp_path)
    _emit_status(tmp_path / "logs", round(time.time() * 1000))
    Store(tmp_path / "state").close()
    return cli_env(tmp_path, "http://127.0.0.1:9", None)


@pytest.mark.integration
async def test_health_endpoint_ok_exits_0_and_503_lists_its_problems(
    tmp_path: Path, health_server: tuple[str, list[tuple[int, str]]]
) -> None:
    """200 "ok" gives one OK line and exit 0; 503 prints each problem the endpoint lists and exits 1."""
    url, answers = health_server
    env = _fresh_installation(tmp_path)
    ok = {"status": "ok", "live": True, "ready": True, "problems": [], "bots": {"psar_bot": {}}}
    bad = {
        "status": "unhealthy",
        "live": True,
        "ready": False,
        "problems": ["exchange: breaker open", "telegram: unreachable"],
        "bots": {},
    }
    answers.extend([(200, json.dumps(ok)), (503, json.dumps(bad))])

    healthy = await run_cli(["health", "--url", url], env, tmp_path)
    unhealthy = await run_cli(["health", "--url", url, "-q"], env, tmp_path)

    assert (healthy.returncode, healthy.stderr) == (0, "")
    assert healthy.stdout.startswith(f"OK: {url} ok (1 bots); newest event (STATUS, ")
    assert healthy.stdout.endswith(" s old; outbox: 0 waiting\n")
    assert (unhealthy.returncode, unhealthy.stderr) == (1, "")
    assert unhealthy.stdout == "health: exchange: breaker open\nhealth: telegram: unreachable\n"


@pytest.mark.integration
async def test_unreachable_or_garbled_endpoint_is_one_line_without_traceback(
    tmp_path: Path, health_server: tuple[str, list[tuple[int, str]]]
) -> None:
    """A refused connection and a non-JSON answer are each one line, exit 1; --quiet stays silent when OK."""
    url, answers = health_server
    env = _fresh_installation(tmp_path)
    answers.append((200, "<html>proxy page</html>"))
    write_config(tmp_path, health={"port": 9})  # nothing listens on port 9 (discard)

    refused = await run_cli(["health"], env, tmp_path)
    garbled = await run_cli(["health", "--url", url], env, tmp_path)
    quiet = await run_cli(["health", "--no-http", "--quiet"], env, tmp_path)

    assert (refused.returncode, refused.stderr) == (1, "")
    assert refused.stdout == (
        "http://127.0.0.1:9/health: cannot connect: Connection refused (is the fleet running?)\n"
    )
    assert (garbled.returncode, garbled.stderr) == (1, "")
    assert garbled.stdout == f"{url}: HTTP 200, and the body is not a JSON object\n"
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")


@pytest.mark.integration
async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Contradicting options and a bad URL are usage errors (exit 2), not health problems."""
    env = _fresh_installation(tmp_path)

    both = await run_cli(["health", "--no-http", "--url", "http://127.0.0.1:9/health"], env, tmp_path)
    scheme = await run_cli(["health", "--url", "127.0.0.1:9464"], env, tmp_path)

    assert (both.returncode, both.stdout) == (2, "")
    assert both.stderr == "error: health: --url and --no-http contradict each other\n"
    assert scheme.returncode == 2
    assert scheme.stderr.endswith("argument --url: '127.0.0.1:9464' must start with http:// or https://\n")


FAKE_SYSTEMCTL = """#!{python}
import os, sys
with open(os.environ["FAKE_SYSTEMCTL_ARGS"], "a") as record:
    record.write(" ".join(sys.argv[1:]) + "\\n")
sys.stdout.write(os.environ.get("FAKE_SYSTEMCTL_OUT", ""))
sys.stderr.write(os.environ.get("FAKE_SYSTEMCTL_ERR", ""))
sys.exit(int(os.environ.get("FAKE_SYSTEMCTL_STATUS", "0")))
"""


def _fake_systemctl(
    tmp_path: Path, env: dict[str, str], out: str = "", err: str = "", status: int = 0
) -> Path:
    """Put a `systemctl` first on PATH that records its arguments and prints ``out`` / ``err``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(FAKE_SYSTEMCTL.format(python=sys.executable), encoding="utf-8")
    script.chmod(0o700)
    record = tmp_path / "systemctl-args"
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        FAKE_SYSTEMCTL_ARGS=str(record),
        FAKE_SYSTEMCTL_OUT=out,
        FAKE_SYSTEMCTL_ERR=err,
        FAKE_SYSTEMCTL_STATUS=str(status),
    )
    return record


LIST_UNITS = (
    "signal-bot@most_bot.service loaded activating auto-restart Crypto signal bot most_bot\n"
    "signal-bot@psar_bot.service loaded active running Crypto signal bot psar_bot\n"
    "signal-bot@orb_bot.service loaded failed failed Crypto signal bot orb_bot\n"
    "signal-fleet.service loaded inactive dead Crypto signal fleet (all enabled bots in one process)\n"
)


@pytest.mark.integration
async def test_units_failed_or_restarting_are_named_and_the_other_layout_is_ignored(tmp_path: Path) -> None:
    """--units asks systemctl for the fleet's units; failed and restarting ones are problems, an
    inactive fleet unit (the other layout) is not, and no HTTP request is made."""
    env = _fresh_installation(tmp_path)
    record = _fake_systemctl(tmp_path, env, out=LIST_UNITS)

    run = await run_cli(["health", "--units"], env, tmp_path)

    assert (run.returncode, run.stderr) == (1, "")
    assert run.stdout == (
        "signal-bot@most_bot.service: restarting after a failure "
        "(journalctl -u signal-bot@most_bot.service)\n"
        "signal-bot@orb_bot.service: failed (failed); see journalctl -u signal-bot@orb_bot.service\n"
    )
    assert record.read_text() == (
        "list-units --all --plain --no-legend --full -- signal-fleet.service signal-bot@*.service\n"
    )


@pytest.mark.integration
async def test_named_units_must_be_active_and_systemctl_errors_are_one_line(tmp_path: Path) -> None:
    """A named unit that is inactive or not loaded is a problem; systemctl's own error is one line."""
    env = _fresh_installation(tmp_path)
    record = _fake_systemctl(
        tmp_path, env, out="signal-fleet.service loaded inactive dead Crypto signal fleet\n"
    )

    named = await run_cli(
        ["health", "--units", "signal-fleet.service", "signal-bot@diy_bot.service"], env, tmp_path
    )
    _fake_systemctl(tmp_path, env, err="Failed to connect to bus: Host is down\n", status=1)
    broken = await run_cli(["health", "--units"], env, tmp_path)

    assert (named.returncode, named.stderr) == (1, "")
    assert named.stdout == (
        "signal-bot@diy_bot.service: not loaded (is the unit file installed?)\n"
        "signal-fleet.service: inactive (dead); see journalctl -u signal-fleet.service\n"
    )
    assert record.read_text().splitlines()[0] == (
        "list-units --all --plain --no-legend --full -- signal-fleet.service signal-bot@diy_bot.service"
    )
    assert (broken.returncode, broken.stdout) == (1, "systemctl: Failed to connect to bus: Host is down\n")


@pytest.mark.integration
async def test_units_all_active_is_healthy(tmp_path: Path) -> None:
    """Every fleet unit active (the fleet layout): exit 0 and the OK line counts them."""
    env = _fresh_installation(tmp_path)
    _fake_systemctl(tmp_path, env, out="signal-fleet.service loaded active running Crypto signal fleet\n")

    run = await run_cli(["health", "--units"], env, tmp_path)

    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("OK: 1 unit active; newest event (STATUS, ")
