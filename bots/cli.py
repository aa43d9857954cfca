"""The command line: ``python -m bots run|list|check-config|stats|export|close|health|logs summary``.

Exit status: 0 on a clean stop, 2 on invalid configuration or usage (before any network call),
1 when nothing can run or an unexpected error stopped the process. Errors are one line on stderr;
tracebacks go only to the log file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from bots import REGISTRY
from bots.base import DataNeeds, Strategy, TrailingStops
from common.clock import Clock, SimulatedClock, WallClock
from common.config import FleetConfig, Settings, load_config
from common.errors import ConfigError, FleetError
from common.events import EventLog, EventType
from common.export import export_signals, write_atomically
from common.healthcheck import HealthOptions, default_event_age_s, run_checks
from common.logging_config import configure_logging, get_logger
from common.logsummary import summarize, summary_json, summary_text
from common.market import MarketSource
from common.market.mexc import MexcSource
from common.market.replay import ReplaySource
from common.notifier import ConsoleNotifier, Notifier, TelegramNotifier
from common.observe import NO_OBSERVER
from common.ops import Operations, RunParts
from common.outcomes import record_close
from common.runner import BotRuntime, Runner
from common.stats import group_stats, stats_json, stats_table, suggested_exclusions, worst_symbols
from common.store import Store
from common.summary import summary_table
from common.tracker import ExitPlan, close_manually, settle

#: Alert charts are kept this long (dry-run prints their paths; Telegram has its own copy).
CHART_KEEP_DAYS = 7.0
#: Of the shutdown limit, the last second is kept for closing connections and leaving the interpreter.
CLOSE_RESERVE_S = 1.0
#: No send starts later than this before the reserve; one still on the wire then is cut at the reserve.
SEND_GRACE_S = 0.5

log = get_logger("bots.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bots", description="Crypto signal bots for MEXC.")
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
        type=_utc_ms,
        metavar="ISO-TIME",
        help="replay only: begin at this UTC time (e.g. 2024-08-01) instead of the first warm bar",
    )
    run.add_argument(
        "--health-port",
        type=_port,
        metavar="N",
        help="serve /health and /metrics on 127.0.0.1:N (0: off); default: the config's health section",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="console log level (the log file always has DEBUG)",
    )
    stats = commands.add_parser("stats", help="the record of closed signals per bot, symbol or both")
    stats.add_argument("--bot", help="only this bot")
    stats.add_argument("--symbol", help="only this symbol")
    stats.add_argument("--since", type=_utc_ms, metavar="DATE", help="only signals created since (UTC)")
    stats.add_argument("--by", choices=["bot", "symbol", "bot_symbol"], default="bot", help="grouping (bot)")
    stats.add_argument("--worst", type=int, metavar="N", help="the N (bot, symbol) pairs that lose most")
    stats.add_argument(
        "--suggest-exclusions",
        type=int,
        metavar="MIN_TRADES",
        help="the bots' symbol lists without the pairs losing on average over >= MIN_TRADES trades",
    )
    stats.add_argument("--json", action="store_true", help="JSON instead of a table")
    export = commands.add_parser("export", help="every signal with its outcome, for a telemetry store")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--since", type=_utc_ms, metavar="DATE", help="only signals created since (UTC)")
    export.add_argument("--output", type=Path, help="write to this file atomically (default: stdout)")
    close = commands.add_parser("close", help="close an open signal by hand (exit reason MANUAL)")
    close.add_argument("signal_id", metavar="SIGNAL_ID", help="the id shown on the alert (🆔)")
    close.add_argument("--price", type=_positive_price, required=True, help="the price it was closed at")
    commands.add_parser("list", help="the bots, whether enabled, their timeframe and symbols")
    commands.add_parser("check-config", help="validate global_config.json and the environment")
    _operations_parsers(commands)
    return parser


def _operations_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``health`` (common/healthcheck.py) and ``logs summary`` (common/logsummary.py)."""
    health = commands.add_parser(
        "health",
        help="check a running installation (for cron): exit 0 healthy, 1 unhealthy, 2 usage error",
        description="Prints one line per problem. Checks the fleet's HTTP /health (or, with --units, the "
        "systemd units), the age of the newest event-log line and the outbox backlog in the store.",
    )
    health.add_argument(
        "--url", type=_http_url, help="the health endpoint (default: http://127.0.0.1:<health.port>/health)"
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
        type=_positive,
        metavar="MINUTES",
        help="newest event at most this old (default: 3 STATUS intervals, or the shortest enabled "
        "timeframe + 10 min if longer: 15 with the shipped configuration)",
    )
    health.add_argument(
        "--max-pending", type=_count, default=200, metavar="N", help="outbox messages waiting (200)"
    )
    health.add_argument(
        "--max-pending-age",
        type=_positive,
        default=15.0,
        metavar="MINUTES",
        help="age of the oldest waiting outbox message (15)",
    )
    health.add_argument(
        "--timeout", type=_positive, default=5.0, metavar="SECONDS", help="HTTP / systemctl (5)"
    )
    health.add_argument("-q", "--quiet", action="store_true", help="print nothing when healthy (for cron)")
    logs = commands.add_parser("logs", help="read the event log and the process logs")
    logs_commands = logs.add_subparsers(dest="logs_command", required=True)
    summary = logs_commands.add_parser(
        "summary", help="events per type, alerts and closes per bot, refusals and logged errors by kind"
    )
    summary.add_argument("--since", type=_utc_ms, metavar="DATE", help="only what happened since (UTC)")
    summary.add_argument("--json", action="store_true", help="JSON instead of text")
    summary.add_argument("--replay", action="store_true", help="the replays' logs instead of the live ones")


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
            for name in config.bots:
                _needs(config, name)
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


def _utc_ms(text: str) -> int:
    """An ISO time (a date alone is midnight; no zone means UTC) as Unix milliseconds, for argparse."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time such as 2024-08-01 or 2024-08-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _positive_price(text: str) -> float:
    """A price for argparse: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a price must be a number above 0")
    return value


def _close_manually(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """``close``: end an open signal at ``--price`` now (MANUAL); its result reply is queued for the
    process running its bot, which sends it at its next delivery pass.

    Funding of a perpetual is not fetched here (the command makes no network call): the result
    says funding unknown.
    """
    signal_id, price = args.signal_id, args.price
    if not (settings.state_dir / "signals.sqlite3").is_file():
        print(f"error: no store in {settings.state_dir} (set BOTS_STATE_DIR)", file=sys.stderr)
        return 1
    # The event goes to the event log (and the log file), not to the terminal: one line is printed.
    configure_logging(
        log_dir=settings.log_dir, process_name="close", secrets=settings.secrets(), console_level="WARNING"
    )
    clock = WallClock()
    store = Store(settings.state_dir)
    events = EventLog(settings.log_dir / "events", clock, secrets=settings.secrets())
    try:
        stored = store.get_signal(signal_id)
        if stored is None or stored.status != "OPEN":
            state = "no such signal" if stored is None else f"already closed ({stored.exit_reason})"
            print(f"error: close {signal_id}: {state}", file=sys.stderr)
            return 1
        signal = stored.signal
        bot = config.bots.get(signal.bot)
        fee = config.tracking.fee_pct_per_side
        plan = bot.exit_plan(fee) if bot else ExitPlan(timeout_ms=0, fee_pct_per_side=fee)
        position = close_manually(stored.position, price, clock.now_ms())
        outcome = settle(signal, position, plan, None if ":" in signal.symbol else 0.0)
        if not record_close(store, events, signal, outcome, stored.checked_until, None):
            print(f"error: close {signal_id}: it was closed meanwhile", file=sys.stderr)
            return 1
    finally:
        store.close()
        events.close()
    print(
        f"closed {signal_id} ({signal.bot} {signal.symbol} {signal.direction.value}) MANUAL at {price:g}: "
        f"{outcome.pnl_pct:+.2f}% {outcome.r_multiple:+.2f}R"
    )
    return 0


def _port(text: str) -> int:
    """A TCP port 0..65535 (0: off), for argparse."""
    if not text.isdigit() or int(text) > 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0 turns it off)")
    return int(text)


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


def _needs(config: FleetConfig, name: str) -> DataNeeds:
    """What bot ``name`` needs with its configured parameters and timeframe; a mismatch between them
    (a timeframe the strategy cannot use, say) is a one-line ConfigError naming the bot."""
    settings = config.bots[name]
    if settings.trailing_stop and not isinstance(REGISTRY[name], TrailingStops):
        raise ConfigError(
            f"{config.path}: bots.{name}.trailing_stop: this strategy has no stop line to trail "
            "(psar_bot and most_bot have)"
        )
    try:
        return REGISTRY[name].needs(settings.params, settings.timeframe)
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{config.path}: bots.{name}: {message}") from None


def _plan(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> _RunPlan:
    """Turn the run arguments into a plan, or raise ConfigError with one line."""
    if args.all and args.names:
        raise ConfigError("run: give bot names or --all, not both")
    if not args.all and not args.names:
        raise ConfigError("run: name a bot (see `python -m bots list`) or use --all")
    names = [n for n, b in config.bots.items() if b.enabled] if args.all else list(dict.fromkeys(args.names))
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"run: unknown bot {name!r} (known: {', '.join(REGISTRY)})")
        if name not in config.bots:
            raise ConfigError(f"{config.path}: bots.{name}: the bot has no entry in the configuration")
        if not config.bots[name].enabled:
            raise ConfigError(f"{config.path}: bots.{name}.enabled is false; enable it to run it")
    if not names:
        raise ConfigError(f"{config.path}: no bot is enabled")
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
        bots.append(BotRuntime(settings=bot_settings, strategy=strategy, needs=_needs(config, name)))
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


def _run_command(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    try:
        plan = _plan(args, settings, config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    process_name = "fleet" if args.all else "-".join(bot.name for bot in plan.bots)
    if plan.replay_dirs is not None:
        process_name = f"replay-{process_name}"
    configure_logging(
        log_dir=settings.log_dir,
        process_name=process_name,
        secrets=settings.secrets(),
        console_level=args.log_level,
    )
    if all(settings.token_for(bot.name) is None for bot in plan.bots) and not args.dry_run:
        log.warning("TELEGRAM_BOT_TOKEN is not set: running in dry-run, alerts go to the console")
    try:
        return asyncio.run(_run(plan, settings, config, once=args.once))
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
    if plan.replay_dirs is not None:
        simulated = SimulatedClock(0)
        clock, source = simulated, ReplaySource(plan.replay_dirs, simulated)
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
    # A replay keeps its own store and events: its signals must never be tracked, counted by the
    # gate or reported as results by a live run sharing the same directories.
    replay = plan.replay_dirs is not None
    store = Store(settings.state_dir / "replay" if replay else settings.state_dir)
    events = EventLog(
        settings.log_dir / ("replay-events" if replay else "events"), clock, secrets=settings.secrets()
    )
    notifier: Notifier = (
        ConsoleNotifier(store, clock, observer=observer)
        if plan.dry_run
        else TelegramNotifier(store, clock, settings, config.telegram, observer=observer)
    )
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
    try:
        if ops is not None and isinstance(source, MexcSource):
            await ops.start(
                RunParts(runner=runner, store=store, notifier=notifier, source=source, clock=clock)
            )
        await runner.prepare(wait_for_source=not once)
        if not runner.bots:
            raise FleetError("no bot can run (see the errors above)")
        await _run_until_stopped(
            runner,
            stop,
            once=once,
            limit_s=config.runner.shutdown_timeout_s,
            events=events,
            on_stopping=ops.stopping if ops is not None else None,
        )
        if plan.replay_dirs is not None:
            print(summary_table(store.all_signals()))
        return 0
    finally:
        if ops is not None:
            await ops.close()
        await notifier.close()
        await source.close()
        store.close()
        events.close()


def _records(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """``stats`` and ``export``: read the live store (never the replay one) and print or write."""
    if not (settings.state_dir / "signals.sqlite3").is_file():
        print(f"error: no store in {settings.state_dir} (set BOTS_STATE_DIR)", file=sys.stderr)
        return 1
    store = Store(settings.state_dir)
    try:
        signals = store.all_signals()
    finally:
        store.close()
    if args.command == "export":
        text = export_signals(signals, args.format, since_ms=args.since)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomically(text, args.output)
        return 0
    if args.suggest_exclusions is not None:
        # A snippet to paste into global_config.json: each bot's symbols without its losing ones.
        excluded = suggested_exclusions(signals, args.suggest_exclusions)
        snippet = {
            bot: {"symbols": [s for s in config.bots[bot].symbols if s not in losing]}
            for bot, losing in excluded.items()
            if bot in config.bots
        }
        print(json.dumps({"bots": snippet}, indent=2))
        return 0
    if args.worst is not None:
        worst = {f"{bot} {symbol}": stats for bot, symbol, stats in worst_symbols(signals, args.worst)}
        print(stats_json(worst) if args.json else stats_table(worst))
        return 0
    grouped = group_stats(signals, args.by, bot=args.bot, symbol=args.symbol, since_ms=args.since)
    print(stats_json(grouped) if args.json else stats_table(grouped))
    return 0


def _positive(text: str) -> float:
    """A positive number, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _count(text: str) -> int:
    """A whole number >= 0, for argparse."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _http_url(text: str) -> str:
    """An http:// or https:// URL, for argparse."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} must start with http:// or https://")
    return text


def _operations(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """``health`` (exit 0 healthy, 1 unhealthy, 2 usage) and ``logs summary``."""
    if args.command == "logs":
        try:
            summary = summarize(settings.log_dir, args.since, replay=args.replay)
        except OSError as exc:
            print(f"error: {exc.filename or settings.log_dir}: {exc.strerror}", file=sys.stderr)
            return 1
        print(summary_json(summary) if args.json else summary_text(summary))
        return 0
    if args.no_http and args.url:
        print("error: health: --url and --no-http contradict each other", file=sys.stderr)
        return 2
    url = args.url
    if url is None and not args.no_http and args.units is None:
        url = f"http://127.0.0.1:{config.health.port}/health"
    max_event_age_s = args.max_event_age * 60 if args.max_event_age else default_event_age_s(config)
    options = HealthOptions(
        url=url,
        units=args.units,
        max_event_age_s=max_event_age_s,
        max_pending=args.max_pending,
        max_pending_age_s=args.max_pending_age * 60,
        timeout_s=args.timeout,
    )
    try:
        report = run_checks(options, settings.log_dir, settings.state_dir, round(time.time() * 1000))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(problem)
    if report.healthy and not args.quiet:
        print("OK: " + "; ".join(report.notes))
    return 0 if report.healthy else 1


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
    "stats": _records,
    "export": _records,
    "close": _close_manually,
    "health": _operations,
    "logs": _operations,
    "check-config": _describe,
    "list": _describe,
}
