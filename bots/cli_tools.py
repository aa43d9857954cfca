"""The commands that read or edit the records of a fleet without running it: ``stats``, ``export``,
``close`` (a manual exit), ``health`` and ``logs summary``.

Each takes the parsed arguments, the environment's settings and the validated configuration, and
returns the exit status; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common.clock import WallClock
from common.config import FleetConfig, Settings
from common.errors import ConfigError
from common.events import EventLog
from common.export import export_signals, write_atomically
from common.healthcheck import HealthOptions, default_event_age_s, run_checks
from common.logging_config import configure_logging
from common.logsummary import summarize, summary_json, summary_text
from common.outcomes import record_close
from common.stats import group_stats, stats_json, stats_table, suggested_exclusions, worst_symbols
from common.store import Store
from common.tracker import ExitPlan, settle
from common.tracker import close_manually as close_position


def records(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
    """``stats`` and ``export``: read the live store (or ``--store DIR``) and print or write."""
    directory: Path = args.store or settings.state_dir
    if not (directory / "signals.sqlite3").is_file():
        hint = "check --store" if args.store else "set BOTS_STATE_DIR or use --store"
        print(f"error: no store in {directory} ({hint})", file=sys.stderr)
        return 1
    store = Store(directory)
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


def close_manually(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
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
        position = close_position(stored.position, price, clock.now_ms())
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


def operations(args: argparse.Namespace, settings: Settings, config: FleetConfig) -> int:
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
