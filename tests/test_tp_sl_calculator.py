"""Tests of tp_sl_calculator: levels by every method, rejections, rounding, sizing, trailing stops."""

from __future__ import annotations

import gzip
import itertools
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import talib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from common.types import Candles, Direction, Levels, Setup
from tp_sl_calculator import (
    LevelsRejected,
    PositionSize,
    RejectReason,
    RiskSettings,
    TrailingStop,
    atr,
    calculate_levels,
    normalise_direction,
    position_size,
    quick_calculate,
)

pytestmark = pytest.mark.unit

MARKET_DATA = Path(__file__).resolve().parents[2] / "shared" / "market-data"
needs_market_data = pytest.mark.skipif(
    not MARKET_DATA.is_dir(), reason=f"real market data not found at {MARKET_DATA} (see its README)"
)


@cache
def load_candles(relative: str) -> Candles:
    """Candles of one gzip CSV of the shared market data (timestamp_ms,open,high,low,close,volume)."""
    with gzip.open(MARKET_DATA / relative, "rt") as handle:
        raw = np.loadtxt(handle, delimiter=",", skiprows=1, dtype=np.float64)
    name = Path(relative).name.removesuffix(".csv.gz")
    symbol, timeframe = name.split("-")
    return Candles(
        symbol=symbol.replace("_", "/"),
        timeframe=timeframe,
        ts=raw[:, 0].astype(np.int64),
        open=raw[:, 1],
        high=raw[:, 2],
        low=raw[:, 3],
        close=raw[:, 4],
        volume=raw[:, 5],
    )


# The 5-candle example every hand computation below starts from.
#        open   high   low    close   true range (max of H-L, |H-prev C|, |L-prev C|)
#   c0   100    102    99     101     (none: no previous close)
#   c1   101    104    100    103     max(4, 3, 1) = 4
#   c2   103    105    101    102     max(4, 2, 2) = 4
#   c3   102    103    98     99      max(5, 1, 4) = 5
#   c4   99     101    97     100     max(4, 2, 2) = 4
# ATR(4) at c4 = mean(4, 4, 5, 4) = 4.25 (TA-Lib's first value is the plain mean of the first 4 TRs).
# Entry = last close = 100; swing = (lowest low 97, highest high 105).
FIVE = Candles(
    symbol="TEST/USDT",
    timeframe="1h",
    ts=np.arange(5, dtype=np.int64) * 3_600_000,
    open=np.array([100.0, 101.0, 103.0, 102.0, 99.0]),
    high=np.array([102.0, 104.0, 105.0, 103.0, 101.0]),
    low=np.array([99.0, 100.0, 101.0, 98.0, 97.0]),
    close=np.array([101.0, 103.0, 102.0, 99.0, 100.0]),
    volume=np.ones(5),
)
FIVE_ATR = 4.25
FIVE_SWING = (97.0, 105.0)


def make_setup(
    direction: Direction = Direction.LONG,
    entry: float = 100.0,
    *,
    atr_value: float | None = None,
    stop: float | None = None,
    swing: tuple[float, float] | None = None,
) -> Setup:
    """A setup with only the fields the level calculator reads."""
    return Setup(
        direction=direction, bar_ts=0, entry=entry, reason="test", atr=atr_value, stop=stop, swing=swing
    )


def rejection(setup: Setup, risk: RiskSettings, tick_size: float | None = None) -> LevelsRejected:
    """The LevelsRejected that calculate_levels raises for these inputs."""
    with pytest.raises(LevelsRejected) as caught:
        calculate_levels(setup, risk, tick_size)
    return caught.value


# --------------------------------------------------------------------------------------------------
# ATR
# --------------------------------------------------------------------------------------------------


def test_atr_of_the_five_candle_example_is_hand_computed() -> None:
    """ATR(4) of the example is NaN for the first 4 candles and 17/4 = 4.25 at the fifth."""
    result = atr(FIVE, period=4)
    assert np.isnan(result[:4]).all()
    assert result[4] == FIVE_ATR


def test_atr_applies_wilder_smoothing_after_the_first_value() -> None:
    """ATR(3): first value mean(4,4,5) = 13/3 at index 3, then (13/3 x 2 + 4) / 3 = 38/9 at index 4."""
    result = atr(FIVE, period=3)
    assert np.isnan(result[:3]).all()
    assert result[3] == pytest.approx(13 / 3, rel=1e-15)
    assert result[4] == pytest.approx(38 / 9, rel=1e-15)


@needs_market_data
@pytest.mark.parametrize(
    ("relative", "period"),
    [
        ("binance_spot/BTC_USDT-1d.csv.gz", 14),
        ("binance_spot/ETH_USDT-4h.csv.gz", 14),
        ("binance_usdm_perp/XRP_USDT-15m.csv.gz", 21),
        ("binance_usdm_perp/DOGE_USDT-4h.csv.gz", 7),
    ],
)
def test_atr_equals_talib_on_real_series(relative: str, period: int) -> None:
    """atr() returns exactly talib.ATR(high, low, close, period) on real exchange series."""
    candles = load_candles(relative)
    expected = talib.ATR(candles.high, candles.low, candles.close, timeperiod=period)
    result = atr(candles, period)
    np.testing.assert_array_equal(result, expected)
    assert np.isnan(result[:period]).all()
    assert np.isfinite(result[period:]).all()


def test_atr_rejects_bad_input() -> None:
    """No candles, a NaN high or a period below 1 raise one clear ValueError each."""
    with pytest.raises(ValueError, match="no candles to compute ATR from"):
        atr(FIVE.head(0))
    with pytest.raises(ValueError, match=r"ATR period must be 1\.\.100000, got 0"):
        atr(FIVE, period=0)
    high = FIVE.high.copy()
    high[2] = np.nan
    broken = Candles("TEST/USDT", "1h", FIVE.ts, FIVE.open, high, FIVE.low, FIVE.close, FIVE.volume)
    with pytest.raises(ValueError, match=r"candles\.high has NaN or infinite values"):
        atr(broken, period=2)


# --------------------------------------------------------------------------------------------------
# Hand-computed levels, one method at a time (all on the five-candle example, tick 0.01)
# --------------------------------------------------------------------------------------------------


def test_atr_stop_with_r_targets_long() -> None:
    """ATR stop and R targets, LONG: the numbers computed by hand to the cent."""
    assert atr(FIVE, period=4)[-1] == FIVE_ATR
    # stop = 100 - 1.5 x 4.25 = 93.625 -> rounded away from entry (down) = 93.62; risk = 6.38 (6.38 %)
    # TPs  = 100 + (1.5, 2.5, 4.0) x 6.38 = 109.57, 115.95, 125.52 (already on the cent)
    levels = calculate_levels(make_setup(atr_value=FIVE_ATR), RiskSettings(), tick_size=0.01)
    assert levels == Levels(Direction.LONG, 100.0, 93.62, (109.57, 115.95, 125.52))


def test_atr_stop_with_r_targets_short() -> None:
    """ATR stop and R targets, SHORT: the mirror, stop rounded up and targets rounded up (toward entry)."""
    # stop = 100 + 6.375 = 106.375 -> up = 106.38; risk 6.38; TPs = 100 - 9.57, 15.95, 25.52
    levels = calculate_levels(make_setup(Direction.SHORT, atr_value=FIVE_ATR), RiskSettings(), 0.01)
    assert levels == Levels(Direction.SHORT, 100.0, 106.38, (90.43, 84.05, 74.48))


def test_structure_stop_with_atr_targets() -> None:
    """Structure stop (the swing low) with a 0.1 % buffer and ATR targets, by hand."""
    # stop = swing low 97 - 0.1 % x 100 = 96.90 (3.1 % away)
    # TPs  = 100 + (1.5, 2.5, 4.0) x 4.25 = 106.375, 110.625, 117.0 -> down = 106.37, 110.62, 117.00
    # TP1 R:R = 6.375 / 3.1 = 2.06 >= 1.5
    risk = RiskSettings(sl_method="structure", sl_buffer_pct=0.1, tp_method="atr")
    levels = calculate_levels(make_setup(atr_value=FIVE_ATR, swing=FIVE_SWING), risk, 0.01)
    assert levels == Levels(Direction.LONG, 100.0, 96.9, (106.37, 110.62, 117.0))


def test_structure_stop_prefers_the_strategy_stop_over_the_swing() -> None:
    """With setup.stop given (a SAR value, say), the structure stop is that value, not the swing low."""
    # stop = 98.5 (1.5 %); R targets: 100 + (1.5, 2.5, 4.0) x 1.5 = 102.25, 103.75, 106.00
    risk = RiskSettings(sl_method="structure")
    levels = calculate_levels(make_setup(stop=98.5, swing=FIVE_SWING), risk, 0.01)
    assert levels == Levels(Direction.LONG, 100.0, 98.5, (102.25, 103.75, 106.0))


def test_fibonacci_stop_with_fibonacci_targets() -> None:
    """Fibonacci stop at the swing origin and 1.0 / 1.272 / 1.618 extensions of the swing, by hand."""
    # stop = swing low 97.00; swing range = 105 - 97 = 8
    # TPs  = 97 + (1.0, 1.272, 1.618) x 8 = 105.0, 107.176, 109.944 -> down = 105.00, 107.17, 109.94
    # TP1 R:R = 5 / 3 = 1.67 >= 1.5
    risk = RiskSettings(sl_method="fibonacci", tp_method="fibonacci")
    levels = calculate_levels(make_setup(swing=FIVE_SWING), risk, 0.01)
    assert levels == Levels(Direction.LONG, 100.0, 97.0, (105.0, 107.17, 109.94))


def test_setup_targets_are_taken_as_given_and_rounded_toward_entry() -> None:
    """tp_method "setup": the strategy's own targets, rounded toward entry; a SHORT mirrors."""
    risk = RiskSettings(sl_method="structure", tp_method="setup", min_rr=1.0)
    long = Setup(Direction.LONG, 0, 100.0, "consensus", stop=97.0, targets=(104.567, 108.0))
    assert calculate_levels(long, risk, 0.01) == Levels(Direction.LONG, 100.0, 97.0, (104.56, 108.0))
    short = Setup(Direction.SHORT, 0, 100.0, "consensus", stop=103.0, targets=(95.433,))
    assert calculate_levels(short, risk, 0.01) == Levels(Direction.SHORT, 100.0, 103.0, (95.44,))


def test_setup_targets_missing_or_on_the_wrong_side() -> None:
    """No targets is MISSING_TARGETS; a target not beyond the previous one is WRONG_SIDE."""
    risk = RiskSettings(sl_method="structure", tp_method="setup", min_rr=1.0)
    with pytest.raises(LevelsRejected) as missing:
        calculate_levels(Setup(Direction.LONG, 0, 100.0, "x", stop=97.0), risk)
    assert missing.value.reason is RejectReason.MISSING_TARGETS
    with pytest.raises(LevelsRejected) as wrong:
        calculate_levels(Setup(Direction.LONG, 0, 100.0, "x", stop=97.0, targets=(104.0, 103.0)), risk)
    assert (wrong.value.reason, str(wrong.value)) == (
        RejectReason.WRONG_SIDE,
        "setup TP2 103 is not beyond TP1 104",
    )
    with pytest.raises(ValueError, match="setup targets must be at most 3 positive prices"):
        Setup(Direction.LONG, 0, 100.0, "x", targets=(101.0, 102.0, 103.0, 104.0))


def test_quick_calculate_uses_atr_stop_and_r_targets() -> None:
    """quick_calculate(100, 'bullish', 2): stop 100 - 3 = 97, targets 1.5R/2.5R/4R = 104.5/107.5/112."""
    levels = quick_calculate(100.0, "bullish", 2.0, tick_size=0.01)
    assert levels == Levels(Direction.LONG, 100.0, 97.0, (104.5, 107.5, 112.0))


def test_quick_calculate_takes_its_own_multiples() -> None:
    """A 2-ATR stop with two targets at 2R and 3R: stop 104, targets 92 and 88 for a sell at 100."""
    levels = quick_calculate(100.0, "sell", 2.0, sl_mult=2.0, tp_multiples=(2.0, 3.0))
    assert levels == Levels(Direction.SHORT, 100.0, 104.0, (92.0, 88.0))


# --------------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------------


def test_rounding_leaves_no_float_noise() -> None:
    """Entry 0.1 + 0.2 on a 0.0001 tick gives 0.3 and levels whose repr is the plain decimal."""
    # entry 0.30000000000000004 -> 0.3; stop 0.3 - 1.5 x 0.002 = 0.297 (1 %);
    # TPs 0.3 + (1.5, 2.5, 4.0) x 0.003 = 0.3045, 0.3075, 0.312
    levels = calculate_levels(make_setup(entry=0.1 + 0.2, atr_value=0.002), RiskSettings(), 0.0001)
    assert levels == Levels(Direction.LONG, 0.3, 0.297, (0.3045, 0.3075, 0.312))
    assert [repr(p) for p in (levels.entry, levels.sl, *levels.tps)] == [
        "0.3",
        "0.297",
        "0.3045",
        "0.3075",
        "0.312",
    ]


def test_price_already_on_the_tick_is_not_pushed_a_tick_away() -> None:
    """121.8 / 0.01 is 12179.999999999998 in floats; the structure stop must stay 121.8, not 121.79."""
    # risk = 123.45 - 121.8 = 1.65; TPs = 123.45 + 2.475, 4.125, 6.6 -> 125.925 down 125.92, 127.57, 130.05
    levels = calculate_levels(
        make_setup(entry=123.45, stop=121.8), RiskSettings(sl_method="structure"), tick_size=0.01
    )
    assert levels == Levels(Direction.LONG, 123.45, 121.8, (125.92, 127.57, 130.05))


def test_absolute_stop_moves_with_an_entry_rounded_toward_it() -> None:
    """Entry 100.04 rounds down to 100.0; the 99.0 structure stop moves down 0.04 too, then to 98.9."""
    # Unrounded risk is 1.04. Rounding the entry alone would shrink it to 1.0 and flatter the R:R, so
    # the stop moves by the same 0.04 (98.96) and is rounded away from entry: 98.9 (risk 1.1 >= 1.04).
    # ATR targets: 100 + (1.5, 2.5, 4.0) x 1.2 = 101.8, 103.0, 104.8 (TP1 R:R 1.8 / 1.1 = 1.64).
    risk = RiskSettings(sl_method="structure", tp_method="atr")
    levels = calculate_levels(make_setup(entry=100.04, stop=99.0, atr_value=1.2), risk, tick_size=0.1)
    assert levels == Levels(Direction.LONG, 100.0, 98.9, (101.8, 103.0, 104.8))


def test_target_rounding_alone_does_not_reject_at_exactly_min_rr() -> None:
    """R targets at 1.5R with min_rr 1.5 pass even when TP1 rounds down a fraction of a tick below 1.5R."""
    # stop = 100 - 1.5 x 0.98 = 98.53, risk 1.47; TP1 = 100 + 2.205 -> 102.20 (R:R 1.4966);
    # TP2 = 103.675 -> 103.67; TP3 = 105.88. Rejecting this would reject every odd-cent risk.
    levels = calculate_levels(make_setup(atr_value=0.98), RiskSettings(), tick_size=0.01)
    assert levels == Levels(Direction.LONG, 100.0, 98.53, (102.2, 103.67, 105.88))
    assert levels.risk_reward(0) < 1.5


# --------------------------------------------------------------------------------------------------
# Rejections: every reason
# --------------------------------------------------------------------------------------------------


def test_stop_too_tight() -> None:
    """A 0.15 % ATR stop is rejected against the 0.2 % minimum, with both numbers in the message."""
    rejected = rejection(make_setup(atr_value=0.1), RiskSettings())
    assert rejected.reason is RejectReason.STOP_TOO_TIGHT
    assert str(rejected) == "stop 0.15% from entry is tighter than the minimum 0.2%"


def test_stop_too_wide() -> None:
    """A 15 % ATR stop is rejected against the 10 % maximum."""
    rejected = rejection(make_setup(atr_value=10.0), RiskSettings())
    assert rejected.reason is RejectReason.STOP_TOO_WIDE
    assert str(rejected) == "stop 15% from entry is wider than the maximum 10%"


def test_stop_at_or_below_zero_is_too_wide() -> None:
    """A LONG stop at 100 - 1.5 x 80 = -20 is rejected as too wide even with a 100 % maximum."""
    rejected = rejection(make_setup(atr_value=80.0), RiskSettings(max_stop_pct=100.0))
    assert rejected.reason is RejectReason.STOP_TOO_WIDE
    assert str(rejected) == "LONG stop -20 is not a positive price (entry 100)"


def test_stop_exactly_on_the_bounds_passes() -> None:
    """Stops at exactly 0.2 % and 10 % pass although the float percentages are a hair off."""
    tight = calculate_levels(make_setup(stop=99.8), RiskSettings(sl_method="structure"), 0.01)
    wide = calculate_levels(make_setup(stop=90.0), RiskSettings(sl_method="structure"), 0.01)
    assert (tight.sl, wide.sl) == (99.8, 90.0)


def test_rr_too_low() -> None:
    """SHORT Fibonacci: stop at the swing high 105, TP1 at 97 gives R:R 3 / 5 = 0.6 < 1.5."""
    risk = RiskSettings(sl_method="fibonacci", tp_method="fibonacci")
    rejected = rejection(make_setup(Direction.SHORT, swing=FIVE_SWING), risk, 0.01)
    assert rejected.reason is RejectReason.RR_TOO_LOW
    assert str(rejected) == "TP1 risk:reward 0.6 is below the minimum 1.5"


def test_rounding_that_collapses_tp1_onto_entry_is_rr_too_low() -> None:
    """On a 1.0 tick, TP1 = 100 + 0.1 x 0.4 rounds down onto the entry: RR_TOO_LOW even with min_rr 0."""
    risk = RiskSettings(tp_method="atr", tp_multiples=(0.1, 0.2, 0.3), min_rr=0.0)
    rejected = rejection(make_setup(atr_value=0.4), risk, tick_size=1.0)
    assert rejected.reason is RejectReason.RR_TOO_LOW
    assert str(rejected) == "TP1 100 is not beyond entry 100 at tick size 1"


def test_rounding_that_collapses_two_targets_is_rr_too_low() -> None:
    """On a 1.0 tick, targets 102.0 / 102.2 / 102.4 all round down to 102: TP2 collapses onto TP1."""
    risk = RiskSettings(tp_method="atr", tp_multiples=(5.0, 5.5, 6.0), min_rr=0.0)
    rejected = rejection(make_setup(atr_value=0.4), risk, tick_size=1.0)
    assert rejected.reason is RejectReason.RR_TOO_LOW
    assert str(rejected) == "TP2 102 is not beyond TP1 102 at tick size 1"


def test_structure_stop_above_a_long_entry_is_wrong_side() -> None:
    """A strategy stop at 101 for a LONG entered at 100 is WRONG_SIDE, not silently flipped."""
    rejected = rejection(make_setup(stop=101.0), RiskSettings(sl_method="structure"))
    assert rejected.reason is RejectReason.WRONG_SIDE
    assert str(rejected) == "structure stop 101 is not below the LONG entry 100"


def test_structure_stop_below_a_short_entry_is_wrong_side() -> None:
    """A swing high of 99 cannot be the stop of a SHORT entered at 100."""
    rejected = rejection(make_setup(Direction.SHORT, swing=(95.0, 99.0)), RiskSettings(sl_method="structure"))
    assert rejected.reason is RejectReason.WRONG_SIDE
    assert str(rejected) == "structure stop 99 is not above the SHORT entry 100"


def test_fibonacci_target_not_beyond_entry_is_wrong_side() -> None:
    """Entry 106 above the swing high 105: the 1.0 extension (105) is not beyond entry."""
    risk = RiskSettings(sl_method="fibonacci", tp_method="fibonacci")
    rejected = rejection(make_setup(entry=106.0, swing=FIVE_SWING), risk)
    assert rejected.reason is RejectReason.WRONG_SIDE
    assert str(rejected) == "Fibonacci TP1 105 (1 extension of 97-105) is not beyond entry 106"


def test_target_below_zero_is_wrong_side() -> None:
    """SHORT at 100 with risk 7.5: a 14R target would be at -5, which no price reaches."""
    risk = RiskSettings(tp_multiples=(1.5, 2.5, 14.0))
    rejected = rejection(make_setup(Direction.SHORT, atr_value=5.0), risk)
    assert rejected.reason is RejectReason.WRONG_SIDE
    assert str(rejected) == "SHORT TP3 -5 is not a positive price"


@pytest.mark.parametrize(
    ("risk", "setup", "message"),
    [
        (
            RiskSettings(sl_method="structure"),
            make_setup(),
            "structure stop needs setup.stop or setup.swing; both are missing",
        ),
        (
            RiskSettings(sl_method="fibonacci"),
            make_setup(stop=95.0),
            "Fibonacci stop needs setup.swing, which is missing",
        ),
        (
            RiskSettings(tp_method="fibonacci"),
            make_setup(atr_value=2.0),
            "Fibonacci targets need setup.swing, which is missing",
        ),
    ],
)
def test_missing_swing(risk: RiskSettings, setup: Setup, message: str) -> None:
    """Structure stops without a stop or swing, and Fibonacci stops or targets without a swing."""
    rejected = rejection(setup, risk)
    assert rejected.reason is RejectReason.MISSING_SWING
    assert str(rejected) == message


@pytest.mark.parametrize(
    ("risk", "setup", "message"),
    [
        (RiskSettings(), make_setup(), "ATR-based stop needs setup.atr, which is missing"),
        (
            RiskSettings(sl_method="structure", tp_method="atr"),
            make_setup(stop=95.0),
            "ATR-based targets need setup.atr, which is missing",
        ),
    ],
)
def test_missing_atr(risk: RiskSettings, setup: Setup, message: str) -> None:
    """An ATR stop or ATR targets without setup.atr are rejected as MISSING_ATR."""
    rejected = rejection(setup, risk)
    assert rejected.reason is RejectReason.MISSING_ATR
    assert str(rejected) == message


# --------------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tick", [0.0, -0.01, math.nan, math.inf])
def test_bad_tick_size_is_a_value_error(tick: float) -> None:
    """A tick size that is zero, negative, NaN or infinite raises ValueError naming it."""
    with pytest.raises(ValueError, match="tick_size must be a positive finite number or None"):
        calculate_levels(make_setup(atr_value=2.0), RiskSettings(), tick)


def test_entry_that_rounds_to_zero_is_a_value_error() -> None:
    """An entry of 0.004 on a 0.01 tick would become 0: ValueError, never a level at zero."""
    with pytest.raises(ValueError, match=r"entry 0\.004 rounds to 0 at tick size 0\.01"):
        calculate_levels(make_setup(entry=0.004, atr_value=0.0001), RiskSettings(), 0.01)


@pytest.mark.parametrize("entry", [math.nan, math.inf, 0.0, -5.0])
def test_setup_refuses_bad_entries(entry: float) -> None:
    """NaN, infinite, zero and negative entries never reach the calculator: Setup raises ValueError."""
    with pytest.raises(ValueError, match="setup entry must be a positive finite price"):
        make_setup(entry=entry, atr_value=1.0)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


def test_risk_settings_defaults() -> None:
    """The defaults are the documented ones."""
    risk = RiskSettings()
    assert risk.model_dump() == {
        "sl_method": "atr",
        "sl_atr_mult": 1.5,
        "sl_buffer_pct": 0.0,
        "tp_method": "r",
        "tp_multiples": (1.5, 2.5, 4.0),
        "fib_extensions": (1.0, 1.272, 1.618),
        "min_rr": 1.5,
        "min_stop_pct": 0.2,
        "max_stop_pct": 10.0,
    }


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"tp_multiples": [2.0, 1.0]}, ("tp_multiples",)),
        ({"tp_multiples": [1.0, 1.0]}, ("tp_multiples",)),
        ({"tp_multiples": [1.0, 2.0, 3.0, 4.0]}, ("tp_multiples",)),
        ({"tp_multiples": []}, ("tp_multiples",)),
        ({"tp_multiples": [0.0, 1.0]}, ("tp_multiples", 0)),
        ({"fib_extensions": [1.618, 1.0]}, ("fib_extensions",)),
        ({"sl_atr_mult": 0}, ("sl_atr_mult",)),
        ({"sl_atr_mult": math.nan}, ("sl_atr_mult",)),
        ({"sl_atr_mult": True}, ("sl_atr_mult",)),
        ({"sl_atr_mult": "1.5"}, ("sl_atr_mult",)),
        ({"sl_buffer_pct": -0.1}, ("sl_buffer_pct",)),
        ({"min_rr": -1}, ("min_rr",)),
        ({"sl_method": "sar"}, ("sl_method",)),
        ({"tp_method": "percent"}, ("tp_method",)),
        ({"min_stop_pct": 5.0, "max_stop_pct": 5.0}, ()),
        ({"fee_pct": 0.05}, ("fee_pct",)),
    ],
)
def test_risk_settings_reject_bad_values(overrides: dict[str, object], location: tuple[object, ...]) -> None:
    """Each bad value raises a pydantic ValidationError located at the offending field."""
    with pytest.raises(ValidationError) as caught:
        RiskSettings.model_validate(overrides)
    assert caught.value.errors()[0]["loc"] == location


def test_merged_layers_overrides_and_validates() -> None:
    """global -> bot -> symbol: each layer overrides the previous one, the original stays unchanged."""
    base = RiskSettings()
    bot = base.merged({"sl_method": "structure", "tp_multiples": [2, 3]})
    symbol = bot.merged({"min_rr": 2})
    assert (symbol.sl_method, symbol.tp_multiples, symbol.min_rr) == ("structure", (2.0, 3.0), 2.0)
    assert base == RiskSettings()
    with pytest.raises(ValidationError) as caught:
        bot.merged({"min_stop_pct": 12.0})
    assert "min_stop_pct 12.0 must be below max_stop_pct 10.0" in str(caught.value)


def test_risk_settings_are_frozen() -> None:
    """Assigning to a field raises: settings shared by bots cannot be changed under them."""
    risk = RiskSettings()
    with pytest.raises(ValidationError):
        risk.min_rr = 0.0  # type: ignore[misc, unused-ignore]  # misc under pydantic.mypy


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("bullish", Direction.LONG),
        (" BUY ", Direction.LONG),
        ("long", Direction.LONG),
        ("bearish", Direction.SHORT),
        ("Sell", Direction.SHORT),
        ("short", Direction.SHORT),
        (Direction.SHORT, Direction.SHORT),
    ],
)
def test_normalise_direction(word: str | Direction, expected: Direction) -> None:
    """The words strategies use map to LONG / SHORT."""
    assert normalise_direction(word) is expected


def test_normalise_direction_rejects_neutral() -> None:
    """'neutral' is not a direction: ValueError naming the value."""
    with pytest.raises(ValueError, match="unknown direction 'neutral'"):
        normalise_direction("neutral")


# --------------------------------------------------------------------------------------------------
# Position sizing
# --------------------------------------------------------------------------------------------------


def test_position_size_risks_the_requested_percent() -> None:
    """1 % of 10,000 over a 5-point stop is 20 units: notional 2,000, margin 2,000, risk 100."""
    size = position_size(entry=100.0, sl=95.0, account_size=10_000.0, risk_pct=1.0)
    assert size == PositionSize(quantity=20.0, notional=2000.0, margin=2000.0, risk_amount=100.0)


def test_position_size_is_capped_by_the_margin() -> None:
    """5 % of 1,000 over a 1-point stop wants 50 units; 2x leverage allows 1,000 x 2 / 100 = 20."""
    size = position_size(entry=100.0, sl=99.0, account_size=1000.0, risk_pct=5.0, leverage=2.0)
    assert size == PositionSize(quantity=20.0, notional=2000.0, margin=1000.0, risk_amount=20.0)


def test_position_size_rounds_down_to_the_step() -> None:
    """10 / 0.3 = 33.33 units rounds DOWN to 33.3 on a 0.1 step, so the risk is 9.99, not more."""
    size = position_size(entry=3.0, sl=2.7, account_size=1000.0, risk_pct=1.0, qty_step=0.1)
    assert size.quantity == 33.3
    assert size.notional == pytest.approx(99.9, rel=1e-12)
    assert size.risk_amount == pytest.approx(9.99, rel=1e-12)
    assert size.risk_amount <= 10.0


def test_position_size_below_min_qty_is_a_value_error() -> None:
    """0.002 BTC when the exchange minimum is 0.01 raises with the numbers."""
    with pytest.raises(
        ValueError, match=r"^position size 0\.002 is below the minimum quantity 0\.01 \(risk 10"
    ):
        position_size(entry=50_000.0, sl=45_000.0, account_size=1000.0, risk_pct=1.0, min_qty=0.01)


def test_position_size_that_rounds_to_zero_is_a_value_error() -> None:
    """0.002 units on a step of 1 rounds down to 0, which is refused even without a minimum."""
    with pytest.raises(ValueError, match="position size 0 is below the minimum quantity 0"):
        position_size(entry=50_000.0, sl=45_000.0, account_size=1000.0, risk_pct=1.0, qty_step=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sl": 100.0}, "the risk per unit is zero"),
        ({"entry": math.nan}, "entry must be a positive finite number"),
        ({"sl": -1.0}, "sl must be a positive finite number"),
        ({"account_size": 0.0}, "account_size must be a positive finite number"),
        ({"risk_pct": 0.0}, "risk_pct must be a positive finite number"),
        ({"risk_pct": 150.0}, "risk_pct is a percent of the account and must be at most 100"),
        ({"leverage": 0.5}, "leverage must be a finite number >= 1"),
        ({"min_qty": -1.0}, "min_qty must be a finite number >= 0"),
        ({"qty_step": 0.0}, "qty_step must be a positive finite number"),
    ],
)
def test_position_size_rejects_bad_inputs(kwargs: dict[str, float], message: str) -> None:
    """Every bad argument raises one ValueError saying what is wrong."""
    arguments = {"entry": 100.0, "sl": 95.0, "account_size": 1000.0, "risk_pct": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        position_size(**arguments)


# --------------------------------------------------------------------------------------------------
# Trailing stop
# --------------------------------------------------------------------------------------------------


def test_trailing_stop_long_percent_after_one_r() -> None:
    """LONG 100 / stop 95 trails 2 % below the high once the high reaches 105 (1R), never loosening."""
    trail = TrailingStop(Direction.LONG, 100.0, 95.0, activation_r=1.0, distance_pct=2.0, tick_size=0.01)
    assert trail.update(high=103.0, low=99.0) == 95.0  # best 103 < 105: not active yet
    assert not trail.active
    assert trail.update(high=106.0, low=102.0) == 103.88  # 106 - 2.12
    assert trail.update(high=105.0, low=101.0) == 103.88  # best stays 106
    assert trail.update(high=110.0, low=104.0) == 107.8  # 110 - 2.2
    assert (trail.active, trail.best, trail.stop) == (True, 110.0, 107.8)


def test_trailing_stop_short_atr_after_percent() -> None:
    """SHORT 100 / stop 104 trails 1.5 ATR above the low once the low reaches 98 (2 %)."""
    trail = TrailingStop("sell", 100.0, 104.0, activation_pct=2.0, distance_atr=1.5)
    assert trail.update(101.0, 99.0, atr=2.0) == 104.0  # best 99: not 2 % yet
    assert trail.update(99.0, 97.0, atr=2.0) == 100.0  # 97 + 3
    assert trail.update(98.0, 96.5, atr=1.0) == 98.0  # 96.5 + 1.5
    assert trail.update(99.0, 97.0, atr=3.0) == 98.0  # 96.5 + 4.5 = 101 would loosen: kept at 98


def test_trailing_stop_without_activation_trails_from_the_start() -> None:
    """No activation: the first candle already moves a LONG's stop to high - 3 % when that is tighter."""
    trail = TrailingStop(Direction.LONG, 100.0, 95.0, distance_pct=3.0)
    assert trail.update(high=100.0, low=99.0) == 97.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance_pct": 1.0, "distance_atr": 1.0}, "give exactly one of distance_pct and distance_atr"),
        ({}, "give exactly one of distance_pct and distance_atr"),
        ({"distance_pct": 1.0, "activation_r": 1.0, "activation_pct": 1.0}, "give activation_r or"),
        ({"distance_pct": -1.0}, "distance_pct must be a positive finite number"),
        ({"distance_pct": 1.0, "sl": 101.0}, "LONG stop 101.0 is not on the loss side of entry 100.0"),
    ],
)
def test_trailing_stop_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    """Contradictory or missing settings raise ValueError at construction."""
    arguments: dict[str, float] = {"sl": 95.0, **kwargs}
    sl = arguments.pop("sl")
    with pytest.raises(ValueError, match=message):
        TrailingStop(Direction.LONG, 100.0, sl, **arguments)


def test_trailing_stop_rejects_bad_candles() -> None:
    """A NaN high, a high below the low, or an ATR trail without an ATR raise ValueError."""
    trail = TrailingStop(Direction.LONG, 100.0, 95.0, distance_atr=2.0)
    with pytest.raises(ValueError, match="high must be a positive finite number"):
        trail.update(math.nan, 99.0, atr=1.0)
    with pytest.raises(ValueError, match=r"candle high 98\.0 is below its low 99\.0"):
        trail.update(98.0, 99.0, atr=1.0)
    with pytest.raises(ValueError, match=r"update\(\) needs atr"):
        trail.update(101.0, 99.0)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def increasing(draw: st.DrawFn, low: float, high: float) -> tuple[float, ...]:
    """One to three strictly increasing values in [low, high]."""
    values = draw(st.lists(st.floats(low, high), min_size=1, max_size=3, unique=True))
    return tuple(sorted(values))


@st.composite
def risk_settings(draw: st.DrawFn, loose: bool = False) -> RiskSettings:
    """Any valid RiskSettings, across every method; ``loose`` bounds let most setups through."""
    min_stop = 0.0 if loose else draw(st.floats(0.0, 1.0))
    return RiskSettings(
        sl_method=draw(st.sampled_from(["atr", "structure", "fibonacci"])),
        sl_atr_mult=draw(st.floats(0.2, 5.0)),
        sl_buffer_pct=draw(st.sampled_from([0.0, 0.05, 0.37])),
        tp_method=draw(st.sampled_from(["atr", "r", "fibonacci"])),
        tp_multiples=draw(increasing(0.3, 8.0)),
        fib_extensions=draw(increasing(0.5, 3.0)),
        min_rr=0.0 if loose else draw(st.floats(0.0, 2.0)),
        min_stop_pct=min_stop,
        max_stop_pct=60.0 if loose else draw(st.floats(min_stop + 0.1, 30.0)),
    )


@st.composite
def setups(draw: st.DrawFn, complete: bool = False) -> tuple[Setup, float]:
    """A setup and a tick size that fits its price.

    By default anything goes: ATR or swing missing, stops and swings on the wrong side. ``complete``
    setups carry an ATR and a swing around the entry, so every method can place its levels.
    """
    direction = draw(st.sampled_from(Direction))
    exponent = draw(st.integers(-6, 4))
    entry = draw(st.floats(1.0, 9.99)) * 10.0**exponent
    # Exchanges quote 4 to 6 significant digits: the tick is that far below the price.
    tick = 10.0 ** (exponent - draw(st.integers(2, 5)))
    atr_value: float | None = entry * draw(st.floats(0.0005, 0.05))
    if not complete and draw(st.booleans()):
        atr_value = None
    worst = 0.001 if complete else -0.01
    stop = draw(st.none() | st.floats(worst, 0.12).map(lambda f: entry * (1 - direction.sign * f)))
    below, above = draw(st.floats(worst, 0.1)), draw(st.floats(worst, 0.2))
    low, high = entry * (1 - below), entry * (1 + above)
    swing = (low, high) if low < high else None
    if not complete and draw(st.booleans()):
        swing = None
    setup = Setup(
        direction=direction, bar_ts=0, entry=entry, reason="property", atr=atr_value, stop=stop, swing=swing
    )
    return setup, tick


def outcome(setup: Setup, risk: RiskSettings, tick: float | None) -> Levels | LevelsRejected:
    """The levels, or the rejection, for these inputs (any other exception fails the test)."""
    try:
        return calculate_levels(setup, risk, tick)
    except LevelsRejected as rejected:
        return rejected


@PROPERTY_SETTINGS
@given(
    case=setups() | setups(complete=True),
    risk=risk_settings() | risk_settings(loose=True),
    rounded=st.booleans(),
)
def test_levels_are_always_ordered_or_rejected(
    case: tuple[Setup, float], risk: RiskSettings, rounded: bool
) -> None:
    """Any valid input gives SL < entry < TP1 < TP2 < TP3 (LONG, SHORT mirrored) or a LevelsRejected."""
    setup, tick = case
    result = outcome(setup, risk, tick if rounded else None)
    if isinstance(result, LevelsRejected):
        assert isinstance(result.reason, RejectReason)
        assert "\n" not in str(result)
        return
    sign = setup.direction.sign
    prices = [result.sl, result.entry, *result.tps]
    assert all(sign * (later - earlier) > 0 for earlier, later in itertools.pairwise(prices))
    assert len(result.tps) == len(risk.fib_extensions if risk.tp_method == "fibonacci" else risk.tp_multiples)
    if rounded:
        decimals = max(0, -round(math.log10(tick)))
        assert all(price == round(price, decimals) for price in prices)


@PROPERTY_SETTINGS
@given(case=setups(complete=True), risk=risk_settings(loose=True))
def test_tick_rounding_never_improves_risk_reward(case: tuple[Setup, float], risk: RiskSettings) -> None:
    """With the same inputs, every target's R:R after tick rounding is <= its R:R without rounding."""
    setup, tick = case
    exact = outcome(setup, risk, None)
    rounded = outcome(setup, risk, tick)
    if isinstance(exact, LevelsRejected):
        if exact.reason is RejectReason.RR_TOO_LOW:
            # Rounding only makes the R:R worse, so it cannot rescue a setup rejected for it.
            assert isinstance(rounded, LevelsRejected)
        return
    if isinstance(rounded, LevelsRejected):
        return
    assert rounded.risk >= exact.risk * (1 - 1e-12)
    for index in range(len(exact.tps)):
        assert rounded.risk_reward(index) <= exact.risk_reward(index) * (1 + 1e-9)


@st.composite
def trailing_cases(draw: st.DrawFn) -> tuple[TrailingStop, list[tuple[float, float, float]]]:
    """A trailing stop with random settings and a random walk of candles (high, low, atr)."""
    direction = draw(st.sampled_from(Direction))
    entry = draw(st.floats(0.01, 50_000.0))
    sl = entry * (1 - direction.sign * draw(st.floats(0.002, 0.2)))
    activation = draw(st.sampled_from(["none", "r", "pct"]))
    distance_kind = draw(st.sampled_from(["pct", "atr"]))
    trail = TrailingStop(
        direction,
        entry,
        sl,
        activation_r=draw(st.floats(0.1, 3.0)) if activation == "r" else None,
        activation_pct=draw(st.floats(0.1, 10.0)) if activation == "pct" else None,
        distance_pct=draw(st.floats(0.1, 10.0)) if distance_kind == "pct" else None,
        distance_atr=draw(st.floats(0.1, 5.0)) if distance_kind == "atr" else None,
        tick_size=draw(st.none() | st.just(entry / 10_000)),
    )
    moves = draw(st.lists(st.tuples(st.floats(-0.05, 0.05), st.floats(0.0, 0.04)), min_size=1, max_size=60))
    candles, price = [], entry
    for move, spread in moves:
        price *= 1 + move
        candles.append((price * (1 + spread), price * (1 - spread / 2), price * spread + entry * 1e-4))
    return trail, candles


@PROPERTY_SETTINGS
@given(case=trailing_cases())
def test_trailing_stop_never_moves_against_the_trade(
    case: tuple[TrailingStop, list[tuple[float, float, float]]],
) -> None:
    """Over any candle sequence a LONG's stop never goes down and a SHORT's never goes up."""
    trail, candles = case
    sign = trail.direction.sign
    previous = trail.initial_sl
    for high, low, atr_value in candles:
        stop = trail.update(high, low, atr=atr_value)
        assert sign * (stop - previous) >= 0
        previous = stop
