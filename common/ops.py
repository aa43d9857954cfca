"""The operations side of one live run, wired together: metrics, liveness, systemd, the health server.

The CLI builds one :class:`Operations` per live run and passes its ``observer`` to the MEXC source,
the notifier and the runner; :meth:`Operations.start` then points the gauges and the health checks
at them, starts the HTTP endpoints (when asked) and the watchdog pings (when systemd asks).
``READY=1`` goes to systemd when the first cycle has fetched its candles, ``STOPPING=1`` when
shutdown begins. A replay has none of this: it is not a service.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common.clock import Clock
from common.config import HealthSettings
from common.health import HealthChecks, HealthServer, Probes, RunState
from common.logging_config import get_logger
from common.market import SeriesKey
from common.market.mexc import MexcSource
from common.metrics import FleetMetrics, LiveValues
from common.notifier import Notifier, TelegramNotifier
from common.observe import Observers
from common.runner import Runner
from common.sdnotify import SdNotify, watchdog_loop
from common.store import Store

log = get_logger(__name__)


@dataclass(frozen=True)
class RunParts:
    """The parts of a run the gauges and checks read."""

    runner: Runner
    store: Store
    notifier: Notifier
    source: MexcSource
    clock: Clock


class Operations:
    """Metrics, liveness, systemd notifications and (optionally) the health server of one live run."""

    def __init__(self, *, notify: SdNotify, window_s: float, port: int | None) -> None:
        """``window_s``: the liveness window; ``port``: where to serve the endpoints (None: not served)."""
        self.notify = notify
        self.metrics = FleetMetrics()
        self.state = RunState(window_s, on_first_cycle=self._first_cycle)
        self.observer = Observers(self.metrics, self.state)
        self._port = port
        self.server: HealthServer | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._parts: RunParts | None = None

    @classmethod
    def from_env(
        cls, health: HealthSettings, port: int | None, environ: Mapping[str, str] | None = None
    ) -> Operations:
        """Operations for this process: systemd's socket and watchdog from the environment.

        The liveness window is systemd's watchdog period when it gives one, else
        ``health.live_window_s``.
        """
        notify = SdNotify.from_env(environ)
        return cls(notify=notify, window_s=notify.watchdog_interval_s() or health.live_window_s, port=port)

    async def start(self, parts: RunParts) -> None:
        """Read the run's parts, serve the endpoints if asked, ping the watchdog if systemd wants it."""
        self._parts = parts
        self.metrics.watch(
            LiveValues(
                open_signals=self._open_signals,
                pending_alerts=parts.notifier.backlog,
                newest_closes=lambda: {
                    (key.symbol, key.timeframe): close for key, close in parts.runner.newest_closes().items()
                },
                breakers=parts.source.breakers,
                now_ms=parts.clock.now_ms,
            )
        )
        if self._port is not None:
            telegram = parts.notifier.reachable if isinstance(parts.notifier, TelegramNotifier) else None
            probes = Probes(
                store_path=parts.store.path,
                exchange=parts.source.ping,
                breakers=parts.source.breakers,
                telegram=telegram,
                bots=self.bot_details,
            )
            server = HealthServer(HealthChecks(self.state, probes), self.metrics, self._port)
            problem = await server.start()
            if problem is None:
                self.server = server
                log.info("health endpoints listening", url=f"http://127.0.0.1:{server.port}/health")
            else:
                log.error(problem)
        interval = self.notify.watchdog_interval_s()
        if interval is not None:
            self._watchdog = asyncio.create_task(
                watchdog_loop(self.notify, self.state.alive, interval), name="watchdog"
            )
        self.notify.status("starting: loading markets")

    def _first_cycle(self) -> None:
        """The first cycle fetched its candles: the service is ready."""
        bots = len(self._parts.runner.bots) if self._parts is not None else 0
        self.notify.ready()
        self.notify.status(f"running {bots} bot(s)")

    def stopping(self) -> None:
        """Shutdown has begun: tell systemd."""
        self.notify.stopping()
        self.notify.status("stopping: delivering what is queued")

    async def close(self) -> None:
        """Stop the pings and the endpoints."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        if self.server is not None:
            await self.server.close()
            self.server = None
        self.notify.close()

    def _open_signals(self) -> dict[str, int]:
        """Open signals per bot of this process (0 for a bot with none)."""
        assert self._parts is not None
        names = tuple(bot.name for bot in self._parts.runner.bots)
        counts = collections.Counter(stored.signal.bot for stored in self._parts.store.open_signals(names))
        return {name: counts.get(name, 0) for name in names}

    def bot_details(self) -> dict[str, dict[str, Any]]:
        """Per bot, what ``/health`` shows: timeframe, symbols, open signals, the age of its stalest
        series' newest candle, scan failures and the last one."""
        assert self._parts is not None
        closes = self._parts.runner.newest_closes()
        now = self._parts.clock.now_ms()
        open_signals = self._open_signals()
        details: dict[str, dict[str, Any]] = {}
        for bot in self._parts.runner.bots:
            timeframe = bot.settings.timeframe
            ages = [
                now - close
                for symbol in bot.settings.symbols
                if (close := closes.get(SeriesKey(symbol, timeframe))) is not None
            ]
            details[bot.name] = {
                "timeframe": timeframe,
                "symbols": list(bot.settings.symbols),
                "open_signals": open_signals.get(bot.name, 0),
                "candle_age_s": round(max(ages) / 1000, 1) if ages else None,
                "scan_errors": self.state.scan_errors.get(bot.name, 0),
                "last_error": self.state.last_scan_error.get(bot.name),
            }
        return details
