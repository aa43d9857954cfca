"""Liveness, readiness, the metrics registry and the HTTP endpoints, piece by piece."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bots import cli
from common.clock import WallClock
from common.config import ExchangeSettings, FleetConfig, HealthSettings
from common.health import HealthChecks, HealthServer, Probes, RunState, store_writable
from common.market import SeriesKey
from common.market.mexc import MexcSource, request_endpoint
from common.metrics import FleetMetrics, LiveValues
from common.observe import Observer
from common.store import Store
from tests.fakes.mexc import FakeMexc, Fault
from tests.harness import SAMPLE, cli_env, metric_samples, run_cli, sample_4h, serve_until, write_config


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.unit
def test_a_sleeping_loop_is_alive_and_a_cycle_without_progress_is_not() -> None:
    """Idle for an hour: alive. Busy: alive while requests keep answering, dead 30.5 s after the last."""
    ticks = Ticks()
    state = RunState(30.0, monotonic=ticks)
    ticks.now += 3600
    assert state.alive() is True
    state.cycle_started()
    ticks.now += 25
    state.request_done("/api/v3/klines", 0.2, None)
    ticks.now += 25
    state.request_done("/api/v3/klines", 10.0, "RequestTimeout")
    ticks.now += 30
    assert state.alive() is True
    ticks.now += 0.5
    assert state.alive() is False
    assert state.live_problems() == [
        "loop stuck: the cycle in progress has made no progress for 30 s (limit 30 s)"
    ]
    state.cycle_finished(seconds=80.5, due=3, fetched=3, completed=True)
    assert state.alive() is True
    assert state.live_problems() == []


@pytest.mark.unit
def test_the_health_probe_keeps_no_stuck_loop_alive() -> None:
    """Probe requests answered while a cycle hangs are not the loop's progress: it still goes stale."""
    ticks = Ticks()
    state = RunState(30.0, monotonic=ticks)
    state.cycle_started()
    for _ in range(8):
        ticks.now += 5
        state.request_done("/api/v3/time", 0.01, None, probe=True)
    assert state.alive() is False
    assert state.last_exchange_ok is None


@pytest.mark.unit
def test_the_first_successful_cycle_calls_back_once() -> None:
    """A cycle that fetched nothing of what was due, or was cut short, is not the first success."""
    calls: list[int] = []
    state = RunState(10.0, on_first_cycle=lambda: calls.append(state.cycles_ok))
    state.cycle_finished(seconds=1, due=4, fetched=0, completed=True)
    state.cycle_finished(seconds=1, due=4, fetched=4, completed=False)
    assert (calls, state.cycles_ok) == ([], 0)
    state.cycle_finished(seconds=1, due=4, fetched=2, completed=True)
    state.cycle_finished(seconds=1, due=0, fetched=0, completed=True)
    assert (calls, state.cycles_ok) == ([1], 2)


@pytest.mark.integration
def test_the_store_check_needs_the_write_lock(tmp_path: Path) -> None:
    """Writable store: None. Another connection holding the write lock: one line naming the store."""
    store = Store(tmp_path)
    assert store_writable(store.path) is None
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert (
            store_writable(store.path, timeout_s=0.1)
            == f"store {store.path}: not writable: database is locked"
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    assert store_writable(tmp_path / "missing.sqlite3") == (
        f"store {tmp_path / 'missing.sqlite3'}: cannot open for writing: unable to open database file"
    )


class CountingProbe:
    """An exchange or Telegram probe double that answers what it is told and counts its calls."""

    def __init__(self, answer: str | None = None) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self, timeout_s: float) -> str | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        return self.answer


def _checks(
    tmp_path: Path,
    ticks: Ticks,
    exchange: CountingProbe,
    telegram: CountingProbe | None,
    breakers: dict[str, str],
) -> tuple[RunState, HealthChecks]:
    store = Store(tmp_path)
    store.close()
    state = RunState(30.0, monotonic=ticks)
    probes = Probes(
        store_path=store.path,
        exchange=exchange,
        breakers=lambda: breakers,
        telegram=telegram,
        bots=lambda: {"psar_bot": {"open_signals": 0}},
    )
    return state, HealthChecks(state, probes, monotonic=ticks)


@pytest.mark.integration
async def test_readiness_names_each_failing_check_and_caches_probes(tmp_path: Path) -> None:
    """Before a cycle, with a breaker open and both services down: four lines; probes asked once per 5 s."""
    ticks = Ticks()
    exchange, telegram = (
        CountingProbe("fetch_time: RequestTimeout: timed out"),
        CountingProbe("NetworkError: x"),
    )
    breakers = {"mexc-spot": "open", "mexc-swap": "closed", "mexc-markets": "half_open"}
    state, checks = _checks(tmp_path, ticks, exchange, telegram, breakers)

    first = await asyncio.gather(checks.ready_problems(), checks.ready_problems(), checks.ready_problems())

    assert first[0] == [
        "starting: no cycle has completed with candles yet",
        "exchange: circuit breaker mexc-spot is open (requests are refused until it half-opens)",
        "exchange unreachable: fetch_time: RequestTimeout: timed out",
        "telegram unreachable: NetworkError: x",
    ]
    assert first[1] == first[0] == first[2]
    assert (exchange.calls, telegram.calls) == (1, 1)
    state.cycle_finished(seconds=1, due=1, fetched=1, completed=True)
    breakers["mexc-spot"] = "closed"
    exchange.answer = telegram.answer = None
    ticks.now += 4.9
    assert len(await checks.ready_problems()) == 2  # the cached answers still stand
    ticks.now += 0.1
    assert await checks.ready_problems() == []
    assert (exchange.calls, telegram.calls) == (2, 2)


@pytest.mark.integration
async def test_an_answered_exchange_request_spares_the_probe_and_dry_run_skips_telegram(
    tmp_path: Path,
) -> None:
    """A request answered within 5 s shows the exchange is up (no probe); no Telegram probe in dry-run."""
    ticks = Ticks()
    exchange = CountingProbe("should not be asked")
    state, checks = _checks(tmp_path, ticks, exchange, None, {})
    state.cycle_started()
    state.request_done("/api/v3/klines", 0.1, None)
    state.cycle_finished(seconds=1, due=1, fetched=1, completed=True)
    ticks.now += 5.0

    assert await checks.ready_problems() == []
    assert exchange.calls == 0
    ticks.now += 0.1
    assert await checks.ready_problems() == ["exchange unreachable: should not be asked"]
    assert exchange.calls == 1


@pytest.mark.unit
def test_metrics_registries_are_independent_and_parse() -> None:
    """Two FleetMetrics count apart; the exposition parses with prometheus_client's parser, gauges live."""
    first, second = FleetMetrics(), FleetMetrics()
    first.request_done("/api/v3/klines", 0.1, None)
    first.request_done("/api/v3/klines", 3.0, "RequestTimeout")
    first.cycle_finished(seconds=0.3, due=2, fetched=2, completed=True)
    first.cycle_finished(seconds=9.0, due=2, fetched=0, completed=False)
    first.alert_sent("psar_bot", "signal")
    first.alert_failed("psar_bot", "result")
    first.scan_failed("most_bot", "BTC/USDT", RuntimeError("boom"))
    closes: dict[tuple[str, str], int | None] = {("BTC/USDT", "4h"): 1_000_000, ("ETH/USDT", "1h"): None}
    first.watch(
        LiveValues(
            open_signals=lambda: {"psar_bot": 2, "most_bot": 0},
            pending_alerts=lambda: 7,
            newest_closes=lambda: closes,
            breakers=lambda: {"mexc-spot": "open", "mexc-swap": "closed", "mexc-markets": "half_open"},
            now_ms=lambda: 1_090_500,
        )
    )

    samples = metric_samples(first.exposition().decode())
    other = metric_samples(second.exposition().decode())

    assert samples["signal_fleet_exchange_requests_total"] == {(("endpoint", "/api/v3/klines"),): 2.0}
    assert samples["signal_fleet_exchange_errors_total"] == {
        (("endpoint", "/api/v3/klines"), ("kind", "RequestTimeout")): 1.0
    }
    assert samples["signal_fleet_cycles_total"] == {(): 1.0}
    assert samples["signal_fleet_cycle_duration_seconds_count"] == {(): 1.0}
    assert samples["signal_fleet_cycle_duration_seconds_sum"] == {(): 0.3}
    assert samples["signal_fleet_alerts_sent_total"] == {(("bot", "psar_bot"), ("kind", "signal")): 1.0}
    assert samples["signal_fleet_alerts_failed_total"] == {(("bot", "psar_bot"), ("kind", "result")): 1.0}
    assert samples["signal_fleet_strategy_errors_total"] == {(("bot", "most_bot"),): 1.0}
    assert samples["signal_fleet_alerts_pending"] == {(): 7.0}
    assert samples["signal_fleet_open_signals"] == {(("bot", "most_bot"),): 0.0, (("bot", "psar_bot"),): 2.0}
    assert samples["signal_fleet_circuit_breaker_state"] == {
        (("breaker", "mexc-markets"),): 1.0,
        (("breaker", "mexc-spot"),): 2.0,
        (("breaker", "mexc-swap"),): 0.0,
    }
    assert samples["signal_fleet_last_candle_age_seconds"] == {
        (("symbol", "BTC/USDT"), ("timeframe", "4h")): 90.5
    }
    assert "signal_fleet_exchange_requests_total" not in other
    assert "signal_fleet_alerts_pending" not in other  # nothing watched yet: no live gauges
    assert other["signal_fleet_cycles_total"] == {(): 0.0}


def _busy_port() -> socket.socket:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.integration
async def test_the_endpoints_answer_with_the_agreed_json_shape(tmp_path: Path) -> None:
    """/health/live 200, /health/ready and /health 503 before the first cycle, then 200; /metrics text."""
    ticks = Ticks()
    state, checks = _checks(tmp_path, ticks, CountingProbe(None), None, {"mexc-spot": "closed"})
    metrics = FleetMetrics()
    server = HealthServer(checks, metrics, 0)
    assert await server.start() is None
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            before = {
                path: await _fetch(http, base + path) for path in ("/health/live", "/health/ready", "/health")
            }
            state.cycle_finished(seconds=1, due=1, fetched=1, completed=True)
            ticks.now += 10
            after = await _fetch(http, base + "/health")
            async with http.get(base + "/metrics") as answer:
                metrics_status, content_type = answer.status, answer.headers["Content-Type"]
                text = await answer.text()
    finally:
        await server.close()

    starting = ["starting: no cycle has completed with candles yet"]
    bots = {"psar_bot": {"open_signals": 0}}
    assert before["/health/live"] == (
        200,
        {"status": "ok", "live": True, "ready": False, "problems": [], "bots": bots},
    )
    assert before["/health/ready"] == (
        503,
        {"status": "unhealthy", "live": True, "ready": False, "problems": starting, "bots": bots},
    )
    assert before["/health"] == before["/health/ready"]
    assert after == (200, {"status": "ok", "live": True, "ready": True, "problems": [], "bots": bots})
    assert metrics_status == 200
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert metric_samples(text)["signal_fleet_cycles_total"] == {(): 0.0}


async def _fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as answer:
        return answer.status, json.loads(await answer.text())


@pytest.mark.integration
async def test_a_port_in_use_is_one_line_and_nothing_is_served(tmp_path: Path) -> None:
    """Binding a taken port returns the one line the CLI logs; the server stays off."""
    ticks = Ticks()
    _, checks = _checks(tmp_path, ticks, CountingProbe(None), None, {})
    holder = _busy_port()
    port = holder.getsockname()[1]
    try:
        server = HealthServer(checks, FleetMetrics(), port)
        problem = await server.start()
    finally:
        holder.close()

    assert problem == (
        f"health: port 127.0.0.1:{port} is in use; running without /health and /metrics "
        "(set health.port or --health-port)"
    )
    assert server.port is None
    await server.close()


@pytest.mark.unit
def test_a_contract_path_is_labelled_once_for_every_market() -> None:
    """Market ids in a path become {symbol}; spot paths (symbol in the query) stay as they are."""
    ids: dict[str, list[object]] = {"BTC_USDT": [], "BTCUSDT": []}
    assert request_endpoint("http://h/api/v1/contract/kline/BTC_USDT?interval=Min60", ids) == (
        "/api/v1/contract/kline/{symbol}"
    )
    assert request_endpoint("http://h/api/v1/contract/funding_rate/history?symbol=BTC_USDT", ids) == (
        "/api/v1/contract/funding_rate/history"
    )
    assert request_endpoint("https://api.mexc.com/api/v3/klines?symbol=BTCUSDT", ids) == "/api/v3/klines"
    assert (
        request_endpoint("http://h/api/v1/contract/depth/BTC_USDT", None) == "/api/v1/contract/depth/BTC_USDT"
    )


class RecordingObserver(Observer):
    """Keeps every request the source reported."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None, bool]] = []

    def request_done(self, endpoint: str, seconds: float, error: str | None, *, probe: bool = False) -> None:
        """Record (endpoint, error, probe)."""
        self.requests.append((endpoint, error, probe))


@pytest.mark.integration
async def test_the_source_reports_every_request_and_marks_the_probes() -> None:
    """MexcSource reports each HTTP request with its outcome; ping's are probes, failed ones say why."""
    observer = RecordingObserver()
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT")
        serve_until(fake, sample_4h(), 400)
        source = MexcSource(
            ExchangeSettings(timeout_ms=2000), WallClock(), base_url=fake.base_url, observer=observer
        )
        try:
            assert await source.open([SeriesKey("BTC/USDT", "4h")]) == []
            await source.closed_candles("BTC/USDT", "4h", 50)
            assert await source.ping(2.0) is None
            fake.inject(Fault.http_500())
            problem = await source.ping(2.0)
        finally:
            await source.close()

    assert problem is not None
    assert problem.startswith("fetch_time: ExchangeNotAvailable: ")
    assert observer.requests == [
        ("/api/v3/exchangeInfo", None, False),
        ("/api/v1/contract/detail", None, False),
        ("/api/v3/klines", None, False),
        ("/api/v3/time", None, True),
        ("/api/v3/time", "ExchangeNotAvailable", True),
    ]
    assert [r.path for r in fake.requests] == [endpoint for endpoint, _, _ in observer.requests]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("argv", "health", "expected"),
    [
        (["run", "--all"], {}, 9464),
        (["run", "--all", "--once"], {}, None),
        (["run", "--all"], {"fleet": False}, None),
        (["run", "psar_bot"], {}, None),
        (["run", "psar_bot"], {"per_bot": True, "port": 9500}, 9500),
        (["run", "psar_bot", "--health-port", "9600"], {}, 9600),
        (["run", "psar_bot", "--once", "--health-port", "9600"], {}, 9600),
        (["run", "--all", "--health-port", "0"], {}, None),
    ],
)
def test_where_a_run_serves_its_endpoints(
    argv: list[str], health: dict[str, Any], expected: int | None
) -> None:
    """--health-port wins (0: off); else health.fleet for --all, health.per_bot for named bots, not --once."""
    config = FleetConfig.defaults()
    config = dataclasses.replace(config, health=HealthSettings(**health))

    assert cli._health_port(cli._parser().parse_args(argv), config, replay=False) == expected


@pytest.mark.integration
async def test_a_replay_refuses_a_health_port_and_a_bad_port_is_a_usage_error(tmp_path: Path) -> None:
    """--health-port with a replay: one line, exit 2. --health-port 70000: argparse names it, exit 2."""
    write_config(tmp_path)
    env = cli_env(tmp_path, "http://127.0.0.1:9", None)

    replay = await run_cli(
        ["run", "--all", "--source", f"replay:{SAMPLE}", "--health-port", "9500"], env, tmp_path
    )
    bad = await run_cli(["run", "--all", "--health-port", "70000"], env, tmp_path)

    assert replay.returncode == 2
    assert (
        replay.stderr
        == "error: run: --health-port does not apply to a replay (it serves no health endpoints)\n"
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == (
        "python -m bots run: error: argument --health-port: "
        "'70000' is not a port number (0 to 65535; 0 turns it off)"
    )
