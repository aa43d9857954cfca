"""``python -m bots close``: a manual exit through the real CLI, its result reply queued, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.events import read_events
from common.store import GateRules, GateVerdict, Store
from common.tracker import Fill, Position
from common.types import Direction, Levels, Signal
from tests.harness import cli_env, run_cli, write_config

pytestmark = pytest.mark.integration

T0 = 1_722_470_400_000
HOUR = 3_600_000


def _seed(tmp_path: Path, symbol: str = "BTC/USDT") -> Signal:
    """An open LONG psar_bot signal (entry 100, SL 98, TP1 104, TP2 106) with half closed at TP1."""
    signal = Signal(
        id="manual0001",
        bot="psar_bot",
        symbol=symbol,
        timeframe="4h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=100.0, sl=98.0, tps=(104.0, 106.0)),
        reason="seeded",
        bar_ts=T0,
        created_ms=T0 + 4 * HOUR,
    )
    store = Store(tmp_path / "state")
    assert store.admit_signal(signal, GateRules(0, 5), signal.created_ms, "card") is GateVerdict.ACCEPTED
    half = Position(
        stop=100.0,
        stop_reason="BE",
        targets_hit=1,
        remaining=0.5,
        fills=(Fill("TP1", 104.0, T0 + 8 * HOUR, 0.5),),
        mfe_pct=4.5,
        mae_pct=0.3,
        checked_until=T0 + 4 * HOUR,
    )
    store.save_progress([(signal.id, half)])
    store.close()
    return signal


async def test_close_by_hand_settles_what_remains_and_queues_the_result(tmp_path: Path) -> None:
    """close --price 101: 0.5 x 4 % + 0.5 x 1 % - 0.1 % fees = 2.4 % (1.2 R), MANUAL, result queued once."""
    signal = _seed(tmp_path)
    write_config(tmp_path)
    env = cli_env(tmp_path, "http://127.0.0.1:9", None)
    done = await run_cli(["close", signal.id, "--price", "101"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"closed {signal.id} (psar_bot BTC/USDT LONG) MANUAL at 101: +2.40% +1.20R"
    store = Store(tmp_path / "state")
    stored = store.get_signal(signal.id)
    assert stored is not None
    assert (stored.status, stored.exit_reason, stored.exit_price) == ("CLOSED", "MANUAL", 101.0)
    assert stored.pnl_pct == pytest.approx(2.4, rel=1e-12)
    assert stored.r_multiple == pytest.approx(1.2, rel=1e-12)
    assert [f.reason for f in stored.fills] == ["TP1", "MANUAL"]
    assert (stored.mfe_pct, stored.mae_pct, stored.funding_pct) == (4.5, 0.3, 0.0)
    results = [row for row in store.outbox_rows() if row["kind"] == "result"]
    assert len(results) == 1
    assert "MANUAL" in str(results[0]["text"])
    assert "Parts: 50% TP1 104.000, 50% MANUAL 101.000" in str(results[0]["text"])
    store.close()
    [closed] = [e for e in read_events(tmp_path / "logs" / "events") if e["event"] == "SIGNAL_CLOSED"]
    assert (closed["signal_id"], closed["exit_reason"], closed["fills"]) == (signal.id, "MANUAL", 2)

    again = await run_cli(["close", signal.id, "--price", "101"], env, tmp_path)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        f"error: close {signal.id}: already closed (MANUAL)",
    )


async def test_close_errors_are_one_line(tmp_path: Path) -> None:
    """Unknown id: exit 1; a price that is not a positive number: exit 2; both one line, no traceback."""
    _seed(tmp_path)
    write_config(tmp_path)
    env = cli_env(tmp_path, "http://127.0.0.1:9", None)
    unknown = await run_cli(["close", "nosuchid00", "--price", "101"], env, tmp_path)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, "error: close nosuchid00: no such signal")
    for bad in ("-5", "abc", "nan"):
        refused = await run_cli(["close", "manual0001", "--price", bad], env, tmp_path)
        assert refused.returncode == 2
        assert "--price" in refused.stderr
        assert "Traceback" not in refused.stderr


async def test_manual_close_of_a_perpetual_says_funding_unknown(tmp_path: Path) -> None:
    """The command makes no network call: a perpetual's result says funding unknown (stored as NULL)."""
    signal = _seed(tmp_path, symbol="BTC/USDT:USDT")
    write_config(tmp_path)
    env = cli_env(tmp_path, "http://127.0.0.1:9", None)
    done = await run_cli(["close", signal.id, "--price", "99"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    store = Store(tmp_path / "state")
    stored = store.get_signal(signal.id)
    assert stored is not None
    assert stored.funding_pct is None
    [result] = [row for row in store.outbox_rows() if row["kind"] == "result"]
    assert "Funding: unknown" in str(result["text"])
    store.close()
