"""Liveness, readiness and the HTTP endpoints that report them (aiohttp, 127.0.0.1 only).

Liveness (:class:`RunState`): the loop is alive when it is waiting for the next candle close, or
when the cycle in progress has made progress (started, or had an exchange request answered or
failed) within the window (systemd's watchdog period, else ``health.live_window_s``). A healthy
loop sleeping for hours until a 4h close is alive; a cycle whose fetch hangs is not once the window
has passed. An event loop blocked outright cannot answer at all, nor ping systemd.

Readiness (:class:`HealthChecks`): the configuration is valid (it was, or the process would not
run), a cycle has completed with candles, the store takes a write lock, no exchange circuit breaker
is open and the exchange answers (an answered request within the last few seconds counts,
otherwise one ``fetch_time`` probe), and Telegram answers ``getMe`` (or the run is a dry-run).
Probe results are kept ``PROBE_CACHE_S`` seconds so that frequent checks cost the exchange
nothing extra; each probe is bounded by ``PROBE_TIMEOUT_S``.

Endpoints (:class:`HealthServer`): ``/health/live`` (200 or 503; never waits for a probe: its
``ready`` is the last readiness verdict), ``/health/ready`` (200 or 503), ``/health`` (200 when
both hold, else 503) and ``/metrics`` (Prometheus text format). The health bodies are JSON::

    {"status": "ok" | "unhealthy", "live": bool, "ready": bool,
     "problems": ["one line each"], "bots": {name: {...}}}

``status`` is the verdict of the endpoint asked; ``problems`` has one line per reason it failed
(``/health/live`` lists only liveness problems).
"""

from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from common.logging_config import get_logger
from common.metrics import FleetMetrics
from common.observe import Observer

log = get_logger(__name__)

#: How long a probe's answer (exchange, Telegram, store) stands for the next checks.
PROBE_CACHE_S = 5.0
#: The longest a probe may take before it counts as unreachable.
PROBE_TIMEOUT_S = 5.0
#: Content type of the Prometheus text exposition format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class RunState(Observer):
    """What the health checks and the watchdog know about the run, kept up to date by the hooks."""

    def __init__(
        self,
        window_s: float,
        *,
        on_first_cycle: Callable[[], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``window_s``: how long a cycle may go without progress and still count as alive."""
        self.window_s = window_s
        self._monotonic = monotonic
        self._on_first_cycle = on_first_cycle
        self._busy = False
        self._last_tick = monotonic()
        self.cycles_ok = 0
        self.last_exchange_ok: float | None = None  # monotonic time of the last answered request
        self.scan_errors: dict[str, int] = {}
        self.last_scan_error: dict[str, str] = {}

    # -- hooks ------------------------------------------------------------------------------------

    def cycle_started(self) -> None:
        """The loop is busy from now on; starting is progress."""
        self._busy = True
        self._last_tick = self._monotonic()

    def cycle_finished(self, *, seconds: float, due: int, fetched: int, completed: bool) -> None:
        """Idle again; a completed cycle that fetched what was due counts as successful."""
        self._busy = False
        self._last_tick = self._monotonic()
        if completed and (fetched > 0 or due == 0):
            self.cycles_ok += 1
            if self.cycles_ok == 1 and self._on_first_cycle is not None:
                self._on_first_cycle()

    def request_done(self, endpoint: str, seconds: float, error: str | None, *, probe: bool = False) -> None:
        """An answered (or failed) request of the loop is progress; an answered one shows the exchange is up.

        The health probe's own requests are neither: they would keep a stuck loop looking alive.
        """
        if probe:
            return
        now = self._monotonic()
        self._last_tick = now
        if error is None:
            self.last_exchange_ok = now

    def scan_failed(self, bot: str, symbol: str, error: BaseException) -> None:
        """Remember the bot's newest failure for ``/health``."""
        self.scan_errors[bot] = self.scan_errors.get(bot, 0) + 1
        self.last_scan_error[bot] = f"{symbol}: {type(error).__name__}: {error}".splitlines()[0][:300]

    # -- verdicts ---------------------------------------------------------------------------------

    def stalled_s(self) -> float:
        """Seconds the cycle in progress has gone without progress (0 while waiting between cycles)."""
        return self._monotonic() - self._last_tick if self._busy else 0.0

    def alive(self) -> bool:
        """True while waiting for the next close, or while the cycle in progress moves."""
        return self.stalled_s() <= self.window_s

    def live_problems(self) -> list[str]:
        """One line when the loop is stuck, else none."""
        if self.alive():
            return []
        return [
            f"loop stuck: the cycle in progress has made no progress for {self.stalled_s():.0f} s "
            f"(limit {self.window_s:g} s)"
        ]


@dataclass
class _Cached:
    problem: str | None = None
    at: float | None = None  # monotonic time of the probe
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Probes:
    """How readiness reaches the outside world; a probe returns None when fine, else one line."""

    store_path: Path
    exchange: Callable[[float], Awaitable[str | None]]  # MexcSource.ping
    breakers: Callable[[], Mapping[str, str]]  # MexcSource.breakers
    telegram: Callable[[float], Awaitable[str | None]] | None  # None in a dry-run
    bots: Callable[[], dict[str, dict[str, Any]]]  # the per-bot details of /health


def store_writable(path: Path, timeout_s: float = 2.0) -> str | None:
    """None when the SQLite store at ``path`` takes a write lock within ``timeout_s``, else one line."""
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=rw", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        return f"store {path}: cannot open for writing: {exc}"
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return f"store {path}: not writable: {exc}"
    finally:
        db.close()
    return None


@dataclass
class HealthReport:
    """One answer of the health endpoints."""

    live: bool
    ready: bool
    problems: list[str]
    bots: dict[str, dict[str, Any]]

    def body(self, verdict: bool) -> dict[str, Any]:
        """The JSON body, ``status`` being the verdict of the endpoint asked."""
        return {
            "status": "ok" if verdict else "unhealthy",
            "live": self.live,
            "ready": self.ready,
            "problems": self.problems,
            "bots": self.bots,
        }


class HealthChecks:
    """Liveness from the run state, readiness from the probes (cached for ``PROBE_CACHE_S``)."""

    def __init__(
        self,
        state: RunState,
        probes: Probes,
        *,
        cache_s: float = PROBE_CACHE_S,
        timeout_s: float = PROBE_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._probes = probes
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._monotonic = monotonic
        self._store = _Cached()
        self._exchange = _Cached()
        self._telegram = _Cached()
        self._last_ready = False

    async def report(self, *, probe: bool = True) -> HealthReport:
        """Liveness and readiness with their problems; without ``probe`` readiness is the last verdict."""
        problems = self._state.live_problems()
        if probe:
            ready_problems = await self.ready_problems()
            self._last_ready = not ready_problems
            problems += ready_problems
        return HealthReport(
            live=not self._state.live_problems(),
            ready=self._last_ready,
            problems=problems,
            bots=self._probes.bots(),
        )

    async def ready_problems(self) -> list[str]:
        """One line per reason the process is not ready; empty when it is."""
        problems: list[str] = []
        if self._state.cycles_ok == 0:
            problems.append("starting: no cycle has completed with candles yet")
        store = await self._cached(
            self._store, lambda: asyncio.to_thread(store_writable, self._probes.store_path)
        )
        if store:
            problems.append(store)
        problems.extend(
            f"exchange: circuit breaker {name} is open (requests are refused until it half-opens)"
            for name, state in sorted(self._probes.breakers().items())
            if state == "open"
        )
        answered = self._state.last_exchange_ok
        if answered is None or self._monotonic() - answered > self._cache_s:
            exchange = await self._cached(self._exchange, lambda: self._probes.exchange(self._timeout_s))
            if exchange:
                problems.append(f"exchange unreachable: {exchange}")
        telegram_probe = self._probes.telegram
        if telegram_probe is not None:
            telegram = await self._cached(self._telegram, lambda: telegram_probe(self._timeout_s))
            if telegram:
                problems.append(f"telegram unreachable: {telegram}")
        return problems

    async def _cached(self, cached: _Cached, probe: Callable[[], Awaitable[str | None]]) -> str | None:
        """The probe's answer, asked again only when the last one is older than the cache time.

        Concurrent checks share one probe (the lock), so a burst of requests costs one call.
        """
        async with cached.lock:
            now = self._monotonic()
            if cached.at is None or now - cached.at >= self._cache_s:
                cached.problem = await probe()
                cached.at = self._monotonic()
            return cached.problem


class HealthServer:
    """``/health/live``, ``/health/ready``, ``/health`` and ``/metrics`` on 127.0.0.1:``port``."""

    def __init__(
        self, checks: HealthChecks, metrics: FleetMetrics, port: int, host: str = "127.0.0.1"
    ) -> None:
        self._checks = checks
        self._metrics = metrics
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int | None:
        """The port actually bound (useful with port 0 in tests), None when not serving."""
        if self._runner is None or not self._runner.addresses:
            return None
        return int(self._runner.addresses[0][1])

    async def start(self) -> str | None:
        """Listen; None when serving, else the one-line reason (a port in use does not stop the fleet)."""
        app = web.Application()
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_text)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            return (
                f"health: port {self._host}:{self._port} {reason}; running without /health and /metrics "
                "(set health.port or --health-port)"
            )
        self._runner = runner
        return None

    async def close(self) -> None:
        """Stop listening."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @staticmethod
    def _json(report: HealthReport, verdict: bool) -> web.Response:
        return web.Response(
            status=200 if verdict else 503,
            text=json.dumps(report.body(verdict), sort_keys=True),
            content_type="application/json",
        )

    async def _live(self, request: web.Request) -> web.Response:
        report = await self._checks.report(probe=False)
        return self._json(report, report.live)

    async def _ready(self, request: web.Request) -> web.Response:
        report = await self._checks.report()
        return self._json(report, report.ready)

    async def _health(self, request: web.Request) -> web.Response:
        report = await self._checks.report()
        return self._json(report, report.live and report.ready)

    async def _metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE})
