"""Tests of common/pivots.py: swing highs and lows, the zigzag, ties, confirmation and no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from common.pivots import HIGH, LOW, Pivots, known_at, known_counts, swing_pivots, zigzag
from tests.bots.checks import real

pytestmark = pytest.mark.unit


def as_tuples(pivots: Pivots) -> list[tuple[int, float, int, int]]:
    """(index, price, kind, confirmed_at) of each pivot, in order."""
    return list(
        zip(
            pivots.index.tolist(),
            pivots.price.tolist(),
            pivots.kind.tolist(),
            pivots.confirmed_at.tolist(),
            strict=True,
        )
    )


def reference(high: list[float], low: list[float], lookback: int) -> list[tuple[int, float, int, int]]:
    """The documented rule as plain loops: strictly beyond the earlier bars, at least equal to the later."""
    found = []
    for i in range(lookback, len(high) - lookback):
        before, after = range(i - lookback, i), range(i + 1, i + lookback + 1)
        if all(low[i] < low[j] for j in before) and all(low[i] <= low[j] for j in after):
            found.append((i, low[i], LOW, i + lookback))
        if all(high[i] > high[j] for j in before) and all(high[i] >= high[j] for j in after):
            found.append((i, high[i], HIGH, i + lookback))
    return found


def test_hand_built_series_with_two_lookback() -> None:
    """A zig-zag with lookback 2: a high at bar 3 (confirmed at 5), a low at 6 (8), a high at 9 (11)."""
    high = [10.0, 11.0, 12.0, 15.0, 13.0, 12.0, 9.0, 11.0, 12.0, 14.0, 13.0, 12.0]
    low = [9.0, 10.0, 11.0, 14.0, 11.0, 10.0, 7.0, 9.0, 10.0, 12.0, 11.0, 10.0]
    pivots = swing_pivots(high, low, 2)
    assert as_tuples(pivots) == [(3, 15.0, HIGH, 5), (6, 7.0, LOW, 8), (9, 14.0, HIGH, 11)]
    assert as_tuples(pivots.highs) == [(3, 15.0, HIGH, 5), (9, 14.0, HIGH, 11)]
    assert as_tuples(pivots.lows) == [(6, 7.0, LOW, 8)]


def test_a_pivot_is_confirmed_lookback_bars_later_and_the_edges_are_never_pivots() -> None:
    """confirmed_at = index + lookback; the first and last ``lookback`` bars cannot be pivots."""
    high = [20.0, 1.0, 2.0, 3.0, 9.0, 3.0, 2.0, 1.0, 20.0]
    low = [h - 0.5 for h in high]
    # Bars 0 and 8 hold the highest highs and bars 1 and 7 the lowest lows, but with lookback 3 their
    # windows reach past the series' ends: only bar 4 (the highest of bars 1..7) is a pivot.
    pivots = swing_pivots(high, low, 3)
    assert as_tuples(pivots) == [(4, 9.0, HIGH, 7)]
    assert as_tuples(swing_pivots(high, low, 1)) == [
        (1, 0.5, LOW, 2),
        (4, 9.0, HIGH, 5),
        (7, 0.5, LOW, 8),
    ]


def test_a_flat_top_gives_one_pivot_at_its_first_bar() -> None:
    """Equal highs at bars 3 and 4: the swing high is bar 3 (the first), bar 4 is not one; lows mirror."""
    high = [1.0, 2.0, 3.0, 5.0, 5.0, 3.0, 2.0, 1.0]
    low = [0.5, 1.5, 2.5, 4.5, 4.5, 2.5, 1.5, 0.5]
    assert as_tuples(swing_pivots(high, low, 2)) == [(3, 5.0, HIGH, 5)]
    # Mirror: a flat bottom at bars 3 and 4.
    mirrored = swing_pivots([10 - x for x in low], [10 - x for x in high], 2)
    assert as_tuples(mirrored) == [(3, 5.0, LOW, 5)]


def test_an_equal_high_before_the_bar_disqualifies_it_one_after_does_not() -> None:
    """Bar 4 ties bar 2 (earlier, inside its window): not a pivot; bar 2, tied by a later bar, is one."""
    high = [1.0, 2.0, 6.0, 3.0, 6.0, 3.0, 2.0, 1.0]
    low = [h - 0.5 for h in high]
    assert as_tuples(swing_pivots(high, low, 2).highs) == [(2, 6.0, HIGH, 4)]
    # Outside the window the earlier equal high no longer matters: with lookback 1 both are pivots.
    assert as_tuples(swing_pivots(high, low, 1).highs) == [(2, 6.0, HIGH, 3), (4, 6.0, HIGH, 5)]


def test_a_bar_both_swing_high_and_low_gives_the_low_first() -> None:
    """An outside bar above and below all its neighbours is a swing low and a swing high, low first."""
    high = [10.0, 10.0, 20.0, 10.0, 10.0]
    low = [9.0, 9.0, 1.0, 9.0, 9.0]
    assert as_tuples(swing_pivots(high, low, 2)) == [(2, 1.0, LOW, 4), (2, 20.0, HIGH, 4)]


def test_too_few_bars_give_no_pivots() -> None:
    """Fewer than 2 x lookback + 1 bars: no bar has a complete window."""
    pivots = swing_pivots([1.0, 3.0, 1.0], [0.5, 2.5, 0.5], 2)
    assert len(pivots) == 0
    assert as_tuples(pivots) == []


def test_known_at_and_known_counts() -> None:
    """Pivots are known from their confirming bar on: a mask at one bar, counts for many bars."""
    high = [10.0, 11.0, 12.0, 15.0, 13.0, 12.0, 9.0, 11.0, 12.0, 14.0, 13.0, 12.0]
    low = [9.0, 10.0, 11.0, 14.0, 11.0, 10.0, 7.0, 9.0, 10.0, 12.0, 11.0, 10.0]
    pivots = swing_pivots(high, low, 2)  # confirmed at 5, 8 and 11
    assert known_at(pivots, 4).tolist() == [False, False, False]
    assert known_at(pivots, 5).tolist() == [True, False, False]
    assert known_at(pivots, 10).tolist() == [True, True, False]
    assert known_counts(pivots, np.arange(12)).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert as_tuples(pivots.select(slice(0, int(known_counts(pivots, [9])[0])))) == [
        (3, 15.0, HIGH, 5),
        (6, 7.0, LOW, 8),
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=6), min_size=0, max_size=60),
    st.integers(min_value=1, max_value=5),
)
def test_matches_the_plain_loop_rule_with_many_ties(steps: list[int], lookback: int) -> None:
    """On small-integer series full of ties, the vectorised finder equals the rule written as loops."""
    high = [float(s + 2) for s in steps]
    low = [float(s + (i % 3)) for i, s in enumerate(steps)]  # lows tie often too, independently of highs
    assert as_tuples(swing_pivots(high, low, lookback)) == reference(high, low, lookback)


def test_no_look_ahead_on_a_real_series() -> None:
    """At every bar t of 1,500 real BTC 15m bars, the pivots of bars 0..t are exactly those known at t."""
    series = real("binance_spot/BTC_USDT-15m.csv.gz", 1500)
    full = swing_pivots(series.high, series.low, 5)
    assert len(full) > 100
    for t in range(len(series)):
        partial = swing_pivots(series.high[: t + 1], series.low[: t + 1], 5)
        assert as_tuples(partial) == as_tuples(full.select(known_at(full, t))), f"differs at bar {t}"


def test_real_series_pivots_are_window_extremes() -> None:
    """On a real series every swing high is its window's first highest high, every swing low the lowest."""
    series = real("binance_spot/ETH_USDT-4h.csv.gz")
    pivots = swing_pivots(series.high, series.low, 20)
    assert as_tuples(pivots) == reference(series.high.tolist(), series.low.tolist(), 20)
    assert len(pivots.highs) > 5
    assert len(pivots.lows) > 5


def test_bad_inputs_are_rejected() -> None:
    """lookback < 1, unequal or 2-D arrays and NaN prices raise ValueError."""
    with pytest.raises(ValueError, match="lookback"):
        swing_pivots([1.0, 2.0, 1.0], [0.5, 1.5, 0.5], 0)
    with pytest.raises(ValueError, match="lookback"):
        swing_pivots([1.0, 2.0, 1.0], [0.5, 1.5, 0.5], True)
    with pytest.raises(ValueError, match="equally long"):
        swing_pivots([1.0, 2.0, 1.0], [0.5, 1.5], 1)
    with pytest.raises(ValueError, match="equally long"):
        swing_pivots([[1.0, 2.0]], [[0.5, 1.5]], 1)
    with pytest.raises(ValueError, match="finite"):
        swing_pivots([1.0, float("nan"), 1.0], [0.5, 1.5, 0.5], 1)


def test_pivots_container_checks_itself() -> None:
    """Pivots refuses a bad kind, confirmation before the bar, disorder and mismatched sizes; is read-only."""
    good = Pivots(
        index=np.array([3, 6]),
        price=np.array([15.0, 7.0]),
        kind=np.array([1, -1]),
        confirmed_at=np.array([5, 8]),
    )
    assert not good.index.flags.writeable
    with pytest.raises(ValueError, match="kind"):
        Pivots(index=np.array([3]), price=np.array([1.0]), kind=np.array([0]), confirmed_at=np.array([5]))
    with pytest.raises(ValueError, match="before its own bar"):
        Pivots(index=np.array([3]), price=np.array([1.0]), kind=np.array([1]), confirmed_at=np.array([2]))
    with pytest.raises(ValueError, match="ordered"):
        Pivots(
            index=np.array([3, 1]),
            price=np.array([1.0, 2.0]),
            kind=np.array([1, 1]),
            confirmed_at=np.array([5, 3]),
        )
    with pytest.raises(ValueError, match="values"):
        Pivots(
            index=np.array([3, 4]),
            price=np.array([1.0]),
            kind=np.array([1, 1]),
            confirmed_at=np.array([5, 6]),
        )


# -- zigzag ----------------------------------------------------------------------------------------

#: 14 bars: a rise from 10 to a top of 18 (bar 3), a fall to 11 (bar 6), a 2-bar rally to 16 (bar 8),
#: then a slide to 10 (bar 12).
ZZ_HIGH = [11.0, 13.0, 16.0, 18.0, 17.0, 14.0, 13.0, 15.0, 16.0, 15.0, 14.0, 13.0, 12.0, 13.0]
ZZ_LOW = [10.0, 11.0, 14.0, 16.0, 15.0, 12.0, 11.0, 13.0, 14.0, 12.5, 11.5, 10.5, 10.0, 11.0]


def test_zigzag_hand_built_with_two_bar_legs() -> None:
    """Move 5, min_bars 2: low 10 (bar 0) known at 2, high 18 (3) at 5, low 11 (6) at 8, high 16 (8) at 11."""
    pivots = zigzag(ZZ_HIGH, ZZ_LOW, min_move=5.0, min_bars=2)
    # Bar 2: high 16 >= 10 + 5, two bars after the low -> the low is confirmed. Bar 3 (18) replaces the
    # tentative high; bar 5's low 12 <= 18 - 5 two bars later confirms it. Bar 8's high 16 = 11 + 5
    # (exactly the move) confirms the low of bar 6; bar 10's low 11.5 is only 4.5 below 16, bar 11's
    # 10.5 is 5.5 below: the high of bar 8 is confirmed at 11. The low of bar 12 stays tentative.
    assert as_tuples(pivots) == [
        (0, 10.0, LOW, 2),
        (3, 18.0, HIGH, 5),
        (6, 11.0, LOW, 8),
        (8, 16.0, HIGH, 11),
    ]


def test_zigzag_min_bars_needs_the_move_at_least_min_bars_after_the_pivot() -> None:
    """min_bars 3: a 2-bar rally confirms nothing; min_bars 4: a top 3 bars after the low is no pivot."""
    pivots = zigzag(ZZ_HIGH, ZZ_LOW, min_move=5.0, min_bars=3)
    # The first low needs a move 3 bars after it (bar 3); the top of 18 needs one 3 bars after it
    # (bar 6, low 11). Bar 8's 16 is 5 above the low of bar 6 but only 2 bars after it; bar 9's 15 is not
    # 5 above; then lower lows replace the tentative low (10.5 at bar 11, 10 at bar 12).
    assert as_tuples(pivots) == [(0, 10.0, LOW, 3), (3, 18.0, HIGH, 6)]
    # min_bars 4: the low is confirmed at bar 4 (17 >= 15), whose high becomes the tentative high: the
    # top of 18 at bar 3 is only 3 bars after the low, too short a leg to be a pivot. The high of 17 at
    # bar 4 is confirmed 4+ bars later by the first low 5 below it (11.5 at bar 10).
    assert as_tuples(zigzag(ZZ_HIGH, ZZ_LOW, min_move=5.0, min_bars=4)) == [
        (0, 10.0, LOW, 4),
        (4, 17.0, HIGH, 10),
    ]


def test_zigzag_threshold_is_read_at_the_pivot_bar_after_a_nan_warm_up() -> None:
    """Leading NaNs are skipped; a high's move is its own bar's threshold, not the confirming bar's."""
    high = [30.0, 11.0, 13.0, 16.0, 12.0, 11.0, 10.0, 11.0]
    low = [29.0, 10.0, 12.0, 15.0, 11.0, 10.0, 9.0, 10.0]
    # Bar 0 (the highest high) is in the warm-up: not a candidate. The top of bar 3 needs 3 (its own
    # threshold): bar 5's low 10 is 6 below -> confirmed at 5, although the threshold there is 100.
    moves = [np.nan, 3.0, 3.0, 3.0, 3.0, 100.0, 100.0, 100.0]
    assert as_tuples(zigzag(high, low, min_move=moves, min_bars=2)) == [(1, 10.0, LOW, 3), (3, 16.0, HIGH, 5)]
    # With 7 at the top's bar the fall to 10 (6) is not enough; bar 6's 9 (7 below) confirms it.
    moves[3] = 7.0
    assert as_tuples(zigzag(high, low, min_move=moves, min_bars=2)) == [(1, 10.0, LOW, 3), (3, 16.0, HIGH, 6)]
    # All NaN: no bar can be a pivot.
    assert len(zigzag(high, low, min_move=np.full(8, np.nan))) == 0


def test_zigzag_percent_move_of_the_pivot_price() -> None:
    """min_move_pct 10: the low 100 needs a high of 110, the high 120 a low of 108."""
    high = [101.0, 104.0, 109.0, 110.0, 120.0, 115.0, 112.0, 108.5, 109.0, 110.0]
    low = [100.0, 102.0, 105.0, 108.0, 118.0, 113.0, 110.0, 108.1, 108.0, 109.0]
    pivots = zigzag(high, low, min_move_pct=10.0, min_bars=2)
    # Bar 3's 110 is exactly 10 % above 100; bar 7's 108.1 is 9.9 % below 120, bar 8's 108 is 10 %.
    assert as_tuples(pivots) == [(0, 100.0, LOW, 3), (4, 120.0, HIGH, 8)]


def test_zigzag_equal_highs_keep_the_first_bar_and_an_outside_start_confirms_the_low_first() -> None:
    """A flat top is one pivot at its first bar; start extremes both confirmed on one bar: the low first."""
    high = [10.0, 12.0, 15.0, 15.0, 13.0, 9.0]
    low = [9.0, 11.0, 14.0, 14.0, 12.0, 8.0]
    assert as_tuples(zigzag(high, low, min_move=5.0, min_bars=2)) == [(0, 9.0, LOW, 2), (2, 15.0, HIGH, 5)]
    # Bar 0 is both the highest high and the lowest low; bar 3's high is 6 above that low and its low 6
    # below that high: the low goes first (the same bar: OHLC does not tell), bar 3's high is tentative.
    high = [20.0, 19.0, 17.0, 16.0, 15.0, 9.0]
    low = [10.0, 11.0, 12.0, 14.0, 13.0, 8.0]
    assert as_tuples(zigzag(high, low, min_move=5.0, min_bars=3)) == [(0, 10.0, LOW, 3)]
    # With min_bars 2 bar 2 confirms both; bar 2's high 17 is then confirmed by bar 5's low 8.
    assert as_tuples(zigzag(high, low, min_move=5.0, min_bars=2)) == [(0, 10.0, LOW, 2), (2, 17.0, HIGH, 5)]


def zigzag_invariants(high: list[float], low: list[float], moves: list[float], min_bars: int) -> None:
    """The documented guarantees of a zigzag with an absolute threshold per bar."""
    pivots = zigzag(high, low, min_move=moves, min_bars=min_bars)
    rows = as_tuples(pivots)
    for previous, (index, price, kind, confirmed) in zip([None, *rows], rows, strict=False):
        assert confirmed >= index + min_bars
        extreme = high if kind == HIGH else low
        assert extreme[index] == price
        # The confirming bar has moved away from the pivot by its own bar's threshold.
        away = price - low[confirmed] if kind == HIGH else high[confirmed] - price
        assert away >= moves[index]
        assert away > 0
        if previous is None:
            window = range(0, confirmed + 1)
        else:
            assert kind == -previous[2]
            assert index - previous[0] >= min_bars
            assert (price - previous[1]) * kind >= moves[previous[0]]
            assert confirmed > previous[3]
            window = range(previous[3], confirmed + 1)
        # The pivot is the first most extreme bar since the previous pivot was confirmed.
        values = [extreme[i] * kind for i in window]
        assert window[values.index(max(values))] == index


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=-3, max_value=3), min_size=0, max_size=80),
    st.lists(st.integers(min_value=0, max_value=2), min_size=80, max_size=80),
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=1, max_value=4),
)
def test_zigzag_guarantees_and_no_look_ahead_on_random_walks(
    steps: list[int], ranges: list[int], move: int, min_bars: int
) -> None:
    """On integer random walks full of ties: the documented guarantees hold and every prefix agrees."""
    close = np.cumsum([100, *steps]).astype(float)
    high = [c + ranges[i % 80] for i, c in enumerate(close)]
    low = [c - ranges[(i + 7) % 80] for i, c in enumerate(close)]
    moves = [float(move + i % 3) for i in range(len(close))]
    zigzag_invariants(high, low, moves, min_bars)
    full = zigzag(high, low, min_move=moves, min_bars=min_bars)
    for t in range(len(close)):
        partial = zigzag(high[: t + 1], low[: t + 1], min_move=moves[: t + 1], min_bars=min_bars)
        assert as_tuples(partial) == as_tuples(full.select(known_at(full, t)))


def test_zigzag_no_look_ahead_on_a_real_series_with_an_atr_threshold() -> None:
    """On 1,500 real BTC 15m bars with 3 x ATR(14): the zigzag of bars 0..t is the full one's known at t."""
    series = real("binance_spot/BTC_USDT-15m.csv.gz", 1500)
    moves = 3.0 * talib.ATR(series.high, series.low, series.close, timeperiod=14)
    full = zigzag(series.high, series.low, min_move=moves)
    assert len(full) > 40
    zigzag_invariants(series.high.tolist(), series.low.tolist(), moves.tolist(), 3)
    for t in range(len(series)):
        partial = zigzag(series.high[: t + 1], series.low[: t + 1], min_move=moves[: t + 1])
        assert as_tuples(partial) == as_tuples(full.select(known_at(full, t))), f"differs at bar {t}"


def test_zigzag_percent_mode_on_a_real_series() -> None:
    """On ETH 4h with 5 %: the guarantees hold with each pivot's own 5 % as its threshold."""
    series = real("binance_spot/ETH_USDT-4h.csv.gz")
    pivots = zigzag(series.high, series.low, min_move_pct=5.0, min_bars=3)
    assert len(pivots) > 30
    for index, price, kind, confirmed in as_tuples(pivots):
        away = price - series.low[confirmed] if kind == HIGH else series.high[confirmed] - price
        assert away >= price * 0.05
        assert confirmed >= index + 3
    assert (np.diff(pivots.kind) != 0).all()
    assert (np.diff(pivots.index) >= 3).all()


def test_zigzag_bad_inputs_are_rejected() -> None:
    """Neither or both thresholds, a bad percent, NaN after the warm-up, bad moves or min_bars < 1 raise."""
    high, low = [2.0, 3.0, 2.0], [1.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="exactly one"):
        zigzag(high, low)
    with pytest.raises(ValueError, match="exactly one"):
        zigzag(high, low, min_move=1.0, min_move_pct=1.0)
    with pytest.raises(ValueError, match="min_move_pct"):
        zigzag(high, low, min_move_pct=0.0)
    with pytest.raises(ValueError, match="min_move_pct"):
        zigzag(high, low, min_move_pct=float("nan"))
    with pytest.raises(ValueError, match="warm-up"):
        zigzag(high, low, min_move=[np.nan, 1.0, np.nan])
    with pytest.raises(ValueError, match="negative"):
        zigzag(high, low, min_move=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="one value per bar"):
        zigzag(high, low, min_move=[1.0, 1.0])
    with pytest.raises(ValueError, match="min_bars"):
        zigzag(high, low, min_move=1.0, min_bars=0)
    with pytest.raises(ValueError, match="equally long"):
        zigzag(high, [1.0], min_move=1.0)
    with pytest.raises(ValueError, match="finite"):
        zigzag([2.0, np.inf, 2.0], low, min_move=1.0)
