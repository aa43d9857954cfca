"""Tests of bots/candlestick_bot.py: TA-Lib patterns on hand-built series, filters, levels, no look-ahead."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import talib
import talib.abstract
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.candlestick_bot import (
    DEFAULT_PATTERNS,
    CandlestickBot,
    CandlestickParams,
    pattern_label,
    pattern_span,
)
from common.types import Candles, Direction, KeyPoint, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = CandlestickBot()
DEFAULTS = CandlestickParams()
RISK_BLOCK: dict[str, Any] = {
    "sl_method": "structure",
    "tp_method": "r",
    "tp_multiples": [1.5, 2.5],
    "min_rr": 1.5,
}
RISK = RiskSettings.model_validate(RISK_BLOCK)

Bar = tuple[float, float, float, float]  # open, high, low, close


def candles(bars: list[Bar], volume: list[float] | None = None, placeholder: Sequence[int] = ()) -> Candles:
    """Hourly candles from T0 (volume 1000 unless given); ``placeholder``: the bars marked as placeholders."""
    ohlc = np.array(bars, dtype=np.float64)
    flags = np.zeros(len(bars), dtype=np.bool_)
    flags[list(placeholder)] = True
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(len(bars), dtype=np.int64) * HOUR,
        open=ohlc[:, 0],
        high=ohlc[:, 1],
        low=ohlc[:, 2],
        close=ohlc[:, 3],
        volume=np.array(volume if volume is not None else [1000.0] * len(bars)),
        placeholder=flags,
    )


def uptrend(count: int) -> list[Bar]:
    """White candles climbing 1.0 a bar: close 100 + k, body 0.8, shadows 0.4 (no pattern of the set)."""
    return [(99.2 + k, 100.4 + k, 98.8 + k, 100.0 + k) for k in range(count)]


def downtrend(count: int) -> list[Bar]:
    """Black candles falling 1.0 a bar: close 200 - k, body 0.8, shadows 0.4."""
    return [(200.8 - k, 201.2 - k, 199.6 - k, 200.0 - k) for k in range(count)]


def scan(series: Candles, params: CandlestickParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def sma50(series: Candles, index: int) -> float:
    """SMA(close, 50) at ``index`` straight from TA-Lib."""
    return float(talib.SMA(series.close, timeperiod=50)[index])


def sig10(value: float) -> float:
    """``value`` to 10 significant digits, as the context rounds the SMA."""
    return float(f"{value:.10g}")


def talib_value(name: str, series: Candles, index: int) -> int:
    """TA-Lib's pattern value at ``index``."""
    return int(getattr(talib, name)(series.open, series.high, series.low, series.close)[index])


# -- parameters -----------------------------------------------------------------------------------


def test_defaults_and_needs() -> None:
    """An empty params block gives the documented defaults; needs() asks for ``lookback`` bars."""
    params = CandlestickParams.model_validate({})
    assert params.model_dump() == {
        "patterns": DEFAULT_PATTERNS,
        "min_strength": 100,
        "trend_filter": True,
        "sma_period": 50,
        "stop_buffer_pct": 0.1,
        "lookback": 100,
    }
    assert DEFAULT_PATTERNS == (
        "CDLHAMMER",
        "CDLSHOOTINGSTAR",
        "CDLENGULFING",
        "CDLMORNINGSTAR",
        "CDLEVENINGSTAR",
        "CDLPIERCING",
        "CDLDARKCLOUDCOVER",
        "CDL3WHITESOLDIERS",
        "CDL3BLACKCROWS",
    )
    assert BOT.needs(params, "1h") == DataNeeds(lookback=100)
    assert BOT.name == "candlestick_bot"
    assert BOT.params_model is CandlestickParams


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"min_strength": 0}, "greater than or equal to 1"),
        ({"min_strength": 201}, "less than or equal to 200"),
        ({"sma_period": 1}, "greater than or equal to 2"),
        ({"stop_buffer_pct": -0.1}, "greater than or equal to 0"),
        ({"stop_buffer_pct": 10.5}, "less than or equal to 10"),
        ({"lookback": 49}, "lookback 49 is too short: the SMA and the patterns need 50 bars"),
        ({"patterns": []}, "at least 1 item"),
        (
            {"patterns": ["CDLHAMMER", "CDLHAMER"]},
            "unknown TA-Lib pattern 'CDLHAMER' (did you mean CDLHAMMER?)",
        ),
        ({"patterns": ["RSI"]}, "unknown TA-Lib pattern 'RSI'"),
        ({"patterns": ["CDLDOJI"]}, "pattern 'CDLDOJI' has no direction"),
        ({"patterns": ["CDLHAMMER", "CDLHAMMER"]}, "patterns listed twice: CDLHAMMER"),
        ({"trend_filter": True, "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_params_reject_bad_values(block: dict[str, Any], message: str) -> None:
    """Out-of-range numbers, unknown or non-directional pattern names and unknown keys are errors."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        CandlestickParams.model_validate(block)


def test_lookback_minimum_follows_the_filter_and_patterns() -> None:
    """Without the SMA the minimum lookback is the patterns' TA-Lib lookback + 1 (13 + 1 for the crows)."""
    abstract: Any = talib.abstract
    assert abstract.Function("CDL3BLACKCROWS").lookback == 13
    assert CandlestickParams(trend_filter=False, lookback=14).lookback == 14
    with pytest.raises(ValidationError, match="need 14 bars"):
        CandlestickParams(trend_filter=False, lookback=13)
    assert CandlestickParams(trend_filter=False, patterns=("CDLENGULFING",), lookback=3).lookback == 3


def test_spans_and_labels() -> None:
    """The span table of the rule (1, 2, 3 bars), 3 for a name not in it; labels short or TA-Lib's."""
    assert [pattern_span(name) for name in DEFAULT_PATTERNS] == [1, 1, 2, 3, 3, 2, 2, 3, 3]
    assert pattern_span("CDLSOMETHINGNEW") == 3
    assert pattern_label("CDLHAMMER") == "Hammer"
    assert pattern_label("CDLHARAMI") == "Harami Pattern"


def test_talib_sign_conventions_on_real_data() -> None:
    """TA-Lib's hammer is only +100, shooting star only -100, engulfing +-100 or +-80 (as the bot assumes)."""
    series = real("binance_usdm_perp/BTC_USDT-1h.csv.gz")
    ohlc = (series.open, series.high, series.low, series.close)
    assert set(np.unique(talib.CDLHAMMER(*ohlc)).tolist()) == {0, 100}
    assert set(np.unique(talib.CDLSHOOTINGSTAR(*ohlc)).tolist()) == {-100, 0}
    assert set(np.unique(talib.CDLENGULFING(*ohlc)).tolist()) == {-100, -80, 0, 80, 100}


# -- hand-built patterns --------------------------------------------------------------------------


def hammer_in_uptrend() -> Candles:
    """60 white candles up to close 159, then bar 60: a hammer O 158.0 H 158.35 L 156.0 C 158.3."""
    return candles([*uptrend(60), (158.0, 158.35, 156.0, 158.3)])


def test_hammer_above_the_sma_is_a_long() -> None:
    """A hammer closing above SMA 50: LONG at its close, stop 0.1 % of entry below its low, TPs 1.5R, 2.5R."""
    series = hammer_in_uptrend()
    assert talib_value("CDLHAMMER", series, 60) == 100
    sma = sma50(series, 60)
    assert sma == pytest.approx(135.466, rel=1e-12)  # mean of closes 111..159 and 158.3
    [setup] = scan(series)
    stop = 156.0 - 158.3 * 0.001
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 60 * HOUR,
        entry=158.3,
        reason=f"Bullish Hammer; close 158.3 above SMA 50 {sma:.8g}",
        stop=stop,
        context={
            "patterns": "CDLHAMMER",
            "CDLHAMMER": 100,
            "pattern_bars": 1,
            "pattern_low": 156.0,
            "sma": sig10(sma),
            "close_vs_sma_pct": round((158.3 / sma - 1) * 100, 4),
        },
        key_points=(KeyPoint(ts=T0 + 60 * HOUR, price=156.0, label="Hammer low"),),
    )
    assert setup.reason == "Bullish Hammer; close 158.3 above SMA 50 135.466"
    assert setup.stop == pytest.approx(155.8417, rel=1e-12)
    levels = calculate_levels(setup, RISK)
    risk = 158.3 - 155.8417  # 2.4583
    assert levels.direction is Direction.LONG
    assert levels.entry == 158.3
    assert levels.sl == pytest.approx(155.8417, rel=1e-12)
    assert levels.tps == pytest.approx((158.3 + 1.5 * risk, 158.3 + 2.5 * risk), rel=1e-12)
    assert levels.tps == pytest.approx((161.98745, 164.44575), rel=1e-12)


def test_shooting_star_below_the_sma_is_a_short() -> None:
    """A shooting star gapping above a downtrend's last body, below SMA 50: SHORT, stop above its high."""
    series = candles([*downtrend(60), (142.0, 144.0, 141.85, 141.9)])
    assert talib_value("CDLSHOOTINGSTAR", series, 60) == -100
    sma = sma50(series, 60)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 60 * HOUR,
        entry=141.9,
        reason=f"Bearish Shooting star; close 141.9 below SMA 50 {sma:.8g}",
        stop=144.0 + 141.9 * 0.001,
        context={
            "patterns": "CDLSHOOTINGSTAR",
            "CDLSHOOTINGSTAR": -100,
            "pattern_bars": 1,
            "pattern_high": 144.0,
            "sma": sig10(sma),
            "close_vs_sma_pct": round((141.9 / sma - 1) * 100, 4),
        },
        key_points=(KeyPoint(ts=T0 + 60 * HOUR, price=144.0, label="Shooting star high"),),
    )
    levels = calculate_levels(setup, RISK)
    risk = 144.1419 - 141.9  # 2.2419
    assert levels.sl == pytest.approx(144.1419, rel=1e-12)
    assert levels.tps == pytest.approx((141.9 - 1.5 * risk, 141.9 - 2.5 * risk), rel=1e-12)


def test_hammer_below_the_sma_is_filtered_out() -> None:
    """A hammer at the end of a downtrend (close below SMA 50) is no LONG; without the trend filter it is."""
    series = candles([*downtrend(60), (140.5, 140.85, 138.5, 140.8)])
    assert talib_value("CDLHAMMER", series, 60) == 100
    sma = sma50(series, 60)
    assert series.close[60] < sma
    assert scan(series) == []
    [setup] = scan(series, CandlestickParams(trend_filter=False))
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.LONG, T0 + 60 * HOUR, 140.8)
    assert setup.reason == "Bullish Hammer"
    assert setup.stop == pytest.approx(138.5 - 0.1408, rel=1e-12)
    assert setup.context["sma"] == sig10(sma)


def engulfing(open_: float = 158.3, volume: float = 1500.0) -> Candles:
    """59 white candles, bar 59 small black (O 158.9 C 158.4 L 158.1), bar 60 white O ``open_`` C 159.5."""
    bars = [*uptrend(59), (158.9, 159.0, 158.1, 158.4), (open_, 159.6, 158.25, 159.5)]
    return candles(bars, volume=[1000.0] * 60 + [volume])


def test_bullish_engulfing_with_more_volume() -> None:
    """Engulfing on more volume than the bar before: LONG, stop below the 2-bar pattern's low (on bar 59)."""
    series = engulfing()
    assert talib_value("CDLENGULFING", series, 60) == 100
    sma = sma50(series, 60)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 60 * HOUR,
        entry=159.5,
        reason=f"Bullish Engulfing, volume 1.50x previous; close 159.5 above SMA 50 {sma:.8g}",
        stop=158.1 - 159.5 * 0.001,
        context={
            "patterns": "CDLENGULFING",
            "CDLENGULFING": 100,
            "pattern_bars": 2,
            "pattern_low": 158.1,
            "volume": 1500.0,
            "previous_volume": 1000.0,
            "volume_vs_previous": 1.5,
            "sma": sig10(sma),
            "close_vs_sma_pct": round((159.5 / sma - 1) * 100, 4),
        },
        key_points=(KeyPoint(ts=T0 + 59 * HOUR, price=158.1, label="Engulfing low"),),
    )
    levels = calculate_levels(setup, RISK)
    risk = 159.5 - 157.9405
    assert levels.sl == pytest.approx(157.9405, rel=1e-12)
    assert levels.tps == pytest.approx((159.5 + 1.5 * risk, 159.5 + 2.5 * risk), rel=1e-12)


def test_engulfing_on_equal_volume_does_not_fire() -> None:
    """Near miss: the same engulfing on exactly the previous bar's volume is no signal; one unit more is."""
    assert talib_value("CDLENGULFING", engulfing(volume=1000.0), 60) == 100
    assert scan(engulfing(volume=1000.0)) == []
    [setup] = scan(engulfing(volume=1001.0))
    assert setup.context["volume_vs_previous"] == 1.001


def test_weaker_engulfing_grade_needs_min_strength_80() -> None:
    """An engulfing opening at the previous close is TA-Lib's +80 grade: ignored at 100, a LONG at 80."""
    series = engulfing(open_=158.4)
    assert talib_value("CDLENGULFING", series, 60) == 80
    assert scan(series) == []
    [setup] = scan(series, CandlestickParams(min_strength=80))
    assert setup.direction is Direction.LONG
    assert setup.context["CDLENGULFING"] == 80


def morning_star() -> Candles:
    """Uptrend, a long black bar 58 (L 154.1), a small black star gapping down, a white bar engulfing it."""
    bars = [
        *uptrend(58),
        (157.5, 157.6, 154.1, 155.0),
        (154.6, 154.7, 154.35, 154.4),
        (154.3, 156.6, 154.25, 156.5),
    ]
    return candles(bars, volume=[1000.0] * 60 + [2500.0])


def test_morning_star_and_engulfing_agree() -> None:
    """Two bullish patterns on one bar: one LONG naming both, its stop below the star's 3 bars."""
    series = morning_star()
    assert talib_value("CDLMORNINGSTAR", series, 60) == 100
    assert talib_value("CDLENGULFING", series, 60) == 100
    assert talib_value("CDLENGULFING", series, 58) == -100  # on equal volume: not counted
    sma = sma50(series, 60)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 60 * HOUR,
        entry=156.5,
        reason=f"Bullish Engulfing + Morning star, volume 2.50x previous; close 156.5 above SMA 50 {sma:.8g}",
        stop=154.1 - 156.5 * 0.001,
        context={
            "patterns": "CDLENGULFING,CDLMORNINGSTAR",
            "CDLENGULFING": 100,
            "CDLMORNINGSTAR": 100,
            "pattern_bars": 3,
            "pattern_low": 154.1,
            "volume": 2500.0,
            "previous_volume": 1000.0,
            "volume_vs_previous": 2.5,
            "sma": sig10(sma),
            "close_vs_sma_pct": round((156.5 / sma - 1) * 100, 4),
        },
        key_points=(KeyPoint(ts=T0 + 58 * HOUR, price=154.1, label="Engulfing + Morning star low"),),
    )
    # Engulfing alone spans 2 bars: its stop goes below bar 60's low 154.25 instead.
    [alone] = scan(series, CandlestickParams(patterns=("CDLENGULFING",)))
    assert alone.stop == pytest.approx(154.25 - 0.1565, rel=1e-12)


def test_evening_star_and_engulfing_short() -> None:
    """The mirror: an evening star with a bearish engulfing below SMA 50, stop above bar 58's high 145.9."""
    bars = [
        *downtrend(58),
        (142.5, 145.9, 142.4, 145.0),
        (145.4, 145.65, 145.3, 145.6),
        (145.7, 145.75, 143.4, 143.5),
    ]
    series = candles(bars, volume=[1000.0] * 60 + [1200.0])
    assert talib_value("CDLEVENINGSTAR", series, 60) == -100
    assert talib_value("CDLENGULFING", series, 60) == -100
    sma = sma50(series, 60)
    [setup] = scan(series)
    assert setup.direction is Direction.SHORT
    assert setup.entry == 143.5
    assert setup.reason == (
        f"Bearish Engulfing + Evening star, volume 1.20x previous; close 143.5 below SMA 50 {sma:.8g}"
    )
    assert setup.stop == pytest.approx(145.9 + 0.1435, rel=1e-12)
    assert setup.context["patterns"] == "CDLENGULFING,CDLEVENINGSTAR"
    assert (setup.context["CDLENGULFING"], setup.context["CDLEVENINGSTAR"]) == (-100, -100)
    assert setup.key_points == (
        KeyPoint(ts=T0 + 58 * HOUR, price=145.9, label="Engulfing + Evening star high"),
    )
    levels = calculate_levels(setup, RISK)
    risk = 146.0435 - 143.5
    assert levels.tps == pytest.approx((143.5 - 1.5 * risk, 143.5 - 2.5 * risk), rel=1e-12)


def hammer_engulfing_previous(volume: float) -> Candles:
    """Uptrend, a tiny white bar 59, then a black hammer (bar 60) whose body engulfs bar 59's."""
    bars = [*uptrend(59), (158.0, 158.2, 157.9, 158.1), (158.2, 158.22, 155.9, 157.95)]
    return candles(bars, volume=[1000.0] * 60 + [volume])


def test_disagreeing_patterns_give_no_signal() -> None:
    """A hammer (+100) that is also a bearish engulfing (-100) on more volume: none; on less, a LONG."""
    series = hammer_engulfing_previous(volume=1200.0)
    assert talib_value("CDLHAMMER", series, 60) == 100
    assert talib_value("CDLENGULFING", series, 60) == -100
    assert scan(series) == []
    [setup] = scan(hammer_engulfing_previous(volume=800.0))
    assert (setup.direction, setup.context["patterns"]) == (Direction.LONG, "CDLHAMMER")
    assert "volume" not in setup.context


def test_only_the_configured_patterns_count() -> None:
    """With patterns [CDLENGULFING] the hammer is ignored."""
    assert scan(hammer_in_uptrend(), CandlestickParams(patterns=("CDLENGULFING",))) == []


def test_placeholder_bar_never_fires() -> None:
    """The hammer bar marked as a placeholder is no signal, nor an engulfing whose first bar is one."""
    hammer = hammer_in_uptrend()
    bars = list(zip(hammer.open, hammer.high, hammer.low, hammer.close, strict=True))
    assert scan(candles(bars, placeholder=[60])) == []
    series = engulfing()
    bars = list(zip(series.open, series.high, series.low, series.close, strict=True))
    assert scan(candles(bars, volume=list(series.volume), placeholder=[59])) == []
    assert len(scan(candles(bars, volume=list(series.volume), placeholder=[58]))) == 1


def test_too_short_history_gives_nothing() -> None:
    """Fewer bars than the SMA period (the hammer is bar 48 of 49) or the patterns' lookbacks: no setup."""
    assert scan(hammer_in_uptrend().tail(49)) == []
    assert scan(hammer_in_uptrend().tail(11), CandlestickParams(trend_filter=False)) == []
    assert len(scan(hammer_in_uptrend().tail(50))) == 1


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


def test_runner_window_gives_the_full_scans_setup() -> None:
    """On every bar of a real series, a scan of the last ``lookback`` bars finds the full scan's setup."""
    series = real("binance_spot/ETH_USDT-15m.csv.gz", 2000)
    full = {setup.bar_ts: setup for setup in scan(series)}
    assert len(full) > 40
    for t in range(DEFAULTS.lookback, len(series) + 1):
        window = series.slice(t - DEFAULTS.lookback, t)
        newest = int(series.ts[t - 1])
        found = [s for s in scan(window) if s.bar_ts == newest]
        assert found == ([full[newest]] if newest in full else []), f"bar {t - 1}"


@pytest.mark.parametrize(
    "relative", ["binance_spot/BTC_USDT-4h.csv.gz", "binance_usdm_perp/ETH_USDT-1h.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    ohlc = (series.open, series.high, series.low, series.close)
    values = {name: getattr(talib, name)(*ohlc) for name in DEFAULT_PATTERNS}
    sma = talib.SMA(series.close, timeperiod=50)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(series.close[i])
        names = str(setup.context["patterns"]).split(",")
        sign = setup.direction.sign
        for name in names:
            assert setup.context[name] == int(values[name][i])
            assert sign * int(values[name][i]) >= 100
        if "CDLENGULFING" in names:
            assert series.volume[i] > series.volume[i - 1]
        assert sign * (series.close[i] - sma[i]) > 0
        span = max(pattern_span(name) for name in names)
        assert setup.context["pattern_bars"] == span
        if setup.direction is Direction.LONG:
            low = float(series.low[i - span + 1 : i + 1].min())
            assert setup.stop == low - setup.entry * 0.001
        else:
            high = float(series.high[i - span + 1 : i + 1].max())
            assert setup.stop == high + setup.entry * 0.001
