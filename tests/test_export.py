"""Tests of common.export: JSON lines and CSV of open and closed signals, the atomic private write."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.export import FIELDS, export_signals, write_atomically
from common.store import GateRules, GateVerdict, Store, StoredSignal
from common.tracker import Fill, Outcome, Position
from common.types import ContextValue, Direction, Levels, Signal

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
RULES = GateRules(cooldown_ms=0, max_open_signals=100)


def make_signal(
    number: int,
    *,
    bot: str = "psar_bot",
    symbol: str = "BTC/USDT",
    direction: Direction = Direction.LONG,
    tps: tuple[float, ...] = (104.0, 106.0, 110.0),
    context: dict[str, ContextValue] | None = None,
) -> Signal:
    """Signal ``number``: bar ``number`` hours after T0, created at its close plus 1.5 s."""
    sl = 98.0 if direction is Direction.LONG else 102.0
    bar_ts = T0 + number * HOUR
    return Signal(
        id=f"sig{number:03d}",
        bot=bot,
        symbol=symbol,
        timeframe="1h",
        direction=direction,
        levels=Levels(direction, entry=100.0, sl=sl, tps=tps),
        reason="test",
        bar_ts=bar_ts,
        created_ms=bar_ts + HOUR + 1500,
        context=context or {},
    )


# The signals and outcomes the store holds (None: still open).
SIGNALS: tuple[tuple[Signal, Outcome | None], ...] = (
    (
        make_signal(1, context={"confidence": 0.8, "adx": 31.5, "note": 'a "quoted", note'}),
        Outcome(
            reason="TP2",
            price=106.0,
            exit_ms=T0 + 10 * HOUR,
            pnl_pct=4.9,
            r_multiple=2.45,
            mfe_pct=6.5,
            mae_pct=0.4,
            fills=(Fill("TP1", 104.0, T0 + 6 * HOUR, 0.5), Fill("TP2", 106.0, T0 + 10 * HOUR, 0.5)),
        ),
    ),
    (
        make_signal(2, symbol="ETH/USDT", direction=Direction.SHORT, tps=(96.0,), context={"score": 7}),
        Outcome(reason="SL", price=102.0, exit_ms=T0 + 11 * HOUR, pnl_pct=-2.1, r_multiple=-1.05),
    ),
    (
        make_signal(3, bot="most_bot"),
        Outcome(reason="MANUAL", price=100.0, exit_ms=T0 + 12 * HOUR + 250, pnl_pct=0.0, r_multiple=0.0),
    ),
    (make_signal(4, symbol="SOL/USDT", tps=(104.0, 106.0), context={"strong": True}), None),
)

EXPECTED: list[dict[str, object]] = [
    {
        "id": "sig001",
        "bot": "psar_bot",
        "timestamp": "2024-01-01T02:00:01.500Z",
        "symbol": "BTC/USDT",
        "direction": "LONG",
        "entry": 100.0,
        "sl": 98.0,
        "tp1": 104.0,
        "tp2": 106.0,
        "tp3": 110.0,
        "confidence": 0.8,
        "context": '{"adx": 31.5, "confidence": 0.8, "note": "a \\"quoted\\", note"}',
        "status": "CLOSED",
        "exit_reason": "TP2",
        "exit_price": 106.0,
        "exit_time": "2024-01-01T10:00:00.000Z",
        "pnl_pct": 4.9,
        "r_multiple": 2.45,
        "result": "WIN",
        "time_in_trade_s": 28798,
        "mfe_pct": 6.5,
        "mae_pct": 0.4,
        "funding_pct": 0.0,
        "exits": "TP1 0.5@104 | TP2 0.5@106",
    },
    {
        "id": "sig002",
        "bot": "psar_bot",
        "timestamp": "2024-01-01T03:00:01.500Z",
        "symbol": "ETH/USDT",
        "direction": "SHORT",
        "entry": 100.0,
        "sl": 102.0,
        "tp1": 96.0,
        "tp2": None,
        "tp3": None,
        "confidence": 7,
        "context": '{"score": 7}',
        "status": "CLOSED",
        "exit_reason": "SL",
        "exit_price": 102.0,
        "exit_time": "2024-01-01T11:00:00.000Z",
        "pnl_pct": -2.1,
        "r_multiple": -1.05,
        "result": "LOSS",
        "time_in_trade_s": 28798,
        "mfe_pct": 0.0,
        "mae_pct": 0.0,
        "funding_pct": 0.0,
        "exits": None,
    },
    {
        "id": "sig003",
        "bot": "most_bot",
        "timestamp": "2024-01-01T04:00:01.500Z",
        "symbol": "BTC/USDT",
        "direction": "LONG",
        "entry": 100.0,
        "sl": 98.0,
        "tp1": 104.0,
        "tp2": 106.0,
        "tp3": 110.0,
        "confidence": None,
        "context": "{}",
        "status": "CLOSED",
        "exit_reason": "MANUAL",
        "exit_price": 100.0,
        "exit_time": "2024-01-01T12:00:00.250Z",
        "pnl_pct": 0.0,
        "r_multiple": 0.0,
        "result": "FLAT",
        "time_in_trade_s": 28798,
        "mfe_pct": 0.0,
        "mae_pct": 0.0,
        "funding_pct": 0.0,
        "exits": None,
    },
    {
        "id": "sig004",
        "bot": "psar_bot",
        "timestamp": "2024-01-01T05:00:01.500Z",
        "symbol": "SOL/USDT",
        "direction": "LONG",
        "entry": 100.0,
        "sl": 98.0,
        "tp1": 104.0,
        "tp2": 106.0,
        "tp3": None,
        "confidence": None,
        "context": '{"strong": true}',
        "status": "OPEN",
        "exit_reason": None,
        "exit_price": None,
        "exit_time": None,
        "pnl_pct": None,
        "r_multiple": None,
        "result": "OPEN",
        "time_in_trade_s": None,
        "mfe_pct": None,
        "mae_pct": None,
        "funding_pct": None,
        "exits": None,
    },
]


@pytest.fixture
def signals(tmp_path: Path) -> Iterator[list[StoredSignal]]:
    """The SIGNALS admitted to (and closed in) a real store, read back as the CLI would."""
    store = Store(tmp_path / "state")
    for signal, outcome in SIGNALS:
        assert store.admit_signal(signal, RULES, signal.created_ms, "alert") is GateVerdict.ACCEPTED
        if outcome is not None:
            assert store.close_signal(signal.id, outcome, outcome.exit_ms, "result")
    yield store.all_signals()
    store.close()


def test_jsonl_has_every_field_of_open_and_closed_signals(signals: list[StoredSignal]) -> None:
    """One JSON object per line, fields in order, missing values null, oldest first."""
    text = export_signals(list(reversed(signals)), "jsonl")
    assert text.endswith("\n")
    lines = text.splitlines()
    records = [json.loads(line) for line in lines]
    assert records == EXPECTED
    assert all(list(record) == list(FIELDS) for record in records)
    assert json.loads(records[0]["context"]) == {"adx": 31.5, "confidence": 0.8, "note": 'a "quoted", note'}


def test_csv_has_a_header_and_every_field(signals: list[StoredSignal]) -> None:
    """A header row, then one row per signal; missing values are empty cells; quoting survives."""
    text = export_signals(signals, "csv")
    assert "\r" not in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(FIELDS)
    expected = [["" if record[name] is None else str(record[name]) for name in FIELDS] for record in EXPECTED]
    assert rows[1:] == expected
    by_dict = list(csv.DictReader(io.StringIO(text)))
    assert by_dict[1]["tp2"] == ""
    assert by_dict[1]["confidence"] == "7"
    assert by_dict[3]["result"] == "OPEN"
    assert by_dict[3]["exit_time"] == ""
    assert float(by_dict[0]["r_multiple"]) == 2.45
    assert json.loads(by_dict[0]["context"])["note"] == 'a "quoted", note'


def test_since_keeps_signals_created_at_or_after_it(signals: list[StoredSignal]) -> None:
    """since_ms filters on the creation time, inclusively."""
    since = SIGNALS[2][0].created_ms
    records = [json.loads(line) for line in export_signals(signals, "jsonl", since_ms=since).splitlines()]
    assert [r["id"] for r in records] == ["sig003", "sig004"]
    rows = list(csv.reader(io.StringIO(export_signals(signals, "csv", since_ms=since + 1))))
    assert [row[0] for row in rows] == ["id", "sig004"]


def test_no_signals(signals: list[StoredSignal]) -> None:
    """Nothing to export: empty JSON lines, a CSV with only its header."""
    assert export_signals([], "jsonl") == ""
    assert export_signals([], "csv") == ",".join(FIELDS) + "\n"
    assert export_signals(signals, "jsonl", since_ms=T0 + 1000 * HOUR) == ""


def test_unknown_format_is_refused(signals: list[StoredSignal]) -> None:
    """Only jsonl and csv."""
    with pytest.raises(ValueError, match="unknown export format"):
        export_signals(signals, "xlsx")  # type: ignore[arg-type]


def test_score_is_used_when_there_is_no_confidence() -> None:
    """confidence: the context's "confidence" first, then "score"."""
    signal = make_signal(9, context={"score": 3, "confidence": 0.5})
    both = StoredSignal(
        signal=signal,
        status="OPEN",
        checked_until=T0,
        exit_reason=None,
        exit_price=None,
        exit_ms=None,
        pnl_pct=None,
        r_multiple=None,
        position=Position.opened(signal),
    )
    assert json.loads(export_signals([both], "jsonl"))["confidence"] == 0.5


# -- the atomic write -----------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomically_creates_a_private_file(tmp_path: Path) -> None:
    """The file holds exactly the text, mode 0600, and no temporary file is left behind."""
    target = tmp_path / "signals.csv"
    text = "id,bot\nsig001,psar_bot ✅\r\n"
    old_umask = os.umask(0o000)
    try:
        write_atomically(text, target)
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == text.encode("utf-8")
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["signals.csv"]


def test_write_atomically_replaces_an_existing_file(tmp_path: Path) -> None:
    """An existing (even world-readable) file is replaced whole by a private one."""
    target = tmp_path / "out.jsonl"
    target.write_text("old content that is longer than the new one\n" * 10)
    target.chmod(0o644)
    write_atomically('{"id": "new"}\n', target)
    assert target.read_text() == '{"id": "new"}\n'
    assert _mode(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_write_atomically_cleans_up_when_the_rename_fails(tmp_path: Path) -> None:
    """A failure (here: the target is a directory) leaves no temporary file and raises."""
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")
    with pytest.raises(OSError):  # noqa: PT011 - the platform picks the exact subclass
        write_atomically("text", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert (target / "inside").read_text() == "x"
