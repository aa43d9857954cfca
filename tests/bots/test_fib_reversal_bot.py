"""Tests of bots/fib_reversal_bot.py: a confirmed reversal at a Fibonacci retracement of the last swing."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.fib_reversal_bot import (
    FibReversalBot,
    FibReversalParams,
    first_signals,
    range_min,
    swings,
)
from common.pivots import HIGH, LOW, swing_pivots
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = FibReversalBot()
DEFAULTS = FibReversalParams()
#: The risk block recommended for the bot in global_config.json.
RISK_BLOCK = {
    "sl_method": "structure",
    "tp_method": "fibonacci",
    "fib_extensions": [1.0, 1.272],
    "min_rr": 1.0,
}
PATTERNS = (
    "CDLENGULFING",
    "CDLHAMMER",
    "CDLPIERCING",
    "CDLMORNINGSTAR",
    "CDLSHOOTINGSTAR",
    "CDLDARKCLOUDCOVER",
    "CDLEVENINGSTAR",
)

Row = tuple[float, float, float, float]


def candles(rows: list[Row], placeholder: list[int] | None = None) -> Candles:
    """Hourly candles from T0, one (open, high, low, close) row each, volume 1000; ``placeholder`` marked."""
    open_, high, low, close = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    flags = np.zeros(len(rows), dtype=np.bool_)
    flags[placeholder or []] = True
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(len(rows), dtype=np.int64) * HOUR,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=np.full(len(rows), 1000.0),
        placeholder=flags,
    )


def scan(series: Candles, params: FibReversalParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def patterns_at(series: Candles, bars: range) -> dict[str, list[int]]:
    """Every reversal pattern's TA-Lib values on ``bars``."""
    return {
        name: getattr(talib, name)(series.open, series.high, series.low, series.close)[bars].tolist()
        for name in PATTERNS
    }


def up_swing_rows() -> list[Row]:
    """Bars 0-29: a swing low 1000 at bar 10, a swing high 1100 at bar 20 (confirmed at bar 30).

    Bars 0-9 fall from 1050 to 1005, bar 10 dips to 1000, bars 11-20 rise 10 a bar to a high of 1100,
    bars 21-29 drift between 1088 and 1097: no Fibonacci zone is touched before the swing is known.
    Levels of the swing (R = 100): 0.382 at 1061.8 (zone 1056.8-1066.8), 0.5 at 1050 (1045-1055),
    0.618 at 1038.2 (1033.2-1043.2), the golden pocket 1035-1038.2 (zone 1033-1040.2); stop 0.786 at 1021.4.
    """
    rows: list[Row] = [
        (1050.0 - 5 * k + 2, 1050.0 - 5 * k + 3, 1050.0 - 5 * k - 1, 1050.0 - 5 * k) for k in range(10)
    ]
    rows.append((1006.0, 1007.0, 1000.0, 1004.0))
    previous = 1004.0
    for k in range(11, 21):
        close = 1000.0 + 10 * (k - 10) - 5
        rows.append((previous, 1100.0 if k == 20 else close + 1, previous - 1, close))
        previous = close
    for k in range(21, 30):
        rows.append((1094.0, 1097.0, 1088.0, 1091.0) if k % 2 else (1091.0, 1096.0, 1089.0, 1093.0))
    return rows


#: Bar 30: a fall through the 0.382 zone into the 0.5 zone (low 1050.5: the 0.5 line is not reached).
#: Bar 31: on into the golden pocket, low 1036 (through the 0.618 line), close 1037 below it.
#: Bar 32: the close back above 1038.2: 1044.
GOLDEN_POCKET_DIP: list[Row] = [
    (1090.0, 1091.0, 1050.5, 1052.0),
    (1052.0, 1053.0, 1036.0, 1037.0),
    (1038.0, 1046.0, 1037.5, 1044.0),
]
#: Bar 33: a rise closing above the 0.5 line (1056), on the way back up.
BACK_UP: Row = (1044.0, 1058.0, 1043.0, 1056.0)


def down_swing_rows() -> list[Row]:
    """Bars 0-29: a swing high 2100 at bar 10, a swing low 2000 at bar 20 (confirmed at bar 30).

    Levels of the swing (R = 100), retracing upwards: 0.382 at 2038.2 (zone 2033.2-2043.2), 0.5 at 2050
    (2045-2055), 0.618 at 2061.8, the golden pocket 2061.8-2065; stop 0.786 at 2078.6.
    """
    rows: list[Row] = [
        (2050.0 + 5 * k - 2, 2050.0 + 5 * k + 1, 2050.0 + 5 * k - 3, 2050.0 + 5 * k) for k in range(10)
    ]
    rows.append((2094.0, 2100.0, 2093.0, 2096.0))
    previous = 2096.0
    for k in range(11, 21):
        close = 2100.0 - 10 * (k - 10) + 5
        rows.append((previous, previous + 1, 2000.0 if k == 20 else close - 1, close))
        previous = close
    for k in range(21, 30):
        rows.append((2006.0, 2012.0, 2003.0, 2009.0) if k % 2 else (2009.0, 2011.0, 2004.0, 2007.0))
    return rows


#: Bar 30: a rally through the 0.382 zone into the 0.5 zone (high 2049.5, below the 0.5 line 2050).
RALLY: Row = (2008.0, 2049.5, 2007.0, 2047.0)
#: A small white bar inside the 0.5 zone, then a bearish engulfing whose high stays below the 0.5 line.
HOLD_AT_HALF: list[Row] = [(2047.0, 2049.5, 2046.5, 2049.0), (2049.8, 2049.9, 2044.0, 2045.0)]
#: A small white bar below the 0.5 zone (high 2044 < 2045), and a bearish engulfing of it, also below.
QUIET: Row = (2042.0, 2044.0, 2041.0, 2043.5)
ENGULFING_BELOW: Row = (2044.2, 2044.6, 2040.0, 2041.0)


# -- the rule on hand-built series ------------------------------------------------------------------


def test_pivots_of_the_hand_built_swings() -> None:
    """The up-swing series has only a low 1000 at bar 10 and a high 1100 at bar 20; the down-swing mirrors."""
    up = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP, BACK_UP])
    pivots = swing_pivots(up.high, up.low, 10)
    assert pivots.index.tolist() == [10, 20]
    assert pivots.price.tolist() == [1000.0, 1100.0]
    assert pivots.kind.tolist() == [LOW, HIGH]
    assert pivots.confirmed_at.tolist() == [20, 30]
    down = candles([*down_swing_rows(), RALLY, *HOLD_AT_HALF])
    pivots = swing_pivots(down.high, down.low, 10)
    assert (pivots.index.tolist(), pivots.price.tolist()) == ([10, 20], [2100.0, 2000.0])
    assert pivots.kind.tolist() == [HIGH, LOW]


def test_long_at_the_golden_pocket_on_a_close_back_above() -> None:
    """Up-swing 1000 -> 1100: a dip to 1036 then a close back above 1038.2 is a LONG on the closing bar."""
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP, BACK_UP])
    # No reversal pattern on the dip: the confirmation is the close alone.
    assert all(values == [0, 0, 0, 0] for values in patterns_at(series, range(30, 34)).values())
    [setup] = scan(series)
    stop = 1100 - 0.786 * (1100 - 1000)
    assert stop == pytest.approx(1021.4, abs=1e-9)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 32 * HOUR,
        entry=1044.0,
        reason=(
            "Up-swing 1000.00 -> 1100.00 retraced to the golden pocket 1035.00-1038.20 (low 1036.00); "
            "confirmed by close back above 1038.20"
        ),
        stop=stop,
        swing=(1000.0, 1100.0),
        context={
            "swing": "up",
            "swing_low": 1000.0,
            "swing_high": 1100.0,
            "level": "golden pocket",
            # The 0.618 zone (1033.2-1043.2) was touched and closed back above on the same bars.
            "levels": "golden pocket,0.618",
            "level_price": 1038.2,
            "touch_price": 1036.0,  # bar 31's low; bar 30 (low 1050.5) did not reach the pocket
            "touch_bars_ago": 1,
            "confirmation": "close back above",
        },
        key_points=(
            KeyPoint(ts=T0 + 10 * HOUR, price=1000.0, label="swing low"),
            KeyPoint(ts=T0 + 20 * HOUR, price=1100.0, label="swing high"),
            KeyPoint(ts=T0 + 31 * HOUR, price=1038.2, label="golden pocket"),
        ),
    )


def test_long_levels_are_the_swing_high_and_its_1_272_extension() -> None:
    """With the recommended risk block: SL 1021.4 (0.786), TP1 1100 (the swing high), TP2 1127.2 (1.272)."""
    [setup] = scan(candles([*up_swing_rows(), *GOLDEN_POCKET_DIP]))
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK_BLOCK))
    assert levels == Levels(
        direction=Direction.LONG,
        entry=1044.0,
        sl=1100 - 0.786 * (1100 - 1000),
        tps=(1000 + 1.0 * (1100 - 1000), 1000 + 1.272 * (1100 - 1000)),
    )
    assert levels.tps == pytest.approx((1100.0, 1127.2), abs=1e-9)
    assert levels.risk_reward(0) == pytest.approx(56 / 22.6, rel=1e-9)


def test_no_signal_when_the_close_stays_just_below_the_line() -> None:
    """Near miss: the bar after the dip closes at 1038.1, 0.1 under the 0.618 line 1038.2: nothing fires."""
    open_, high, low, _ = GOLDEN_POCKET_DIP[2]
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP[:2], (open_, high, low, 1038.1)])
    assert all(values == [0, 0, 0] for values in patterns_at(series, range(30, 33)).values())
    assert scan(series) == []


def test_the_signal_is_on_the_confirming_bar_never_the_touch_bar() -> None:
    """Scanning up to the touch bar (31, close below the line) gives nothing; the next bar confirms."""
    rows = [*up_swing_rows(), *GOLDEN_POCKET_DIP]
    assert scan(candles(rows[:32])) == []
    assert [s.bar_ts for s in scan(candles(rows))] == [T0 + 32 * HOUR]


def test_a_passed_level_does_not_signal_on_the_way_back_up() -> None:
    """After the golden pocket signal, bar 33 closes back above the 0.5 line (1050): no second LONG."""
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP, BACK_UP])
    assert series.close[33] > 1100 - 0.5 * 100  # the close is back above the 0.5 line
    assert series.low[31] <= 1050 <= series.high[31]  # ... which bar 31 traded through, two bars before
    assert [s.bar_ts for s in scan(series)] == [T0 + 32 * HOUR]


def test_one_signal_per_swing_and_level() -> None:
    """A second dip into the pocket and close back above it on the same swing does not signal again."""
    again: list[Row] = [(1044.0, 1045.0, 1036.5, 1037.0), (1037.5, 1047.0, 1037.0, 1045.0)]
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP, *again])
    assert all(value <= 0 for values in patterns_at(series, range(33, 35)).values() for value in values)
    assert series.low[33] < 1038.2 < series.close[34]
    assert [s.bar_ts for s in scan(series)] == [T0 + 32 * HOUR]


def test_short_at_the_half_on_a_bearish_engulfing() -> None:
    """Down-swing 2100 -> 2000: a rally into the 0.5 zone, then a bearish engulfing: SHORT at its close."""
    series = candles([*down_swing_rows(), RALLY, *HOLD_AT_HALF])
    engulfing = talib.CDLENGULFING(series.open, series.high, series.low, series.close)
    assert engulfing[32] == -100
    found = patterns_at(series, range(30, 33))
    assert all(values == [0, 0, 0] for name, values in found.items() if name != "CDLENGULFING")
    [setup] = scan(series)
    stop = 2000 + 0.786 * (2100 - 2000)
    assert stop == pytest.approx(2078.6, abs=1e-9)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 32 * HOUR,
        entry=2045.0,
        reason=(
            "Down-swing 2100.00 -> 2000.00 retraced to the 0.5 level 2050.00 (high 2049.90); "
            "confirmed by engulfing"
        ),
        stop=stop,
        swing=(2000.0, 2100.0),
        context={
            "swing": "down",
            "swing_low": 2000.0,
            "swing_high": 2100.0,
            "level": "0.5",
            # Bar 30 also crossed the 0.382 zone (2033.2-2043.2), two bars back: inside the window of 3.
            "levels": "0.5,0.382",
            "level_price": 2050.0,
            "touch_price": 2049.9,  # the highest high from the first touch (bar 30) to the signal
            "touch_bars_ago": 2,
            "confirmation": "engulfing",  # no close back below: no bar reached the 0.5 line
        },
        key_points=(
            KeyPoint(ts=T0 + 10 * HOUR, price=2100.0, label="swing high"),
            KeyPoint(ts=T0 + 20 * HOUR, price=2000.0, label="swing low"),
            KeyPoint(ts=T0 + 30 * HOUR, price=2050.0, label="0.5"),
        ),
    )
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK_BLOCK))
    assert levels == Levels(
        direction=Direction.SHORT,
        entry=2045.0,
        sl=stop,
        tps=(2100 - 1.0 * (2100 - 2000), 2100 - 1.272 * (2100 - 2000)),
    )
    assert levels.tps == pytest.approx((2000.0, 1972.8), abs=1e-9)


def test_a_pattern_confirms_only_within_the_confirmation_bars() -> None:
    """A bearish engulfing 2 bars after the last 0.5 touch is a SHORT; 3 bars after (window 3) it is not."""
    in_time = candles([*down_swing_rows(), RALLY, QUIET, ENGULFING_BELOW])
    too_late = candles([*down_swing_rows(), RALLY, QUIET, QUIET, ENGULFING_BELOW])
    for series in (in_time, too_late):
        last = len(series) - 1
        assert talib.CDLENGULFING(series.open, series.high, series.low, series.close)[last] == -100
        assert (series.high[31:] < 2045).all()  # below the 0.5 zone: bar 30 was the last touch
    [setup] = scan(in_time)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.SHORT, T0 + 32 * HOUR, 2041.0)
    assert (setup.context["levels"], setup.context["touch_bars_ago"]) == ("0.5,0.382", 2)
    assert scan(too_late) == []
    # A window of 4 bars reaches back to the touch.
    [late] = scan(too_late, FibReversalParams(confirmation_bars=4))
    assert late.bar_ts == T0 + 33 * HOUR


def test_stop_at_the_swing_origin_with_stop_level_one() -> None:
    """stop_level 1.0 puts the LONG stop at the swing low itself (1000)."""
    [setup] = scan(candles([*up_swing_rows(), *GOLDEN_POCKET_DIP]), FibReversalParams(stop_level=1.0))
    assert setup.stop == 1000.0
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK_BLOCK))
    assert (levels.sl, levels.tps[0]) == (1000.0, 1100.0)


def test_entry_beyond_the_stop_gives_no_setup() -> None:
    """A dip whose close back above the pocket reaches the swing high (TP1) is not a setup."""
    open_, _, low, _ = GOLDEN_POCKET_DIP[2]
    spike: Row = (open_, 1101.0, low, 1100.0)  # closes at the swing high: TP1 would not be beyond it
    assert scan(candles([*up_swing_rows(), *GOLDEN_POCKET_DIP[:2], spike])) == []


def test_placeholder_bar_never_fires() -> None:
    """The confirming bar marked as a placeholder does not fire; the next real bar confirms instead."""
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP, BACK_UP], placeholder=[32])
    [setup] = scan(series)
    assert setup.bar_ts == T0 + 33 * HOUR
    assert setup.entry == 1056.0
    # Bar 31's touches are still in the window; 1056 is above the 0.5 line too, touched on bar 31.
    assert setup.context["levels"] == "golden pocket,0.618,0.5"


def test_too_short_history_gives_nothing() -> None:
    """Fewer than 2 x swing_lookback + 2 bars (no two pivots), or before the swing is confirmed: no setup."""
    rows = [*up_swing_rows(), *GOLDEN_POCKET_DIP]
    assert scan(candles(rows[:21])) == []
    assert scan(candles(rows[:30])) == []  # the swing high is confirmed only at bar 30
    assert scan(candles(rows[:1])) == []


def test_same_kind_pivots_make_no_swing() -> None:
    """Two swing highs in a row (lows falling all along: no swing low) are no swing: nothing fires."""
    k = np.arange(40, dtype=np.float64)
    low = 2000.0 - k
    high = low + 5
    high[10], high[25] = 2100.0, 2090.0
    rows = list(zip(low + 2, high, low, low + 3, strict=True))
    series = candles(rows)
    pivots = swing_pivots(series.high, series.low, 10)
    assert (pivots.index.tolist(), pivots.kind.tolist()) == ([10, 25], [HIGH, HIGH])
    assert not swings(pivots, len(series)).valid.any()
    assert scan(series) == []


def test_speed_presets_and_overrides() -> None:
    """fast / medium / safe set (5, 2), (10, 3), (15, 4); explicit values override the preset."""
    presets = [FibReversalParams.model_validate({"speed": speed}) for speed in ("fast", "medium", "safe")]
    assert [(p.pivot_bars, p.confirm_bars) for p in presets] == [(5, 2), (10, 3), (15, 4)]
    custom = FibReversalParams(speed="fast", swing_lookback=10, confirmation_bars=3)
    assert (custom.pivot_bars, custom.confirm_bars) == (10, 3)
    series = candles([*up_swing_rows(), *GOLDEN_POCKET_DIP])
    assert scan(series, custom) == scan(series)
    assert BOT.needs(DEFAULTS, "1h") == DataNeeds(lookback=300)


@pytest.mark.parametrize(
    "bad",
    [
        {"speed": "slow"},
        {"swing_lookback": 0},
        {"confirmation_bars": 0},
        {"confirmation_bars": 21},
        {"level_tolerance": 0.0},
        {"level_tolerance": 0.11},
        {"golden_pocket_tolerance": -0.01},
        {"stop_level": 0.6},
        {"stop_level": 1.01},
        {"stop_level": 0.66},  # inside the golden pocket's zone (up to 0.67)
        {"level_tolerance": 0.1, "stop_level": 0.7},  # the 0.618 zone reaches 0.718
        {"lookback": 49},
        {"swing_lookback": 20, "lookback": 80},  # two pivots and the window need 4 x 20 + 2 + 3 = 85
        {"pivot_lookback": 10},
    ],
)
def test_params_reject_bad_values(bad: dict[str, object]) -> None:
    """Out-of-range, inconsistent or unknown parameters are validation errors."""
    with pytest.raises(ValidationError):
        FibReversalParams.model_validate(bad)


def test_params_defaults_and_frozen() -> None:
    """Every default as documented; the model is frozen."""
    assert DEFAULTS.model_dump() == {
        "speed": "medium",
        "swing_lookback": None,
        "confirmation_bars": None,
        "level_tolerance": 0.05,
        "golden_pocket_tolerance": 0.02,
        "stop_level": 0.786,
        "lookback": 300,
    }
    with pytest.raises(ValidationError):
        DEFAULTS.speed = "fast"  # type: ignore[misc]


# -- helpers ------------------------------------------------------------------------------------------


def test_range_min_matches_a_plain_minimum() -> None:
    """The sparse-table range minimum equals numpy's min of each slice; empty ranges give +inf."""
    rng = np.random.default_rng(7)
    values = rng.normal(size=300)
    start = rng.integers(-5, 305, size=2000)
    stop = start + rng.integers(-3, 140, size=2000)
    got = range_min(values, start, stop)
    for q in range(start.size):
        part = values[max(0, start[q]) : max(0, min(300, stop[q]))]
        assert got[q] == (part.min() if part.size else np.inf)


def test_first_signals_once_per_swing_and_not_after_a_deeper_level() -> None:
    """Per epoch: each column's first candidate, unless a deeper (earlier) column fired before it."""
    candidate = np.zeros((8, 3), dtype=np.bool_)
    epoch = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    candidate[[1, 2], 2] = True  # shallow level: first at bar 1
    candidate[[2, 3], 0] = True  # deepest level: first at bar 2 (after the shallow one: allowed)
    candidate[3, 1] = True  # middle level at bar 3: after the deepest fired at bar 2, blocked
    candidate[[5, 6], 1] = True  # next epoch: the middle level at bar 5 ...
    candidate[5, 2] = True  # ... with the shallow one on the same bar: both fire
    candidate[7, 2] = True  # ... the shallow one again later: once per epoch
    fires = first_signals(candidate, epoch)
    assert np.argwhere(fires).tolist() == [[1, 2], [2, 0], [5, 1], [5, 2]]


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


@pytest.mark.parametrize("relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_spot/BTC_USDT-4h.csv.gz"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 4h series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    ratios = {"golden pocket": 0.618, "0.618": 0.618, "0.5": 0.5, "0.382": 0.382}
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(series.close[i])
        assert not series.placeholder[i]
        assert setup.swing is not None
        low, high = setup.swing
        first, second, level_point = setup.key_points
        ratio = ratios[str(setup.context["level"])]
        if setup.direction is Direction.LONG:
            assert (first.label, first.price, second.label, second.price) == (
                "swing low",
                low,
                "swing high",
                high,
            )
            assert setup.stop == high - 0.786 * (high - low)
            assert setup.stop < setup.entry < high
            assert setup.context["level_price"] == pytest.approx(high - ratio * (high - low), rel=1e-9)
            assert float(setup.context["touch_price"]) <= float(setup.context["level_price"]) + 0.05 * (
                high - low
            )
        else:
            assert (first.label, first.price, second.label, second.price) == (
                "swing high",
                high,
                "swing low",
                low,
            )
            assert setup.stop == low + 0.786 * (high - low)
            assert low < setup.entry < setup.stop
            assert setup.context["level_price"] == pytest.approx(low + ratio * (high - low), rel=1e-9)
            assert float(setup.context["touch_price"]) >= float(setup.context["level_price"]) - 0.05 * (
                high - low
            )
        assert first.ts < second.ts <= level_point.ts <= setup.bar_ts
        assert level_point.price == setup.context["level_price"]
        assert 0 <= int(setup.context["touch_bars_ago"]) < DEFAULTS.confirm_bars


def test_a_lookback_window_gives_the_newest_bar_setups_of_the_whole_history() -> None:
    """Scanning only the last ``lookback`` bars (as the runner does) finds exactly the full scan's setups
    on the newest bar, at every bar of a real 4h series."""
    series = real("binance_usdm_perp/BTC_USDT-4h.csv.gz")
    by_bar: dict[int, list[Setup]] = {}
    for setup in scan(series):
        by_bar.setdefault(setup.bar_ts, []).append(setup)
    lookback = DEFAULTS.lookback
    assert len(by_bar) > 30
    for t in range(lookback, len(series) + 1):
        window = series.slice(t - lookback, t)
        newest = int(series.ts[t - 1])
        assert [s for s in scan(window) if s.bar_ts == newest] == by_bar.get(newest, []), (
            f"differs at bar {t - 1}"
        )
