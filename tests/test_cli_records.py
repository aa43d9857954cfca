"""`python -m bots stats` and `export` on a store filled by a replay of real data, checked against the CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, SAMPLE

pytestmark = pytest.mark.integration


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bots ARGS`` in the repository with ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "bots", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_stats_agree_with_an_independent_computation_from_the_export(tmp_path: Path) -> None:
    """After a psar_bot replay, every stats figure equals what the test computes from the exported CSV."""
    config = tmp_path / "global_config.json"
    shipped = json.loads((REPO / "global_config.json").read_text(encoding="utf-8"))
    config.write_text(json.dumps({**shipped, "bots": {"psar_bot": shipped["bots"]["psar_bot"]}}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))},
        "BOTS_CONFIG": str(config),
        "BOTS_STATE_DIR": str(tmp_path / "state"),
        "BOTS_LOG_DIR": str(tmp_path / "logs"),
    }
    replay = cli(["run", "psar_bot", "--source", f"replay:{SAMPLE}", "--log-level", "ERROR"], env)
    assert replay.returncode == 0, replay.stderr
    env["BOTS_STATE_DIR"] = str(tmp_path / "state" / "replay")  # where a replay keeps its store

    exported = cli(["export", "--format", "csv"], env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    closed = [r for r in rows if r["status"] == "CLOSED"]
    assert len(closed) >= 30

    stats = cli(["stats", "--by", "bot_symbol", "--json"], env)
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        mine = sorted((r for r in closed if r["symbol"] == symbol), key=lambda r: (r["exit_time"], r["id"]))
        rs = [float(r["r_multiple"]) for r in mine]
        wins, losses = [x for x in rs if x > 0], [x for x in rs if x < 0]
        curve, peak, drawdown, streak, longest = 0.0, 0.0, 0.0, 0, 0
        for x in rs:
            curve += x
            peak = max(peak, curve)
            drawdown = max(drawdown, peak - curve)
            streak = streak + 1 if x < 0 else 0
            longest = max(longest, streak)
        got = figures[f"psar_bot {symbol}"]
        assert got["signals"] == len(rs)
        assert (got["wins"], got["losses"]) == (len(wins), len(losses))
        assert got["win_rate"] == pytest.approx(round(len(wins) / len(rs), 4), abs=1e-4)
        assert got["expectancy_r"] == pytest.approx(round(sum(rs) / len(rs), 4), abs=1e-4)
        assert got["total_r"] == pytest.approx(round(sum(rs), 4), abs=1e-4)
        assert got["max_drawdown_r"] == pytest.approx(round(drawdown, 4), abs=1e-4)
        assert got["longest_losing_streak"] == longest
        if losses:
            assert got["profit_factor"] == pytest.approx(round(sum(wins) / -sum(losses), 4), abs=1e-4)
        reasons = {r["exit_reason"] for r in mine}
        assert got["exits"] == pytest.approx(
            {
                reason: round(sum(r["exit_reason"] == reason for r in mine) / len(mine), 4)
                for reason in reasons
            },
            abs=1e-4,
        )

    table = cli(["stats"], env)
    assert table.returncode == 0, table.stderr
    assert "psar_bot" in table.stdout
    snippet = cli(["stats", "--suggest-exclusions", "3"], env)
    assert snippet.returncode == 0, snippet.stderr
    suggested = json.loads(snippet.stdout)["bots"]
    for bot, entry in suggested.items():
        assert set(entry["symbols"]) < {"BTC/USDT", "ETH/USDT", "SOL/USDT"}, bot
