"""What a backtest adds to a replay: a progress bar over simulated time, and the report it writes.

A backtest is a replay through the same Runner (``python -m bots backtest``, in ``bots/cli.py``); this
module holds only its two extras:

- :func:`follow_progress`, a tqdm bar on stderr that polls the :class:`SimulatedClock` from its own
  asyncio task, so the Runner knows nothing about it;
- :func:`write_report`, the files of the report folder beside the store the run filled
  (``signals.sqlite3``): ``stats.txt`` and ``stats.json`` (the statistics per bot, as ``python -m
  bots stats`` shows them), ``signals.csv`` (as ``python -m bots export --format csv``),
  ``equity_<bot>.png`` per bot, and ``backtest.json`` (what was run, how long it took, where each
  curve lies in its image). Every file is written atomically and is 0600; the folder is 0700.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Never, TextIO

from tqdm import tqdm

from common.clock import SimulatedClock, utc_text
from common.equity import equity_curve, render_equity
from common.errors import ConfigError
from common.export import export_signals, iso_utc, write_atomically
from common.stats import group_stats, stats_json, stats_table
from common.store import StoredSignal

#: Name of the store's database file: a folder holding one already has a backtest in it.
STORE_FILE = "signals.sqlite3"
#: How often the progress bar looks at the simulated clock (seconds of real time).
PROGRESS_INTERVAL_S = 0.2
_HOUR_MS = 3_600_000


def default_report_dir(now: datetime | None = None) -> Path:
    """``backtests/<UTC time>`` under the working directory, e.g. ``backtests/20250101T120000Z``."""
    moment = now or datetime.now(UTC)
    return Path("backtests") / moment.strftime("%Y%m%dT%H%M%SZ")


def prepare_report_dir(path: Path) -> None:
    """Create the report folder (0700, parents too); refuse one that already holds a backtest's store.

    Raises ``ConfigError`` with one line: signals of two backtests must never mix in one store.
    """
    if (path / STORE_FILE).exists():
        raise ConfigError(
            f"backtest: --report {path} already holds a backtest ({STORE_FILE}); choose another"
        )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"backtest: --report {path} exists and is not a folder")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"backtest: --report {path}: cannot create the folder: {exc.strerror}") from None


async def follow_progress(
    clock: SimulatedClock, end_ms: int, stream: TextIO, *, interval_s: float = PROGRESS_INTERVAL_S
) -> None:
    """Show a tqdm bar on ``stream`` from the replay's start to ``end_ms`` in simulated time.

    Runs until cancelled (the caller cancels it when the replay is over); it then draws the clock's
    final position, so the bar reads 100 % only when the replay did reach ``end_ms``. The bar's
    unit is a simulated hour; after the times it shows the simulated time.
    """
    bar: tqdm[Never] | None = None
    try:
        while True:
            bar = _advance(bar, clock, end_ms, stream)
            await asyncio.sleep(interval_s)
    finally:
        bar = _advance(bar, clock, end_ms, stream)
        if bar is not None:
            bar.close()


def _advance(
    bar: tqdm[Never] | None, clock: SimulatedClock, end_ms: int, stream: TextIO
) -> tqdm[Never] | None:
    """Move ``bar`` to the clock's time, creating it once the replay has started."""
    start = clock.started_ms
    if start is None:
        return bar
    if bar is None:
        bar = tqdm(
            total=max(end_ms - start, 0) / _HOUR_MS,
            desc="backtest",
            unit="h",
            file=stream,
            mininterval=0.5,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]",
        )
    done = (min(clock.now_ms(), end_ms) - start) / _HOUR_MS
    bar.set_postfix_str(utc_text(clock.now_ms()), refresh=False)
    bar.update(done - bar.n)
    return bar


def write_report(
    directory: Path,
    signals: Sequence[StoredSignal],
    bots: Sequence[str],
    start_ms: int,
    end_ms: int,
    facts: Mapping[str, object],
) -> str:
    """Write the report's files into ``directory`` (which holds the store already); return the table.

    ``bots`` are the bots that ran (each gets its equity curve, flat at 0 R without a closed
    signal); ``start_ms`` and ``end_ms`` bound the replay; ``facts`` (what was run, its speed) go
    into ``backtest.json`` with each curve's file, final R and geometry.
    """
    stats = group_stats(signals, "bot")
    table = stats_table(stats)
    write_atomically(table + "\n", directory / "stats.txt")
    write_atomically(stats_json(stats) + "\n", directory / "stats.json")
    write_atomically(export_signals(signals, "csv"), directory / "signals.csv")
    curves: dict[str, object] = {}
    for bot in bots:
        mine = [stored for stored in signals if stored.signal.bot == bot]
        curve = equity_curve(mine, start_ms, end_ms)
        name = f"equity_{bot}.png"
        span = f"{utc_text(start_ms)[:10]} to {utc_text(end_ms)[:10]}"
        title = f"{bot} · {curve.trades} trades · {curve.final_r:+.2f} R · {span}"
        geometry = render_equity(curve, title, directory / name)
        curves[bot] = {"file": name, "trades": curve.trades, **asdict(geometry)}
    document = {
        **facts,
        "start": iso_utc(start_ms),
        "end": iso_utc(end_ms),
        "signals": len(signals),
        "equity": curves,
    }
    write_atomically(json.dumps(document, indent=2) + "\n", directory / "backtest.json")
    return table
