"""The end-of-replay summary: signals and outcomes per bot and symbol, as a plain-text table."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from common.store import StoredSignal


def summary_table(signals: Iterable[StoredSignal]) -> str:
    """One row per (bot, symbol): signals, longs/shorts, wins/losses/open, win rate and total R."""
    rows: dict[tuple[str, str], list[StoredSignal]] = defaultdict(list)
    for stored in signals:
        rows[(stored.signal.bot, stored.signal.symbol)].append(stored)
    header = (
        f"{'bot':<18} {'symbol':<16} {'signals':>7} {'long':>5} {'short':>5} {'win':>4} {'loss':>4} "
        f"{'open':>4} {'win%':>6} {'total R':>8}"
    )
    lines = ["", "Summary", header, "-" * len(header)]
    totals = [0, 0, 0, 0, 0, 0]
    total_r = 0.0
    for (bot, symbol), group in sorted(rows.items()):
        longs = sum(1 for s in group if s.signal.direction.value == "LONG")
        closed = [s for s in group if s.status == "CLOSED" and s.r_multiple is not None]
        wins = sum(1 for s in closed if (s.r_multiple or 0) > 0)
        losses = len(closed) - wins
        still_open = len(group) - len(closed)
        r_sum = sum(s.r_multiple or 0.0 for s in closed)
        win_rate = f"{100 * wins / len(closed):.0f}%" if closed else "-"
        lines.append(
            f"{bot:<18} {symbol:<16} {len(group):>7} {longs:>5} {len(group) - longs:>5} {wins:>4} "
            f"{losses:>4} {still_open:>4} {win_rate:>6} {r_sum:>+8.2f}"
        )
        for index, value in enumerate((len(group), longs, len(group) - longs, wins, losses, still_open)):
            totals[index] += value
        total_r += r_sum
    closed_total = totals[3] + totals[4]
    win_rate = f"{100 * totals[3] / closed_total:.0f}%" if closed_total else "-"
    lines.append("-" * len(header))
    lines.append(
        f"{'all':<18} {'':<16} {totals[0]:>7} {totals[1]:>5} {totals[2]:>5} {totals[3]:>4} "
        f"{totals[4]:>4} {totals[5]:>4} {win_rate:>6} {total_r:>+8.2f}"
    )
    if not rows:
        lines.append("no signals")
    return "\n".join(lines)
