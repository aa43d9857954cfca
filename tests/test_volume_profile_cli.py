"""The volume_profile.py command line, run as users run it: over replay files and the fake MEXC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.market.replay import aggregate, read_ohlcv_file
from common.prices import format_price
from common.types import Candles
from tests.fakes.mexc import FakeMexc
from tests.harness import H4_MS, REPO, SAMPLE, CliRun, avoid_candle_boundary, cli_env, sample_4h, serve_until
from tests.harness import write_config as write_bot_config
from volume_profile import VolumeProfile, analyze_volume_profile, calculate_volume_profile

pytestmark = pytest.mark.integration

SCRIPT = REPO / "volume_profile.py"
#: A moment inside the bundled data at which BTC/USDT 4h reads SHORT with levels (RSI 86.8, above VAH).
AT = "2024-03-05T00:00:00Z"
AT_MS = 1_709_596_800_000
#: The last closed candle served by the fake: a window of 200 candles ends there.
LIVE_LAST_CLOSED = 800


def _env(tmp_path: Path, mexc_url: str = "http://127.0.0.1:9") -> dict[str, str]:
    """The CLI's environment: a global_config.json with default risk, logs in ``tmp_path``."""
    write_bot_config(tmp_path)
    return cli_env(tmp_path, mexc_url, None)


def _run(args: list[str], tmp_path: Path, cwd: Path = REPO) -> CliRun:
    """Run ``python volume_profile.py ARGS`` to completion (no fake server involved)."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=_env(tmp_path),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return CliRun(done.returncode, done.stdout, done.stderr)


async def _run_async(args: list[str], env: dict[str, str], cwd: Path) -> CliRun:
    """Run the script while this event loop keeps serving the fake exchange."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return CliRun(process.returncode, stdout.decode(), stderr.decode())


def _closed_at(candles: Candles, at_ms: int, count: int) -> Candles:
    """The last ``count`` candles whose close time is at or before ``at_ms``."""
    end = int(np.searchsorted(candles.ts + candles.period_ms, at_ms, side="right"))
    return candles.slice(max(0, end - count), end)


def _hvn_prices(profile: VolumeProfile) -> list[float]:
    """Midpoints of the profile's high-volume rows (what the CLI reports as ``hvn``)."""
    return [float((profile.edges[i] + profile.edges[i + 1]) / 2) for i in profile.hvn_indices]


def _iso(ms: int) -> str:
    """``ms`` as the CLI writes times."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _btc_4h() -> Candles:
    """The bundled BTC/USDT 4h file, read independently of the replay source."""
    return read_ohlcv_file(SAMPLE / "BTC_USDT-4h.csv.gz", "BTC/USDT", "4h")


def test_replay_json_equals_the_profile_of_the_same_candles(tmp_path: Path) -> None:
    """--json over the replay at --at is the exact profile and analysis of the 200 candles closed by then."""
    window = _closed_at(_btc_4h(), AT_MS, 200)
    profile = calculate_volume_profile(window)
    analysis = analyze_volume_profile(window, profile)
    assert analysis.levels is not None  # the chosen moment exercises the levels

    run = _run(
        ["BTC/USDT", "--timeframe", "4h", "--source", "replay:data/sample", "--json", "--at", AT], tmp_path
    )

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    report: dict[str, Any] = json.loads(run.stdout)
    assert (report["symbol"], report["timeframe"], report["source"]) == ("BTC/USDT", "4h", "replay")
    assert (report["as_of"], report["candles"], report["tick_size"]) == (AT, 200, None)
    assert report["first_open"] == _iso(int(window.ts[0])) == "2024-01-31T16:00:00Z"
    assert report["last_close"] == AT
    assert report["poc"] == profile.poc_price
    assert report["vah"] == profile.vah
    assert report["val"] == profile.val
    assert report["hvn"] == _hvn_prices(profile)
    assert len(report["hvn"]) == 5
    assert report["value_area_pct"] == 70.0
    assert report["rows"] == 24
    assert report["total_volume"] == profile.total_volume
    assert report["edges"] == profile.edges.tolist()
    assert report["row_volume"] == profile.row_volume.tolist()
    assert report["analysis"] == {
        "bias": "SHORT",
        "score": -2,
        "factors": list(analysis.factors),
        "close": 68245.71,
        "rsi": analysis.rsi,
        "patterns": {},
        "levels": {"entry": 68245.71, "sl": analysis.levels.sl, "tps": list(analysis.levels.tps)},
        "rejection": None,
        "rejection_message": None,
    }


def test_replay_table_shows_the_formatted_values(tmp_path: Path) -> None:
    """Without --json the same reading is a table of formatted prices, levels included."""
    window = _closed_at(_btc_4h(), AT_MS, 200)
    profile = calculate_volume_profile(window)
    analysis = analyze_volume_profile(window, profile)
    assert analysis.levels is not None

    run = _run(["BTC/USDT", "--timeframe", "4h", "--source", "replay:data/sample", "--at", AT], tmp_path)

    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == (
        "BTC/USDT 4h (replay): 200 closed candles, 2024-01-31T16:00:00Z to 2024-03-05T00:00:00Z"
    )
    assert f"POC         {format_price(profile.poc_price)}" in lines
    assert f"VAH         {format_price(profile.vah)}" in lines
    assert f"VAL         {format_price(profile.val)}" in lines
    assert "Value area  70 % of the volume" in lines
    assert f"HVN         {', '.join(format_price(p) for p in _hvn_prices(profile))}" in lines
    assert lines[1:4] == ["POC         51310.33", "VAH         57409.53", "VAL         41884.28"]
    assert "Bias        SHORT (score -2)" in lines
    assert len(analysis.levels.tps) == 3
    assert lines[-5:] == [
        "Entry       68245.71",
        f"SL          {format_price(analysis.levels.sl)}",
        *(f"TP{n}         {format_price(tp)}" for n, tp in enumerate(analysis.levels.tps, start=1)),
    ]


def test_replay_1h_is_aggregated_from_15m_with_rows_and_value_area(tmp_path: Path) -> None:
    """1h (no file) comes from the 15m file; --candles, --rows and --value-area reach the calculation."""
    fifteen = read_ohlcv_file(SAMPLE / "BTC_USDT-15m.csv.gz", "BTC/USDT", "15m")
    hourly = aggregate(fifteen, "1h")
    window = hourly.tail(120)  # no --at: as of the end of the data
    profile = calculate_volume_profile(window, rows=30, value_area_pct=80.0)

    run = _run(
        [
            "BTC/USDT",
            "--source",
            "replay:data/sample",
            "--candles",
            "120",
            "--rows",
            "30",
            "--value-area",
            "0.8",
            "--json",
        ],
        tmp_path,
    )

    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["timeframe"] == "1h"
    assert report["as_of"] == report["last_close"] == "2024-09-06T04:00:00Z"
    assert (report["candles"], report["rows"], report["value_area_pct"]) == (120, 30, 80.0)
    assert (report["poc"], report["vah"], report["val"]) == (profile.poc_price, profile.vah, profile.val)
    assert report["hvn"] == _hvn_prices(profile)


@pytest.fixture
async def mexc() -> AsyncIterator[FakeMexc]:
    """The fake exchange serving BTC/USDT 4h history whose candle LIVE_LAST_CLOSED + 1 is forming now."""
    avoid_candle_boundary(H4_MS)
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        yield fake


async def test_live_json_equals_the_profile_of_the_closed_candles(mexc: FakeMexc, tmp_path: Path) -> None:
    """Live through ccxt against the fake: the profile of the 200 closed candles, never the forming one."""
    data = sample_4h()
    served_ts = serve_until(mexc, data, LIVE_LAST_CLOSED)
    first, end = LIVE_LAST_CLOSED - 199, LIVE_LAST_CLOSED + 1
    window = Candles(
        symbol="BTC/USDT",
        timeframe="4h",
        ts=served_ts[first:end],
        open=data.open[first:end],
        high=data.high[first:end],
        low=data.low[first:end],
        close=data.close[first:end],
        volume=data.volume[first:end],
    )
    profile = calculate_volume_profile(window)

    run = await _run_async(
        ["BTC/USDT", "--timeframe", "4h", "--json"], _env(tmp_path, mexc.base_url), tmp_path
    )

    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    report = json.loads(run.stdout)
    assert (report["source"], report["candles"], report["tick_size"]) == ("mexc", 200, 0.01)
    assert report["last_close"] == _iso(int(served_ts[LIVE_LAST_CLOSED]) + H4_MS)
    assert report["poc"] == profile.poc_price
    assert (report["vah"], report["val"]) == (profile.vah, profile.val)
    assert report["hvn"] == _hvn_prices(profile)
    assert report["row_volume"] == profile.row_volume.tolist()  # the same candles, no forming one


async def test_live_unknown_symbol_is_one_line_and_exit_1(mexc: FakeMexc, tmp_path: Path) -> None:
    """A symbol MEXC does not list: exit 1, the source's one-line problem with suggestions, no traceback."""
    run = await _run_async(["BTC/USDTT", "--timeframe", "4h"], _env(tmp_path, mexc.base_url), tmp_path)

    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == "error: symbol BTC/USDTT is not listed on MEXC; did you mean BTC/USDT?\n"
    assert [r.path for r in mexc.requests if r.path == "/api/v3/klines"] == []


def test_malformed_symbol_is_a_usage_error(tmp_path: Path) -> None:
    """BTCUSDT is not a unified symbol: one line, exit 2, before any network call."""
    run = _run(["BTCUSDT"], tmp_path)

    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == (
        "error: argument SYMBOL: symbol 'BTCUSDT' is not a ccxt unified symbol like BTC/USDT or "
        "BTC/USDT:USDT (see --help)\n"
    )


def test_missing_replay_directory_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A replay folder that does not exist: exit 1 and one line naming it."""
    missing = tmp_path / "nowhere"

    run = _run(["BTC/USDT", "--source", f"replay:{missing}"], tmp_path)

    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr == f"error: replay directory {missing} does not exist\n"
