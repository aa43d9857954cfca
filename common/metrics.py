"""Prometheus metrics of one process (prometheus_client), in a registry of its own.

:class:`FleetMetrics` is an :class:`~common.observe.Observer`: the runner, the MEXC source and the
notifier call its hooks, which move the counters. The gauges (open signals, pending alerts, breaker
states, candle ages) are read when Prometheus scrapes, from the callables given to
:meth:`FleetMetrics.watch`, so they are never stale and nothing has to push them. Each instance
owns its ``CollectorRegistry`` (not prometheus_client's global one): tests build several side by
side, and nothing leaks from one run into another.

Names (``signal_fleet_`` prefix; counters end in ``_total`` on the wire):

====================================================  =========  ================================
metric                                                type       labels
====================================================  =========  ================================
signal_fleet_cycles_total                             counter    -
signal_fleet_cycle_duration_seconds                   histogram  -
signal_fleet_last_cycle_timestamp_seconds             gauge      -
signal_fleet_exchange_requests_total                  counter    endpoint
signal_fleet_exchange_errors_total                    counter    endpoint, kind
signal_fleet_circuit_breaker_state                    gauge      breaker (0 closed, 1 half-open, 2 open)
signal_fleet_strategy_errors_total                    counter    bot
signal_fleet_alerts_sent_total                        counter    bot, kind
signal_fleet_alerts_failed_total                      counter    bot, kind
signal_fleet_alerts_pending                           gauge      -
signal_fleet_open_signals                             gauge      bot
signal_fleet_last_candle_age_seconds                  gauge      symbol, timeframe
====================================================  =========  ================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from common.logging_config import get_logger
from common.observe import Observer

log = get_logger(__name__)

PREFIX = "signal_fleet"
#: The value of ``signal_fleet_circuit_breaker_state`` for each breaker state.
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
#: Cycle duration buckets (seconds): a quiet cycle takes well under a second, a first load minutes.
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class LiveValues:
    """Where the gauges read their values at scrape time."""

    open_signals: Callable[[], Mapping[str, int]]  # bot -> open signals (every bot of the process)
    pending_alerts: Callable[[], int]  # outbox messages this process still has to deliver
    newest_closes: Callable[[], Mapping[tuple[str, str], int | None]]  # (symbol, timeframe) -> close ms
    breakers: Callable[[], Mapping[str, str]]  # breaker name -> closed / open / half_open
    now_ms: Callable[[], int]


class FleetMetrics(Observer):
    """The process's counters and gauges, fed by the observer hooks and by :class:`LiveValues`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter(f"{PREFIX}_cycles", "Cycles of the loop that ran to the end.", registry=r)
        self.cycle_seconds = Histogram(
            f"{PREFIX}_cycle_duration_seconds",
            "How long a completed cycle took (fetch, scan, gate, track).",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.last_cycle = Gauge(
            f"{PREFIX}_last_cycle_timestamp_seconds", "Unix time the last completed cycle ended.", registry=r
        )
        self.requests = Counter(
            f"{PREFIX}_exchange_requests",
            "HTTP requests to the exchange, answered or failed, by endpoint path.",
            ["endpoint"],
            registry=r,
        )
        self.request_errors = Counter(
            f"{PREFIX}_exchange_errors",
            "Exchange requests that failed, by endpoint path and ccxt error class.",
            ["endpoint", "kind"],
            registry=r,
        )
        self.strategy_errors = Counter(
            f"{PREFIX}_strategy_errors", "Scans that raised, by bot.", ["bot"], registry=r
        )
        self.alerts_sent = Counter(
            f"{PREFIX}_alerts_sent",
            "Outbox messages delivered, by bot and kind (signal, result, update).",
            ["bot", "kind"],
            registry=r,
        )
        self.alerts_failed = Counter(
            f"{PREFIX}_alerts_failed",
            "Outbox messages Telegram refused for good, by bot and kind.",
            ["bot", "kind"],
            registry=r,
        )
        self._live: LiveValues | None = None
        r.register(_LiveCollector(self))

    def watch(self, live: LiveValues) -> None:
        """Read the gauges from ``live`` from now on."""
        self._live = live

    @property
    def live(self) -> LiveValues | None:
        """What the gauges read, once :meth:`watch` was called."""
        return self._live

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    # -- observer hooks ---------------------------------------------------------------------------

    def cycle_finished(self, *, seconds: float, due: int, fetched: int, completed: bool) -> None:
        """Count a completed cycle and its duration."""
        if completed:
            self.cycles.inc()
            self.cycle_seconds.observe(seconds)
            self.last_cycle.set_to_current_time()

    def scan_failed(self, bot: str, symbol: str, error: BaseException) -> None:
        """Count a scan that raised."""
        self.strategy_errors.labels(bot=bot).inc()

    def request_done(self, endpoint: str, seconds: float, error: str | None, *, probe: bool = False) -> None:
        """Count an exchange request (and its error), the health probe's included."""
        self.requests.labels(endpoint=endpoint).inc()
        if error is not None:
            self.request_errors.labels(endpoint=endpoint, kind=error).inc()

    def alert_sent(self, bot: str, kind: str) -> None:
        """Count a delivered message."""
        self.alerts_sent.labels(bot=bot, kind=kind).inc()

    def alert_failed(self, bot: str, kind: str) -> None:
        """Count a message given up."""
        self.alerts_failed.labels(bot=bot, kind=kind).inc()


class _LiveCollector:
    """The gauges computed at scrape time; a source that fails leaves its gauge out of that scrape."""

    def __init__(self, metrics: FleetMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        """The families this collector yields (so the registry can check names without collecting)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """The gauges' current values."""
        live = self._metrics.live
        families = self._families()
        if live is None:
            return []
        breakers, pending, open_signals, ages = families
        try:
            for name, state in sorted(live.breakers().items()):
                breakers.add_metric([name], BREAKER_VALUES.get(state, 2.0))
            pending.add_metric([], float(live.pending_alerts()))
            for bot, count in sorted(live.open_signals().items()):
                open_signals.add_metric([bot], float(count))
            now = live.now_ms()
            for (symbol, timeframe), close in sorted(live.newest_closes().items()):
                if close is not None:
                    ages.add_metric([symbol, timeframe], max(0.0, (now - close) / 1000))
        except Exception as exc:  # a scrape must not fail because the store is busy: report and go on
            log.warning("metrics: a live value could not be read", error=f"{type(exc).__name__}: {exc}")
            return []
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                f"{PREFIX}_circuit_breaker_state",
                "Circuit breaker per exchange endpoint family: 0 closed, 1 half-open, 2 open.",
                labels=["breaker"],
            ),
            GaugeMetricFamily(
                f"{PREFIX}_alerts_pending", "Outbox messages this process still has to deliver.", labels=[]
            ),
            GaugeMetricFamily(f"{PREFIX}_open_signals", "Open (tracked) signals per bot.", labels=["bot"]),
            GaugeMetricFamily(
                f"{PREFIX}_last_candle_age_seconds",
                "Seconds since the newest closed candle of each series closed.",
                labels=["symbol", "timeframe"],
            ),
        ]
