"""Tests of common.tracker: exits from candle highs/lows, SL priority, TIMEOUT, fees in P&L and R."""

from __future__ import annotations

import numpy as np
import pytest

from common.store import Outcome
from common.tracker import TrackResult, net_result, track
from common.types import Candles, Direction, Levels, Signal

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, the signal bar's open time
HOUR = 3_600_000
FEE = 0.05  # percent per side
DAY = 24 * HOUR


def long_signal(tps: tuple[float, ...] = (104.0, 106.0, 110.0)) -> Signal:
    """LONG entry 100, SL 98 (risk 2), found on the 1h bar T0 and emitted at its close."""
    return Signal(
        id="long1",
        bot="psar_bot",
        symbol="BTC/USDT",
        timeframe="1h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=100.0, sl=98.0, tps=tps),
        reason="test",
        bar_ts=T0,
        created_ms=T0 + HOUR,
    )


def short_signal() -> Signal:
    """SHORT entry 100, SL 102 (risk 2), targets 96 / 94."""
    return Signal(
        id="short1",
        bot="psar_bot",
        symbol="BTC/USDT",
        timeframe="1h",
        direction=Direction.SHORT,
        levels=Levels(Direction.SHORT, entry=100.0, sl=102.0, tps=(96.0, 94.0)),
        reason="test",
        bar_ts=T0,
        created_ms=T0 + HOUR,
    )


def hourly(rows: list[tuple[float, float, float, float]], first_ts: int = T0 + HOUR) -> Candles:
    """Hourly candles (open, high, low, close) starting at ``first_ts``."""
    table = np.array(rows, dtype=np.float64)
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=first_ts + np.arange(len(rows), dtype=np.int64) * HOUR,
        open=table[:, 0],
        high=table[:, 1],
        low=table[:, 2],
        close=table[:, 3],
        volume=np.full(len(rows), 10.0),
    )


def test_wick_to_tp1_closing_below_entry_is_a_tp1_exit() -> None:
    """A LONG candle whose HIGH touches TP1 and closes below entry exits at TP1: +3.9 %, 1.95 R after fees."""
    candles = hourly([(100.0, 100.5, 99.5, 100.2), (100.2, 104.0, 99.0, 99.5), (99.5, 99.8, 97.0, 97.5)])
    # A tracker sampling last prices would see 100.2, 99.5, 97.5 and report the stop on candle 3.
    assert float(candles.close[1]) < 100.0
    result = track(long_signal(), candles, checked_until=T0, timeout_ms=DAY, fee_pct_per_side=FEE)
    # Gross +4 % (104 vs 100) minus 2 x 0.05 % = +3.9 %; in R: 3.9 % of 100 = 3.9 over a risk of 2.
    assert result == TrackResult(
        outcome=Outcome(reason="TP1", price=104.0, exit_ms=T0 + 3 * HOUR, pnl_pct=3.9, r_multiple=1.95),
        checked_until=T0 + 2 * HOUR,
    )


def test_candle_touching_stop_and_target_counts_the_stop() -> None:
    """One candle through both SL (98) and TP1 (104) closes at SL: -2.1 %, -1.05 R after fees."""
    candles = hourly([(100.0, 105.0, 97.9, 103.0)])
    result = track(long_signal(), candles, checked_until=T0, timeout_ms=DAY, fee_pct_per_side=FEE)
    assert result.outcome is not None
    assert (result.outcome.reason, result.outcome.price, result.outcome.exit_ms) == (
        "SL",
        98.0,
        T0 + 2 * HOUR,
    )
    assert result.outcome.pnl_pct == pytest.approx(-2.1, rel=1e-12)
    assert result.outcome.r_multiple == pytest.approx(-1.05, rel=1e-12)


def test_stop_touched_exactly_counts() -> None:
    """A low exactly at the stop is a stop-out."""
    result = track(long_signal(), hourly([(100.0, 101.0, 98.0, 99.0)]), T0, DAY, FEE)
    assert result.outcome is not None
    assert result.outcome.reason == "SL"


@pytest.mark.parametrize(
    ("high", "reason", "price", "pnl", "r"),
    [
        (104.0, "TP1", 104.0, 3.9, 1.95),
        (107.0, "TP2", 106.0, 5.9, 2.95),
        (110.0, "TP3", 110.0, 9.9, 4.95),
        (130.0, "TP3", 110.0, 9.9, 4.95),
    ],
)
def test_furthest_target_touched_in_one_candle_wins(
    high: float, reason: str, price: float, pnl: float, r: float
) -> None:
    """The exit is the furthest take-profit the candle's high reached (net: gross % - 0.1 %; R = net / 2)."""
    result = track(long_signal(), hourly([(100.0, high, 99.0, 101.0)]), T0, DAY, FEE)
    assert result.outcome is not None
    assert (result.outcome.reason, result.outcome.price) == (reason, price)
    assert result.outcome.pnl_pct == pytest.approx(pnl, rel=1e-12)
    assert result.outcome.r_multiple == pytest.approx(r, rel=1e-12)


def test_short_exits_from_lows_and_highs() -> None:
    """A SHORT hits TP2 when a low reaches 94, and its stop when a high reaches 102 (stop first on ties)."""
    tp = track(short_signal(), hourly([(100.0, 100.5, 93.5, 99.0)]), T0, DAY, FEE)
    assert tp.outcome is not None
    # Gross +6 % (100 -> 94 short) - 0.1 % = 5.9 %; R = 5.9 / 2.
    assert (tp.outcome.reason, tp.outcome.price) == ("TP2", 94.0)
    assert tp.outcome.pnl_pct == pytest.approx(5.9, rel=1e-12)
    assert tp.outcome.r_multiple == pytest.approx(2.95, rel=1e-12)
    both = track(short_signal(), hourly([(100.0, 102.5, 95.0, 97.0)]), T0, DAY, FEE)
    assert both.outcome is not None
    assert (both.outcome.reason, both.outcome.price) == ("SL", 102.0)
    assert both.outcome.pnl_pct == pytest.approx(-2.1, rel=1e-12)
    assert both.outcome.r_multiple == pytest.approx(-1.05, rel=1e-12)


def test_timeout_at_close_of_first_candle_ending_after_the_timeout() -> None:
    """Timeout 2.5 h after emission (T0+1h): the candle closing at T0+4h (3 h later) exits at its close."""
    candles = hourly([(100.0, 101.0, 99.5, 100.5), (100.5, 101.5, 99.5, 101.0), (101.0, 101.8, 100.5, 101.0)])
    timeout = 2 * HOUR + HOUR // 2
    result = track(long_signal(), candles, T0, timeout, FEE)
    # Candle closes: T0+2h (1 h after), T0+3h (2 h), T0+4h (3 h >= 2.5 h). Exit at 101: +1 % - 0.1 % = 0.9 %.
    assert result.outcome is not None
    assert (result.outcome.reason, result.outcome.price, result.outcome.exit_ms) == (
        "TIMEOUT",
        101.0,
        T0 + 4 * HOUR,
    )
    assert result.outcome.pnl_pct == pytest.approx(0.9, rel=1e-12)
    assert result.outcome.r_multiple == pytest.approx(0.45, rel=1e-12)
    assert result.checked_until == T0 + 3 * HOUR


def test_timeout_exactly_at_a_candle_close() -> None:
    """A timeout of exactly 2 h ends at the candle closing exactly 2 h after emission."""
    candles = hourly([(100.0, 101.0, 99.5, 100.5), (100.5, 101.5, 99.5, 99.0), (99.0, 99.5, 98.5, 99.0)])
    result = track(long_signal(), candles, T0, 2 * HOUR, FEE)
    assert result.outcome is not None
    assert (result.outcome.reason, result.outcome.exit_ms, result.outcome.price) == (
        "TIMEOUT",
        T0 + 3 * HOUR,
        99.0,
    )
    # -1 % - 0.1 % = -1.1 %; -0.55 R.
    assert result.outcome.pnl_pct == pytest.approx(-1.1, rel=1e-12)
    assert result.outcome.r_multiple == pytest.approx(-0.55, rel=1e-12)


def test_target_beats_timeout_on_the_same_candle() -> None:
    """On the candle that would time out, a touched target is the exit, not the close."""
    candles = hourly([(100.0, 104.5, 99.5, 100.5)])
    result = track(long_signal(), candles, T0, HOUR, FEE)
    assert result.outcome is not None
    assert result.outcome.reason == "TP1"


def test_signal_bar_and_already_checked_candles_are_ignored() -> None:
    """The signal's own bar and candles at or before checked_until never close the signal."""
    # Candle 0 is the signal bar itself (its wick went below the stop before entry existed);
    # candle 1 touched TP1 but was already checked; candle 2 is quiet.
    candles = hourly(
        [(100.0, 100.5, 97.0, 100.0), (100.0, 104.5, 99.5, 100.0), (100.0, 100.8, 99.2, 100.1)],
        first_ts=T0,
    )
    result = track(long_signal(), candles, checked_until=T0 + HOUR, timeout_ms=DAY, fee_pct_per_side=FEE)
    assert result == TrackResult(outcome=None, checked_until=T0 + 2 * HOUR)
    # checked_until below the signal bar still skips the signal bar; then candle 1 hits TP1.
    from_start = track(long_signal(), candles, checked_until=T0 - HOUR, timeout_ms=DAY, fee_pct_per_side=FEE)
    assert from_start.outcome is not None
    assert (from_start.outcome.reason, from_start.checked_until) == ("TP1", T0 + HOUR)


def test_no_new_candles_returns_the_previous_checkpoint() -> None:
    """With nothing after checked_until, nothing closes and the checkpoint stays."""
    candles = hourly([(100.0, 101.0, 99.0, 100.5), (100.5, 101.0, 99.0, 100.5)])
    result = track(long_signal(), candles, checked_until=T0 + 2 * HOUR, timeout_ms=DAY, fee_pct_per_side=FEE)
    assert result == TrackResult(outcome=None, checked_until=T0 + 2 * HOUR)


def test_net_result_by_hand() -> None:
    """net_result: LONG exit 103 -> 2.9 %, 1.45 R; SHORT exit 101 -> -1.1 %, -0.55 R; no fee -> gross."""
    pnl, r = net_result(long_signal(), 103.0, FEE)
    assert pnl == pytest.approx(2.9, rel=1e-12)
    assert r == pytest.approx(1.45, rel=1e-12)
    pnl, r = net_result(short_signal(), 101.0, FEE)
    assert pnl == pytest.approx(-1.1, rel=1e-12)
    assert r == pytest.approx(-0.55, rel=1e-12)
    pnl, r = net_result(long_signal(), 98.0, 0.0)
    assert (pnl, r) == (-2.0, -1.0)
