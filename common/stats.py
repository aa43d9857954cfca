"""Performance statistics over closed signals: per bot, per symbol or per (bot, symbol).

Only CLOSED signals with an R multiple count. A trade is a win when its R multiple is above zero,
a loss when it is below zero; a trade closed at exactly 0 R is neither (it still counts as a
signal, in the expectancy and in the exit shares, and it ends a losing streak). Trades are taken
in exit-time order (then signal id), the order in which their results became known, for the
drawdown of the cumulative R curve and the losing streaks.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from common.store import StoredSignal

#: How ``group_stats`` keys its groups.
GroupBy = Literal["bot", "symbol", "bot_symbol"]

#: Exit reason shown for a closed signal that has none recorded.
UNKNOWN_EXIT = "UNKNOWN"


@dataclass(frozen=True)
class Stats:
    """The record of a set of closed signals, in R multiples (risk units) and percent."""

    signals: int  # closed trades counted
    wins: int  # trades with R > 0
    losses: int  # trades with R < 0
    win_rate: float  # wins / signals, 0..1 (0 without trades)
    avg_win_r: float | None  # mean R of the wins (None without wins)
    avg_loss_r: float | None  # mean R of the losses, negative (None without losses)
    profit_factor: float | None  # gross win R / gross loss R (None without losses)
    expectancy_r: float  # mean R per trade (0 without trades)
    total_r: float  # sum of R
    total_pct: float  # sum of the trades' P&L in percent (net of fees)
    max_drawdown_r: float  # largest peak-to-trough fall of the cumulative R curve (>= 0)
    longest_losing_streak: int  # most consecutive losses in exit-time order
    exits: Mapping[str, float] = field(default_factory=dict)  # exit reason -> share of trades, 0..1


def closed_signals(signals: Iterable[StoredSignal]) -> list[StoredSignal]:
    """The closed signals that have an R multiple, in exit-time order (then id)."""
    closed = [s for s in signals if s.status == "CLOSED" and s.r_multiple is not None]
    return sorted(closed, key=lambda s: (s.exit_ms if s.exit_ms is not None else 0, s.signal.id))


def _r(stored: StoredSignal) -> float:
    """The R multiple of a closed signal (0 when missing)."""
    return stored.r_multiple if stored.r_multiple is not None else 0.0


def compute_stats(signals: Sequence[StoredSignal]) -> Stats:
    """The statistics of the CLOSED signals among ``signals`` (open ones are ignored).

    The cumulative R curve starts at 0 before the first trade, so losses from the start count as
    drawdown. Everything is 0 (or None where undefined) when there is no closed trade.
    """
    closed = closed_signals(signals)
    rs = [_r(s) for s in closed]
    win_rs = [r for r in rs if r > 0]
    loss_rs = [r for r in rs if r < 0]
    gross_win = sum(win_rs)
    gross_loss = -sum(loss_rs)
    peak = cumulative = drawdown = 0.0
    streak = longest = 0
    for r in rs:
        cumulative += r
        peak = max(peak, cumulative)
        drawdown = max(drawdown, peak - cumulative)
        streak = streak + 1 if r < 0 else 0
        longest = max(longest, streak)
    reasons = Counter(s.exit_reason or UNKNOWN_EXIT for s in closed)
    count = len(closed)
    return Stats(
        signals=count,
        wins=len(win_rs),
        losses=len(loss_rs),
        win_rate=len(win_rs) / count if count else 0.0,
        avg_win_r=gross_win / len(win_rs) if win_rs else None,
        avg_loss_r=-gross_loss / len(loss_rs) if loss_rs else None,
        profit_factor=gross_win / gross_loss if loss_rs else None,
        expectancy_r=sum(rs) / count if count else 0.0,
        total_r=sum(rs),
        total_pct=sum(s.pnl_pct or 0.0 for s in closed),
        max_drawdown_r=drawdown,
        longest_losing_streak=longest,
        exits={reason: reasons[reason] / count for reason in sorted(reasons)},
    )


_KEYS: dict[str, Callable[[StoredSignal], str]] = {
    "bot": lambda s: s.signal.bot,
    "symbol": lambda s: s.signal.symbol,
    "bot_symbol": lambda s: f"{s.signal.bot} {s.signal.symbol}",
}


def group_stats(
    signals: Iterable[StoredSignal],
    by: GroupBy,
    *,
    bot: str | None = None,
    symbol: str | None = None,
    since_ms: int | None = None,
) -> dict[str, Stats]:
    """Statistics per group of the closed signals, keyed "bot", "symbol" or "bot symbol", sorted by key.

    ``bot`` and ``symbol`` keep only that bot's / symbol's signals; ``since_ms`` keeps the signals
    created at or after it. Groups without a closed signal are left out.
    """
    if by not in _KEYS:
        raise ValueError(f"unknown grouping {by!r}: expected one of {', '.join(_KEYS)}")
    key = _KEYS[by]
    groups: dict[str, list[StoredSignal]] = defaultdict(list)
    for stored in closed_signals(signals):
        sig = stored.signal
        if bot is not None and sig.bot != bot:
            continue
        if symbol is not None and sig.symbol != symbol:
            continue
        if since_ms is not None and sig.created_ms < since_ms:
            continue
        groups[key(stored)].append(stored)
    return {name: compute_stats(groups[name]) for name in sorted(groups)}


def _pairs(signals: Iterable[StoredSignal]) -> dict[tuple[str, str], Stats]:
    """Statistics per (bot, symbol) with at least one closed signal."""
    groups: dict[tuple[str, str], list[StoredSignal]] = defaultdict(list)
    for stored in closed_signals(signals):
        groups[(stored.signal.bot, stored.signal.symbol)].append(stored)
    return {pair: compute_stats(group) for pair, group in groups.items()}


def worst_symbols(signals: Iterable[StoredSignal], n: int) -> list[tuple[str, str, Stats]]:
    """The (bot, symbol) pairs with the lowest total R, worst first (ties by bot, symbol), at most ``n``.

    Every pair with a closed signal competes, whatever its sign; a pair is one bot on one symbol.
    """
    if n <= 0:
        return []
    ranked = sorted(_pairs(signals).items(), key=lambda item: (item[1].total_r, item[0]))
    return [(bot, symbol, stats) for (bot, symbol), stats in ranked[:n]]


def suggested_exclusions(signals: Iterable[StoredSignal], min_trades: int) -> dict[str, list[str]]:
    """Per bot, the symbols with a negative expectancy over at least ``min_trades`` closed trades.

    Bots and symbols are sorted; bots with nothing to exclude are left out. The CLI prints it as the
    config snippet ``{"bots": {bot: {"exclude": [...]}}}``.
    """
    excluded: dict[str, list[str]] = defaultdict(list)
    for (bot, symbol), stats in sorted(_pairs(signals).items()):
        if stats.signals >= min_trades and stats.expectancy_r < 0:
            excluded[bot].append(symbol)
    return dict(excluded)


def _number(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "-" when undefined."""
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, spec)


_COLUMNS = ("signals", "win%", "avg win R", "avg loss R", "PF", "exp R", "total R", "max DD R", "lose run")


def stats_table(stats: Mapping[str, Stats]) -> str:
    """An aligned plain-text table: one row per key with signals, win rate, average win and loss R,
    profit factor, expectancy R, total R, maximum drawdown R and the longest losing streak."""
    width = max([len("key"), *(len(key) for key in stats)])
    widths = [max(len(c), 8) for c in _COLUMNS]
    header = f"{'key':<{width}} " + " ".join(f"{c:>{w}}" for c, w in zip(_COLUMNS, widths, strict=True))
    lines = [header, "-" * len(header)]
    for key, s in stats.items():
        cells = (
            str(s.signals),
            f"{100 * s.win_rate:.1f}%" if s.signals else "-",
            _number(s.avg_win_r, "+.2f"),
            _number(s.avg_loss_r, "+.2f"),
            _number(s.profit_factor, ".2f"),
            _number(s.expectancy_r, "+.2f"),
            _number(s.total_r, "+.2f"),
            _number(s.max_drawdown_r, ".2f"),
            str(s.longest_losing_streak),
        )
        lines.append(f"{key:<{width}} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    if not stats:
        lines.append("no closed signals")
    return "\n".join(lines)


def _rounded(value: float | None) -> float | None:
    """``value`` rounded to 4 decimals (None stays None)."""
    return None if value is None else round(value, 4)


def stats_as_dict(stats: Stats) -> dict[str, object]:
    """One ``Stats`` as plain JSON-ready values: floats rounded to 4 decimals, None kept."""
    return {
        "signals": stats.signals,
        "wins": stats.wins,
        "losses": stats.losses,
        "win_rate": _rounded(stats.win_rate),
        "avg_win_r": _rounded(stats.avg_win_r),
        "avg_loss_r": _rounded(stats.avg_loss_r),
        "profit_factor": _rounded(stats.profit_factor),
        "expectancy_r": _rounded(stats.expectancy_r),
        "total_r": _rounded(stats.total_r),
        "total_pct": _rounded(stats.total_pct),
        "max_drawdown_r": _rounded(stats.max_drawdown_r),
        "longest_losing_streak": stats.longest_losing_streak,
        "exits": {reason: _rounded(share) for reason, share in stats.exits.items()},
    }


def stats_json(stats: Mapping[str, Stats]) -> str:
    """A JSON object: key -> the ``Stats`` fields (floats rounded to 4 decimals, None as null)."""
    return json.dumps({key: stats_as_dict(s) for key, s in stats.items()}, indent=2)
