"""A replay's events validate against events.schema.json, and STATUS comes every 5 simulated minutes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from common.events import EventType, read_events
from tests.harness import REPO, SAMPLE

pytestmark = pytest.mark.integration

SCHEMA = json.loads((REPO / "events.schema.json").read_text(encoding="utf-8"))
FIVE_MINUTES_MS = 300_000


def test_the_schema_is_valid_and_names_every_event_type() -> None:
    """events.schema.json is a valid 2020-12 schema and lists exactly the EventType values."""
    Draft202012Validator.check_schema(SCHEMA)
    assert set(SCHEMA["properties"]["event"]["enum"]) == {e.value for e in EventType}


def test_a_replays_events_validate_and_status_comes_every_five_simulated_minutes(tmp_path: Path) -> None:
    """A replay of psar, orb (5m) and consensus writes only schema-valid events, STATUS 5 minutes apart."""
    shipped = json.loads((REPO / "global_config.json").read_text(encoding="utf-8"))
    keep = ("psar_bot", "orb_bot", "consensus_bot", "candlestick_bot")
    config = tmp_path / "global_config.json"
    config.write_text(json.dumps({**shipped, "bots": {name: shipped["bots"][name] for name in keep}}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))},
        "BOTS_CONFIG": str(config),
        "BOTS_STATE_DIR": str(tmp_path / "state"),
        "BOTS_LOG_DIR": str(tmp_path / "logs"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bots",
            "run",
            "--all",
            "--source",
            f"replay:{SAMPLE}",
            "--start",
            "2024-08-25",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    events = list(read_events(tmp_path / "logs" / "replay-events"))
    validator = Draft202012Validator(SCHEMA)
    for event in events:
        errors = sorted(validator.iter_errors(event), key=str)
        assert errors == [], f"{event['event']}: {errors[0].message}"
    kinds = {str(e["event"]) for e in events}
    assert {"SIGNAL_EMITTED", "SIGNAL_CLOSED", "SIGNAL_REJECTED", "STATUS", "SHUTDOWN_COMPLETE"} <= kinds
    status_times = [int(str(e["ts_ms"])) for e in events if e["event"] == "STATUS"]
    assert len(status_times) > 100
    gaps = {later - earlier for earlier, later in itertools.pairwise(status_times)}
    assert gaps == {FIVE_MINUTES_MS}  # orb_bot's 5m candles wake the fleet every 5 simulated minutes
