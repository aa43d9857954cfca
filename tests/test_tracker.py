"""Tests of common.tracker: exits from highs/lows, SL priority, partial exits, break-even, trailing
stops, TIMEOUT, MANUAL, fees and funding in P&L and R, excursions. Every figure is computed by hand."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from common.market.extras import FundingRates
from common.tracker import (
    ExitPlan,
    Fill,
    Outcome,
    Position,
    advance,
    close_manually,
    funding_paid_pct,
    settle,
)
from common.types import Candles, Direction, Levels, Signal

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, the signal bar's open time
HOUR = 3_600_000
FEE = 0.05  # percent per side
DAY = 24 * HOUR
WHOLE = ExitPlan(timeout_ms=DAY, fee_pct_per_side=FEE, tp_fractions=(1.0,))


def long_signal(tps: tuple[float, ...] = (104.0, 106.0, 110.0), symbol: str = "BTC/USDT") -> Signal:
    """LONG entry 100, SL 98 (risk 2), found on the 1h bar T0 and emitted at its close."""
    return Signal(
        id="long1",
        bot="psar_bot",
        symbol=symbol,
        timeframe="1h",
        direction=Direction.LONG,
        levels=Levels(Direction.LONG, entry=100.0, sl=98.0, tps=tps),
        reason="test",
        bar_ts=T0,
        created_ms=T0 + HOUR,
    )


def short_signal(symbol: str = "BTC/USDT") -> Signal:
    """SHORT entry 100, SL 102 (risk 2), targets 96 / 94."""
    return Signal(
        id="short1",
        bot="psar_bot",
        symbol=symbol,
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


def outcome_of(signal: Signal, candles: Candles, plan: ExitPlan = WHOLE) -> Outcome:
    """Follow ``signal`` over ``candles`` with ``plan`` (spot: no funding) and settle it."""
    position = advance(signal, Position.opened(signal), candles, plan)
    assert position.closed
    return settle(signal, position, plan, 0.0)


# -- first level touched, from highs and lows -------------------------------------------------------


def test_wick_to_tp1_closing_below_entry_is_a_tp1_exit() -> None:
    """A LONG candle whose HIGH touches TP1 and closes below entry exits at TP1: +3.9 %, 1.95 R after fees."""
    candles = hourly([(100.0, 100.5, 99.5, 100.2), (100.2, 104.0, 99.0, 99.5), (99.5, 99.8, 97.0, 97.5)])
    # A tracker sampling last prices would see 100.2, 99.5, 97.5 and report the stop on candle 3.
    assert float(candles.close[1]) < 100.0
    outcome = outcome_of(long_signal(), candles)
    # Gross +4 % (104 vs 100) minus 2 x 0.05 % = +3.9 %; in R: 3.9 % of 100 = 3.9 over a risk of 2.
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("TP1", 104.0, T0 + 3 * HOUR)
    assert outcome.pnl_pct == pytest.approx(3.9, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(1.95, rel=1e-12)
    assert outcome.fills == (Fill("TP1", 104.0, T0 + 3 * HOUR, 1.0),)


def test_candle_touching_stop_and_target_counts_the_stop() -> None:
    """One candle through both SL (98) and TP1 (104) closes at SL: -2.1 %, -1.05 R after fees."""
    outcome = outcome_of(long_signal(), hourly([(100.0, 105.0, 97.9, 103.0)]))
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("SL", 98.0, T0 + 2 * HOUR)
    assert outcome.pnl_pct == pytest.approx(-2.1, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(-1.05, rel=1e-12)


def test_stop_touched_exactly_counts() -> None:
    """A low exactly at the stop is a stop-out."""
    assert outcome_of(long_signal(), hourly([(100.0, 101.0, 98.0, 99.0)])).reason == "SL"


def test_short_exits_from_lows_and_highs() -> None:
    """A SHORT hits its last target when a low reaches 94, its stop when a high reaches 102 (ties: stop)."""
    tp = outcome_of(short_signal(), hourly([(100.0, 100.5, 93.5, 99.0)]), ExitPlan(DAY, FEE, (0.0, 1.0)))
    # All of it at TP2: gross +6 % (100 -> 94 short) - 0.1 % = 5.9 %; R = 5.9 / 2.
    assert (tp.reason, tp.price) == ("TP2", 94.0)
    assert tp.pnl_pct == pytest.approx(5.9, rel=1e-12)
    assert tp.r_multiple == pytest.approx(2.95, rel=1e-12)
    both = outcome_of(short_signal(), hourly([(100.0, 102.5, 95.0, 97.0)]))
    assert (both.reason, both.price) == ("SL", 102.0)
    assert both.pnl_pct == pytest.approx(-2.1, rel=1e-12)


# -- partial exits and break-even ------------------------------------------------------------------


def test_partials_with_break_even_by_hand() -> None:
    """50 % at TP1, 30 % at TP2, the rest at break-even: 0.5 x 4 % + 0.3 x 6 % - 0.1 % = 3.7 %, 1.85 R."""
    plan = ExitPlan(DAY, FEE, tp_fractions=(0.5, 0.3, 0.2), break_even_after_tp1=True)
    candles = hourly(
        [
            (100.0, 104.5, 99.0, 103.0),  # TP1 (104): half out; the stop moves to 100 for the next candle
            (103.0, 106.2, 102.0, 105.0),  # TP2 (106): 30 % out
            (105.0, 105.5, 99.9, 100.5),  # low 99.9 <= 100: the last 20 % out at break-even
        ]
    )
    signal = long_signal()
    position = advance(signal, Position.opened(signal), candles, plan)
    assert [(f.reason, f.price, f.ts_ms) for f in position.fills] == [
        ("TP1", 104.0, T0 + 2 * HOUR),
        ("TP2", 106.0, T0 + 3 * HOUR),
        ("BE", 100.0, T0 + 4 * HOUR),
    ]
    assert [f.fraction for f in position.fills] == pytest.approx([0.5, 0.3, 0.2], rel=1e-12)
    outcome = settle(signal, position, plan, 0.0)
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("BE", 100.0, T0 + 4 * HOUR)
    assert outcome.pnl_pct == pytest.approx(0.5 * 4.0 + 0.3 * 6.0 + 0.2 * 0.0 - 0.1, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(3.7 / 2.0, rel=1e-12)
    # Excursions: best high 106.2 (+6.2 %), worst low 99.0 (-1 %).
    assert [outcome.mfe_pct, outcome.mae_pct] == pytest.approx([6.2, 1.0], rel=1e-12)


def test_break_even_applies_from_the_next_candle_and_without_it_the_stop_stays() -> None:
    """A candle hitting TP1 and dipping below entry is no stop-out; without break-even the rest hits SL."""
    candles = hourly([(100.0, 104.0, 99.5, 101.0), (101.0, 101.5, 97.5, 98.0)])
    signal = long_signal()
    with_be = ExitPlan(DAY, FEE, (0.5, 0.5), break_even_after_tp1=True)
    be = settle(signal, advance(signal, Position.opened(signal), candles, with_be), with_be, 0.0)
    # 0.5 x 4 % + 0.5 x 0 % - 0.1 % = 1.9 %.
    assert (be.reason, be.price) == ("BE", 100.0)
    assert be.pnl_pct == pytest.approx(1.9, rel=1e-12)
    without = replace(with_be, break_even_after_tp1=False)
    sl = settle(signal, advance(signal, Position.opened(signal), candles, without), without, 0.0)
    # 0.5 x 4 % + 0.5 x (-2 %) - 0.1 % = 0.9 %; 0.45 R.
    assert (sl.reason, sl.price) == ("SL", 98.0)
    assert sl.pnl_pct == pytest.approx(0.9, rel=1e-12)
    assert sl.r_multiple == pytest.approx(0.45, rel=1e-12)


def test_equal_shares_by_default_and_the_last_target_closes_the_rest() -> None:
    """No fractions: a third at each of three targets; one candle through all three closes everything."""
    plan = ExitPlan(DAY, FEE)
    outcome = outcome_of(long_signal(), hourly([(100.0, 111.0, 99.0, 109.0)]), plan)
    assert [(f.reason, f.price) for f in outcome.fills] == [("TP1", 104.0), ("TP2", 106.0), ("TP3", 110.0)]
    assert [f.fraction for f in outcome.fills] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert outcome.pnl_pct == pytest.approx((4.0 + 6.0 + 10.0) / 3 - 0.1, rel=1e-12)


def test_fractions_summing_below_one_leave_the_rest_to_the_last_target() -> None:
    """Fractions (0.25,) on two targets: 25 % at TP1, the remaining 75 % at TP2."""
    outcome = outcome_of(
        long_signal(tps=(104.0, 106.0)), hourly([(100.0, 107.0, 99.5, 106.5)]), ExitPlan(DAY, FEE, (0.25,))
    )
    assert [(f.reason, f.fraction) for f in outcome.fills] == [("TP1", 0.25), ("TP2", 0.75)]
    assert outcome.pnl_pct == pytest.approx(0.25 * 4.0 + 0.75 * 6.0 - 0.1, rel=1e-12)


# -- trailing stops --------------------------------------------------------------------------------


def test_trailing_stop_moves_only_in_favour_and_closes_as_trail() -> None:
    """The line at a close is the next candle's stop; it never loosens; a line above price is ignored."""
    plan = ExitPlan(DAY, FEE, (1.0,), trailing=True)
    candles = hourly(
        [
            (100.0, 101.0, 99.0, 100.8),  # line 99.0 -> stop 99 from the next candle
            (100.8, 102.0, 100.0, 101.8),  # line 98.5 (looser: ignored) -> stop stays 99
            (101.8, 103.0, 101.0, 102.5),  # line 104 (above the close: flipped, ignored)
            (102.5, 103.5, 101.5, 103.0),  # line 101.2 -> stop 101.2
            (103.0, 103.2, 101.1, 101.5),  # low 101.1 <= 101.2: out at 101.2
        ]
    )
    trail = np.array([99.0, 98.5, 104.0, 101.2, np.nan])
    signal = long_signal()
    position = advance(signal, Position.opened(signal), candles, plan, trail)
    outcome = settle(signal, position, plan, 0.0)
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("TRAIL", 101.2, T0 + 6 * HOUR)
    assert outcome.pnl_pct == pytest.approx(1.2 - 0.1, rel=1e-12)
    # Without trailing in the plan the same line does nothing: the 5 candles leave it open.
    untrailed = advance(signal, Position.opened(signal), candles, replace(plan, trailing=False), trail)
    assert (untrailed.closed, untrailed.stop) == (False, 98.0)


# -- timeout and manual ----------------------------------------------------------------------------


def test_timeout_at_close_of_first_candle_ending_after_the_timeout() -> None:
    """Timeout 2.5 h after emission (T0+1h): the candle closing at T0+4h (3 h later) exits at its close."""
    candles = hourly([(100.0, 101.0, 99.5, 100.5), (100.5, 101.5, 99.5, 101.0), (101.0, 101.8, 100.5, 101.0)])
    plan = ExitPlan(2 * HOUR + HOUR // 2, FEE)
    signal = long_signal()
    position = advance(signal, Position.opened(signal), candles, plan)
    outcome = settle(signal, position, plan, 0.0)
    # Exit at 101: +1 % - 0.1 % = 0.9 %; 0.45 R.
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("TIMEOUT", 101.0, T0 + 4 * HOUR)
    assert outcome.pnl_pct == pytest.approx(0.9, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(0.45, rel=1e-12)
    assert position.checked_until == T0 + 3 * HOUR


def test_target_beats_timeout_on_the_same_candle() -> None:
    """On the candle that would time out, a touched target is the exit, not the close."""
    assert (
        outcome_of(long_signal(), hourly([(100.0, 104.5, 99.5, 100.5)]), ExitPlan(HOUR, FEE, (1.0,))).reason
        == "TP1"
    )


def test_manual_close_after_a_partial() -> None:
    """MANUAL closes what remains at the given price: 0.5 x 4 % + 0.5 x 1.5 % - 0.1 % = 2.65 %."""
    plan = ExitPlan(DAY, FEE, (0.5, 0.5))
    signal = long_signal()
    position = advance(signal, Position.opened(signal), hourly([(100.0, 104.0, 99.5, 102.0)]), plan)
    assert (position.remaining, position.closed) == (0.5, False)
    closed = close_manually(position, 101.5, T0 + 5 * HOUR)
    outcome = settle(signal, closed, plan, 0.0)
    assert (outcome.reason, outcome.price, outcome.exit_ms) == ("MANUAL", 101.5, T0 + 5 * HOUR)
    assert outcome.pnl_pct == pytest.approx(2.65, rel=1e-12)


def test_settling_an_open_position_is_refused() -> None:
    """settle() on a position with size left raises instead of inventing an exit."""
    signal = long_signal()
    with pytest.raises(ValueError, match="still open"):
        settle(signal, Position.opened(signal), WHOLE, 0.0)


# -- checkpoints -----------------------------------------------------------------------------------


def test_signal_bar_and_already_checked_candles_are_ignored() -> None:
    """The signal's own bar and candles at or before checked_until never close the signal."""
    # Candle 0 is the signal bar itself; candle 1 touched TP1 but was already checked; candle 2 is quiet.
    candles = hourly(
        [(100.0, 100.5, 97.0, 100.0), (100.0, 104.5, 99.5, 100.0), (100.0, 100.8, 99.2, 100.1)],
        first_ts=T0,
    )
    signal = long_signal()
    checked = replace(Position.opened(signal), checked_until=T0 + HOUR)
    after = advance(signal, checked, candles, WHOLE)
    assert (after.closed, after.checked_until) == (False, T0 + 2 * HOUR)
    from_start = advance(signal, Position.opened(signal), candles, WHOLE)
    assert (from_start.fills[0].reason, from_start.checked_until) == ("TP1", T0 + HOUR)


def test_progress_survives_json_and_resumes_identically() -> None:
    """Advancing in two steps through a stored position equals advancing once over all candles."""
    plan = ExitPlan(DAY, FEE, (0.5, 0.3, 0.2), break_even_after_tp1=True)
    candles = hourly([(100.0, 104.5, 99.0, 103.0), (103.0, 106.2, 102.0, 105.0), (105.0, 105.5, 99.9, 100.5)])
    signal = long_signal()
    once = advance(signal, Position.opened(signal), candles, plan)
    first = advance(signal, Position.opened(signal), candles.slice(0, 1), plan)
    restored = Position.from_json(first.to_json())
    assert restored == first
    assert advance(signal, restored, candles, plan) == once


# -- funding ---------------------------------------------------------------------------------------


def funding(rows: list[tuple[int, float]]) -> FundingRates:
    """Funding settlements (time, rate) of the perpetual."""
    return FundingRates(
        symbol="BTC/USDT:USDT",
        ts=np.array([t for t, _ in rows], dtype=np.int64),
        rate=np.array([r for _, r in rows], dtype=np.float64),
    )


def test_funding_weighted_by_size_still_open_by_hand() -> None:
    """Partials, break-even, fees and funding on a perpetual LONG, computed by hand.

    Emitted T0+1h; TP1 (50 %) in the candle closing T0+3h; break-even hit in the candle closing T0+5h.
    Settlements: T0 (before the alert: ignored), T0+2h at +0.01 % (full size: the long pays 0.01 %),
    T0+4h at -0.03 % (half size: the long receives 0.015 %), T0+6h (after the exit: ignored).
    Funding: -0.01 + 0.015 = +0.005 %.
    """
    signal = long_signal(symbol="BTC/USDT:USDT")
    plan = ExitPlan(DAY, FEE, (0.5, 0.5), break_even_after_tp1=True)
    candles = hourly(
        [
            (100.0, 101.0, 99.5, 100.5),
            (100.5, 104.2, 100.2, 103.0),
            (103.0, 103.5, 101.0, 102.0),
            (102.0, 102.5, 99.8, 100.1),
        ]
    )
    position = advance(signal, Position.opened(signal), candles, plan)
    rates = funding([(T0, 0.0005), (T0 + 2 * HOUR, 0.0001), (T0 + 4 * HOUR, -0.0003), (T0 + 6 * HOUR, 0.001)])
    paid = funding_paid_pct(signal, position.fills, rates)
    assert paid == pytest.approx(0.005, rel=1e-9)
    outcome = settle(signal, position, plan, paid)
    assert (outcome.reason, outcome.exit_ms) == ("BE", T0 + 5 * HOUR)
    # 0.5 x 4 % (TP1) + 0.5 x 0 % (break-even) - 2 x 0.05 % fees + 0.005 % funding = 1.905 %; R = / 2.
    assert outcome.pnl_pct == pytest.approx(1.905, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(0.9525, rel=1e-12)
    # A SHORT held at full size through both settlements receives 0.01 % and pays 0.03 %: -0.02 %.
    short = short_signal(symbol="BTC/USDT:USDT")
    fills = (Fill("SL", 102.0, T0 + 5 * HOUR, 1.0),)
    assert funding_paid_pct(short, fills, rates) == pytest.approx(-0.02, rel=1e-9)


def test_positive_funding_costs_a_long() -> None:
    """Two settlements of +0.03 % on a full-size LONG cost 0.06 %: TP1 net 3.9 - 0.06 = 3.84 %, 1.92 R."""
    signal = long_signal(symbol="BTC/USDT:USDT")
    candles = hourly([(100.0, 101.0, 99.5, 100.5)] * 4 + [(100.5, 104.0, 100.0, 103.0)])
    position = advance(signal, Position.opened(signal), candles, WHOLE)
    paid = funding_paid_pct(
        signal, position.fills, funding([(T0 + 2 * HOUR, 0.0003), (T0 + 4 * HOUR, 0.0003)])
    )
    outcome = settle(signal, position, WHOLE, paid)
    assert outcome.funding_pct == pytest.approx(-0.06, rel=1e-12)
    assert outcome.pnl_pct == pytest.approx(3.84, rel=1e-12)
    assert outcome.r_multiple == pytest.approx(1.92, rel=1e-12)
