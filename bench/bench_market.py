"""Benchmark of one process serving 15 bots x 50 symbols from the replay source: the runner's own cost.

``run()`` returns (metric, value, unit) rows for ``python -m bench`` (or ``python -m bench market``).

Data: 50 symbols of real history. The 15m, 4h and 1d files of the 10 ``binance_spot`` symbols in
``../shared/market-data`` (2024-01-01 .. 2024-09-06) are symlinked five times each under new names
into a private temporary directory (``BTC_USDT-15m.csv.gz`` -> ``BTC0_USDT-15m.csv.gz`` ..
``BTC4_USDT-15m.csv.gz``, symbol ``BTC0/USDT``): same prices, 50 series per timeframe. Without
``../shared`` the 3 bundled symbols of ``data/sample`` are replicated to 50 the same way (the labels
say which). No 5m file is linked, so the replay source builds 1h candles by aggregating 15m ones.

Fleet: 15 bots (``FLEET``), each a no-op strategy whose ``scan`` returns nothing, every one watching
all 50 symbols: six on 15m (two of them also read 4h, one 1h and 4h), five on 1h (one also reads
4h), three on 4h (one also reads 1d), one on 1d; lookbacks 100 to 500. They run in the real
:class:`~common.runner.Runner` over :class:`~common.market.replay.ReplaySource` with a
:class:`~common.clock.SimulatedClock`, a real :class:`~common.store.Store` and
:class:`~common.events.EventLog` in temporary directories, and a notifier that sends nothing.
Logging is configured as ``python -m bots run`` does it (DEBUG JSON lines to a file, console at
WARNING), and restored afterwards.

The run starts where the replay source puts the clock (every series warm) and is cut after
``CYCLES`` 15m closes by a counting proxy around the source, so ``CYCLES + 1`` cycles run (the
first fetches every series). Measured:

* requests per candle close: ``closed_candles`` calls in one cycle, mean and max over the cycles
  after the first, beside the number of distinct (symbol, timeframe) series. Each series should be
  fetched once per close of its timeframe whatever the number of bots reading it: the rows also
  give the number of series whose candle closes at each cycle's time (from the candle grid) and
  the sum over the cycles of |requests - closing series|, 0 when the runner fetches exactly that.
* wall time per cycle excluding strategy time: ``perf_counter`` around ``Runner.run()`` divided by
  the cycles, minus the time spent inside the strategies' ``scan`` (timed in ``scan`` itself; the
  call overhead around it stays in the runner's share). The time spent inside ``closed_candles`` is
  reported per cycle too (part of the runner's share). One run, not a best-of: the run is long.
* peak RSS: ``getrusage(RUSAGE_SELF).ru_maxrss`` after the run, the peak of the WHOLE process (the
  Python interpreter, numpy, the bench runner and any bench module that ran before), and its growth
  over this module (peak after minus peak before loading the data). The growth is 0 when an earlier
  module of the same ``python -m bench`` process had a higher peak: ``python -m bench market`` alone
  gives the clean figure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import structlog

from bots.base import DataNeeds, MarketData, StrategyParams
from common.clock import Clock, SimulatedClock
from common.config import (
    BotSettings,
    FleetConfig,
)
from common.events import EventLog
from common.logging_config import configure_logging
from common.market import ExtrasNeed, MarketInfo, MarketSource, SeriesKey, SourceProblem, SymbolExtras
from common.market.extras import FundingRates
from common.market.replay import ReplaySource
from common.runner import BotRuntime, Runner
from common.store import Store
from common.types import Candles, Setup, candle_open_ms, timeframe_ms
from tp_sl_calculator import RiskSettings

ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = ROOT.parent / "shared" / "market-data" / "binance_spot"
SAMPLE_DIR = ROOT / "data" / "sample"
#: Timeframes whose files are linked; 1h is aggregated from 15m by the replay source.
FILE_TIMEFRAMES = ("15m", "4h", "1d")
SYMBOLS = 50
#: 15m closes after the first cycle.
CYCLES = 200
STEP_TIMEFRAME = "15m"

#: (bot name, timeframe, lookback, extra timeframes): a fleet spread like a real one.
FLEET: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("noop_15m_a", "15m", 100, ()),
    ("noop_15m_b", "15m", 200, ()),
    ("noop_15m_c", "15m", 300, ()),
    ("noop_15m_d", "15m", 500, ()),
    ("noop_15m_mtf_a", "15m", 300, ("4h",)),
    ("noop_15m_mtf_b", "15m", 200, ("1h", "4h")),
    ("noop_1h_a", "1h", 100, ()),
    ("noop_1h_b", "1h", 200, ()),
    ("noop_1h_c", "1h", 300, ()),
    ("noop_1h_d", "1h", 500, ()),
    ("noop_1h_mtf", "1h", 200, ("4h",)),
    ("noop_4h_a", "4h", 100, ()),
    ("noop_4h_b", "4h", 300, ()),
    ("noop_4h_mtf", "4h", 150, ("1d",)),
    ("noop_1d_a", "1d", 100, ()),
)


class NoopParams(StrategyParams):
    """The no-op strategy's parameters: how much history it asks for and which extra timeframes."""

    lookback: int = 300
    extra_timeframes: tuple[str, ...] = ()


class NoopStrategy:
    """A strategy that finds nothing; it only times its own ``scan`` calls."""

    params_model = NoopParams

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.seconds = 0.0

    def needs(self, params: NoopParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe, plus the extra timeframes."""
        return DataNeeds(lookback=params.lookback, extra_timeframes=params.extra_timeframes)

    def scan(self, data: MarketData, params: NoopParams) -> Sequence[Setup]:
        """No setups; touches the newest candle so the call is not entirely empty."""
        started = time.perf_counter()
        _ = data.candles.close[-1] if len(data.candles) else None
        self.calls += 1
        self.seconds += time.perf_counter() - started
        return []


class SilentNotifier:
    """A notifier with no destination: every bot may post, nothing is ever pending."""

    async def start(self, bots: Iterable[str]) -> dict[str, str]:
        """Every bot is accepted."""
        return {}

    async def deliver_pending(self, deadline: float | None = None) -> int:
        """Nothing to send."""
        return 0

    def backlog(self) -> int:
        """Nothing queued."""
        return 0

    def interrupt(self) -> None:
        """Nothing is ever in flight."""

    async def close(self) -> None:
        """Nothing to release."""


class CountingSource:
    """A :class:`MarketSource` delegating to another, counting and timing ``closed_candles`` per cycle.

    A cycle is recognised by the clock's time (the simulated clock jumps once per cycle).
    ``finished`` turns True once the clock is ``cycles`` closes of ``step`` past the start.
    """

    def __init__(self, inner: MarketSource, cycles: int, step: str) -> None:
        self._inner = inner
        self._cycles = cycles
        self._step_ms = timeframe_ms(step)
        self.start: int | None = None
        self.calls: Counter[int] = Counter()
        self.seconds = 0.0

    @property
    def clock(self) -> Clock:
        """The inner source's clock."""
        return self._inner.clock

    async def open(
        self, series: list[SeriesKey], extras: Mapping[str, ExtrasNeed] | None = None
    ) -> list[SourceProblem]:
        """Open the inner source."""
        return await self._inner.open(series, extras)

    async def extras(self, symbol: str, need: ExtrasNeed) -> SymbolExtras:
        """The inner source's extras (the no-op fleet asks for none)."""
        return await self._inner.extras(symbol, need)

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The inner source's candles; the call is counted against the clock's time and timed."""
        self.calls[self._inner.clock.now_ms()] += 1
        started = time.perf_counter()
        try:
            return await self._inner.closed_candles(symbol, timeframe, limit)
        finally:
            self.seconds += time.perf_counter() - started

    async def funding_since(self, symbol: str, since_ms: int) -> FundingRates | None:
        """The inner source's funding."""
        return await self._inner.funding_since(symbol, since_ms)

    def breakers(self) -> Mapping[str, str]:
        """The inner source's breakers."""
        return self._inner.breakers()

    def market(self, symbol: str) -> MarketInfo:
        """The inner source's market information."""
        return self._inner.market(symbol)

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """The inner source's start, remembered to bound the run."""
        self.start = self._inner.start_ms(warmup_bars)
        return self.start

    def finished(self) -> bool:
        """True at the inner source's end or ``cycles`` steps after the start."""
        if self._inner.finished():
            return True
        return (
            self.start is not None and self._inner.clock.now_ms() >= self.start + self._cycles * self._step_ms
        )

    async def close(self) -> None:
        """Close the inner source."""
        await self._inner.close()


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def build_data_dir(target: Path) -> tuple[list[str], str]:
    """Symlink real files under ``SYMBOLS`` new names into ``target``; (symbols, origin label)."""
    origin_dir, origin = (SHARED_DIR, "binance_spot") if SHARED_DIR.is_dir() else (SAMPLE_DIR, "data/sample")
    bases = sorted(
        path.name.split("_", 1)[0] for path in origin_dir.glob(f"*_USDT-{FILE_TIMEFRAMES[0]}.csv.gz")
    )
    if not bases:
        raise RuntimeError(f"no *_USDT-{FILE_TIMEFRAMES[0]}.csv.gz file in {origin_dir}")
    copies = math.ceil(SYMBOLS / len(bases))
    symbols: list[str] = []
    for copy in range(copies):
        for base in bases:
            if len(symbols) == SYMBOLS:
                break
            for tf in FILE_TIMEFRAMES:
                source = origin_dir / f"{base}_USDT-{tf}.csv.gz"
                if not source.is_file():
                    raise RuntimeError(f"{source} is missing")
                (target / f"{base}{copy}_USDT-{tf}.csv.gz").symlink_to(source.resolve())
            symbols.append(f"{base}{copy}/USDT")
    label = f"{len(bases)} real {origin} symbols x {copies} names"
    if len(bases) * copies != SYMBOLS:
        label += f", cut to {SYMBOLS}"
    if origin_dir == SAMPLE_DIR:
        label += "; ../shared absent"
    return symbols, label


def build_fleet(symbols: Sequence[str]) -> list[BotRuntime]:
    """The ``FLEET`` bots as runtimes, each with its own no-op strategy, all on ``symbols``."""
    risk = RiskSettings()
    bots = []
    for name, timeframe, lookback, extras in FLEET:
        strategy = NoopStrategy(name)
        params = NoopParams(lookback=lookback, extra_timeframes=extras)
        settings = BotSettings(
            name=name,
            enabled=True,
            symbols=tuple(symbols),
            timeframe=timeframe,
            cooldown_ms=3_600_000,
            max_open_signals=5,
            timeout_ms=24 * 3_600_000,
            params=params,
            risk=risk,
        )
        bots.append(BotRuntime(settings=settings, strategy=strategy, needs=strategy.needs(params, timeframe)))
    return bots


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class _LoggingLikeTheCli:
    """Configure logging as ``python -m bots run`` does (console WARNING); restore it on exit."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._configured = structlog.is_configured()
        self._config: dict[str, Any] = structlog.get_config()
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        self._level = root.level

    def __enter__(self) -> None:
        configure_logging(log_dir=self._log_dir, process_name="bench-market", console_level="WARNING")

    def __exit__(self, *_: object) -> None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h not in self._handlers]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(self._level)
        if self._configured:
            structlog.configure(**self._config)
        else:
            structlog.reset_defaults()


@dataclass(frozen=True)
class FleetRun:
    """What one run of the fleet measured."""

    open_s: float
    wall_s: float
    rss_opened_mib: float
    cycle_times: list[int]  # the simulated time of each cycle, in order
    requests: list[int]  # closed_candles calls in each cycle
    fetch_s: float
    scan_s: float
    scans: int


async def _run_fleet(data_dir: Path, work: Path, bots: list[BotRuntime]) -> FleetRun:
    clock = SimulatedClock(0)
    source = CountingSource(ReplaySource(data_dir, clock), CYCLES, STEP_TIMEFRAME)
    store = Store(work / "state")
    events = EventLog(work / "events", clock)
    notifier = SilentNotifier()
    runner = Runner(
        bots=bots,
        source=source,
        store=store,
        notifier=notifier,
        clock=clock,
        events=events,
        config=FleetConfig.defaults({bot.name: bot.settings for bot in bots}, Path("bench_market")),
        stop=asyncio.Event(),
    )
    try:
        started = time.perf_counter()
        problems = await runner.prepare()
        opened = time.perf_counter() - started
        if problems or len(runner.bots) != len(bots):
            raise RuntimeError(f"the fleet cannot run: {problems}")
        rss_opened = peak_rss_mib()
        started = time.perf_counter()
        await runner.run()
        wall = time.perf_counter() - started
    finally:
        await notifier.close()
        await source.close()
        store.close()
        events.close()
    if runner.cycles != CYCLES + 1 or len(source.calls) != runner.cycles:
        raise RuntimeError(
            f"expected {CYCLES + 1} cycles, ran {runner.cycles} ({len(source.calls)} with fetches): "
            "is the replay data long enough after the warm-up?"
        )
    strategies = [bot.strategy for bot in bots if isinstance(bot.strategy, NoopStrategy)]
    times = sorted(source.calls)
    return FleetRun(
        open_s=opened,
        wall_s=wall,
        rss_opened_mib=rss_opened,
        cycle_times=times,
        requests=[source.calls[when] for when in times],
        fetch_s=source.seconds,
        scan_s=sum(strategy.seconds for strategy in strategies),
        scans=sum(strategy.calls for strategy in strategies),
    )


def closing_series(series: Iterable[SeriesKey], when_ms: int) -> int:
    """How many of ``series`` have a candle closing at ``when_ms`` (the fetches a cycle then needs)."""
    return sum(1 for key in series if candle_open_ms(when_ms, key.timeframe) == when_ms)


def run() -> list[tuple[str, float, str]]:
    """Requests per candle close, runner wall time per cycle without strategy time, peak RSS."""
    rss_before = peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-market-") as temporary:
        work = Path(temporary)  # mkdtemp: 0700
        data_dir = _private_dir(work / "data")
        symbols, origin = build_data_dir(data_dir)
        bots = build_fleet(symbols)
        series = {key for bot in bots for symbol in symbols for key in bot.series(symbol)}
        with _LoggingLikeTheCli(_private_dir(work / "logs")):
            result = asyncio.run(_run_fleet(data_dir, work, bots))
    rss_after = peak_rss_mib()

    cycles = len(result.requests)
    later = result.requests[1:]
    needed = [closing_series(series, when) for when in result.cycle_times[1:]]
    off = sum(abs(got - want) for got, want in zip(later, needed, strict=True))
    by_timeframe = Counter(key.timeframe for key in series)
    spread = ", ".join(
        f"{count} x {tf}"
        for tf, count in sorted(by_timeframe.items(), key=lambda item: timeframe_ms(item[0]))
    )
    fleet = f"{len(bots)} bots x {len(symbols)} symbols ({origin})"
    runner_ms = (result.wall_s - result.scan_s) / cycles * 1e3
    return [
        (f"{fleet}: distinct (symbol, timeframe) series: {spread}", len(series), "series"),
        (f"requests in the first cycle (cold start; {cycles} cycles in all)", result.requests[0], "requests"),
        (
            f"requests per candle close, mean over the {len(later)} 15m closes after the first",
            mean(later),
            "requests",
        ),
        ("requests per candle close, max over the same closes", max(later), "requests"),
        ("  series closing per candle close (one fetch each), mean", mean(needed), "requests"),
        ("  requests differing from one per closing series, sum of |difference|", off, "requests"),
        ("Runner.prepare (ReplaySource.open of every series)", result.open_s * 1e3, "ms"),
        ("wall time per cycle excluding strategy time", runner_ms, "ms"),
        ("  of which inside ReplaySource.closed_candles, per cycle", result.fetch_s / cycles * 1e3, "ms"),
        (
            f"  strategy time per cycle ({result.scans:,} no-op scans in all; subtracted)",
            result.scan_s / cycles * 1e3,
            "ms",
        ),
        ("peak RSS of the whole process (ru_maxrss, bench runner included)", rss_after, "MiB"),
        ("peak RSS growth over this module (after minus before)", rss_after - rss_before, "MiB"),
        (
            "  of which by the end of Runner.prepare (all history loaded)",
            result.rss_opened_mib - rss_before,
            "MiB",
        ),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:100s} {value:12.3f} {unit}")
