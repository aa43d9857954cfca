"""Benchmark of the two deployment layouts: the fleet in one process against one process per bot.

``run()`` returns (metric, value, unit) rows for ``python -m bench`` (or ``python -m bench fleet``).

What runs: the real CLI as subprocesses, exactly as the systemd units start it, against the fake
MEXC server (``tests/fakes/mexc.py``) on 127.0.0.1, in dry-run (no Telegram token):

* the fleet layout: ``python -m bots run --all``, one process, every one of the 15 registered bots;
* the per-bot layout: ``python -m bots run NAME`` for each of the 15 bots, all started at once (as
  ``signal-bots.target`` does at boot) and sharing one state and one log directory.

Every bot keeps its shipped timeframe and parameters (``global_config.json``) but watches 50
symbols: the 13 spot bots 50 spot markets, funding_bot and liquidation_bot 50 perpetual swaps. As
in ``bench_market.py`` the names are copies of real series (``BTC0/USDT`` .. ``BTC4/USDT`` all carry
BTC's history): 10 ``binance_spot`` symbols x 5 for spot (1h built from 15m with the replay
source's ``aggregate``), the 4 ``binance_usdm_perp`` symbols with 15m and 1h files x 13 (cut to 50)
for swaps, with their real funding history and the 1,000-trade ETH/USDT fixture as every swap's
trades. Each series is served shifted so that its last candle is forming now, and only its last
``SERVED_CANDLES`` candles (the longest lookback is 1,000). The exchange section is the shipped one
(10 requests per second per process); the health endpoint is on a free port.

Measured per layout:

* startup time to the first cycle: from spawning the process to the STATUS event of its first
  cycle, seen in the process log (every event is also logged there, and the log names the process,
  where the shared event log does not). The runs are not ``--once``: a continuous run is what the
  units start (``--once`` also skips waiting for an exchange that is down), and it stays up while
  its memory is read. The per-bot layout reports its slowest process (when the last bot is up) and
  the mean. Once the supervisor's READY=1 is in the code, the STATUS event of the first cycle and
  READY=1 come from the same moment.
* peak RSS: ``VmHWM`` from ``/proc/<pid>/status`` right after the first cycle, before SIGTERM; for
  the per-bot layout the sum over the 15 processes (what the machine must hold) and the largest.
* for scale, the peak RSS of an interpreter that only imports ``bots.cli`` (ccxt, numpy, TA-Lib,
  matplotlib, python-telegram-bot): the part of each process that holds no market data.
* requests the fake exchange answered until every process had finished its first cycle: one
  process fetches each (symbol, timeframe) once for all its bots; separate processes fetch what
  they share once each.

Every process must then stop with exit status 0 on SIGTERM, or the benchmark fails. Without
``../shared/market-data`` the benchmark cannot build its symbols and raises.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from bots import REGISTRY
from bots.cli import _param_models
from common.config import load_config
from common.market.replay import aggregate, read_ohlcv_file
from common.types import Candles, timeframe_ms
from tests.fakes.csvdata import SHARED_DATA, load_funding_csv, load_trades_csv
from tests.fakes.mexc import FakeMexc, shift_to_now

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / "global_config.json"
SYMBOLS = 50
#: Candles served per series: more than the longest lookback (1,000) and its paging.
SERVED_CANDLES = 1_500
#: Spot bases (binance_spot) and swap bases (binance_usdm_perp files with 15m and 1h).
SPOT_BASES = ("AVAX", "BCH", "BTC", "DOGE", "ETH", "LINK", "LTC", "SOL", "TRX", "XRP")
SWAP_BASES = ("BTC", "DOGE", "ETH", "XRP")
#: Spot files by timeframe; 1h is aggregated from 15m.
SPOT_FILES = {"5m": "5m", "15m": "15m", "1h": "15m", "4h": "4h", "1d": "1d"}
SWAP_FILES = {"15m": "15m", "1h": "1h", "4h": "4h"}
TRADES_FILE = "trades/ETH_USDT-trades.csv.gz"
#: How long one process may take to its first cycle before the benchmark gives up.
START_LIMIT_S = 150.0
STOP_LIMIT_S = 40.0


@dataclass(frozen=True)
class Started:
    """One CLI process that reached its first cycle."""

    name: str
    startup_s: float
    peak_rss_mib: float


def _names(bases: Sequence[str]) -> list[str]:
    """``SYMBOLS`` names built from ``bases``: BTC0, ETH0, ..., BTC1, ... (copies of each base)."""
    copies = math.ceil(SYMBOLS / len(bases))
    return [f"{base}{copy}" for copy in range(copies) for base in bases][:SYMBOLS]


def _bench_config(path: Path, port: int) -> list[str]:
    """The shipped configuration with 50 symbols per bot; returns the bots' names."""
    config: dict[str, Any] = json.loads(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    spot = [f"{name}/USDT" for name in _names(SPOT_BASES)]
    swap = [f"{name}/USDT:USDT" for name in _names(SWAP_BASES)]
    for bot in config["bots"].values():
        bot["enabled"] = True
        bot["symbols"] = swap if any(":" in str(s) for s in bot["symbols"]) else spot
    config["health"] = {**config.get("health", {}), "port": port}
    path.write_text(json.dumps(config), encoding="utf-8")
    return list(config["bots"])


def _timeframes(config_path: Path) -> tuple[set[str], set[str]]:
    """The timeframes the spot bots and the swap bots read, with the shipped parameters."""
    config = load_config(config_path, _param_models())
    spot: set[str] = set()
    swap: set[str] = set()
    for name, bot in config.bots.items():
        needs = REGISTRY[name].needs(bot.params, bot.timeframe)
        wanted = swap if ":" in bot.symbols[0] else spot
        wanted.update((bot.timeframe, *needs.extra_timeframes))
    return spot, swap


def _serve(fake: FakeMexc, symbol_id: str, market: str, candles: Candles, now_ms: int) -> None:
    tail = candles.tail(SERVED_CANDLES)
    fake.add_candles(
        symbol_id,
        "spot" if market == "spot" else "swap",
        tail.timeframe,
        shift_to_now(tail.ts, timeframe_ms(tail.timeframe), now_ms),
        tail.open,
        tail.high,
        tail.low,
        tail.close,
        tail.volume,
    )


def _load(folder: str, base: str, file_tf: str, timeframe: str, symbol: str) -> Candles:
    path = SHARED_DATA / folder / f"{base}_USDT-{file_tf}.csv.gz"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: the fleet benchmark needs ../shared/market-data")
    candles = read_ohlcv_file(path, symbol, file_tf)
    return candles if file_tf == timeframe else aggregate(candles, timeframe)


def _fill(fake: FakeMexc, spot_tfs: set[str], swap_tfs: set[str]) -> None:
    """Register the 50 spot and 50 swap markets with their candles, funding and trades."""
    now = int(time.time() * 1000)
    loaded: dict[tuple[str, str, str], Candles] = {}
    for name in _names(SPOT_BASES):
        base = name.rstrip("0123456789")
        fake.add_spot(f"{name}USDT", name, "USDT", price_tick="0.00001", amount_step="0.0001")
        for tf in sorted(spot_tfs):
            key = ("binance_spot", base, tf)
            if key not in loaded:
                loaded[key] = _load("binance_spot", base, SPOT_FILES[tf], tf, f"{base}/USDT")
            _serve(fake, f"{name}USDT", "spot", loaded[key], now)
    trades = load_trades_csv(SHARED_DATA / TRADES_FILE)
    trade_ts = shift_to_now(trades.ts, 1, now - 1_000)
    for name in _names(SWAP_BASES):
        base = name.rstrip("0123456789")
        symbol_id = f"{name}_USDT"
        fake.add_swap(symbol_id, name, "USDT", price_unit=0.00001, contract_size=0.0001)
        for tf in sorted(swap_tfs):
            key = ("binance_usdm_perp", base, tf)
            if key not in loaded:
                loaded[key] = _load("binance_usdm_perp", base, SWAP_FILES[tf], tf, f"{base}/USDT:USDT")
            _serve(fake, symbol_id, "swap", loaded[key], now)
        funding = load_funding_csv(SHARED_DATA / "binance_usdm_funding" / f"{base}_USDT-funding_rate.csv.gz")
        fake.add_funding(symbol_id, shift_to_now(funding.ts[-200:], 8 * 3_600_000, now), funding.rate[-200:])
        fake.add_trades(symbol_id, "swap", trade_ts, None, trades.side, trades.price, trades.amount)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(work: Path, config: Path, mexc_url: str) -> dict[str, str]:
    """The CLI's environment for one layout: its own private directory under ``work``, no token."""
    work.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))}
    env.update(
        BOTS_CONFIG=str(config),
        BOTS_STATE_DIR=str(work / "state"),
        BOTS_LOG_DIR=str(work / "logs"),
        MEXC_API_BASE_URL=mexc_url,
        MPLCONFIGDIR=str(work / "matplotlib"),
    )
    return env


def _peak_rss_mib(pid: int) -> float:
    """``VmHWM`` (peak resident set size) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def _new_lines(log: Path, offset: int) -> tuple[list[bytes], int]:
    """The complete lines written to ``log`` after ``offset``, and the offset after them."""
    if not log.is_file():
        return [], offset
    with log.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    return complete.splitlines(), offset + len(complete)


async def _first_status(log: Path, process: asyncio.subprocess.Process, started: float) -> float:
    """Seconds from ``started`` until ``log`` has the STATUS line of the first cycle."""
    offset = 0
    while time.perf_counter() - started < START_LIMIT_S:
        if process.returncode is not None:
            raise RuntimeError(
                f"{log.name}: the process exited with {process.returncode} before its first cycle"
            )
        lines, offset = _new_lines(log, offset)
        if any(json.loads(line).get("event") == "STATUS" for line in lines if line.strip()):
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{log.name}: no first cycle within {START_LIMIT_S:.0f} s")


async def _run_layout(
    work: Path, config: Path, mexc: FakeMexc, commands: dict[str, list[str]]
) -> tuple[list[Started], int]:
    """Start one process per entry of ``commands`` (process name -> CLI arguments) at once, wait for
    each one's first cycle, read its peak RSS, stop them all; returns them and the requests served."""
    env = _environment(work, config, mexc.base_url)
    requests_before = len(mexc.requests)
    processes: dict[str, tuple[asyncio.subprocess.Process, float]] = {}
    for name, args in commands.items():
        started = time.perf_counter()
        # The console log (warnings and errors) of each process, kept for a failure's message.
        with (work / f"{name}.stderr").open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots",
                *args,
                "--log-level",
                "WARNING",
                env=env,
                cwd=work,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        processes[name] = (process, started)
    try:
        startups = await asyncio.gather(
            *(
                _first_status(work / "logs" / f"{name}.log", process, started)
                for name, (process, started) in processes.items()
            )
        )
        results = [
            Started(name, startup, _peak_rss_mib(process.pid))
            for (name, (process, _)), startup in zip(processes.items(), startups, strict=True)
        ]
        served = len(mexc.requests) - requests_before
    finally:
        for process, _ in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(STOP_LIMIT_S):
        codes = await asyncio.gather(*(process.wait() for process, _ in processes.values()))
    failed = {name: code for name, code in zip(processes, codes, strict=True) if code != 0}
    if failed:
        raise RuntimeError(f"processes did not stop cleanly on SIGTERM: {failed} (stderr in {work})")
    return results, served


async def _bench(work: Path) -> tuple[list[Started], int, list[Started], int]:
    port = _free_port()
    config = work / "global_config.json"
    bots = _bench_config(config, port)
    spot_tfs, swap_tfs = _timeframes(config)
    async with FakeMexc() as mexc:
        _fill(mexc, spot_tfs, swap_tfs)
        fleet, fleet_requests = await _run_layout(work / "fleet", config, mexc, {"fleet": ["run", "--all"]})
        per_bot, per_bot_requests = await _run_layout(
            work / "per-bot", config, mexc, {name: ["run", name] for name in bots}
        )
    return fleet, fleet_requests, per_bot, per_bot_requests


def imports_rss_mib() -> float:
    """Peak RSS of a fresh interpreter that only imports the CLI (``bots.cli``): what every process
    pays before it holds any data."""
    probe = "import resource, bots.cli; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    output = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return int(output.stdout.strip()) / 1024


def run() -> list[tuple[str, float, str]]:
    """Peak RSS and startup time to the first cycle of both layouts (15 bots x 50 symbols)."""
    baseline = imports_rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as temporary:
        fleet_runs, fleet_requests, per_bot, per_bot_requests = asyncio.run(_bench(Path(temporary)))
    (fleet,) = fleet_runs
    largest = max(per_bot, key=lambda started: started.peak_rss_mib)
    slowest = max(per_bot, key=lambda started: started.startup_s)
    total_rss = sum(started.peak_rss_mib for started in per_bot)
    label = f"{len(per_bot)} bots x {SYMBOLS} symbols"
    return [
        ("one interpreter after importing bots.cli, no data (every process pays it)", baseline, "MiB"),
        (
            f"fleet in one process ({label}): peak RSS (VmHWM after the first cycle)",
            fleet.peak_rss_mib,
            "MiB",
        ),
        ("fleet in one process: startup to the first cycle (spawn -> STATUS)", fleet.startup_s, "s"),
        ("fleet in one process: requests to the exchange until then", fleet_requests, "requests"),
        (f"per-bot processes ({len(per_bot)}, started together): sum of peak RSS", total_rss, "MiB"),
        (f"  largest process ({largest.name})", largest.peak_rss_mib, "MiB"),
        ("  sum / fleet", total_rss / fleet.peak_rss_mib, "x"),
        (f"per-bot processes: startup of the slowest ({slowest.name})", slowest.startup_s, "s"),
        ("per-bot processes: mean startup", mean(started.startup_s for started in per_bot), "s"),
        ("per-bot processes: requests to the exchange until all were up", per_bot_requests, "requests"),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:90s} {value:12.3f} {unit}")
