"""`python -m bots stats` and `export` on the store of a backtest of real data, checked against its CSV."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.harness import REPO, SAMPLE, offline_env, run_bots

pytestmark = pytest.mark.integration


def test_stats_agree_with_an_independent_computation_from_the_export(tmp_path: Path) -> None:
    """After a psar_bot backtest, every stats figure equals what the test computes from the exported CSV."""
    config = tmp_path / "global_config.json"
    shipped = json.loads((REPO / "global_config.json").read_text(encoding="utf-8"))
    config.write_text(json.dumps({**shipped, "bots": {"psar_bot": shipped["bots"]["psar_bot"]}}))
    env = offline_env(tmp_path, config)
    report = tmp_path / "report"
    backtest = run_bots(["backtest", "psar_bot", "--data", str(SAMPLE), "--report", str(report)], env)
    assert backtest.returncode == 0, backtest.stderr
    store = ["--store", str(report)]  # the backtest's store is in its report folder

    exported = run_bots(["export", "--format", "csv", *store], env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    closed = [r for r in rows if r["status"] == "CLOSED"]
    assert len(closed) >= 30

    stats = run_bots(["stats", "--by", "bot_symbol", "--json", *store], env)
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

    table = run_bots(["stats", *store], env)
    assert table.returncode == 0, table.stderr
    assert "psar_bot" in table.stdout
    snippet = run_bots(["stats", "--suggest-exclusions", "3", *store], env)
    assert snippet.returncode == 0, snippet.stderr
    suggested = json.loads(snippet.stdout)["bots"]
    for bot, entry in suggested.items():
        assert set(entry["symbols"]) < {"BTC/USDT", "ETH/USDT", "SOL/USDT"}, bot
