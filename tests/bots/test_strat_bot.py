"""Tests of bots/strat_bot.py: bar types, every combo in both directions, location, filters, FTFC, levels."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import MarketData
from bots.strat_bot import StratBot, StratParams, bar_types, htf_colours
from common.market.replay import aggregate
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import LevelsRejected, RejectReason, RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday: on the 4h, 1d and 1w grids
HOUR = 3_600_000
BOT = StratBot()
DEFAULTS = StratParams()
#: The risk block recommended for the bot in global_config.json.
RISK_BLOCK = {
    "sl_method": "structure",
    "tp_method": "atr",
    "tp_multiples": [2.5, 4.0],
    "min_rr": 1.8,
    "min_stop_pct": 0.3,
}
RISK = RiskSettings.model_validate(RISK_BLOCK)
#: The block for ``targets: "extremes"``: TP1 at the prior bars' extreme, TP2 its 1.618 extension.
EXTREMES_BLOCK = {
    "sl_method": "structure",
    "tp_method": "fibonacci",
    "fib_extensions": [1.0, 1.618],
    "min_rr": 1.8,
    "min_stop_pct": 0.3,
}

Bar = tuple[float, float, float, float]  # open, high, low, close


def candles(bars: list[Bar], *, start: int = T0, timeframe: str = "1h", symbol: str = "BTC/USDT") -> Candles:
    """Candles from (open, high, low, close) tuples, one ``timeframe`` apart from ``start``, volume 1000."""
    o, h, lo, c = (np.array(column, dtype=np.float64) for column in zip(*bars, strict=True))
    step = {"15m": HOUR // 4, "1h": HOUR, "4h": 4 * HOUR, "1d": 24 * HOUR, "1w": 168 * HOUR}[timeframe]
    return Candles(
        symbol=symbol,
        timeframe=timeframe,
        ts=start + np.arange(len(bars), dtype=np.int64) * step,
        open=o,
        high=h,
        low=lo,
        close=c,
        volume=np.full(len(bars), 1000.0),
    )


def mirrored(bars: list[Bar], axis: float) -> list[Bar]:
    """The same bars upside down around ``axis`` (p -> axis - p): highs become lows, 2U becomes 2D."""
    return [(axis - o, axis - lo, axis - h, axis - c) for o, h, lo, c in bars]


def scan(series: Candles, params: StratParams = DEFAULTS, **others: Candles) -> list[Setup]:
    """The bot's setups on ``series`` (``others``: higher-timeframe candles by timeframe)."""
    return list(BOT.scan(MarketData(candles=series, other_timeframes=others), params))


def decline() -> list[Bar]:
    """100 bars falling 0.5 a bar: high 201-k/2, low 199-k/2, open = close = the middle (2D bars, none fires).

    Each bar closes above the previous low (no break confirmed) and in the middle of its range (no
    hammer); every true range is 2, so ATR(14) is exactly 2 when the pattern starts.
    """
    return [(200 - k / 2, 201 - k / 2, 199 - k / 2, 200 - k / 2) for k in range(100)]


#: After the decline (bar 99: H 151.5, L 149.5, C 150.5): a 2D to a new low, an inside bar, a 2U.
REVERSAL_212: list[Bar] = [
    (150.5, 151.0, 147.0, 149.8),  # bar 100, 2D: low 147 < 149.5, high 151 <= 151.5; close 149.8 >= 149.5
    (149.8, 150.5, 148.0, 150.0),  # bar 101, 1: inside 147..151
    (149.2, 152.0, 149.0, 151.5),  # bar 102, 2U: high 152 > 150.5, low 149 >= 148; close 151.5 > 150.5
]


def long_212() -> Candles:
    """The 2D-1-2U reversal off a 100-bar low."""
    return candles(decline() + REVERSAL_212)


def short_212() -> Candles:
    """The mirror (p -> 400 - p): a 100-bar rise, then 2U-1-2D off the 100-bar high."""
    return candles(mirrored(decline() + REVERSAL_212, 400.0))


def reference_atr(series: Candles, period: int = 14) -> np.ndarray:
    """ATR straight from TA-Lib."""
    return talib.ATR(series.high, series.low, series.close, timeperiod=period)


# -- bar types ------------------------------------------------------------------------------------


def test_bar_types_with_ties() -> None:
    """1 / 2U / 2D / 3 against the previous bar; an equal high or low is not broken; bar 0 is 0."""
    high = np.array([10.0, 10.0, 11.0, 11.0, 12.0, 11.5])
    low = np.array([5.0, 5.0, 6.0, 4.0, 3.0, 3.0])
    # bar 1 equals bar 0 (inside), 2 breaks up only, 3 breaks down only (equal high), 4 both, 5 neither.
    assert bar_types(high, low).tolist() == [0, 1, 2, -2, 3, 1]


# -- the main pattern, both directions ----------------------------------------------------------------


def test_long_212_reversal_off_a_new_low() -> None:
    """2D-1-2U at a 100-bar low: LONG at bar 102, entry 151.5, stop the bar's low 149; ATR targets."""
    series = long_212()
    atr = reference_atr(series)
    # True ranges: 2 up to bar 99, then 4 (151 - 147), 2.5 (150.5 - 148), 3 (152 - 149): Wilder from 2.
    hand = Fraction(2)
    for true_range in (Fraction(4), Fraction(5, 2), Fraction(3)):
        hand = (hand * 13 + true_range) / 14
    assert hand == Fraction(6113, 2744)
    assert atr[102] == pytest.approx(float(hand), rel=1e-12)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 102 * HOUR,
        entry=151.5,
        reason="2-1-2 reversal 2D-1-2U: closed 151.5 above the previous high 150.5",
        atr=float(atr[102]),
        stop=149.0,
        context={
            "bars": "2D-1-2U",
            "combo": "2-1-2 reversal",
            "atr_pct": round(float(atr[102]) / 151.5 * 100, 3),
        },
        key_points=(
            KeyPoint(T0 + 102 * HOUR, 152.0, "setup high"),
            KeyPoint(T0 + 102 * HOUR, 149.0, "setup low"),
        ),
    )
    assert setup.context["atr_pct"] == 1.47  # 2.2278 / 151.5 = 1.4705 %
    # Levels: SL at the stop (1.65 % away, over the 0.3 % minimum); TPs 2.5 and 4 ATR; TP1 at 2.23 R.
    levels = calculate_levels(setup, RISK)
    assert levels == Levels(
        direction=Direction.LONG, entry=151.5, sl=149.0, tps=(151.5 + 2.5 * atr[102], 151.5 + 4.0 * atr[102])
    )
    assert levels.tps == pytest.approx((151.5 + 2.5 * 6113 / 2744, 151.5 + 4 * 6113 / 2744), rel=1e-12)
    assert levels.risk_reward(0) == pytest.approx(2.5 * 6113 / 2744 / 2.5, rel=1e-12)


def test_short_212_reversal_off_a_new_high() -> None:
    """The mirror: 2U-1-2D at a 100-bar high: SHORT at bar 102, entry 248.5, stop the bar's high 251."""
    series = short_212()
    atr = reference_atr(series)
    assert atr[102] == pytest.approx(6113 / 2744, rel=1e-12)  # the mirror has the same true ranges
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 102 * HOUR,
        entry=248.5,
        reason="2-1-2 reversal 2U-1-2D: closed 248.5 below the previous low 249.5",
        atr=float(atr[102]),
        stop=251.0,
        context={
            "bars": "2U-1-2D",
            "combo": "2-1-2 reversal",
            "atr_pct": round(float(atr[102]) / 248.5 * 100, 3),
        },
        key_points=(
            KeyPoint(T0 + 102 * HOUR, 251.0, "setup high"),
            KeyPoint(T0 + 102 * HOUR, 248.0, "setup low"),
        ),
    )
    levels = calculate_levels(setup, RISK)
    assert levels == Levels(
        direction=Direction.SHORT, entry=248.5, sl=251.0, tps=(248.5 - 2.5 * atr[102], 248.5 - 4.0 * atr[102])
    )


def test_no_signal_when_the_close_does_not_hold_the_break() -> None:
    """A 2U closing AT the inside bar's high 150.5 (not above it) is no setup; without confirm_close it is."""
    bars = decline() + REVERSAL_212[:2] + [(149.2, 152.0, 149.0, 150.5)]
    series = candles(bars)
    assert scan(series) == []
    [setup] = scan(series, StratParams(confirm_close=False))
    assert (setup.bar_ts, setup.direction, setup.entry, setup.stop) == (
        T0 + 102 * HOUR,
        Direction.LONG,
        150.5,
        149.0,
    )
    assert setup.reason == "2-1-2 reversal 2D-1-2U: broke the previous high 150.5, closed 150.5"


@pytest.mark.parametrize(("lowered", "fires"), [(3, False), (2, True)])
def test_reversal_must_hold_the_range_low(lowered: int, fires: bool) -> None:
    """A low of 146.9 (under the pattern's 147) on bar 3, inside the 100-bar window 3..102, blocks the
    reversal; on bar 2, just outside it, it does not; with range_bars 0 the reversal always fires."""
    bars = decline()
    o, h, _, c = bars[lowered]
    bars[lowered] = (o, h, 146.9, c)
    series = candles(bars + REVERSAL_212)
    assert [s.bar_ts for s in scan(series)] == ([T0 + 102 * HOUR] if fires else [])
    assert [(s.bar_ts, s.context["combo"]) for s in scan(series, StratParams(range_bars=0))] == [
        (T0 + 102 * HOUR, "2-1-2 reversal")
    ]


# -- every combo, its priority, the fallback ------------------------------------------------------------

#: 20 identical bars H 101 L 99 O = C 100: all inside bars (type 1), none fires; ATR(14) is 2.
FLAT: list[Bar] = [(100.0, 101.0, 99.0, 100.0)] * 20

#: LONG versions of every pattern, appended to FLAT (the bar before the first one is an inside bar):
#: (name, bars, bar types of the last three, stop = the last bar's low).
COMBOS: list[tuple[str, list[Bar], str]] = [
    ("2-2 continuation", [(100, 102, 99.5, 101.5), (101.5, 103, 100.5, 102.8)], "1-2U-2U"),
    (
        "2-1-2 continuation",
        [(100, 102, 99.5, 101.5), (101.5, 101.8, 100, 100.5), (100.6, 102.5, 100.2, 102.2)],
        "2U-1-2U",
    ),
    (
        "3-2-2 reversal",
        [(100, 101.5, 98.5, 100), (100, 101, 98, 98.6), (98.7, 101.5, 98.2, 101.2)],
        "3-2D-2U",
    ),
    (
        "2-1-2 reversal",
        [(100, 100.8, 98, 99.5), (99.5, 100, 98.5, 99.2), (99, 100.6, 98.8, 100.4)],
        "2D-1-2U",
    ),
    ("3-1-2", [(100, 101.5, 98.5, 100), (100, 101, 99, 100.2), (100.2, 101.8, 99.5, 101.6)], "3-1-2U"),
    ("1-2-2 RevStrat", [(100, 100.8, 98, 99.5), (99.4, 101.2, 98.5, 101.0)], "1-2D-2U"),
    (
        "2-2 reversal",
        [(100, 102, 99.5, 101.5), (101.5, 101.5, 99, 99.8), (99.9, 101.8, 99.2, 101.6)],
        "2U-2D-2U",
    ),
    ("hammer", [(100.6, 100.9, 99.2, 100.8)], "1-1-1"),
    ("hammer", [(100, 100.8, 98, 99.5), (100.0, 100.5, 97.5, 100.3)], "1-2D-2D"),  # a failed 2D
]
NO_RANGE = StratParams(range_bars=0)


def _swap(label: str) -> str:
    return label.replace("U", "x").replace("D", "U").replace("x", "D")


@pytest.mark.parametrize(("name", "pattern", "bars"), COMBOS, ids=[f"{c[0]} {c[2]}" for c in COMBOS])
@pytest.mark.parametrize("direction", [Direction.LONG, Direction.SHORT])
def test_every_combo_in_both_directions(
    name: str, pattern: list[Bar], bars: str, direction: Direction
) -> None:
    """Each combo (and the hammer / shooter fallback) fires on its last bar only, named by priority
    (3-2-2 and 1-2-2 before the 2-2 reversal they also are), in the last 2's direction; SHORT is the
    mirror image around 100, where the flat bars stay flat."""
    sequence = FLAT + pattern
    if direction is Direction.SHORT:
        sequence = mirrored(sequence, 200.0)
        name = {"hammer": "shooter"}.get(name, name)
        bars = _swap(bars)
    series = candles(sequence)
    last = len(series) - 1
    [setup] = scan(series, NO_RANGE)
    assert (setup.bar_ts, setup.direction, setup.entry) == (T0 + last * HOUR, direction, series.close[last])
    assert (setup.context["combo"], setup.context["bars"]) == (name, bars)
    assert setup.stop == (series.low[last] if direction is Direction.LONG else series.high[last])


def test_failed_2d_is_a_continuation_short_without_close_confirmation() -> None:
    """The 2D that closes back up (a hammer) completes 1-2D-2D: without confirm_close it is a 2-2
    continuation SHORT (stop its high), with it the hammer LONG (stop its low)."""
    series = candles([*FLAT, (100.0, 100.8, 98.0, 99.5), (100.0, 100.5, 97.5, 100.3)])
    [loose] = scan(series, StratParams(range_bars=0, confirm_close=False))
    assert (loose.direction, loose.context["combo"], loose.stop) == (
        Direction.SHORT,
        "2-2 continuation",
        100.5,
    )
    [confirmed] = scan(series, NO_RANGE)
    assert (confirmed.direction, confirmed.context["combo"], confirmed.stop) == (
        Direction.LONG,
        "hammer",
        97.5,
    )
    assert (
        confirmed.reason == "hammer 1-2D-2D: open 100 and close 100.3 in the top 25 % of the range 97.5-100.5"
    )


def test_continuation_needs_a_fresh_break_of_the_range() -> None:
    """With range_bars 20 a 2-2 continuation fires on the first bar to make a new 20-bar high (the bar
    before stayed under it), not on the next one, which continues an already-made high."""
    series = candles(
        [
            *FLAT,
            (100, 100.8, 99.2, 100.2),  # 20: inside, under the range high 101
            (100.2, 100.9, 99.5, 100.85),  # 21: 2U (1-1-2U: no combo), still under 101
            (100.85, 101.6, 99.9, 101.5),  # 22: 2U, 1-2U-2U, the first new 20-bar high: fires
            (101.5, 102.4, 100.5, 102.2),  # 23: 2U, 2U-2U-2U, a new high again but not fresh
        ]
    )
    assert bar_types(series.high, series.low)[-4:].tolist() == [1, 2, 2, 2]
    [setup] = scan(series, StratParams(range_bars=20))
    assert (setup.bar_ts, setup.context["combo"], setup.context["bars"]) == (
        T0 + 22 * HOUR,
        "2-2 continuation",
        "1-2U-2U",
    )
    assert setup.reason == "2-2 continuation 1-2U-2U: closed 101.5 above the previous high 100.9"
    assert [s.bar_ts for s in scan(series, NO_RANGE)] == [T0 + 22 * HOUR, T0 + 23 * HOUR]


# -- filters ------------------------------------------------------------------------------------------


def test_atr_above_max_atr_pct_is_rejected_in_the_scan() -> None:
    """The pattern 130 lower has ATR / close 10.4 %: over 8 %, no setup; a max_atr_pct equal to it passes."""
    series = candles([(o - 130, h - 130, lo - 130, c - 130) for o, h, lo, c in decline() + REVERSAL_212])
    atr_pct = float(reference_atr(series)[102]) / 21.5 * 100
    assert atr_pct == pytest.approx(6113 / 2744 / 21.5 * 100, rel=1e-12)
    assert 10 < atr_pct < 11
    assert scan(series) == []
    assert scan(series, StratParams(max_atr_pct=atr_pct * (1 - 1e-9))) == []
    [setup] = scan(series, StratParams(max_atr_pct=atr_pct))
    assert (setup.entry, setup.stop, setup.context["atr_pct"]) == (21.5, 19.0, round(atr_pct, 3))


def test_levels_reject_a_stop_under_0_3_percent() -> None:
    """The pattern 1000 higher: the 2.5 stop is 0.217 % of 1151.5, under min_stop_pct 0.3: STOP_TOO_TIGHT."""
    series = candles([(o + 1000, h + 1000, lo + 1000, c + 1000) for o, h, lo, c in decline() + REVERSAL_212])
    [setup] = scan(series)
    assert (setup.entry, setup.stop) == (1151.5, 1149.0)
    with pytest.raises(LevelsRejected) as caught:
        calculate_levels(setup, RISK)
    assert caught.value.reason is RejectReason.STOP_TOO_TIGHT


def test_levels_reject_a_reward_under_1_8_r() -> None:
    """A 2U whose low ties the inside bar's low 148 (still a 2U) risks 3.5 for 2.5 ATR = 5.75: 1.64 R."""
    series = candles(decline() + REVERSAL_212[:2] + [(149.2, 152.0, 148.0, 151.5)])
    atr = reference_atr(series)
    assert atr[102] == pytest.approx(6309 / 2744, rel=1e-12)  # the last true range is 4 now
    [setup] = scan(series)
    assert (setup.entry, setup.stop, setup.context["bars"]) == (151.5, 148.0, "2D-1-2U")
    assert 2.5 * atr[102] / 3.5 == pytest.approx(2.5 * 6309 / 2744 / 3.5, rel=1e-12)  # 1.642
    with pytest.raises(LevelsRejected) as caught:
        calculate_levels(setup, RISK)
    assert caught.value.reason is RejectReason.RR_TOO_LOW


def test_placeholder_bars_never_fire() -> None:
    """The signal bar, or bar 99 (it makes the 2D's type), marked as a placeholder: nothing; bar 98: fires."""
    series = long_212()
    for marked, expected in ((102, []), (99, []), (98, [T0 + 102 * HOUR])):
        flags = np.zeros(len(series), dtype=np.bool_)
        flags[marked] = True
        flagged = Candles(
            symbol=series.symbol,
            timeframe=series.timeframe,
            ts=series.ts,
            open=series.open,
            high=series.high,
            low=series.low,
            close=series.close,
            volume=series.volume,
            placeholder=flags,
        )
        assert [s.bar_ts for s in scan(flagged)] == expected


def test_too_short_history_gives_nothing() -> None:
    """Fewer than range_bars (100) bars: nothing, though the pattern is there (range_bars 0 finds it)."""
    series = long_212().tail(99)
    assert scan(series) == []
    assert len(scan(series, NO_RANGE)) == 1
    assert scan(candles(FLAT[:14]), NO_RANGE) == []  # under atr_period + 1 bars


# -- targets at the prior bars' extremes -------------------------------------------------------------------


def extremes_series(first_high: float) -> Candles:
    """After the decline: a wide 2D (high ``first_high``, low 140, close 141), an inside bar, a small 2U."""
    return candles(
        [
            *decline(),
            (150.5, first_high, 140.0, 141.0),  # 2D, a confirmed 2-2 continuation but not a fresh break
            (144.5, 146.0, 144.0, 145.5),  # inside
            (145.6, 146.5, 145.5, 146.4),  # 2U, close 146.4 > 146
        ]
    )


def test_extremes_targets_carry_the_prior_high_as_the_swing() -> None:
    """With targets "extremes" the swing is (stop 145.5, the 2D's high 151.4); Fibonacci 1.0 is TP1."""
    series = extremes_series(151.4)
    [setup] = scan(series, StratParams(targets="extremes"))
    assert (setup.direction, setup.entry, setup.stop, setup.swing) == (
        Direction.LONG,
        146.4,
        145.5,
        (145.5, 151.4),
    )
    assert setup.context == {
        "bars": "2D-1-2U",
        "combo": "2-1-2 reversal",
        "atr_pct": round(float(reference_atr(series)[102]) / 146.4 * 100, 3),
        "target": 151.4,
    }
    levels = calculate_levels(setup, RiskSettings.model_validate(EXTREMES_BLOCK))
    assert levels.sl == 145.5
    assert levels.tps == pytest.approx((151.4, 145.5 + 1.618 * 5.9), rel=1e-12)
    assert levels.risk_reward(0) == pytest.approx(5.0 / 0.9, rel=1e-9)
    # In ATR mode the same bar has no swing.
    [plain] = scan(series)
    assert (plain.entry, plain.swing) == (146.4, None)


def test_extremes_mode_skips_a_close_already_beyond_the_prior_high() -> None:
    """With the prior bars' high 146.3 under the 146.4 close there is no target: no setup in that mode."""
    series = extremes_series(146.3)
    assert scan(series, StratParams(targets="extremes")) == []
    assert [s.entry for s in scan(series)] == [146.4]


# -- full timeframe continuity ------------------------------------------------------------------------


FOUR_HOURS = 4 * HOUR
FTFC_4H = StratParams(ftfc=True, ftfc_timeframes=("4h",))


def four_hour(colours: list[int]) -> Candles:
    """4h candles from T0, green (+1: O 100 C 101) or red (-1: O 101 C 100), H 102 L 99."""
    return candles(
        [(100.0, 102.0, 99.0, 101.0) if colour > 0 else (101.0, 102.0, 99.0, 100.0) for colour in colours],
        timeframe="4h",
    )


def test_ftfc_uses_the_4h_candle_closed_at_the_signal_bars_close() -> None:
    """The 1h signal bar closes at T0 + 104h, exactly when 4h candle 25 closes: its colour decides, candle 26
    (closing 4 hours later) never does; a 4h series without candle 25, or of dojis, gives no setup."""
    series = candles(decline() + REVERSAL_212, start=T0 + HOUR)
    assert series.close_time(102) == T0 + 104 * HOUR == T0 + 26 * FOUR_HOURS
    green = [1] * 30
    [setup] = scan(series, FTFC_4H, **{"4h": four_hour(green)})
    assert (setup.bar_ts, setup.direction, setup.context["ftfc"]) == (
        T0 + 103 * HOUR,
        Direction.LONG,
        "4h green",
    )
    red_25 = green.copy()
    red_25[25] = -1
    assert scan(series, FTFC_4H, **{"4h": four_hour(red_25)}) == []
    red_26 = green.copy()
    red_26[26:] = [-1] * 4  # the candle still forming at the signal, and later ones: not looked at
    assert len(scan(series, FTFC_4H, **{"4h": four_hour(red_26)})) == 1
    stale = four_hour(green).head(25)  # the newest closed candle (25) is missing
    assert scan(series, FTFC_4H, **{"4h": stale}) == []
    assert scan(series, FTFC_4H) == []  # no 4h series at all
    flat = candles([(100.0, 102.0, 99.0, 100.0)] * 30, timeframe="4h")
    assert scan(series, FTFC_4H, **{"4h": flat}) == []  # all dojis (close = open): no colour agrees


def test_ftfc_default_timeframes_must_all_agree() -> None:
    """For a 1h bot ftfc checks 4h, 1d and 1w: the last closed of each (4h candle 25, the day of T0 + 3d,
    the week before T0) must all be green; one red week, or no daily series, and there is no setup."""
    series = candles(decline() + REVERSAL_212, start=T0 + HOUR)
    green = (100.0, 102.0, 99.0, 101.0)
    red = (101.0, 102.0, 99.0, 100.0)
    four = four_hour([1] * 30)
    daily = candles([green] * 5, timeframe="1d")
    weekly_green = candles([green, red], start=T0 - 168 * HOUR, timeframe="1w")  # the second is forming
    weekly_red = candles([red, green], start=T0 - 168 * HOUR, timeframe="1w")
    params = StratParams(ftfc=True)
    [setup] = scan(series, params, **{"4h": four, "1d": daily, "1w": weekly_green})
    assert (setup.direction, setup.context["ftfc"]) == (Direction.LONG, "4h 1d 1w green")
    assert scan(series, params, **{"4h": four, "1d": daily, "1w": weekly_red}) == []
    assert scan(series, params, **{"4h": four, "1w": weekly_green}) == []


def test_ftfc_short_needs_red_higher_timeframes() -> None:
    """The SHORT mirror fires with a red 4h candle 25 and not with a green one."""
    series = candles(mirrored(decline() + REVERSAL_212, 400.0), start=T0 + HOUR)
    [setup] = scan(series, FTFC_4H, **{"4h": four_hour([-1] * 30)})
    assert (setup.direction, setup.context["ftfc"]) == (Direction.SHORT, "4h red")
    assert scan(series, FTFC_4H, **{"4h": four_hour([1] * 30)}) == []


def test_htf_colours_picks_the_last_closed_candle() -> None:
    """Colours at moments: before any close 0, at a close that candle's, just before it the previous one's."""
    htf = four_hour([1, -1, 1])
    at = np.array([T0, T0 + FOUR_HOURS - 1, T0 + FOUR_HOURS, T0 + 2 * FOUR_HOURS, T0 + 3 * FOUR_HOURS + 1])
    assert htf_colours(htf, at).tolist() == [0, 0, 1, -1, 1]
    far = np.array([T0 + 5 * FOUR_HOURS])  # the series ended a period before: stale
    assert htf_colours(htf, far).tolist() == [0]


def test_needs_asks_for_higher_timeframes_only_with_ftfc() -> None:
    """Without ftfc: lookback only; with it the next three rungs (4h 1d 1w for 1h), or the ones given."""
    assert BOT.needs(DEFAULTS, "1h").extra_timeframes == ()
    assert BOT.needs(DEFAULTS, "1h").lookback == 300
    on = StratParams(ftfc=True)
    needs = BOT.needs(on, "1h")
    assert (needs.lookback, needs.extra_timeframes, needs.extra_lookback) == (300, ("4h", "1d", "1w"), 3)
    assert BOT.needs(on, "15m").extra_timeframes == ("1h", "4h", "1d")
    assert BOT.needs(on, "4h").extra_timeframes == ("1d", "1w")
    assert BOT.needs(on, "1d").extra_timeframes == ("1w",)
    assert BOT.needs(FTFC_4H, "1h").extra_timeframes == ("4h",)
    with pytest.raises(ValueError, match="none is available"):
        BOT.needs(on, "1w")
    with pytest.raises(ValueError, match="4h not longer"):
        BOT.needs(FTFC_4H, "4h")


# -- parameters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"hammer_zone": 0.5},
        {"hammer_zone": 0},
        {"range_bars": 2},
        {"range_bars": -1},
        {"max_atr_pct": 0},
        {"atr_period": 0},
        {"targets": "fib"},
        {"ftfc": "yes"},
        {"ftfc_timeframes": ["2h"]},
        {"ftfc_timeframes": ["1d", "4h"]},
        {"lookback": 99},  # under range_bars
        {"lookback": 20, "range_bars": 0, "atr_period": 30},  # under atr_period + 1
        {"unknown": 1},
    ],
)
def test_params_reject_bad_values(bad: dict[str, object]) -> None:
    """Out-of-range, mistyped, inconsistent or unknown parameters are errors."""
    with pytest.raises(ValidationError):
        StratParams.model_validate(bad)


def test_params_defaults() -> None:
    """The defaults the module docstring states (and global_config.json carries)."""
    assert StratParams().model_dump() == {
        "confirm_close": True,
        "hammer_zone": 0.25,
        "range_bars": 100,
        "atr_period": 14,
        "max_atr_pct": 8.0,
        "targets": "atr",
        "ftfc": False,
        "ftfc_timeframes": (),
        "lookback": 300,
    }


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


def test_no_look_ahead_into_higher_timeframes_on_real_btc_15m() -> None:
    """With ftfc on and the WHOLE 1h / 4h / 1d history handed over (candles after the cut included),
    the first t bars still give exactly the full scan's setups up to bar t-1."""
    whole = real("binance_spot/BTC_USDT-15m.csv.gz")
    higher = {tf: aggregate(whole, tf) for tf in ("1h", "4h", "1d")}
    params = StratParams(ftfc=True)
    series = real("binance_spot/BTC_USDT-15m.csv.gz", 6000)
    assert_no_look_ahead(lambda s: scan(s, params, **higher), series, min_nonempty=10)


@pytest.mark.parametrize(
    "relative", ["binance_usdm_perp/BTC_USDT-1h.csv.gz", "binance_spot/ETH_USDT-4h.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    atr = reference_atr(series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    h, lo, o, c = series.high, series.low, series.open, series.close
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(c[i])
        assert setup.context["atr_pct"] == round(float(atr[i]) / float(c[i]) * 100, 3) <= 8.0
        long = setup.direction is Direction.LONG
        assert setup.stop == float(lo[i] if long else h[i])
        if setup.context["combo"] in ("hammer", "shooter"):
            span = h[i] - lo[i]
            if long:
                assert min(o[i], c[i]) >= h[i] - 0.25 * span
            else:
                assert max(o[i], c[i]) <= lo[i] + 0.25 * span
        elif long:  # a 2U closing above the previous high
            assert h[i] > h[i - 1]
            assert lo[i] >= lo[i - 1]
            assert c[i] > h[i - 1]
        else:
            assert lo[i] < lo[i - 1]
            assert h[i] <= h[i - 1]
            assert c[i] < lo[i - 1]
        window = slice(i - 99, i + 1)
        if setup.context["combo"] in ("2-2 continuation", "2-1-2 continuation"):
            assert (h[i] == h[window].max()) if long else (lo[i] == lo[window].min())
        elif setup.context["combo"] != "3-1-2":
            assert (
                (lo[i - 2 : i + 1].min() == lo[window].min())
                if long
                else (h[i - 2 : i + 1].max() == h[window].max())
            )
