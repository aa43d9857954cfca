"""`python -m bots logs summary`: counts from the event log and the process logs, malformed lines named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.clock import SimulatedClock
from common.events import EventLog, EventType
from common.logsummary import summarize, summary_dict, summary_text
from tests.harness import cli_env, mexc_with_psar_signal, run_cli, write_config

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000


def _log_line(timestamp: str, level: str, event: str, **fields: object) -> str:
    """A process-log line as common.logging_config writes it."""
    return json.dumps(
        {"timestamp": timestamp, "level": level, "logger": "common.runner", "event": event, **fields}
    )


def _write_logs(log_dir: Path) -> None:
    """Two days of events (one torn line) and a current, a rotated and a replay process log."""
    clock = SimulatedClock(T0)
    with EventLog(log_dir / "events", clock) as events:
        events.emit(EventType.STATUS, cycles=1)
        events.emit(EventType.SIGNAL_EMITTED, bot="psar_bot", symbol="BTC/USDT")
        events.emit(EventType.SIGNAL_EMITTED, bot="most_bot", symbol="ETH/USDT")
        events.emit(EventType.SIGNAL_REJECTED, bot="psar_bot", reason="RR_TOO_LOW", detail="R:R 1.2 < 1.5")
        clock.set(T0 + 25 * HOUR)
        events.emit(EventType.SIGNAL_EMITTED, bot="psar_bot", symbol="ETH/USDT")
        events.emit(EventType.SIGNAL_CLOSED, bot="psar_bot", exit_reason="TP2", r_multiple=2.5)
        events.emit(EventType.SIGNAL_CLOSED, bot="psar_bot", exit_reason="SL", r_multiple=-1.0)
        events.emit(EventType.SIGNAL_CLOSED, bot="most_bot", exit_reason="TIMEOUT", r_multiple=0.25)
        events.emit(EventType.SIGNAL_REJECTED, bot="most_bot", reason="RR_TOO_LOW", detail="R:R 0.9 < 1.5")
        events.emit(
            EventType.SIGNAL_REJECTED,
            bot="psar_bot",
            reason="GATE",
            detail="cooldown: the last signal of this bot, symbol and timeframe is too recent",
        )
    with (log_dir / "events" / "events-2024-01-02.jsonl").open("a") as handle:
        handle.write('{"ts":"2024-01-02T02:00:00.000Z","ts_ms":1704160800000,"event":"STA')
    (log_dir / "fleet.log").write_text(
        _log_line("2024-01-01T00:00:01.000Z", "info", "cycle done")
        + "\n"
        + _log_line("2024-01-01T00:00:02.000Z", "warning", "market source unavailable at start; trying again")
        + "\n"
        + _log_line("2024-01-02T01:00:00.000Z", "error", "scan failed", bot="psar_bot")
        + "\n[1, 2]\n"
    )
    (log_dir / "fleet.log.1").write_text(
        _log_line("2023-12-31T23:00:00.000Z", "warning", "market source unavailable at start; trying again")
        + "\n"
    )
    (log_dir / "replay-fleet.log").write_text(
        _log_line("2024-01-01T00:00:00.000Z", "error", "replay only") + "\n"
    )


@pytest.mark.unit
def test_summary_counts_events_bots_closes_refusals_and_logged_problems(tmp_path: Path) -> None:
    """Every count of the summary, from two day files and a rotated process log; replay logs left out."""
    _write_logs(tmp_path)

    summary = summary_dict(summarize(tmp_path))

    assert summary == {
        "events_dir": str(tmp_path / "events"),
        "event_files": 2,
        "first": "2024-01-01 00:00:00Z",
        "last": "2024-01-02 01:00:00Z",
        "events": {"SIGNAL_CLOSED": 3, "SIGNAL_EMITTED": 3, "SIGNAL_REJECTED": 3, "STATUS": 1},
        "alerts_per_bot": {"most_bot": 1, "psar_bot": 2},
        "closes_per_bot": {
            "most_bot": {"closed": 1, "exit_reasons": {"TIMEOUT": 1}, "total_r": 0.25},
            "psar_bot": {"closed": 2, "exit_reasons": {"SL": 1, "TP2": 1}, "total_r": 1.5},
        },
        "rejected_by_reason": {
            "RR_TOO_LOW": 2,
            "GATE: cooldown: the last signal of this bot, symbol and timeframe is too recent": 1,
        },
        "process_logs": ["fleet.log", "fleet.log.1"],
        "log_problems": [
            {"level": "warning", "event": "market source unavailable at start; trying again", "count": 2},
            {"level": "error", "event": "scan failed", "count": 1},
        ],
        "malformed_lines": 2,
        "malformed_named": [f"{tmp_path}/events/events-2024-01-02.jsonl:7 (torn)", f"{tmp_path}/fleet.log:4"],
    }


@pytest.mark.unit
def test_since_keeps_only_later_events_and_log_lines(tmp_path: Path) -> None:
    """--since 2024-01-02 drops the first day's events and the earlier warnings."""
    _write_logs(tmp_path)

    summary = summary_dict(summarize(tmp_path, since_ms=T0 + 24 * HOUR))

    assert summary["events"] == {"SIGNAL_CLOSED": 3, "SIGNAL_EMITTED": 1, "SIGNAL_REJECTED": 2}
    assert summary["alerts_per_bot"] == {"psar_bot": 1}
    assert summary["log_problems"] == [{"level": "error", "event": "scan failed", "count": 1}]


@pytest.mark.unit
def test_replay_reads_the_replay_logs_only(tmp_path: Path) -> None:
    """With replay=True the replay-events folder and replay-*.log files are read instead."""
    _write_logs(tmp_path)
    with EventLog(tmp_path / "replay-events", SimulatedClock(T0)) as events:
        events.emit(EventType.SIGNAL_EMITTED, bot="orb_bot")

    summary = summary_dict(summarize(tmp_path, replay=True))

    assert (summary["events"], summary["alerts_per_bot"]) == ({"SIGNAL_EMITTED": 1}, {"orb_bot": 1})
    assert summary["process_logs"] == ["replay-fleet.log"]
    assert summary["log_problems"] == [{"level": "error", "event": "replay only", "count": 1}]
    assert summary["malformed_lines"] == 0


@pytest.mark.unit
def test_text_report_of_an_empty_log_directory(tmp_path: Path) -> None:
    """A directory without logs gives every section with "none", not an error."""
    assert summary_text(summarize(tmp_path)) == (
        f"Event log {tmp_path}/events (0 day files): no events\n"
        "\nEvents by type\n  none\n"
        "\nAlerts (SIGNAL_EMITTED) per bot\n  none\n"
        "\nCloses (SIGNAL_CLOSED) per bot\n  none\n"
        "\nRefused setups (SIGNAL_REJECTED) by reason\n  none\n"
        "\nProcess log warnings and errors (none found)\n  none"
    )


@pytest.mark.unit
def test_text_report_names_each_malformed_line_once(tmp_path: Path) -> None:
    """The text report has one aligned row per bot and lists the malformed lines after the counts."""
    _write_logs(tmp_path)

    text = summary_text(summarize(tmp_path))

    assert "\nCloses (SIGNAL_CLOSED) per bot\n  most_bot      1 closed     +0.25 R  (TIMEOUT 1)\n" in text
    assert "  psar_bot      2 closed     +1.50 R  (SL 1, TP2 1)\n" in text
    assert text.endswith(
        "\nMalformed lines (not a JSON object), skipped: 2\n"
        f"  {tmp_path}/events/events-2024-01-02.jsonl:7 (torn)\n"
        f"  {tmp_path}/fleet.log:4"
    )


@pytest.mark.integration
async def test_summary_and_health_after_a_real_run(tmp_path: Path) -> None:
    """After a real one-cycle run (one alert, one unknown symbol): the summary counts its events and
    logged problems, and `health --no-http` finds the fresh event log and the empty outbox healthy."""
    write_config(tmp_path, {"symbols": ["BTC/USDTT", "BTC/USDT"]})
    async with mexc_with_psar_signal() as mexc:
        env = cli_env(tmp_path, mexc.base_url, None)
        run = await run_cli(["run", "psar_bot", "--once"], env, tmp_path)
    assert run.returncode == 0, run.stderr

    summary = await run_cli(["logs", "summary", "--json"], env, tmp_path)
    health = await run_cli(["health", "--no-http"], env, tmp_path)

    assert (summary.returncode, summary.stderr) == (0, "")
    counts = json.loads(summary.stdout)
    assert counts["events"] == {
        "SHUTDOWN_COMPLETE": 1,
        "SHUTDOWN_INITIATED": 1,
        "SIGNAL_EMITTED": 1,
        "STATUS": 1,
    }
    assert counts["alerts_per_bot"] == {"psar_bot": 1}
    assert counts["process_logs"] == ["psar_bot.log"]
    assert counts["log_problems"] == [
        {
            "level": "warning",
            "event": "TELEGRAM_BOT_TOKEN is not set: running in dry-run, alerts go to the console",
            "count": 1,
        },
        {
            "level": "error",
            "event": "symbol BTC/USDTT is not listed on MEXC; did you mean BTC/USDT?",
            "count": 1,
        },
        {"level": "warning", "event": "bot psar_bot: runs without BTC/USDTT (see above)", "count": 1},
    ]
    assert counts["malformed_lines"] == 0
    assert (health.returncode, health.stderr) == (0, "")
    assert health.stdout.startswith("OK: newest event (SHUTDOWN_COMPLETE, ")
    assert health.stdout.endswith("; outbox: 0 waiting\n")
