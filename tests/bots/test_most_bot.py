"""Tests of bots/most_bot.py: MOST flips and pullbacks on hand-built series, levels, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import MarketData
from bots.most_bot import MostBot, MostParams, most_line
from common.types import Candles, Direction, KeyPoint, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real, with_placeholders
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = MostBot()
DEFAULTS = MostParams()
PULLBACKS = MostParams(pullbacks=True)
ATR_MODE = MostParams(mode="atr", ema_length=9)  # the replaced bot's line: EMA 9, 2 x ATR(14)
RISK = RiskSettings.model_validate(
    {"sl_method": "structure", "tp_method": "r", "tp_multiples": [1.5, 2.5, 4.0], "min_rr": 1.5}
)


def candles(open_: list[float], high: list[float], low: list[float], close: list[float]) -> Candles:
    """Hourly candles from T0 with volume 1000 (so none is a placeholder)."""
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(len(close), dtype=np.int64) * HOUR,
        open=np.array(open_, dtype=np.float64),
        high=np.array(high, dtype=np.float64),
        low=np.array(low, dtype=np.float64),
        close=np.array(close, dtype=np.float64),
        volume=np.full(len(close), 1000.0),
    )


def from_closes(close: list[float]) -> Candles:
    """Candles opening at the previous close, wicks 0.5 beyond the body."""
    open_ = [close[0], *close[:-1]]
    high = [max(o, c) + 0.5 for o, c in zip(open_, close, strict=True)]
    low = [min(o, c) - 0.5 for o, c in zip(open_, close, strict=True)]
    return candles(open_, high, low, close)


def scan(series: Candles, params: MostParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def rise_then_drop(last_close: float = 100.0) -> Candles:
    """Flat at 100 (EMA 3 seeds at 100 on bar 2: uptrend, MOST 98), up 2 a bar to 108, then ``last_close``.

    EMA 3 (k = 0.5): 100, 101, 102.5, 104.25, 106.125 on bars 2..6; MOST = max(prev, 0.98 x EMA):
    98, 98.98, 100.45, 102.165, 104.0025.
    """
    return from_closes([100.0, 100.0, 100.0, 102.0, 104.0, 106.0, 108.0, last_close])


def decline_then_jump() -> Candles:
    """Bar 2 closes 97 under its EMA 99 (downtrend, MOST 100.98), down 2 a bar to 89, then a jump to 97.

    EMA 3: 99, 97, 95, 93, 91 on bars 2..6; MOST = min(prev, 1.02 x EMA): 100.98, 98.94, 96.9, 94.86,
    92.82. Bar 7: EMA (97 + 91) / 2 = 94 > 92.82: the trend flips up and MOST = 0.98 x 94 = 92.12.
    """
    return from_closes([100.0, 100.0, 97.0, 95.0, 93.0, 91.0, 89.0, 97.0])


def reference_most(
    close: np.ndarray, ema: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rule written out bar by bar, independently of the bot's loop: (MOST, trend)."""
    n = close.size
    most = np.full(n, np.nan)
    trend = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if not (math.isfinite(ema[i]) and math.isfinite(lower[i]) and math.isfinite(upper[i])):
            continue
        if i == 0 or trend[i - 1] == 0:
            trend[i] = 1 if close[i] >= ema[i] else -1
            most[i] = lower[i] if trend[i] == 1 else upper[i]
        elif trend[i - 1] == 1 and ema[i] < most[i - 1]:
            trend[i], most[i] = -1, upper[i]
        elif trend[i - 1] == -1 and ema[i] > most[i - 1]:
            trend[i], most[i] = 1, lower[i]
        elif trend[i - 1] == 1:
            trend[i], most[i] = 1, max(most[i - 1], lower[i])
        else:
            trend[i], most[i] = -1, min(most[i - 1], upper[i])
    return most, trend


def sig10(value: float) -> float:
    """A context price as the bot rounds it: 10 significant digits."""
    return float(f"{value:.10g}")


# -- hand-built series ----------------------------------------------------------------------------


def test_short_on_a_flip_down_with_levels() -> None:
    """EMA 103.0625 falls below the previous MOST 104.0025: SHORT at bar 7, entry 100, stop 105.12375."""
    series = rise_then_drop()
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[2:].tolist() == [100.0, 101.0, 102.5, 104.25, 106.125, 103.0625]
    [setup] = scan(series)
    assert setup.stop == pytest.approx(103.0625 * 1.02, rel=1e-12)  # the new MOST, 105.12375
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 7 * HOUR,
        entry=100.0,
        reason="MOST flipped down after 5 bars up: EMA 3 103.062 crossed below MOST 104.002",
        atr=None,  # ATR(14) does not exist before bar 14
        stop=setup.stop,
        context={
            "signal": "reversal",
            "mode": "percent",
            "ema_length": 3,
            "ema": 103.0625,
            "most": 105.12375,
            "percent": 2.0,
            "previous_most": 104.0025,
            "previous_trend_bars": 5,  # bars 2..6, from the bar where the line starts
        },
        key_points=(KeyPoint(ts=T0 + 6 * HOUR, price=104.0025, label="MOST crossed"),),
    )
    levels = calculate_levels(setup, RISK)
    risk = 105.12375 - 100.0
    assert levels.sl == pytest.approx(105.12375, rel=1e-12)
    assert levels.tps == pytest.approx(
        (100.0 - 1.5 * risk, 100.0 - 2.5 * risk, 100.0 - 4.0 * risk), rel=1e-12
    )
    assert levels.tps == pytest.approx((92.314375, 87.190625, 79.505), rel=1e-12)


def test_long_on_a_flip_up_with_levels() -> None:
    """EMA 94 rises above the previous MOST 92.82: LONG at bar 7, entry 97, stop 92.12, TPs 1.5/2.5/4 R."""
    series = decline_then_jump()
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[2:].tolist() == [99.0, 97.0, 95.0, 93.0, 91.0, 94.0]
    [setup] = scan(series)
    assert (setup.direction, setup.bar_ts, setup.entry, setup.atr) == (
        Direction.LONG,
        T0 + 7 * HOUR,
        97.0,
        None,
    )
    assert setup.reason == "MOST flipped up after 5 bars down: EMA 3 94.0000 crossed above MOST 92.8200"
    assert setup.stop == pytest.approx(92.12, rel=1e-12)
    assert setup.context == {
        "signal": "reversal",
        "mode": "percent",
        "ema_length": 3,
        "ema": 94.0,
        "most": 92.12,
        "percent": 2.0,
        "previous_most": 92.82,
        "previous_trend_bars": 5,
    }
    assert setup.key_points == (KeyPoint(ts=T0 + 6 * HOUR, price=92.82, label="MOST crossed"),)
    levels = calculate_levels(setup, RISK)
    assert levels.sl == pytest.approx(92.12, rel=1e-12)
    # Risk 97 - 92.12 = 4.88: TPs 97 + 7.32, 97 + 12.2, 97 + 19.52.
    assert levels.tps == pytest.approx((104.32, 109.2, 116.52), rel=1e-12)


def test_no_flip_when_only_the_close_crosses_the_line() -> None:
    """Close 102 is below the previous MOST 104.0025 but EMA 104.0625 is not: no signal (the EMA crosses)."""
    series = rise_then_drop(last_close=102.0)
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[7] == 104.0625
    assert scan(series) == []
    _, _, most, trend = BOT.line(series, DEFAULTS)
    assert trend[7] == 1
    assert most[7] == pytest.approx(max(104.0025, 104.0625 * 0.98), rel=1e-12)


def test_flip_needs_the_ema_strictly_beyond_the_previous_bars_most() -> None:
    """With 25 %: EMA 75 exactly on the previous MOST 75 does not flip; EMA 74.5 on the next bar does."""
    params = MostParams(percent=25.0)
    series = from_closes([100.0, 100.0, 100.0, 60.0, 70.0, 74.0])
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[2:].tolist() == [100.0, 80.0, 75.0, 74.5]
    _, _, most, trend = BOT.line(series, params)
    # Bar 2 starts up at 0.75 x 100; bar 3's EMA 80 is above 75 (its close 60 is not): no flip.
    assert most[2:5].tolist() == [75.0, 75.0, 75.0]
    assert trend[2:6].tolist() == [1, 1, 1, -1]
    [setup] = scan(series, params)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.SHORT, T0 + 5 * HOUR, 74.0)
    assert setup.stop == 93.125  # 1.25 x 74.5, exact in binary
    assert setup.context["previous_most"] == 75.0
    assert setup.context["previous_trend_bars"] == 3
    # One bar earlier the history ends on the EMA-equals-MOST bar: nothing.
    assert scan(series.head(5), params) == []


def test_stop_floor_when_the_most_is_too_close() -> None:
    """With min_stop_pct 6 the LONG's stop is 97 x 0.94 = 91.18 instead of the MOST (92.12, 5.03 % away)."""
    [setup] = scan(decline_then_jump(), MostParams(min_stop_pct=6.0))
    assert setup.stop == pytest.approx(91.18, rel=1e-12)
    assert setup.context["most"] == 92.12
    [floored_short] = scan(rise_then_drop(), MostParams(min_stop_pct=6.0))
    assert floored_short.stop == pytest.approx(106.0, rel=1e-12)  # 100 x 1.06 beyond the MOST 105.12375
    [unfloored] = scan(decline_then_jump(), MostParams(min_stop_pct=0.0))
    assert unfloored.stop == pytest.approx(92.12, rel=1e-12)


def test_atr_mode_flip_down() -> None:
    """EMA 9 +/- 2 x ATR(14): flat bars (ATR 1, MOST 98), three falling bars; EMA 97.904 < 98 flips bar 22."""
    series = candles(
        open_=[100.0] * 20 + [100.0, 98.0, 96.0],
        high=[100.5] * 20 + [100.2, 98.2, 96.2],
        low=[99.5] * 20 + [97.8, 95.8, 93.8],
        close=[100.0] * 20 + [98.0, 96.0, 94.0],
    )
    ema = talib.EMA(series.close, timeperiod=9)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    assert atr[14] == 1.0  # every true range is 1 until bar 20, where it is 2.4
    # Wilder: (13 x 1 + 2.4) / 14 = 1.1, then (13 x 1.1 + 2.4) / 14, (13 x that + 2.4) / 14.
    assert atr[20:].tolist() == pytest.approx([1.1, 16.7 / 14, (13 * 16.7 / 14 + 2.4) / 14], rel=1e-12)
    assert ema[20:].tolist() == pytest.approx([99.6, 98.88, 97.904], rel=1e-12)
    _, _, most, trend = BOT.line(series, ATR_MODE)
    assert np.isnan(most[13])
    assert trend[13] == 0
    assert (most[14:22] == 98.0).all()  # starts at 100 - 2 x 1 on bar 14 (the ATR's first bar)
    [setup] = scan(series, ATR_MODE)
    expected_most = float(ema[22]) + 2.0 * float(atr[22])
    assert expected_most == pytest.approx(97.904 + 2 * (13 * 16.7 / 14 + 2.4) / 14, rel=1e-12)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 22 * HOUR,
        entry=94.0,
        reason="MOST flipped down after 8 bars up: EMA 9 97.9040 crossed below MOST 98.0000",
        atr=float(atr[22]),
        stop=expected_most,
        context={
            "signal": "reversal",
            "mode": "atr",
            "ema_length": 9,
            "ema": 97.904,
            "most": sig10(expected_most),
            "atr": sig10(float(atr[22])),
            "atr_mult": 2.0,
            "previous_most": 98.0,
            "previous_trend_bars": 8,  # bars 14..21
        },
        key_points=(KeyPoint(ts=T0 + 21 * HOUR, price=98.0, label="MOST crossed"),),
    )
    levels = calculate_levels(setup, RISK)
    risk = expected_most - 94.0
    assert levels.tps == pytest.approx((94.0 - 1.5 * risk, 94.0 - 2.5 * risk, 94.0 - 4.0 * risk), rel=1e-12)
    # Percent mode's faster EMA 3 (99, then 97.5 < 98 = 0.98 x 100) flips one bar earlier.
    [faster] = scan(series)
    assert (faster.direction, faster.bar_ts, faster.entry) == (Direction.SHORT, T0 + 21 * HOUR, 96.0)


def pullback_up(low_6: float = 110.0, low_5: float = 110.5, close_6: float = 113.0) -> Candles:
    """An uptrend from bar 2 (MOST 98); bar 5 gaps clear of its EMA 109.5; bar 6 dips to it and closes above.

    EMA 3: 100, 102, 105, 109.5, then (close_6 + 109.5) / 2; MOST: 98, 99.96, 102.9, 107.31, then
    max(107.31, 0.98 x EMA).
    """
    return candles(
        open_=[100.0, 100.0, 100.0, 100.0, 104.0, 111.0, 114.0],
        high=[100.5, 100.5, 100.5, 104.5, 108.5, 114.5, 114.5],
        low=[99.5, 99.5, 99.5, 99.5, 103.5, low_5, low_6],
        close=[100.0, 100.0, 100.0, 104.0, 108.0, 114.0, close_6],
    )


def test_long_pullback_to_the_ema() -> None:
    """Bar 6 (low 110 <= EMA 111.25 <= high, close 113 above) after a bar clear of its EMA: LONG at MOST."""
    series = pullback_up()
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[2:].tolist() == [100.0, 102.0, 105.0, 109.5, 111.25]
    assert series.low[5] > ema[5]  # the bar before stayed clear of its EMA
    [setup] = scan(series, PULLBACKS)
    assert setup.stop == pytest.approx(111.25 * 0.98, rel=1e-12)  # MOST 109.025
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 6 * HOUR,
        entry=113.0,
        reason="Pullback in a 5-bar MOST uptrend: touched EMA 3 111.250 and closed above it; MOST 109.025",
        atr=None,
        stop=setup.stop,
        context={
            "signal": "pullback",
            "mode": "percent",
            "ema_length": 3,
            "ema": 111.25,
            "most": 109.025,
            "percent": 2.0,
            "trend_bars": 5,
        },
        key_points=(KeyPoint(ts=T0 + 2 * HOUR, price=98.0, label="MOST trend start"),),
    )
    levels = calculate_levels(setup, RISK)
    # Risk 113 - 109.025 = 3.975.
    assert levels.tps == pytest.approx((118.9625, 122.9375, 128.9), rel=1e-12)
    assert scan(series) == []  # pullbacks are off by default


@pytest.mark.parametrize(
    ("low_6", "low_5", "close_6", "why"),
    [
        (111.5, 110.5, 113.0, "low 111.5 stays above EMA 111.25: no touch"),
        (110.0, 109.4, 113.0, "bar 5's low 109.4 touched its EMA 109.5: no pullback, already at the line"),
        (108.5, 110.5, 109.0, "close 109 below EMA 109.25: it did not close back above"),
    ],
)
def test_no_pullback_when_one_condition_falls_short(
    low_6: float, low_5: float, close_6: float, why: str
) -> None:
    """Each pullback condition just missed (touch, bar before clear of the EMA, close beyond): nothing."""
    series = pullback_up(low_6=low_6, low_5=low_5, close_6=close_6)
    _, _, _, trend = BOT.line(series, PULLBACKS)
    assert trend[6] == 1, why  # still an uptrend: no reversal either
    assert scan(series, PULLBACKS) == [], why


def test_short_pullback_to_the_ema() -> None:
    """The mirror: a downtrend; bar 4 clear below its EMA; bar 5 hits EMA 93.875, closes 93 below: SHORT."""
    series = candles(
        open_=[100.0, 100.0, 100.0, 97.0, 93.0, 92.0],
        high=[100.5, 100.5, 100.5, 97.5, 93.5, 95.0],
        low=[99.5, 99.5, 96.5, 95.5, 91.5, 91.5],
        close=[100.0, 100.0, 97.0, 96.0, 92.0, 93.0],
    )
    ema = talib.EMA(series.close, timeperiod=3)
    assert ema[2:].tolist() == [99.0, 97.5, 94.75, 93.875]
    [setup] = scan(series, PULLBACKS)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.SHORT, T0 + 5 * HOUR, 93.0)
    # MOST: 1.02 x 99 = 100.98, 99.45, 96.645, then min(96.645, 1.02 x 93.875 = 95.7525).
    assert setup.stop == pytest.approx(95.7525, rel=1e-12)
    assert setup.reason == (
        "Pullback in a 4-bar MOST downtrend: touched EMA 3 93.8750 and closed below it; MOST 95.7525"
    )
    assert setup.context == {
        "signal": "pullback",
        "mode": "percent",
        "ema_length": 3,
        "ema": 93.875,
        "most": 95.7525,
        "percent": 2.0,
        "trend_bars": 4,
    }
    assert setup.key_points == (KeyPoint(ts=T0 + 2 * HOUR, price=100.98, label="MOST trend start"),)
    levels = calculate_levels(setup, RISK)
    assert levels.tps == pytest.approx(
        (93.0 - 1.5 * 2.7525, 93.0 - 2.5 * 2.7525, 93.0 - 4.0 * 2.7525), rel=1e-12
    )


def test_line_starts_where_the_ema_does() -> None:
    """Before EMA 3 exists (bars 0, 1) the line is NaN and the trend 0; bar 2 starts down (97 < EMA 99)."""
    _, _, most, trend = BOT.line(decline_then_jump(), DEFAULTS)
    assert np.isnan(most[:2]).all()
    assert trend.tolist() == [0, 0, -1, -1, -1, -1, -1, 1]
    assert most[2:].tolist() == pytest.approx([100.98, 98.94, 96.9, 94.86, 92.82, 92.12], rel=1e-12)
    # Bar 2 of rise_then_drop closes at its EMA (100 >= 100): up.
    _, _, most, trend = BOT.line(rise_then_drop(), DEFAULTS)
    assert (trend[2], most[2]) == (1, 98.0)


def test_trailing_stop_follows_the_line_on_its_side() -> None:
    """LONG: the MOST only where the trend is up (bar 7); SHORT: where it is down (bars 2..6); else NaN."""
    data = MarketData(candles=decline_then_jump())
    _, _, most, _ = BOT.line(data.candles, DEFAULTS)
    long = BOT.trailing_stop(data, DEFAULTS, Direction.LONG)
    short = BOT.trailing_stop(data, DEFAULTS, Direction.SHORT)
    assert np.isnan(long[:7]).all()
    assert long[7] == most[7]
    assert np.isnan(short[[0, 1, 7]]).all()
    assert short[2:7].tolist() == most[2:7].tolist()


def test_placeholder_bar_never_fires() -> None:
    """The flip bar marked as an exchange placeholder candle is not a signal (nor is the bar after it)."""
    assert scan(with_placeholders(decline_then_jump(), 7)) == []
    assert scan(with_placeholders(pullback_up(), 6), PULLBACKS) == []


def test_too_short_history_gives_nothing() -> None:
    """No EMA yet (2 bars), or only the line's first bar (3 bars), or one bar: no setup at all."""
    for count in (1, 2, 3):
        assert scan(decline_then_jump().head(count)) == []
        assert scan(decline_then_jump().head(count), PULLBACKS) == []
    assert scan(rise_then_drop().head(20), ATR_MODE) == []  # ATR(14) starts at bar 14: no flip by bar 7


@pytest.mark.parametrize(
    "bad",
    [
        {"percent": 0.0},
        {"percent": 51.0},
        {"ema_length": 0},
        {"atr_mult": 0.0},
        {"atr_period": 0},
        {"min_stop_pct": -0.1},
        {"lookback": 49},
        {"mode": "sma"},
        {"ema_length": 120},  # lookback 300 < 3 x 120
        {"mode": "atr", "atr_period": 101},
        {"unknown": 1},
    ],
)
def test_params_reject_out_of_range_values(bad: dict[str, object]) -> None:
    """Out-of-range, unknown or inconsistent parameters are validation errors."""
    with pytest.raises(ValidationError):
        MostParams.model_validate(bad)


def test_params_defaults_and_needs() -> None:
    """The defaults are the published MOST (EMA 3, 2 %); needs() asks for ``lookback`` bars."""
    assert DEFAULTS.model_dump() == {
        "mode": "percent",
        "ema_length": 3,
        "percent": 2.0,
        "atr_mult": 2.0,
        "atr_period": 14,
        "pullbacks": False,
        "min_stop_pct": 0.5,
        "lookback": 300,
    }
    assert MostParams.model_validate({"mode": "atr", "atr_period": 100}).lookback == 300
    assert BOT.needs(DEFAULTS, "1h").lookback == 300


# -- real data ------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [PULLBACKS, MostParams(mode="atr", ema_length=9, pullbacks=True)])
def test_no_look_ahead_on_real_btc_15m(params: MostParams) -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(
        lambda s: BOT.scan(MarketData(candles=s), params),
        real("binance_spot/BTC_USDT-15m.csv.gz", 3000),
        min_nonempty=25,
    )


def test_trailing_stop_has_no_look_ahead() -> None:
    """The trailing line over the first t bars equals the whole series' line up to t, for both sides."""
    series = real("binance_spot/BTC_USDT-15m.csv.gz", 3000)
    for direction in Direction:
        whole = BOT.trailing_stop(MarketData(candles=series), DEFAULTS, direction)
        assert np.isfinite(whole).sum() > 1000
        for t in (3, 40, 517, 1999, 2999):
            part = BOT.trailing_stop(MarketData(candles=series.head(t)), DEFAULTS, direction)
            np.testing.assert_array_equal(part, whole[:t])


@pytest.mark.parametrize("params", [DEFAULTS, ATR_MODE])
def test_line_matches_the_rule_written_out(params: MostParams) -> None:
    """On 3,000 real bars the bot's MOST and trend equal a bar-by-bar transcription of the rule."""
    series = real("binance_usdm_perp/ETH_USDT-1h.csv.gz", 3000)
    ema = talib.EMA(series.close, timeperiod=params.ema_length)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    if params.mode == "percent":
        lower, upper = ema * (1 - 0.02), ema * (1 + 0.02)
    else:
        lower, upper = ema - 2.0 * atr, ema + 2.0 * atr
    expected_most, expected_trend = reference_most(series.close, ema, lower, upper)
    most, trend = most_line(series.close, ema, lower, upper)
    np.testing.assert_array_equal(trend, expected_trend)
    np.testing.assert_array_equal(most, expected_most)
    assert int(np.count_nonzero(trend[1:] != trend[:-1])) > 20


@pytest.mark.parametrize(
    "relative", ["binance_usdm_perp/BTC_USDT-1h.csv.gz", "binance_usdm_perp/ETH_USDT-1h.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 1h series the defaults fire on every flip and under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    ema = talib.EMA(series.close, timeperiod=3)
    most, trend = reference_most(series.close, ema, ema * (1 - 0.02), ema * (1 + 0.02))
    flips = np.flatnonzero((trend[1:] != trend[:-1]) & (trend[:-1] != 0)) + 1
    flips = flips[~series.placeholder[flips]]
    assert [s.bar_ts for s in setups] == series.ts[flips].tolist()
    for setup, i in zip(setups, flips, strict=True):
        assert setup.direction is (Direction.LONG if trend[i] == 1 else Direction.SHORT)
        assert setup.entry == float(series.close[i])
        floor = setup.entry * 0.005
        if setup.direction is Direction.LONG:
            assert ema[i] > most[i - 1] >= ema[i - 1]
            assert setup.stop == min(float(most[i]), setup.entry - floor)
        else:
            assert ema[i] < most[i - 1] <= ema[i - 1]
            assert setup.stop == max(float(most[i]), setup.entry + floor)
        assert setup.context["most"] == sig10(float(most[i]))
        assert setup.context["previous_most"] == sig10(float(most[i - 1]))
        assert setup.context["ema"] == sig10(float(ema[i]))
        assert isinstance(setup.context["previous_trend_bars"], int)
        assert setup.context["previous_trend_bars"] >= 1


def test_no_long_when_the_atr_line_is_not_a_positive_price() -> None:
    """ATR mode, 20 x ATR: a flip up whose new line (EMA - 20 x ATR) is below zero is no LONG; 2 x is."""
    series = candles(
        open_=[10.0] * 14 + [10.0, 9.0],
        high=[10.5] * 14 + [10.2, 100.5],
        low=[9.5] * 14 + [8.8, 9.0],
        close=[10.0] * 14 + [9.0, 100.0],
    )
    ema = talib.EMA(series.close, timeperiod=3)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    assert ema[14:].tolist() == [9.5, 54.75]  # bar 14 closes below its EMA: the line starts down
    huge = MostParams(mode="atr", atr_mult=20.0)
    _, _, most, trend = BOT.line(series, huge)
    assert trend[14:].tolist() == [-1, 1]
    assert most[15] == pytest.approx(54.75 - 20.0 * float(atr[15]), rel=1e-12)
    assert most[15] < 0
    assert scan(series, huge) == []
    [setup] = scan(series, MostParams(mode="atr"))
    assert (setup.direction, setup.bar_ts) == (Direction.LONG, T0 + 15 * HOUR)
    assert setup.stop == pytest.approx(54.75 - 2.0 * float(atr[15]), rel=1e-12)
