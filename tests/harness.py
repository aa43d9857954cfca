"""Helpers for end-to-end tests: run the real CLI as a subprocess against the local fakes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from common.clock import Clock
from common.config import BotSettings, FleetConfig
from common.events import EventLog
from common.market import MarketSource
from common.notifier import ConsoleNotifier
from common.observe import NO_OBSERVER, Observer
from common.runner import BotRuntime, Runner
from common.store import Store
from tests.fakes.csvdata import OhlcvArrays, load_ohlcv_csv
from tests.fakes.mexc import FakeMexc, shift_to_now
from tp_sl_calculator import RiskSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"

#: Sentinels that must never appear in any log, state file or output.
TOKEN = "987654321:AAsentinelTOKENsentinelTOKENsentinel12"
MEXC_KEY = "SENTINELmexcAPIKEYvalue456"
MEXC_SECRET = "SENTINELmexcSECRETvalue123"
CHAT = "-1001234567890"
H4_MS = 4 * 3_600_000


@dataclass(frozen=True)
class CliRun:
    """What a finished CLI subprocess left behind."""

    returncode: int
    stdout: str
    stderr: str


def sample_4h(symbol_stem: str = "BTC_USDT") -> OhlcvArrays:
    """The bundled 4h history of one symbol (always present: it ships with the repo)."""
    return load_ohlcv_csv(SAMPLE / f"{symbol_stem}-4h.csv.gz")


def write_config(directory: Path, bot: dict[str, Any] | None = None, **sections: Any) -> Path:
    """A global_config.json with psar_bot on BTC/USDT 4h (overridable) and no close delay."""
    psar: dict[str, Any] = {
        "symbols": ["BTC/USDT"],
        "timeframe": "4h",
        "cooldown_minutes": 240,
        "params": {"lookback": 300},
        "risk": {"sl_method": "structure", "tp_method": "atr", "tp_multiples": [3.0, 5.0], "min_rr": 1.5},
    }
    psar.update(bot or {})
    config = {"exchange": {"candle_close_delay_s": 0, "timeout_ms": 3000}, "bots": {"psar_bot": psar}}
    config.update(sections)
    path = directory / "global_config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def cli_env(tmp_path: Path, mexc_url: str, telegram_url: str | None, **extra: str) -> dict[str, str]:
    """Environment for the CLI: fakes' URLs, sentinel secrets, private state and log dirs."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))
    }
    env.update(
        BOTS_CONFIG=str(tmp_path / "global_config.json"),
        BOTS_STATE_DIR=str(tmp_path / "state"),
        BOTS_LOG_DIR=str(tmp_path / "logs"),
        MEXC_API_BASE_URL=mexc_url,
        MEXC_API_KEY=MEXC_KEY,
        MEXC_API_SECRET=MEXC_SECRET,
        TELEGRAM_CHAT_ID=CHAT,
        PYTHONUNBUFFERED="1",
    )
    if telegram_url is not None:
        env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_BASE_URL=telegram_url)
    env.update(extra)
    return env


def offline_env(tmp_path: Path, config: Path) -> dict[str, str]:
    """Environment for a CLI run that needs no server: ``config``, private state and log dirs, no
    Telegram or MEXC variables."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))
    }
    env.update(
        BOTS_CONFIG=str(config),
        BOTS_STATE_DIR=str(tmp_path / "state"),
        BOTS_LOG_DIR=str(tmp_path / "logs"),
    )
    return env


def run_bots(args: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = 300.0) -> CliRun:
    """Run ``python -m bots ARGS`` to completion in ``cwd`` (blocking: for tests without servers)."""
    done = subprocess.run(
        [sys.executable, "-m", "bots", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


async def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """Start ``python -m bots ARGS`` (the real CLI) in ``cwd``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 60.0) -> CliRun:
    """Run the CLI to completion (the fakes keep serving on this event loop meanwhile)."""
    process = await start_cli(args, env, cwd)
    async with asyncio.timeout(timeout):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(), stderr.decode())


async def sigterm_cli(process: asyncio.subprocess.Process, timeout: float = 30.0) -> tuple[str, float]:
    """SIGTERM a running CLI and wait for it to exit: its stderr and the seconds the exit took."""
    process.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    async with asyncio.timeout(timeout):
        _, stderr = await process.communicate()
    return stderr.decode(), time.monotonic() - sent_at


def avoid_candle_boundary(period_ms: int, margin_s: float = 30.0) -> None:
    """Sleep past a candle close if one is due within ``margin_s``: the fake's forming candle would
    otherwise close between serving and checking, and the test would see one candle more."""
    now = time.time()
    until_close = period_ms / 1000 - now % (period_ms / 1000)
    if until_close < margin_s:
        time.sleep(until_close + 1)


def serve_until(
    fake: FakeMexc,
    candles: OhlcvArrays,
    last_closed: int,
    symbol_id: str = "BTCUSDT",
    timeframe: str = "4h",
    period_ms: int = H4_MS,
) -> np.ndarray:  # type: ignore[type-arg,unused-ignore]
    """Serve candles[: last_closed + 2] shifted so that candle ``last_closed + 1`` is forming now.

    Returns the shifted timestamps of what is served (the forming candle included).
    """
    end = last_closed + 2
    ts = shift_to_now(candles.ts[:end], period_ms, int(time.time() * 1000))
    fake.add_candles(
        symbol_id,
        "spot",
        timeframe,
        ts,
        candles.open[:end],
        candles.high[:end],
        candles.low[:end],
        candles.close[:end],
        candles.volume[:end],
    )
    return ts


@contextlib.asynccontextmanager
async def mexc_with_psar_signal() -> AsyncIterator[FakeMexc]:
    """The fake exchange serving BTC/USDT 4h history whose newest closed candle carries a psar signal."""
    # Imported here: tests.test_e2e_psar imports this module.
    from tests.test_e2e_psar import _first_signal_bar  # noqa: PLC0415

    avoid_candle_boundary(H4_MS)
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        data = sample_4h()
        serve_until(fake, data, _first_signal_bar(data))
        yield fake


def bot_runtime(strategy: Any, timeframe: str, symbols: Sequence[str], params: BaseModel) -> BotRuntime:
    """A BotRuntime for a strategy built in a test (defaults for everything but what is given)."""
    settings = BotSettings(
        name=strategy.name,
        enabled=True,
        symbols=tuple(symbols),
        timeframe=timeframe,
        cooldown_ms=0,
        max_open_signals=5,
        timeout_ms=86_400_000,
        params=params,
        risk=RiskSettings(),
    )
    return BotRuntime(settings=settings, strategy=strategy, needs=strategy.needs(params, timeframe))


def in_process_runner(
    tmp_path: Path,
    bots: list[BotRuntime],
    source: MarketSource,
    clock: Clock,
    stop: asyncio.Event,
    replay_from_ms: int | None = None,
    *,
    observer: Observer = NO_OBSERVER,
    console: io.StringIO | None = None,
) -> Runner:
    """The real Runner over ``source``, with a store, event log and a console notifier into a buffer
    (``console``, or a fresh one), reporting to ``observer``; ``replay_from_ms`` is a replay's
    ``--start``."""
    store = Store(tmp_path / "state")
    return Runner(
        bots=bots,
        source=source,
        store=store,
        notifier=ConsoleNotifier(store, clock, console or io.StringIO(), observer=observer),
        clock=clock,
        events=EventLog(tmp_path / "events", clock),
        config=FleetConfig.defaults(),
        stop=stop,
        replay_from_ms=replay_from_ms,
        observer=observer,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server the test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def metric_samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of a Prometheus exposition, parsed by prometheus_client's own parser:
    name -> {sorted (label, value) pairs: value}; the ``_created`` timestamps are left out."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out
