"""Tests of common.stats: every figure of a hand-built record, grouping, filters, rankings, output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.stats import (
    Stats,
    compute_stats,
    group_stats,
    stats_as_dict,
    stats_json,
    stats_table,
    suggested_exclusions,
    worst_symbols,
)
from common.store import GateRules, GateVerdict, Store, StoredSignal
from common.tracker import Outcome, Position
from common.types import Direction, Levels, Signal

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
RULES = GateRules(cooldown_ms=0, max_open_signals=100)

# (bot, symbol, R, exit reason), in the order the trades are created and closed.
TRADES = (
    ("psar_bot", "BTC/USDT", 2.0, "TP2"),
    ("psar_bot", "BTC/USDT", -1.0, "SL"),
    ("psar_bot", "ETH/USDT", -1.0, "SL"),
    ("most_bot", "BTC/USDT", 1.5, "TP1"),
    ("psar_bot", "ETH/USDT", -1.0, "SL"),
    ("most_bot", "ETH/USDT", 3.0, "TP3"),
    ("psar_bot", "BTC/USDT", -1.0, "TIMEOUT"),
)


def make_signal(bot: str, symbol: str, number: int, direction: Direction = Direction.LONG) -> Signal:
    """Signal ``number`` of the test: bar ``number`` hours after T0, created an hour later."""
    if direction is Direction.LONG:
        levels = Levels(direction, entry=100.0, sl=98.0, tps=(104.0, 106.0))
    else:
        levels = Levels(direction, entry=100.0, sl=102.0, tps=(96.0,))
    bar_ts = T0 + number * HOUR
    return Signal(
        id=f"sig{number:03d}",
        bot=bot,
        symbol=symbol,
        timeframe="1h",
        direction=direction,
        levels=levels,
        reason="test",
        bar_ts=bar_ts,
        created_ms=bar_ts + HOUR,
    )


def pnl_of(r: float) -> float:
    """The trade's P&L in percent: 2 % per R less 0.25 % of fees (exact in binary)."""
    return 2.0 * r - 0.25


def exit_ms_of(number: int) -> int:
    """Trade ``number`` closes 100 hours after T0 plus ``number`` hours: exit order = creation order."""
    return T0 + (100 + number) * HOUR


def closed(signal: Signal, r: float, reason: str, exit_ms: int, pnl: float | None = None) -> StoredSignal:
    """``signal`` closed at ``exit_ms`` with ``r`` R."""
    return StoredSignal(
        signal=signal,
        status="CLOSED",
        checked_until=exit_ms,
        exit_reason=reason,
        exit_price=100.0 + 2.0 * r,
        exit_ms=exit_ms,
        pnl_pct=pnl_of(r) if pnl is None else pnl,
        r_multiple=r,
        position=Position.opened(signal),
    )


def still_open(signal: Signal) -> StoredSignal:
    """``signal`` not closed yet."""
    return StoredSignal(
        signal=signal,
        status="OPEN",
        checked_until=signal.bar_ts,
        exit_reason=None,
        exit_price=None,
        exit_ms=None,
        pnl_pct=None,
        r_multiple=None,
        position=Position.opened(signal),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A real store holding the seven TRADES (closed) and two open signals."""
    opened = Store(tmp_path / "state")
    for number, (bot, symbol, r, reason) in enumerate(TRADES, start=1):
        signal = make_signal(bot, symbol, number)
        assert opened.admit_signal(signal, RULES, signal.created_ms, "alert") is GateVerdict.ACCEPTED
        outcome = Outcome(
            reason=reason, price=100.0 + 2 * r, exit_ms=exit_ms_of(number), pnl_pct=pnl_of(r), r_multiple=r
        )
        assert opened.close_signal(signal.id, outcome, outcome.exit_ms, "result")
    for number, (bot, symbol) in enumerate((("psar_bot", "SOL/USDT"), ("psar_bot", "BTC/USDT")), start=20):
        signal = make_signal(bot, symbol, number)
        assert opened.admit_signal(signal, RULES, signal.created_ms, "alert") is GateVerdict.ACCEPTED
    yield opened
    opened.close()


@pytest.fixture
def signals(store: Store) -> list[StoredSignal]:
    """Every signal of the store, as the CLI reads them."""
    return store.all_signals()


# -- compute_stats --------------------------------------------------------------------------------


def test_every_figure_of_the_whole_record(signals: list[StoredSignal]) -> None:
    """R = +2, -1, -1, +1.5, -1, +3, -1: each figure as computed by hand; open signals ignored."""
    stats = compute_stats(signals)
    assert stats.signals == 7
    assert stats.wins == 3
    assert stats.losses == 4
    assert stats.win_rate == 3 / 7
    assert stats.avg_win_r == 6.5 / 3
    assert stats.avg_loss_r == -1.0
    assert stats.profit_factor == 6.5 / 4
    assert stats.expectancy_r == 2.5 / 7
    assert stats.total_r == 2.5
    assert stats.total_pct == 2 * 2.5 - 7 * 0.25
    # cumulative R: 2, 1, 0, 1.5, 0.5, 3.5, 2.5 -> the deepest fall is from 2 to 0
    assert stats.max_drawdown_r == 2.0
    assert stats.longest_losing_streak == 2
    assert dict(stats.exits) == {"SL": 3 / 7, "TIMEOUT": 1 / 7, "TP1": 1 / 7, "TP2": 1 / 7, "TP3": 1 / 7}
    assert list(stats.exits) == ["SL", "TIMEOUT", "TP1", "TP2", "TP3"]
    assert sum(stats.exits.values()) == pytest.approx(1.0)


def test_store_and_direct_signals_agree(signals: list[StoredSignal]) -> None:
    """The signals read back from SQLite give the same figures as the same signals built by hand."""
    direct = [
        closed(make_signal(bot, symbol, n), r, reason, exit_ms_of(n))
        for n, (bot, symbol, r, reason) in enumerate(TRADES, start=1)
    ]
    assert compute_stats(direct) == compute_stats(signals)


def test_trades_are_taken_in_exit_order_then_id() -> None:
    """Drawdown and streaks follow exit time, not the order of the list nor the creation time."""
    a = closed(make_signal("b", "X", 1), -1.0, "SL", T0 + 30 * HOUR)
    b = closed(make_signal("b", "X", 2), 2.0, "TP1", T0 + 10 * HOUR)
    c = closed(make_signal("b", "X", 3), -1.0, "SL", T0 + 20 * HOUR)
    d = closed(make_signal("b", "X", 4), -1.0, "SL", T0 + 40 * HOUR)
    # exit order: +2, -1, -1, -1 (list order would be -1, +2, -1, -1: drawdown 2, streak 2)
    stats = compute_stats([a, b, c, d])
    assert stats.max_drawdown_r == 3.0
    assert stats.longest_losing_streak == 3
    # same exit time: the id decides (sig005 -1, sig006 +1, sig007 -1: no two losses in a row)
    e = closed(make_signal("b", "X", 7), -1.0, "SL", T0)
    f = closed(make_signal("b", "X", 5), -1.0, "SL", T0)
    g = closed(make_signal("b", "X", 6), 1.0, "TP1", T0)
    assert compute_stats([e, f, g]).longest_losing_streak == 1


def test_drawdown_counts_losses_from_the_start_and_flat_trades() -> None:
    """The curve starts at 0; a 0 R trade is neither win nor loss and breaks a losing streak."""
    trades = [
        closed(make_signal("b", "X", 1), -1.0, "SL", T0 + 1),
        closed(make_signal("b", "X", 2), -0.5, "SL", T0 + 2),
        closed(make_signal("b", "X", 3), 0.0, "MANUAL", T0 + 3),
        closed(make_signal("b", "X", 4), -1.0, "SL", T0 + 4),
    ]
    stats = compute_stats(trades)
    assert (stats.signals, stats.wins, stats.losses) == (4, 0, 3)
    assert stats.win_rate == 0.0
    assert stats.avg_win_r is None
    assert stats.avg_loss_r == -2.5 / 3
    assert stats.profit_factor == 0.0
    assert stats.expectancy_r == -2.5 / 4
    assert stats.max_drawdown_r == 2.5
    assert stats.longest_losing_streak == 2
    assert dict(stats.exits) == {"MANUAL": 0.25, "SL": 0.75}


def test_no_closed_signal_gives_zeros_and_nones() -> None:
    """Only open signals (or none at all): zero trades, rates 0, undefined figures None."""
    empty = Stats(
        signals=0,
        wins=0,
        losses=0,
        win_rate=0.0,
        avg_win_r=None,
        avg_loss_r=None,
        profit_factor=None,
        expectancy_r=0.0,
        total_r=0.0,
        total_pct=0.0,
        max_drawdown_r=0.0,
        longest_losing_streak=0,
        exits={},
    )
    assert compute_stats([]) == empty
    assert compute_stats([still_open(make_signal("b", "X", 1))]) == empty


def test_profit_factor_is_none_without_losses() -> None:
    """Only winners: PF and the average loss are undefined, drawdown 0."""
    stats = compute_stats(
        [
            closed(make_signal("b", "X", 1), 1.0, "TP1", T0 + 1),
            closed(make_signal("b", "X", 2), 3.0, "TP3", T0 + 2),
        ]
    )
    assert stats.profit_factor is None
    assert stats.avg_loss_r is None
    assert stats.avg_win_r == 2.0
    assert stats.win_rate == 1.0
    assert stats.max_drawdown_r == 0.0


# -- grouping and filters -------------------------------------------------------------------------


def test_group_by_bot(signals: list[StoredSignal]) -> None:
    """psar_bot: +2, -1, -1, -1, -1; most_bot: +1.5, +3; keys sorted; open signals ignored."""
    groups = group_stats(signals, "bot")
    assert list(groups) == ["most_bot", "psar_bot"]
    psar = groups["psar_bot"]
    assert (psar.signals, psar.wins, psar.losses) == (5, 1, 4)
    assert psar.total_r == -2.0
    assert psar.profit_factor == 0.5
    assert psar.expectancy_r == -0.4
    assert psar.max_drawdown_r == 4.0  # cumulative 2, 1, 0, -1, -2
    assert psar.longest_losing_streak == 4
    assert dict(psar.exits) == {"SL": 0.6, "TIMEOUT": 0.2, "TP2": 0.2}
    most = groups["most_bot"]
    assert (most.signals, most.wins, most.losses, most.total_r) == (2, 2, 0, 4.5)
    assert most.avg_win_r == 2.25
    assert most.profit_factor is None
    assert most.max_drawdown_r == 0.0


def test_group_by_symbol(signals: list[StoredSignal]) -> None:
    """BTC/USDT: +2, -1, +1.5, -1; ETH/USDT: -1, -1, +3; SOL/USDT has only an open signal."""
    groups = group_stats(signals, "symbol")
    assert list(groups) == ["BTC/USDT", "ETH/USDT"]
    btc, eth = groups["BTC/USDT"], groups["ETH/USDT"]
    assert (btc.signals, btc.total_r, btc.profit_factor, btc.max_drawdown_r) == (4, 1.5, 1.75, 1.0)
    assert (eth.signals, eth.total_r, eth.profit_factor, eth.max_drawdown_r) == (3, 1.0, 1.5, 2.0)
    assert eth.longest_losing_streak == 2


def test_group_by_bot_and_symbol(signals: list[StoredSignal]) -> None:
    """Keys are "bot symbol"; each pair has its own figures."""
    groups = group_stats(signals, "bot_symbol")
    assert {key: s.total_r for key, s in groups.items()} == {
        "most_bot BTC/USDT": 1.5,
        "most_bot ETH/USDT": 3.0,
        "psar_bot BTC/USDT": 0.0,
        "psar_bot ETH/USDT": -2.0,
    }
    assert list(groups) == sorted(groups)
    assert groups["psar_bot BTC/USDT"].signals == 3


def test_filters_bot_symbol_and_since(signals: list[StoredSignal]) -> None:
    """bot / symbol keep only theirs; since keeps signals created at or after it (inclusive)."""
    assert list(group_stats(signals, "symbol", bot="most_bot")) == ["BTC/USDT", "ETH/USDT"]
    assert group_stats(signals, "symbol", bot="most_bot")["BTC/USDT"].total_r == 1.5
    only_eth = group_stats(signals, "bot", symbol="ETH/USDT")
    assert {k: (s.signals, s.total_r) for k, s in only_eth.items()} == {
        "most_bot": (1, 3.0),
        "psar_bot": (2, -2.0),
    }
    assert group_stats(signals, "bot_symbol", bot="psar_bot", symbol="BTC/USDT").keys() == {
        "psar_bot BTC/USDT"
    }
    # trade n was created at T0 + (n + 1) h: since T0 + 5 h keeps trades 4..7
    recent = group_stats(signals, "bot", since_ms=T0 + 5 * HOUR)
    assert {k: (s.signals, s.total_r) for k, s in recent.items()} == {
        "most_bot": (2, 4.5),
        "psar_bot": (2, -2.0),
    }
    later = group_stats(signals, "bot", since_ms=T0 + 5 * HOUR + 1)
    assert later["most_bot"].signals == 1
    assert group_stats(signals, "bot", bot="nobody") == {}
    assert group_stats(signals, "bot", since_ms=T0 + 1000 * HOUR) == {}


def test_unknown_grouping_is_refused(signals: list[StoredSignal]) -> None:
    """A grouping other than bot / symbol / bot_symbol is a ValueError."""
    with pytest.raises(ValueError, match="unknown grouping"):
        group_stats(signals, "timeframe")  # type: ignore[arg-type]


# -- rankings -------------------------------------------------------------------------------------


def test_worst_symbols_order_and_limit(signals: list[StoredSignal]) -> None:
    """The (bot, symbol) pairs by total R ascending, at most n."""
    worst = worst_symbols(signals, 3)
    assert [(bot, symbol, s.total_r) for bot, symbol, s in worst] == [
        ("psar_bot", "ETH/USDT", -2.0),
        ("psar_bot", "BTC/USDT", 0.0),
        ("most_bot", "BTC/USDT", 1.5),
    ]
    assert len(worst_symbols(signals, 10)) == 4
    assert worst_symbols(signals, 0) == []
    assert worst[0][2] == group_stats(signals, "bot_symbol")["psar_bot ETH/USDT"]


def test_worst_symbols_ties_by_bot_then_symbol() -> None:
    """Equal totals are ordered by bot, then symbol."""
    trades = [
        closed(make_signal("zeta", "AAA", 1), -1.0, "SL", T0 + 1),
        closed(make_signal("alpha", "BBB", 2), -1.0, "SL", T0 + 2),
        closed(make_signal("alpha", "AAA", 3), -1.0, "SL", T0 + 3),
    ]
    assert [(b, s) for b, s, _ in worst_symbols(trades, 5)] == [
        ("alpha", "AAA"),
        ("alpha", "BBB"),
        ("zeta", "AAA"),
    ]


def test_suggested_exclusions_respects_min_trades(signals: list[StoredSignal]) -> None:
    """Negative expectancy over at least min_trades trades; psar_bot BTC/USDT (0 R) is never excluded."""
    assert suggested_exclusions(signals, 1) == {"psar_bot": ["ETH/USDT"]}
    assert suggested_exclusions(signals, 2) == {"psar_bot": ["ETH/USDT"]}
    assert suggested_exclusions(signals, 3) == {}
    more = [
        *signals,
        closed(make_signal("psar_bot", "ADA/USDT", 50), -0.5, "SL", T0 + 500 * HOUR),
        closed(make_signal("most_bot", "ADA/USDT", 51), -0.5, "SL", T0 + 501 * HOUR),
    ]
    assert suggested_exclusions(more, 1) == {"most_bot": ["ADA/USDT"], "psar_bot": ["ADA/USDT", "ETH/USDT"]}
    snippet = {"bots": {bot: {"exclude": symbols} for bot, symbols in suggested_exclusions(more, 2).items()}}
    assert json.loads(json.dumps(snippet)) == {"bots": {"psar_bot": {"exclude": ["ETH/USDT"]}}}


# -- output ---------------------------------------------------------------------------------------


def test_table_has_the_figures_aligned(signals: list[StoredSignal]) -> None:
    """One row per key with every figure; all lines the same width as the header."""
    table = stats_table({"all": compute_stats(signals), **group_stats(signals, "bot")})
    lines = table.splitlines()
    header = lines[0].split()
    assert header[0] == "key"
    assert "win%" in header
    assert "PF" in header
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    # key, signals, win%, avg win R, avg loss R, PF, expectancy R, total R, max DD R, losing streak
    assert rows["all"] == ["all", "7", "42.9%", "+2.17", "-1.00", "1.62", "+0.36", "+2.50", "2.00", "2"]
    assert rows["psar_bot"] == [
        "psar_bot",
        "5",
        "20.0%",
        "+2.00",
        "-1.00",
        "0.50",
        "-0.40",
        "-2.00",
        "4.00",
        "4",
    ]
    assert rows["most_bot"] == ["most_bot", "2", "100.0%", "+2.25", "-", "-", "+2.25", "+4.50", "0.00", "0"]
    assert len({len(line) for line in lines}) == 1
    assert "no closed signals" in stats_table({})


def test_json_round_trips(signals: list[StoredSignal]) -> None:
    """Every field per key, floats rounded to 4 decimals, None as null; parses back to the same values."""
    groups = group_stats(signals, "bot")
    text = stats_json({"all": compute_stats(signals), **groups})
    parsed = json.loads(text)
    assert list(parsed) == ["all", "most_bot", "psar_bot"]
    assert parsed["all"] == {
        "signals": 7,
        "wins": 3,
        "losses": 4,
        "win_rate": 0.4286,
        "avg_win_r": 2.1667,
        "avg_loss_r": -1.0,
        "profit_factor": 1.625,
        "expectancy_r": 0.3571,
        "total_r": 2.5,
        "total_pct": 3.25,
        "max_drawdown_r": 2.0,
        "longest_losing_streak": 2,
        "exits": {"SL": 0.4286, "TIMEOUT": 0.1429, "TP1": 0.1429, "TP2": 0.1429, "TP3": 0.1429},
    }
    assert parsed["most_bot"]["profit_factor"] is None
    assert parsed["most_bot"]["avg_loss_r"] is None
    assert "null" in text
    assert parsed["psar_bot"] == stats_as_dict(groups["psar_bot"])
    assert set(parsed["all"]) == set(Stats.__dataclass_fields__)
    assert json.loads(stats_json({})) == {}
