"""The one loop that serves every bot: wake after candles close, fetch once, scan, gate, store, send.

One cycle:

1. fetch every due (symbol, timeframe) series once, however many bots need it (in parallel);
2. for each bot and symbol with a new closed candle, run the strategy's pure ``scan`` and keep the
   setups on that newest candle;
3. compute levels (``tp_sl_calculator``), build the signal, and let the store's gate admit it (the
   alert is queued in the outbox in the same transaction);
4. check every open signal against the new candles (the tracker) and queue result messages;
5. wake the delivery task, which drains the outbox in the background so a slow Telegram never
   delays the next cycle.

A bot whose scan raises is logged with its traceback and tried again next cycle; the others go on.
The loop never sleeps blindly: it wakes right after the next candle close (plus a small delay for
the exchange to publish it). Time comes from the injected clock, so replay runs the same code.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from bots.base import DataNeeds, MarketData, Strategy, TrailingStops
from common.cards import progress_message, signal_card, update_message
from common.charts import chart_spec, render_chart
from common.clock import Clock, SimulatedClock
from common.config import BotSettings, FleetConfig
from common.errors import CircuitOpen, FleetError, TemporaryError
from common.events import EventLog, EventType
from common.logging_config import get_logger, new_correlation_id
from common.market import ExtrasNeed, MarketSource, SeriesKey, SourceProblem, SymbolExtras
from common.notifier import Notifier
from common.observe import NO_OBSERVER, Observer
from common.outcomes import record_close
from common.store import GateRules, GateVerdict, Store
from common.tracker import ExitPlan, Position, advance, funding_paid_pct, settle
from common.types import Candles, FloatArray, Setup, Signal, candle_open_ms, timeframe_ms
from tp_sl_calculator import LevelsRejected, calculate_levels

log = get_logger(__name__)

#: How soon to look again when the exchange has not yet published a candle that should be closed.
STALE_RETRY_MS = 5_000
#: How many times to look again for one late candle before waiting for the next close.
STALE_RETRIES = 3
#: How long a stopping runner lets a delivery pass finish the sends it has on the wire.
DELIVERY_STOP_S = 10.0
#: How long a stopping runner waits for charts still being drawn.
CHART_FINISH_S = 10.0
#: Pauses between attempts to reach an exchange that is down at start (doubling up to the max).
OPEN_RETRY_FIRST_S = 5.0
OPEN_RETRY_MAX_S = 300.0
#: The most candles fetched at once to replay what an open signal missed while the fleet was down.
MAX_CATCH_UP_CANDLES = 5_000


@dataclass(frozen=True)
class BotRuntime:
    """A bot ready to run: its validated settings, its strategy and what the strategy needs."""

    settings: BotSettings
    strategy: Strategy[Any]
    needs: DataNeeds

    @property
    def name(self) -> str:
        """The bot's name."""
        return self.settings.name

    def series(self, symbol: str) -> list[SeriesKey]:
        """The series this bot reads for one symbol: its own timeframe first, then the extras."""
        timeframes = (self.settings.timeframe, *self.needs.extra_timeframes)
        return [SeriesKey(symbol, tf) for tf in dict.fromkeys(timeframes)]


def signal_id(bot: str, symbol: str, timeframe: str, bar_ts: int, direction: str) -> str:
    """A short id that is the same whenever the same bot finds the same setup on the same candle."""
    key = f"{bot}|{symbol}|{timeframe}|{bar_ts}|{direction}".encode()
    return hashlib.blake2b(key, digest_size=5).hexdigest()


def next_close_ms(now_ms: int, timeframe: str) -> int:
    """The first candle close of ``timeframe`` strictly after ``now_ms`` (weeks start on Monday)."""
    return candle_open_ms(now_ms, timeframe) + timeframe_ms(timeframe)


@dataclass
class _SeriesState:
    lookback: int
    candles: Candles | None = None
    last_scanned_ts: int = -1
    stale_retries: int = 0
    bots: list[tuple[BotRuntime, str]] = field(default_factory=list)


class Runner:
    """Runs a set of bots over one market source, one store and one notifier."""

    def __init__(
        self,
        *,
        bots: Sequence[BotRuntime],
        source: MarketSource,
        store: Store,
        notifier: Notifier,
        clock: Clock,
        events: EventLog,
        config: FleetConfig,
        stop: asyncio.Event,
        close_delay_ms: int = 0,
        charts_dir: Path | None = None,
        replay_from_ms: int | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._bots = list(bots)
        self._source = source
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._events = events
        self._config = config
        self._stop = stop
        self._close_delay_ms = close_delay_ms
        # Where alert charts are drawn (None: no charts, as in a replay); each in a worker thread.
        self._charts_dir = charts_dir
        # A replay starts no earlier than this (the series still warm up on the history before it).
        self._replay_from_ms = replay_from_ms
        # Metrics and liveness watch the cycles through this (common.observe); it never steers.
        self._observer = observer
        self._chart_tasks: set[asyncio.Task[None]] = set()
        self._series: dict[SeriesKey, _SeriesState] = {}
        # Per symbol, the extras (funding, trades, book, ticker) its bots need, merged.
        self._extras_need: dict[str, ExtrasNeed] = {}
        self._wake_delivery = asyncio.Event()
        self._delivery_stopping = False
        self._started_monotonic = time.monotonic()
        self._last_status_ms: int | None = None
        self._last_cycle_s: float | None = None
        self._last_cycle_ms: int | None = None
        self._live = True
        self.cycles = 0

    # -- start ----------------------------------------------------------------------------------

    async def prepare(self, *, wait_for_source: bool = False) -> list[str]:
        """Open the source and the notifier; drop what cannot run. Returns the one-line problems.

        With ``wait_for_source`` (a long-running fleet) an exchange that is down at start is tried
        again with growing pauses until it answers or the fleet is stopped, instead of exiting
        into a restart loop; a one-off run gives up with the error.
        """
        wanted = {key for bot in self._bots for symbol in bot.settings.symbols for key in bot.series(symbol)}
        keys = sorted(wanted, key=lambda k: (k.symbol, k.timeframe))
        for bot in self._bots:
            if bot.needs.extras:
                for symbol in bot.settings.symbols:
                    self._extras_need[symbol] = self._extras_need.get(symbol, ExtrasNeed()).merged(
                        bot.needs.extras
                    )
        source_problems = await self._open_source(keys, wait=wait_for_source)
        problems = [
            p.text if p.text.startswith(("symbol", p.symbol)) else f"{p.symbol}: {p.text}"
            for p in dict.fromkeys(source_problems)
        ]
        blocked = await self._notifier.start([bot.name for bot in self._bots])
        problems.extend(blocked.values())
        for problem in problems:
            log.error(problem)
        runnable = []
        for bot in self._bots:
            if bot.name in blocked:
                continue
            timeframes = tuple(key.timeframe for key in bot.series(bot.settings.symbols[0]))
            symbols = [
                symbol
                for symbol in bot.settings.symbols
                if not any(p.blocks(symbol, timeframes, bool(bot.needs.extras)) for p in source_problems)
            ]
            if not symbols:
                problems.append(f"bot {bot.name}: no usable symbol; the bot does not run")
                log.error(problems[-1])
                continue
            if len(symbols) < len(bot.settings.symbols):
                missing = [s for s in bot.settings.symbols if s not in symbols]
                log.warning(f"bot {bot.name}: runs without {', '.join(missing)} (see above)")
            runnable.append(bot)
            for symbol in symbols:
                for key in bot.series(symbol):
                    lookback = bot.needs.lookback_for(key.timeframe, bot.settings.timeframe)
                    state = self._series.setdefault(key, _SeriesState(lookback=lookback))
                    state.lookback = max(state.lookback, lookback)
                state = self._series[bot.series(symbol)[0]]
                state.bots.append((bot, symbol))
        self._bots = runnable
        return problems

    async def _open_source(self, keys: list[SeriesKey], *, wait: bool) -> list[SourceProblem]:
        pause_s = OPEN_RETRY_FIRST_S
        while True:
            try:
                return await self._source.open(keys, self._extras_need)
            except TemporaryError as exc:
                if not wait or self._stop.is_set():
                    raise
                log.warning("market source unavailable at start; trying again", error=str(exc), in_s=pause_s)
            try:
                async with asyncio.timeout(pause_s):
                    await self._stop.wait()
            except TimeoutError:
                pause_s = min(pause_s * 2, OPEN_RETRY_MAX_S)
                continue
            raise FleetError("stopped before the market source became available")

    @property
    def bots(self) -> list[BotRuntime]:
        """The bots that passed ``prepare``."""
        return list(self._bots)

    def newest_closes(self) -> dict[SeriesKey, int | None]:
        """Per series, the close time (ms) of its newest closed candle, None before the first fetch."""
        return {
            key: state.candles.close_time(-1) if state.candles is not None and len(state.candles) else None
            for key, state in self._series.items()
        }

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> None:
        """Cycle until stopped (or, with ``once``, a single cycle), then deliver what is queued."""
        start = self._source.start_ms({key: state.lookback for key, state in self._series.items()})
        if start is not None and self._replay_from_ms is not None:
            start = max(start, self._replay_from_ms)
        self._live = start is None
        if start is not None and isinstance(self._clock, SimulatedClock):
            # A replay: its clock starts where every series is warm (or at --start).
            self._clock.set(start)
        names = tuple(bot.name for bot in self._bots)
        pending, still_open = self._notifier.backlog(), len(self._store.open_signals(names))
        if pending or still_open:
            self._events.emit(EventType.STATE_RECOVERED, pending_messages=pending, open_signals=still_open)
        delivery = asyncio.create_task(self._delivery_loop(), name="delivery")
        try:
            await self._cycle()
            while not once and not self._stop.is_set() and not self._source.finished():
                if not await self._clock.sleep_until(self._next_wake(), self._stop):
                    break
                await self._cycle()
        finally:
            await self._finish_charts()
            await self._stop_delivery(delivery)

    async def _finish_charts(self) -> None:
        """Give charts still being drawn a few seconds, so their alerts leave with them."""
        if not self._chart_tasks:
            return
        _, late = await asyncio.wait(self._chart_tasks, timeout=CHART_FINISH_S)
        for task in late:
            task.cancel()  # their alerts go out as text (the store marks them at the next start)

    def _next_wake(self) -> int:
        now = self._clock.now_ms()
        closes = [next_close_ms(now - self._close_delay_ms, key.timeframe) for key in self._series]
        wake = min(closes, default=now + 60_000) + self._close_delay_ms
        if any(state.stale_retries for state in self._series.values()):
            wake = min(wake, now + STALE_RETRY_MS)
        return wake

    async def _stop_delivery(self, delivery: asyncio.Task[None]) -> None:
        """End the delivery task without cutting a send in flight (a cut send would be repeated).

        The pass in progress is interrupted after the requests already on the wire have been
        answered and recorded; only a pass that still has not ended after ``DELIVERY_STOP_S`` is
        cancelled (at-least-once delivery then repeats at most that message).
        """
        self._delivery_stopping = True
        self._notifier.interrupt()
        self._wake_delivery.set()
        done, _ = await asyncio.wait({delivery}, timeout=DELIVERY_STOP_S)
        if not done:
            delivery.cancel()
        await asyncio.gather(delivery, return_exceptions=True)

    def _stopping_delivery(self) -> bool:
        # A method, not the attribute, so the loop re-reads it after each await.
        return self._delivery_stopping

    async def _delivery_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives just as the event is set, and this task would then never stop.
            try:
                async with asyncio.timeout(5.0):
                    await self._wake_delivery.wait()
            except TimeoutError:
                pass
            self._wake_delivery.clear()
            if self._stopping_delivery():
                return
            try:
                await self._notifier.deliver_pending()
            except FleetError as exc:
                log.error("delivery stopped", error=str(exc))
            except Exception:
                log.exception("delivery failed unexpectedly; retrying in 5 s")

    def backlog(self) -> int:
        """Messages of this runner's bots still waiting to be delivered."""
        return self._notifier.backlog()

    async def flush(self, deadline: float) -> int:
        """Deliver queued messages until ``deadline`` (monotonic); returns how many are still queued.

        A temporary failure pauses delivery briefly; we keep trying until the deadline, because
        whatever is still queued then waits for the next start.
        """
        while self._notifier.backlog() and time.monotonic() < deadline:
            try:
                await self._notifier.deliver_pending(deadline)
            except FleetError as exc:
                log.error("final delivery stopped", error=str(exc))
                break
            if self._notifier.backlog():
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return self._notifier.backlog()

    # -- one cycle ------------------------------------------------------------------------------

    async def _cycle(self) -> None:
        cycle_id = new_correlation_id()
        structlog.contextvars.bind_contextvars(cycle_id=cycle_id)
        started = time.monotonic()
        self._observer.cycle_started()
        due: list[SeriesKey] = []
        fetched: list[SeriesKey] = []
        completed = False
        try:
            now = self._clock.now_ms()
            due = [key for key, state in self._series.items() if self._is_due(key, state, now)]
            fetched = await self._fetch(due)
            fresh = [key for key in fetched if self._new_candle(key)]
            extras = await self._fetch_extras(fresh)
            # Bots that read the others' signals (consensus) go last, over what the others emitted.
            for followers in (False, True):
                for key in fresh:
                    self._scan_series(key, now, extras, followers=followers)
            for key in fresh:
                self._mark_scanned(key)
            await self._track(fetched, now)
            self._wake_delivery.set()
            self.cycles += 1
            self._last_cycle_s = time.monotonic() - started
            self._last_cycle_ms = now
            self._maybe_status(now)
            log.debug("cycle done", series=len(fetched), seconds=round(time.monotonic() - started, 3))
            completed = True
        finally:
            structlog.contextvars.unbind_contextvars("cycle_id")
            self._observer.cycle_finished(
                seconds=time.monotonic() - started, due=len(due), fetched=len(fetched), completed=completed
            )

    def _is_due(self, key: SeriesKey, state: _SeriesState, now: int) -> bool:
        if state.candles is None or len(state.candles) == 0 or state.stale_retries:
            return True
        return state.candles.close_time(-1) + timeframe_ms(key.timeframe) <= now

    async def _fetch(self, keys: list[SeriesKey]) -> list[SeriesKey]:
        """Fetch the due series in parallel; a failing series is logged and skipped this cycle."""
        results = await asyncio.gather(
            *(self._source.closed_candles(k.symbol, k.timeframe, self._series[k].lookback) for k in keys),
            return_exceptions=True,
        )
        fresh: list[SeriesKey] = []
        skipped: dict[SeriesKey, FleetError] = {}
        now = self._clock.now_ms()
        for key, result in zip(keys, results, strict=True):
            state = self._series[key]
            if isinstance(result, FleetError):
                skipped[key] = result
                continue
            if isinstance(result, BaseException):
                log.error(
                    "series fetch crashed",
                    symbol=key.symbol,
                    timeframe=key.timeframe,
                    exc_info=(type(result), result, result.__traceback__),
                )
                continue
            state.candles = result
            # Live, the exchange may publish a just-closed candle a few seconds late: look again soon
            # rather than miss it until the next close. Replay data is complete by construction.
            newest_close = next_close_ms(now, key.timeframe) - timeframe_ms(key.timeframe)
            behind = len(result) == 0 or result.close_time(-1) < newest_close
            if self._live and behind and state.stale_retries < STALE_RETRIES:
                state.stale_retries += 1
            else:
                state.stale_retries = 0
            fresh.append(key)
        self._report_skipped(skipped)
        return fresh

    async def _fetch_extras(self, fresh: list[SeriesKey]) -> dict[str, SymbolExtras]:
        """Extras of every symbol about to be scanned (``fresh`` series) by a bot that needs them, once
        per symbol.

        A symbol whose extras fail is reported with the skipped series; its bots that need extras
        wait for the next close, the others scan as usual.
        """
        symbols = [symbol for key in fresh for bot, symbol in self._series[key].bots if bot.needs.extras]
        wanted = list(dict.fromkeys(symbols))
        results = await asyncio.gather(
            *(self._source.extras(symbol, self._extras_need[symbol]) for symbol in wanted),
            return_exceptions=True,
        )
        extras: dict[str, SymbolExtras] = {}
        skipped: dict[SeriesKey, FleetError] = {}
        for symbol, result in zip(wanted, results, strict=True):
            if isinstance(result, SymbolExtras):
                extras[symbol] = result
            elif isinstance(result, FleetError):
                skipped[SeriesKey(symbol, "extras")] = result
            else:
                log.error(
                    "extras fetch crashed",
                    symbol=symbol,
                    exc_info=(type(result), result, result.__traceback__),
                )
        self._report_skipped(skipped)
        return extras

    @staticmethod
    def _report_skipped(skipped: dict[SeriesKey, FleetError]) -> None:
        """One line per cycle for the series that could not be fetched, never one per series.

        While a circuit breaker is open the breaker has already warned once; the skipped cycles
        are then logged at info level, so an outage does not flood the log.
        """
        if not skipped:
            return
        names = [f"{key.symbol} {key.timeframe}" for key in skipped]
        first = next(iter(skipped.values()))
        breaker_open = all(isinstance(error, CircuitOpen) for error in skipped.values())
        (log.info if breaker_open else log.warning)(
            "series skipped this cycle",
            count=len(names),
            series=names[:10],
            error=str(first),
        )

    def _new_candle(self, key: SeriesKey) -> bool:
        state = self._series[key]
        candles = state.candles
        return candles is not None and len(candles) > 0 and int(candles.ts[-1]) > state.last_scanned_ts

    def _mark_scanned(self, key: SeriesKey) -> None:
        state = self._series[key]
        if state.candles is not None and len(state.candles):
            state.last_scanned_ts = int(state.candles.ts[-1])

    def _scan_series(
        self, key: SeriesKey, now: int, extras: dict[str, SymbolExtras], *, followers: bool
    ) -> None:
        """Scan the bots of one series whose newest candle is new: the others, or the followers."""
        state = self._series[key]
        candles = state.candles
        assert candles is not None  # only series with a new candle are scanned
        for bot, symbol in state.bots:
            if bool(bot.needs.peer_signals_ms) != followers:
                continue
            others: dict[str, Candles] = {}
            for extra in bot.needs.extra_timeframes:
                extra_candles = self._series[SeriesKey(symbol, extra)].candles
                if extra_candles is not None:
                    others[extra] = extra_candles
            if bot.needs.extras and symbol not in extras:
                continue  # its extras failed this cycle (reported); it scans at the next close
            got = extras.get(symbol, SymbolExtras())
            data = MarketData(
                candles=candles,
                other_timeframes=others,
                keep_from=len(candles) - 1,
                funding=got.funding,
                trades=got.trades,
                book=got.book,
                ticker=got.ticker,
                peer_signals=self._peer_signals(bot, symbol, now) if followers else (),
            )
            structlog.contextvars.bind_contextvars(bot=bot.name)
            try:
                setups = bot.strategy.scan(data, bot.settings.params)
            except Exception as exc:
                log.exception("strategy raised; the bot continues next cycle", symbol=symbol)
                self._observer.scan_failed(bot.name, symbol, exc)
                continue
            finally:
                structlog.contextvars.unbind_contextvars("bot")
            for setup in setups:
                if setup.bar_ts == int(candles.ts[-1]):
                    self._emit(bot, symbol, setup, now, candles)

    def _peer_signals(self, bot: BotRuntime, symbol: str, now: int) -> tuple[Signal, ...]:
        """The other bots' signals on ``symbol`` created within the bot's window, oldest first."""
        since = now - bot.needs.peer_signals_ms
        return tuple(
            stored.signal
            for stored in self._store.recent_signals(symbol, since)
            if stored.signal.bot != bot.name and stored.signal.created_ms <= now
        )

    def _emit(self, bot: BotRuntime, symbol: str, setup: Setup, now: int, candles: Candles) -> None:
        tick = self._source.market(symbol).tick_size
        settings = bot.settings
        try:
            levels = calculate_levels(setup, settings.risk_for(symbol), tick)
        except LevelsRejected as exc:
            self._events.emit(
                EventType.SIGNAL_REJECTED,
                bot=bot.name,
                symbol=symbol,
                timeframe=settings.timeframe,
                direction=setup.direction.value,
                bar_ts=setup.bar_ts,
                reason=exc.reason.value,
                detail=str(exc),
            )
            return
        signal = Signal(
            id=signal_id(bot.name, symbol, settings.timeframe, setup.bar_ts, setup.direction.value),
            bot=bot.name,
            symbol=symbol,
            timeframe=settings.timeframe,
            direction=setup.direction,
            levels=levels,
            reason=setup.reason,
            bar_ts=setup.bar_ts,
            created_ms=now,
            context=setup.context,
            key_points=setup.key_points,
        )
        rules = GateRules(cooldown_ms=settings.cooldown_ms, max_open_signals=settings.max_open_signals)
        chart = self._charts_dir is not None and settings.chart
        verdict = self._store.admit_signal(signal, rules, now, signal_card(signal, tick), chart=chart)
        if verdict is GateVerdict.ALREADY_OPEN and bot.needs.peer_signals_ms and setup.context.get("update"):
            self._queue_update(bot, symbol, setup, now)
            return
        if verdict is not GateVerdict.ACCEPTED:
            self._events.emit(
                EventType.SIGNAL_REJECTED,
                bot=bot.name,
                symbol=symbol,
                timeframe=settings.timeframe,
                direction=setup.direction.value,
                bar_ts=setup.bar_ts,
                reason="GATE",
                detail=verdict.value,
                signal_id=signal.id,
            )
            return
        if chart:
            self._draw_chart(signal, candles, tick)
        self._events.emit(
            EventType.SIGNAL_EMITTED,
            signal_id=signal.id,
            bot=bot.name,
            symbol=symbol,
            timeframe=settings.timeframe,
            direction=signal.direction.value,
            entry=levels.entry,
            sl=levels.sl,
            tps=list(levels.tps),
            bar_ts=setup.bar_ts,
            reason=setup.reason,
            context=dict(setup.context),
        )

    def _queue_update(self, bot: BotRuntime, symbol: str, setup: Setup, now: int) -> None:
        """A follower's setup on a symbol and side it already has open: a reply to that alert.

        consensus_bot marks a bar where another bot joined a live consensus with ``update``; the
        open consensus signal gets one CONSENSUS UPDATE reply per newcomer instead of a new alert.
        """
        open_signal = next(
            (
                stored.signal
                for stored in self._store.open_signals((bot.name,))
                if stored.signal.symbol == symbol and stored.signal.direction is setup.direction
            ),
            None,
        )
        if open_signal is not None and self._store.queue_update(
            open_signal.id, update_message(bot.name, setup), now
        ):
            self._events.emit(
                EventType.SIGNAL_UPDATED,
                signal_id=open_signal.id,
                bot=bot.name,
                symbol=symbol,
                bar_ts=setup.bar_ts,
                reason=setup.reason,
                context=dict(setup.context),
            )

    def _draw_chart(self, signal: Signal, candles: Candles, tick: float | None) -> None:
        """Draw the alert's chart in a worker thread; the alert waits for it (briefly), nothing else does."""
        assert self._charts_dir is not None
        path = self._charts_dir / f"{signal.id}.png"
        bars = self._config.telegram.chart_candles

        async def draw() -> None:
            try:
                spec = chart_spec(signal, candles, bars=bars, tick_size=tick)
                await asyncio.to_thread(render_chart, spec, path)
            except Exception as exc:  # a chart is a nicety: the alert goes out without it
                log.warning(
                    "chart not drawn; the alert goes out as text", signal_id=signal.id, error=str(exc)
                )
                self._store.chart_failed(signal.id)
            else:
                self._store.attach_chart(signal.id, str(path))
            self._wake_delivery.set()

        task = asyncio.create_task(draw(), name=f"chart-{signal.id}")
        self._chart_tasks.add(task)
        task.add_done_callback(self._chart_tasks.discard)

    async def _track(self, fetched: list[SeriesKey], now: int) -> None:
        """Advance every open signal whose series was fetched over its new candles, oldest first.

        After a restart, a signal last checked before the fetched window gets the candles it missed
        first (one longer fetch), so a level touched while the process was down is found with the
        right candle. Each signal's progress is saved every cycle; a target hit queues a reply, a
        close queues the result, each in one transaction with the progress.
        """
        fresh = set(fetched)
        bots = {bot.name: bot for bot in self._bots}
        fee = self._config.tracking.fee_pct_per_side
        progressed: list[tuple[str, Position]] = []
        for stored in self._store.open_signals(tuple(bots)):
            signal = stored.signal
            key = SeriesKey(signal.symbol, signal.timeframe)
            candles = self._series[key].candles if key in fresh else None
            if candles is None or len(candles) == 0:
                continue
            bot = bots[signal.bot]
            candles = await self._with_missed_candles(key, candles, stored.position.checked_until)
            plan = bot.settings.exit_plan(fee)
            trail = self._trail(bot, signal, candles) if plan.trailing else None
            before = stored.position
            position = advance(signal, before, candles, plan, trail)
            if position.closed:
                await self._close(signal, position, plan)
            elif len(position.fills) > len(before.fills):
                new_fills = position.fills[len(before.fills) :]
                tick = self._source.market(signal.symbol).tick_size
                message = progress_message(signal, new_fills, position, tick)
                if self._store.save_progress_with_update(signal.id, position, message, now):
                    for fill in new_fills:
                        self._events.emit(
                            EventType.SIGNAL_PARTIAL_EXIT,
                            signal_id=signal.id,
                            bot=signal.bot,
                            symbol=signal.symbol,
                            exit_reason=fill.reason,
                            exit_price=fill.price,
                            fraction=round(fill.fraction, 6),
                            remaining=round(position.remaining, 6),
                            stop=position.stop,
                        )
            elif position != before:
                progressed.append((signal.id, position))
        self._store.save_progress(progressed)

    async def _with_missed_candles(self, key: SeriesKey, candles: Candles, checked_until: int) -> Candles:
        """``candles``, reaching back to the first candle after ``checked_until`` if they do not yet."""
        period = timeframe_ms(key.timeframe)
        missing = (int(candles.ts[0]) - checked_until) // period - 1
        if missing <= 0:
            return candles
        wanted = len(candles) + missing
        if wanted > MAX_CATCH_UP_CANDLES:
            log.warning(
                "too many candles missed to replay them all; tracking resumes from the oldest reachable",
                symbol=key.symbol,
                timeframe=key.timeframe,
                missed=missing,
            )
            wanted = MAX_CATCH_UP_CANDLES
        try:
            longer = await self._source.closed_candles(key.symbol, key.timeframe, wanted)
        except FleetError as exc:
            log.warning("could not fetch the candles missed while down; next cycle", error=str(exc))
            return candles.slice(0, 0)  # track nothing rather than skip the missed candles
        log.info("replaying candles missed while the process was down", symbol=key.symbol, candles=missing)
        return longer

    def _trail(self, bot: BotRuntime, signal: Signal, candles: Candles) -> FloatArray | None:
        """The bot's trailing-stop line over ``candles`` for the signal's side (None if it has none)."""
        if not isinstance(bot.strategy, TrailingStops):
            return None
        try:
            line: FloatArray = bot.strategy.trailing_stop(
                MarketData(candles=candles), bot.settings.params, signal.direction
            )
        except Exception:
            log.exception("trailing stop raised; the stop stays where it is", signal_id=signal.id)
            return None
        return line

    async def _close(self, signal: Signal, position: Position, plan: ExitPlan) -> None:
        """Settle a closed position (with funding for a perpetual) and queue its result."""
        funding_pct: float | None = 0.0
        if ":" in signal.symbol:
            try:
                funding = await self._source.funding_since(signal.symbol, signal.created_ms)
            except FleetError as exc:
                log.warning("funding unavailable; P&L without it", signal_id=signal.id, error=str(exc))
                funding = None
            funding_pct = None if funding is None else funding_paid_pct(signal, position.fills, funding)
        outcome = settle(signal, position, plan, funding_pct)
        tick = self._source.market(signal.symbol).tick_size
        record_close(self._store, self._events, signal, outcome, position.checked_until, tick)

    def _maybe_status(self, now: int) -> None:
        """A STATUS event at most every ``runner.status_interval_s`` of the run's clock.

        The run's clock, so a replay writes one every 5 simulated minutes as a live run does (its
        ``uptime_s`` is the process's real uptime). Realised R and % are each bot's closed signals'
        totals (the whole record in the store, net of fees and funding).
        """
        interval_ms = int(self._config.runner.status_interval_s * 1000)
        if self._last_status_ms is not None and now - self._last_status_ms < interval_ms:
            return
        self._last_status_ms = now
        names = tuple(bot.name for bot in self._bots)
        open_by_bot = dict.fromkeys(names, 0)
        for stored in self._store.open_signals(names):
            open_by_bot[stored.signal.bot] += 1
        realised = {
            name: {"trades": record.trades, "r": round(record.total_r, 4), "pct": round(record.total_pct, 4)}
            for name in names
            for record in (self._store.bot_record(name),)
        }
        self._events.emit(
            EventType.STATUS,
            uptime_s=round(time.monotonic() - self._started_monotonic, 1),
            cycles=self.cycles,
            open_signals=open_by_bot,
            realised=realised,
            last_cycle_s=None if self._last_cycle_s is None else round(self._last_cycle_s, 3),
            last_cycle_at=self._last_cycle_ms,
            breakers=dict(self._source.breakers()),
            pending_messages=self._notifier.backlog(),
        )
