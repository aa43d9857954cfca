"""The command line: ``python -m bots run|backtest|list|check-config|stats|export|close|health|logs summary``.

Exit status: 0 on a clean stop, 2 on invalid configuration or usage (before any network call),
1 when nothing can run or an unexpected error stopped the process. Errors are one line on stderr;
tracebacks go only to the log file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

from dotenv import load_dotenv

from bots import REGISTRY
from bots import cli_arguments as arguments
from bots import cli_tools as tools
from bots.base import DataNeeds, Strategy, TrailingStops
from common.backtest import default_report_dir, follow_progress, prepare_report_dir, write_report
from common.clock import Clock, SimulatedClock, WallClock, utc_text
from common.config import (
    MEXC_TIMEFRAMES,
    BotSettings,
    FleetConfig,
    Settings,
    load_config,
    resolve_symbol,
)
from common.errors import ConfigError, FleetError
from common.events import EventLog, EventType
from common.export import iso_utc
from common.logging_config import configure_logging, get_logger
from common.market import MarketSource
from common.market.files import file_stem, find_named
from common.market.mexc import MexcSource
from common.market.replay import FILE_TIMEFRAMES, ReplaySource
from common.notifier import ConsoleNotifier, Notifier, TelegramNotifier
from common.observe import NO_OBSERVER, Observer
from common.ops import Operations, RunParts
from common.runner import BotRuntime, Runner
from common.store import Store
from common.summary import summary_table

#: Alert charts are kept this long (dry-run prints their paths; Telegram has its own copy).
CHART_KEEP_DAYS = 7.0
#: Of the shutdown limit, the last second is kept for closing connections and leaving the interpreter.
CLOSE_RESERVE_S = 1.0
#: No send starts later than this before the reserve; one still on the wire then is cut at the reserve.
SEND_GRACE_S = 0.5

log = get_logger("bots.cli")

_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


class _Parser(argparse.ArgumentParser):
    """argparse with the fleet's rule for bad input: one line on stderr (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m bots", description="Crypto signal bots for MEXC.")
    parser.add_argument(
        "--config",
        type=Path,
        help="path of global_config.json (default: $BOTS_CONFIG or ./global_config.json)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one bot, several, or the whole fleet (--all)")
    run.add_argument("names", nargs="*", metavar="NAME", help="bot names (see `list`)")
    run.add_argument("--all", action="store_true", help="every enabled bot in one process")
    run.add_argument("--once", action="store_true", help="one cycle on the current closed candles, then exit")
    run.add_argument("--dry-run", action="store_true", help="print alerts to the console instead of Telegram")
    run.add_argument(
        "--source", default="mexc", help="mexc (live, default) or replay:DIR[,DIR...] (history files)"
    )
    run.add_argument(
        "--start",
        type=arguments.utc_ms,
        metavar="ISO-TIME",
        help="replay only: begin at this UTC time (e.g. 2024-08-01) instead of the first warm bar",
    )
    run.add_argument(
        "--health-port",
        type=arguments.port,
        metavar="N",
        help="serve /health and /metrics on 127.0.0.1:N (0: off); default: the config's health section",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=_LOG_LEVELS,
        help="console log level (the log file always has DEBUG)",
    )
    _backtest_arguments(commands)
    stats = commands.add_parser("stats", help="the record of closed signals per bot, symbol or both")
    stats.add_argument("--bot", help="only this bot")
    stats.add_argument("--symbol", help="only this symbol")
    stats.add_argument(
        "--since", type=arguments.utc_ms, metavar="DATE", help="only signals created since (UTC)"
    )
    stats.add_argument("--by", choices=["bot", "symbol", "bot_symbol"], default="bot", help="grouping (bot)")
    stats.add_argument("--worst", type=int, metavar="N", help="the N (bot, symbol) pairs that lose most")
    stats.add_argument(
        "--suggest-exclusions",
        type=int,
        metavar="MIN_TRADES",
        help="the bots' symbol lists without the pairs losing on average over >= MIN_TRADES trades",
    )
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    stats.add_argument("--store", type=Path, metavar="DIR", help="read this store (e.g. a backtest report)")
    export = commands.add_parser("export", help="every signal with its outcome, for a telemetry store")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument(
        "--since", type=arguments.utc_ms, metavar="DATE", help="only signals created since (UTC)"
    )
    export.add_argument("--output", type=Path, help="write to this file atomically (default: stdout)")
    close = commands.add_parser("close", help="close an open signal by hand (exit reason MANUAL)")
    close.add_argument("signal_id", metavar="SIGNAL_ID", help="the id shown on the alert (🆔)")
    close.add_argument(
        "--price", type=arguments.positive_price, required=True, help="the price it was closed at"
    )
    export.add_argument("--store", type=Path, metavar="DIR", help="read this store (e.g. a backtest report)")
    commands.add_parser("list", help="the bots, whether enabled, their timeframe and symbols")
    commands.add_parser("check-config", help="validate global_config.json and the environment")
    _operations_parsers(commands)
    return parser


def _operations_parsers(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``health`` (common/healthcheck.py) and ``logs summary`` (common/logsummary.py)."""
    health = commands.add_parser(
        "health",
        help="check a running installation (for cron): exit 0 healthy, 1 unhealthy, 2 usage error",
        description="Prints one line per problem. Checks the fleet's HTTP /health (or, with --units, the "
        "systemd units), the age of the newest event-log line and the outbox backlog in the store.",
    )
    health.add_argument(
        "--url",
        type=arguments.http_url,
        help="the health endpoint (default: http://127.0.0.1:<health.port>/health)",
    )
    health.add_argument("--no-http", action="store_true", help="skip the HTTP check")
    health.add_argument(
        "--units",
        nargs="*",
        metavar="UNIT",
        help="check systemd units instead of HTTP (unless --url is given): the named ones must be "
        "active; without names, signal-fleet.service and signal-bot@*.service may not be failed or "
        "restarting and one must be active",
    )
    health.add_argument(
        "--max-event-age",
        type=arguments.positive,
        metavar="MINUTES",
        help="newest event at most this old (default: 3 STATUS intervals, or the shortest enabled "
        "timeframe + 10 min if longer: 15 with the shipped configuration)",
    )
    health.add_argument(
        "--max-pending", type=arguments.count, default=200, metavar="N", help="outbox messages waiting (200)"
    )
    health.add_argument(
        "--max-pending-age",
        type=arguments.positive,
        default=15.0,
        metavar="MINUTES",
        help="age of the oldest waiting outbox message (15)",
    )
    health.add_argument(
        "--timeout", type=arguments.positive, default=5.0, metavar="SECONDS", help="HTTP / systemctl (5)"
    )
    health.add_argument("-q", "--quiet", action="store_true", help="print nothing when healthy (for cron)")
    logs = commands.add_parser("logs", help="read the event log and the process logs")
    logs_commands = logs.add_subparsers(dest="logs_command", required=True)
    summary = logs_commands.add_parser(
        "summary", help="events per type, alerts and closes per bot, refusals and logged errors by kind"
    )
    summary.add_argument(
        "--since", type=arguments.utc_ms, metavar="DATE", help="only what happened since (UTC)"
    )
    summary.add_argument("--json", action="store_true", help="JSON instead of text")
    summary.add_argument("--replay", action="store_true", help="the replays' logs instead of the live ones")


def _backtest_arguments(commands: argparse._SubParsersAction[_Parser]) -> None:
    """The ``backtest`` command's arguments (``commands`` is the parser's subparsers action)."""
    backtest = commands.add_parser(
        "backtest", help="replay history through bots (dry-run, no alert sent) and write a report"
    )
    backtest.add_argument("names", nargs="*", metavar="NAME", help="bot names (see `list`)")
    backtest.add_argument("--all", action="store_true", help="every enabled bot")
    backtest.add_argument(
        "--data",
        required=True,
        type=arguments.folders,
        metavar="DIR[,DIR...]",
        help="folders of history files",
    )
    backtest.add_argument(
        "--from", dest="start", type=arguments.utc_ms, metavar="ISO-TIME", help="begin here (UTC)"
    )
    backtest.add_argument(
        "--to", dest="end", type=arguments.utc_ms, metavar="ISO-TIME", help="end here (UTC)"
    )
    backtest.add_argument(
        "--symbols", nargs="+", type=arguments.symbol, metavar="SYMBOL", help="replace every bot's symbols"
    )
    backtest.add_argument(
        "--timeframe",
        choices=MEXC_TIMEFRAMES,
        help="replace every bot's timeframe (bots that cannot use it are skipped)",
    )
    backtest.add_argument(
        "--report", type=Path, metavar="DIR", help="report folder (default: backtests/<UTC time>)"
    )
    backtest.add_argument(
        "--log-level", default="WARNING", choices=_LOG_LEVELS, help="console log level (default WARNING)"
    )


def _param_models() -> dict[str, Any]:
    return {name: strategy.params_model for name, strategy in REGISTRY.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bots``; returns the exit status."""
    args = _parser().parse_args(argv)
    os.umask(0o077)  # every file we create is 0600 and every directory 0700
    try:
        load_dotenv(Path(".env"), override=False)
    except OSError as exc:
        print(f"config error: .env: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(config_override=args.config)
        config = load_config(settings.config_path, _param_models())
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return _COMMANDS.get(args.command, _run_command)(args, settings, config)


def _describe(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """``check-config`` (every bot's parameters fit its timeframe) and ``list`` (one line per bot)."""
    if args.command == "check-config":
        try:
            for entry in config.bots.values():
                _needs(config.path, entry)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return 2
        enabled = sum(1 for bot in config.bots.values() if bot.enabled)
        print(f"{config.path}: OK ({len(config.bots)} bots, {enabled} enabled)")
        return 0
    for name in REGISTRY:
        bot = config.bots.get(name)
        if bot is None:
            print(f"{name:<20} not configured")
        else:
            state = "enabled " if bot.enabled else "disabled"
            print(f"{name:<20} {state} {bot.timeframe:<4} {', '.join(bot.symbols)}")
    return 0


@dataclass(frozen=True)
class _RunPlan:
    bots: list[BotRuntime]
    replay_dirs: list[Path] | None
    dry_run: bool
    replay_from_ms: int | None = None
    health_port: int | None = None  # where /health and /metrics are served; None: not served
    replay_until_ms: int | None = None
    # A backtest: the store, its events and the report go here; no alert is printed.
    report_dir: Path | None = None


def _health_port(args: argparse.Namespace, config: FleetConfig, replay: bool) -> int | None:
    """Where a run serves /health and /metrics, or None.

    ``--health-port N`` decides (0: off); without it the config does: ``health.fleet`` for
    ``run --all``, ``health.per_bot`` for named bots, and only for a looping run (not ``--once``).
    A replay never serves them.
    """
    if replay:
        if args.health_port is not None:
            raise ConfigError("run: --health-port does not apply to a replay (it serves no health endpoints)")
        return None
    if args.health_port is not None:
        return args.health_port or None
    wanted = config.health.fleet if args.all else config.health.per_bot
    return config.health.port if wanted and not args.once else None


def _needs(path: Path, settings: BotSettings) -> DataNeeds:
    """What a bot needs with its parameters and timeframe; a mismatch between them (a timeframe the
    strategy cannot use, say, or a trailing stop it has no line for) is a one-line ConfigError naming
    the bot."""
    if settings.trailing_stop and not isinstance(REGISTRY[settings.name], TrailingStops):
        raise ConfigError(
            f"{path}: bots.{settings.name}.trailing_stop: this strategy has no stop line to trail "
            "(psar_bot and most_bot have)"
        )
    try:
        return REGISTRY[settings.name].needs(settings.params, settings.timeframe)
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: bots.{settings.name}: {message}") from None


def _bot_names(args: argparse.Namespace, config: FleetConfig, *, allow_disabled: bool) -> list[str]:
    """The bots named on the command line (or every enabled one with ``--all``), checked."""
    if args.all and args.names:
        raise ConfigError(f"{args.command}: give bot names or --all, not both")
    if not args.all and not args.names:
        raise ConfigError(f"{args.command}: name a bot (see `python -m bots list`) or use --all")
    names = [n for n, b in config.bots.items() if b.enabled] if args.all else list(dict.fromkeys(args.names))
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"{args.command}: unknown bot {name!r} (known: {', '.join(REGISTRY)})")
        if name not in config.bots:
            raise ConfigError(f"{config.path}: bots.{name}: the bot has no entry in the configuration")
        if not config.bots[name].enabled and not allow_disabled:
            raise ConfigError(f"{config.path}: bots.{name}.enabled is false; enable it to run it")
    if not names:
        raise ConfigError(f"{config.path}: no bot is enabled")
    return names


def _plan(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> _RunPlan:
    """Turn the run arguments into a plan, or raise ConfigError with one line."""
    names = _bot_names(args, config, allow_disabled=False)
    source: str = args.source
    replay_dirs = None
    if source.startswith("replay:") and source.removeprefix("replay:").strip(","):
        # Several folders, comma-separated: candles, funding and trades may live apart.
        replay_dirs = [Path(part) for part in source.removeprefix("replay:").split(",") if part]
    elif source != "mexc":
        raise ConfigError(f"run: --source {source!r}: use mexc or replay:DIR[,DIR...]")
    bots = []
    for name in names:
        strategy: Strategy[Any] = REGISTRY[name]
        bot_settings = config.bots[name]
        bots.append(
            BotRuntime(settings=bot_settings, strategy=strategy, needs=_needs(config.path, bot_settings))
        )
    # Replaying history to a real channel would flood it with old alerts: replay is always dry-run.
    no_token = all(settings.token_for(name) is None for name in names)
    dry_run = args.dry_run or replay_dirs is not None or no_token
    if args.start is not None and replay_dirs is None:
        raise ConfigError("run: --start only applies to a replay (--source replay:DIR)")
    return _RunPlan(
        bots=bots,
        replay_dirs=replay_dirs,
        dry_run=dry_run,
        replay_from_ms=args.start,
        health_port=_health_port(args, config, replay_dirs is not None),
    )


def _backtest_plan(args: argparse.Namespace, config: FleetConfig, notes: list[str]) -> _RunPlan:
    """Turn the backtest arguments into a plan; add to ``notes`` one line per skipped bot or symbol.

    ``--timeframe`` and ``--symbols`` override each selected bot's settings. A bot whose strategy
    cannot use the new timeframe is skipped; a symbol without any candle file in the folders is
    skipped for every bot; anything else wrong is a ConfigError (one line).
    """
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise ConfigError("backtest: --from must be before --to")
    names = _bot_names(args, config, allow_disabled=True)
    wanted = [s for name in names for s in _symbols_for(config.bots[name], args.symbols)]
    missing = _stems_without_data(wanted, args.data)
    folders = ", ".join(str(folder) for folder in args.data)
    for stem in missing:
        symbol = next(s for s in wanted if file_stem(s) == stem)
        notes.append(f"backtest: no candle file for {symbol} in {folders} ({stem}-*.csv[.gz]); skipped")
    bots = []
    for name in names:
        configured = config.bots[name]
        symbols = tuple(s for s in _symbols_for(configured, args.symbols) if file_stem(s) not in missing)
        if not symbols:
            notes.append(f"backtest: {name} skipped: none of its symbols has data")
            continue
        settings = replace(
            configured,
            symbols=symbols,
            timeframe=args.timeframe or configured.timeframe,
            # A symbol's own risk block stays with that symbol when it is still traded.
            symbol_risk={s: r for s, r in configured.symbol_risk.items() if s in symbols},
        )
        try:
            needs = _needs(config.path, settings)
        except ConfigError as exc:
            if settings.timeframe == configured.timeframe:
                raise
            notes.append(f"backtest: {name} skipped: it cannot run on {settings.timeframe} ({exc})")
            continue
        bots.append(BotRuntime(settings=settings, strategy=REGISTRY[name], needs=needs))
    if not bots:
        raise ConfigError("backtest: no bot left to run")
    return _RunPlan(
        bots=bots,
        replay_dirs=args.data,
        dry_run=True,
        replay_from_ms=args.start,
        replay_until_ms=args.end,
        report_dir=args.report or default_report_dir(),
    )


def _symbols_for(settings: BotSettings, wanted: Sequence[str] | None) -> list[str]:
    """The symbols a bot backtests: ``wanted`` (``--symbols``) on the bot's market, else its own.

    A bot keeps its market: ``BTC/USDT`` becomes ``BTC/USDT:USDT`` for a bot configured on
    perpetual swaps (funding_bot), and a symbol naming its settle currency is a swap for every bot.
    """
    if not wanted:
        return list(settings.symbols)
    market = "swap" if ":" in settings.symbols[0] else "spot"
    return list(dict.fromkeys(resolve_symbol(symbol, None, market) for symbol in wanted))


def _stems_without_data(symbols: Sequence[str], folders: Sequence[Path]) -> list[str]:
    """The file stems (``BTC_USDT``) of ``symbols`` without a candle file of any timeframe in any of
    ``folders``, in order: spot and swap symbols of one pair read the same files."""
    missing = []
    for stem in dict.fromkeys(file_stem(symbol) for symbol in symbols):
        names = [f"{stem}-{tf}" for tf in FILE_TIMEFRAMES]
        if not any(find_named(folder, name) for folder in folders for name in names):
            missing.append(stem)
    return missing


def _backtest_command(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    notes: list[str] = []
    try:
        plan = _backtest_plan(args, config, notes)
        assert plan.report_dir is not None
        prepare_report_dir(plan.report_dir)
    except ConfigError as exc:
        notes.append(f"error: {exc}")
        return 2
    finally:
        for note in notes:
            print(note, file=sys.stderr)
    process_name = "backtest-" + ("fleet" if args.all else "-".join(bot.name for bot in plan.bots))
    return _execute(plan, settings, config, process_name, args.log_level, once=False)


def _run_command(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    try:
        plan = _plan(args, settings, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    process_name = "fleet" if args.all else "-".join(bot.name for bot in plan.bots)
    if plan.replay_dirs is not None:
        process_name = f"replay-{process_name}"
    no_token = all(settings.token_for(bot.name) is None for bot in plan.bots) and not args.dry_run
    return _execute(plan, settings, config, process_name, args.log_level, once=args.once, no_token=no_token)


def _execute(
    plan: _RunPlan,
    settings: Settings,
    config: FleetConfig,
    process_name: str,
    log_level: str,
    *,
    once: bool,
    no_token: bool = False,
) -> int:
    """Configure logging and run the plan; map what ended it to an exit status (0, or 1 on an error)."""
    configure_logging(
        log_dir=settings.log_dir,
        process_name=process_name,
        secrets=settings.secrets(),
        console_level=log_level,
    )
    if no_token:
        log.warning("TELEGRAM_BOT_TOKEN is not set: running in dry-run, alerts go to the console")
    try:
        return asyncio.run(_run(plan, settings, config, once=once))
    except FleetError as exc:
        log.error("stopped", error=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        log.exception("fatal error")
        print(f"fatal: {type(exc).__name__}: {exc} (details in {settings.log_dir})", file=sys.stderr)
        return 1


async def _run(plan: _RunPlan, settings: Settings, config: FleetConfig, *, once: bool) -> int:
    clock: Clock
    source: MarketSource
    # A live run is a service: metrics, health and systemd notifications. A replay is not.
    ops = None if plan.replay_dirs else Operations.from_env(config.health, plan.health_port)
    observer = NO_OBSERVER if ops is None else ops.observer
    replay_source: ReplaySource | None = None
    if plan.replay_dirs is not None:
        replay_source = ReplaySource(plan.replay_dirs, SimulatedClock(0), until_ms=plan.replay_until_ms)
        clock, source = replay_source.clock, replay_source
    else:
        clock = WallClock()
        key, secret = settings.mexc_api_key, settings.mexc_api_secret
        source = MexcSource(
            config.exchange,
            clock,
            base_url=settings.mexc_api_base_url,
            api_key=key.get_secret_value() if key else None,
            api_secret=secret.get_secret_value() if secret else None,
            observer=observer,
        )
    replay = plan.replay_dirs is not None
    store, events = _store_and_events(plan, settings, clock)
    notifier = _notifier(plan, settings, config, store, clock, observer)
    stop = asyncio.Event()
    _install_signal_handlers(stop, events)
    runner = Runner(
        bots=plan.bots,
        source=source,
        store=store,
        notifier=notifier,
        clock=clock,
        events=events,
        config=config,
        stop=stop,
        close_delay_ms=0 if plan.replay_dirs else round(config.exchange.candle_close_delay_s * 1000),
        # A replay draws no charts: hundreds of images of history nobody is sent.
        charts_dir=None if replay else _chart_dir(settings.state_dir / "charts"),
        replay_from_ms=plan.replay_from_ms,
        observer=observer,
    )
    progress: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        if ops is not None and isinstance(source, MexcSource):
            await ops.start(
                RunParts(runner=runner, store=store, notifier=notifier, source=source, clock=clock)
            )
        await runner.prepare(wait_for_source=not once)
        if not runner.bots:
            raise FleetError("no bot can run (see the errors above)")
        backtest = replay_source if plan.report_dir is not None else None
        if backtest is not None:
            progress = asyncio.create_task(follow_progress(backtest.clock, backtest.end_ms(), sys.stderr))
        await _run_until_stopped(
            runner,
            stop,
            once=once,
            limit_s=config.runner.shutdown_timeout_s,
            events=events,
            on_stopping=ops.stopping if ops is not None else None,
        )
        if progress is not None:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        if backtest is not None:
            _report(plan, runner, store, backtest, wall_s=time.monotonic() - started)
        elif replay:
            print(summary_table(store.all_signals()))
        return 0
    finally:
        if ops is not None:
            await ops.close()
        if progress is not None:
            progress.cancel()
        await notifier.close()
        await source.close()
        store.close()
        events.close()


def _store_and_events(plan: _RunPlan, settings: Settings, clock: Clock) -> tuple[Store, EventLog]:
    """The run's store and event log.

    A replay keeps its own: its signals must never be tracked, counted by the gate or reported as
    results by a live run sharing the same directories. A backtest keeps them in its report folder.
    """
    replay = plan.replay_dirs is not None
    if plan.report_dir is not None:
        store_dir, events_dir = plan.report_dir, plan.report_dir / "events"
    else:
        store_dir = settings.state_dir / "replay" if replay else settings.state_dir
        events_dir = settings.log_dir / ("replay-events" if replay else "events")
    return Store(store_dir), EventLog(events_dir, clock, secrets=settings.secrets())


def _notifier(
    plan: _RunPlan, settings: Settings, config: FleetConfig, store: Store, clock: Clock, observer: Observer
) -> Notifier:
    """Telegram, or the console in a dry-run; a backtest prints no alert (its product is the report)."""
    if not plan.dry_run:
        return TelegramNotifier(store, clock, settings, config.telegram, observer=observer)
    return ConsoleNotifier(
        store, clock, _Discard() if plan.report_dir is not None else None, observer=observer
    )


class _Discard(io.StringIO):
    """A text stream that keeps nothing: where a backtest's dry-run messages go."""

    def write(self, text: str) -> int:
        """Accept ``text`` and drop it."""
        return len(text)


def _report(
    plan: _RunPlan,
    runner: Runner,
    store: Store,
    source: ReplaySource,
    *,
    wall_s: float,
) -> None:
    """Write a finished backtest's report next to its store; print the table and where it is."""
    assert plan.report_dir is not None
    clock = source.clock
    start = clock.started_ms if clock.started_ms is not None else clock.now_ms()
    end = clock.now_ms()
    candles = source.candles_between(start, end)
    facts = {
        "bots": {
            bot.name: {"timeframe": bot.settings.timeframe, "symbols": list(bot.settings.symbols)}
            for bot in runner.bots
        },
        "data": [str(folder) for folder in source.directories],
        "from": None if plan.replay_from_ms is None else iso_utc(plan.replay_from_ms),
        "to": None if plan.replay_until_ms is None else iso_utc(plan.replay_until_ms),
        "cycles": runner.cycles,
        "candles": candles,
        "wall_seconds": round(wall_s, 3),
        "candles_per_second": round(candles / wall_s, 1) if wall_s > 0 else None,
    }
    bots = [bot.name for bot in runner.bots]
    table = write_report(plan.report_dir, store.all_signals(), bots, start, end, facts)
    print(table)
    late = ""
    if plan.replay_from_ms is not None and start > plan.replay_from_ms:
        late = f"; before {utc_text(start)} not every series had its warm-up, so --from was moved there"
    print(f"\nreport: {plan.report_dir} ({utc_text(start)} to {utc_text(end)}, {candles:,} candles{late})")


def _chart_dir(path: Path, keep_days: float = CHART_KEEP_DAYS) -> Path:
    """The private folder alert charts are drawn in; charts older than ``keep_days`` are deleted."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    cutoff = time.time() - keep_days * 86_400
    for chart in path.glob("*.png"):
        with contextlib.suppress(FileNotFoundError):  # another process may prune at the same time
            if chart.stat().st_mtime < cutoff:
                chart.unlink()
    return path


async def _run_until_stopped(
    runner: Runner,
    stop: asyncio.Event,
    *,
    once: bool,
    limit_s: float,
    events: EventLog,
    on_stopping: Callable[[], None] | None = None,
) -> None:
    """Run the loop; on a stop request finish the cycle in flight and deliver, all within ``limit_s``.

    The cycle in flight gets half of the limit. Delivery goes on until ``SEND_GRACE_S`` +
    ``CLOSE_RESERVE_S`` before the limit; a send still on the wire ``CLOSE_RESERVE_S`` before it is
    cut (its message stays queued and goes out at the next start, maybe twice: at-least-once), so
    the process is gone by the limit whatever Telegram does. ``on_stopping`` is called as shutdown
    begins (systemd's STOPPING=1).
    """
    loop_task = asyncio.create_task(runner.run(once=once), name="runner")
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    stopped_at = time.monotonic()
    if on_stopping is not None:
        on_stopping()
    cut_at = stopped_at + limit_s - CLOSE_RESERVE_S
    deadline = cut_at - SEND_GRACE_S
    if not stop.is_set():
        stop_task.cancel()
        loop_task.result()  # re-raise what ended the loop, if anything
        events.emit(EventType.SHUTDOWN_INITIATED, reason="finished")
    else:
        # Give the cycle in flight half the time; the other half is for delivering what it queued.
        try:
            async with asyncio.timeout(max(0.0, limit_s / 2)):
                await asyncio.shield(loop_task)
        except TimeoutError:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            log.warning("cycle in flight cancelled to respect the shutdown limit")
    try:
        # A hard limit: a send hanging past the deadline (Telegram slow, its timeout 15 s) is cut.
        async with asyncio.timeout(max(0.0, cut_at - time.monotonic())):
            await runner.flush(deadline)
    except TimeoutError:
        log.warning(
            "a send still in flight was cut at the shutdown limit; it is sent again at the next start"
        )
    pending = runner.backlog()
    events.emit(
        EventType.SHUTDOWN_COMPLETE,
        pending_messages=pending,
        cycles=runner.cycles,
        seconds=round(time.monotonic() - stopped_at, 2),
    )


def _install_signal_handlers(stop: asyncio.Event, events: EventLog) -> None:
    """First SIGINT/SIGTERM: stop taking work and shut down cleanly. Second: exit at once."""
    loop = asyncio.get_running_loop()

    def handle(name: str) -> None:
        if stop.is_set():
            log.warning("second signal: exiting at once", signal=name)
            os._exit(1)
        events.emit(EventType.SHUTDOWN_INITIATED, reason=name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig.name)


_Command = Callable[[argparse.Namespace, Settings, FleetConfig], int]
#: The commands other than ``run``, by name.
_COMMANDS: dict[str, _Command] = {
    "stats": tools.records,
    "export": tools.records,
    "close": tools.close_manually,
    "health": tools.operations,
    "logs": tools.operations,
    "check-config": _describe,
    "list": _describe,
    "backtest": _backtest_command,
}
