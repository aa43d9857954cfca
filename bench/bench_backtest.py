"""Benchmark of ``python -m bots backtest`` end to end: candles per second of the fleet, seconds per bot.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Each backtest is the real CLI in
a subprocess (interpreter start, imports, loading the files, the replay through the Runner, the
report with its PNGs), so the figures are what a user waits for. The window is short enough for
``make bench``: 14 days (2025-06-01 to 2025-06-15) of 1h candles of BTC, ETH, XRP and LTC from
``../shared/market-data/binance_usdm_perp`` with the funding files beside it (when that folder is
absent: the bundled ``data/sample`` BTC, ETH and SOL, 1h built from 15m, 2024-08-01 to 2024-08-15).
Every enabled bot of global_config.json runs with ``--timeframe 1h``; a candle is one closed candle
of one series handed to the bots (``candles`` in the report's backtest.json), counted over the
replayed span. The fleet runs once; then each bot alone over the same data, once each. Each run
gives two figures: end to end (the subprocess), and the replay alone (``wall_seconds`` in its
backtest.json: opening the files to the last cycle); their difference is the start-up (about 2 s of
interpreter and imports) and the report.

The full-year run and its figures are in ARCHITECTURE.md ("Backtests").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bots import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "market-data"
PERP, FUNDING = SHARED / "binance_usdm_perp", SHARED / "binance_usdm_funding"
SAMPLE = ROOT / "data" / "sample"


def _window() -> tuple[list[str], list[str], str, str, str]:
    """(data folders, symbols, from, to, label) of the benchmark's window."""
    if PERP.is_dir() and FUNDING.is_dir():
        symbols = ["BTC/USDT", "ETH/USDT", "XRP/USDT", "LTC/USDT"]
        return [str(PERP), str(FUNDING)], symbols, "2025-06-01", "2025-06-15", "binance_usdm_perp"
    return [str(SAMPLE)], ["BTC/USDT", "ETH/USDT", "SOL/USDT"], "2024-08-01", "2024-08-15", "data/sample"


def _backtest(names: list[str], workdir: Path, report: Path) -> tuple[float, dict[str, object]]:
    """Run the CLI backtest of ``names`` (or ``--all``) over the window; its wall time and backtest.json."""
    folders, symbols, start, end, _ = _window()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))}
    env.update(
        BOTS_CONFIG=str(ROOT / "global_config.json"),
        BOTS_STATE_DIR=str(workdir / "state"),
        BOTS_LOG_DIR=str(workdir / "logs"),
    )
    command = [sys.executable, "-m", "bots", "backtest", *(names or ["--all"])]
    command += ["--data", ",".join(folders), "--from", start, "--to", end, "--timeframe", "1h"]
    command += ["--symbols", *symbols, "--report", str(report), "--log-level", "ERROR"]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"backtest {' '.join(names) or '--all'} failed: {done.stderr.strip()[-500:]}")
    facts: dict[str, object] = json.loads((report / "backtest.json").read_text(encoding="utf-8"))
    return seconds, facts


def _replay_s(facts: dict[str, object]) -> float:
    """The seconds the replay itself took (backtest.json's ``wall_seconds``: from opening the files to
    the last cycle, without the interpreter's start, the imports and the report)."""
    seconds = facts["wall_seconds"]
    assert isinstance(seconds, float)
    return seconds


def run() -> list[tuple[str, float, str]]:
    """The fleet's backtest (candles per second end to end, seconds) and each bot's alone (seconds)."""
    _, symbols, start, end, origin = _window()
    span = f"{origin} {len(symbols)} symbols 1h {start}..{end}"
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as temporary:
        workdir = Path(temporary)
        seconds, facts = _backtest([], workdir, workdir / "fleet")
        bots = facts["bots"]
        candles = facts["candles"]
        assert isinstance(bots, dict)
        assert isinstance(candles, int)
        rows.append((f"backtest --all ({len(bots)} bots), {span}: {candles:,} candles", seconds, "s"))
        rows.append(("backtest --all: candles per second end to end", candles / seconds, "candles/s"))
        rows.append(("backtest --all: the replay alone (no start-up, no report)", _replay_s(facts), "s"))
        for name in REGISTRY:
            if name not in bots:
                continue
            alone, facts = _backtest([name], workdir, workdir / name)
            rows.append((f"backtest {name} alone, same data: end to end", alone, "s"))
            rows.append((f"backtest {name} alone, same data: the replay alone", _replay_s(facts), "s"))
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:100s} {value:12.3f} {unit}")
