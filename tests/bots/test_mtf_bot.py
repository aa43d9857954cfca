"""Tests of bots/mtf_bot.py: trend turns confirmed by higher timeframes, closed higher candles only."""

from __future__ import annotations

from bisect import bisect_right
from functools import cache

import numpy as np
import pydantic
import pytest
import talib

from bots.base import DataNeeds, MarketData
from bots.mtf_bot import DEFAULT_HIGHER, MtfBot, MtfParams, trend_state
from common.market.replay import aggregate
from common.types import Candles, Direction, Setup, timeframe_ms
from tests.bots.checks import assert_fires_rarely, real
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE = 60_000
HOUR = 60 * MINUTE
QUARTER = 15 * MINUTE
BOT = MtfBot()
DEFAULTS = MtfParams()
RISK = {
    "sl_method": "atr",
    "sl_atr_mult": 1.5,
    "tp_method": "atr",
    "tp_multiples": [2.0, 3.0, 4.5],
    "min_rr": 1.3,
}
#: The hand-built base series' turn bar (index 60) opens at 16:15 and closes at 16:30.
TURN = 60
TURN_TS = T0 + 16 * HOUR + 15 * MINUTE


def candles(timeframe: str, first_ts: int, close: np.ndarray, *, mirror: float | None = None) -> Candles:
    """Candles from ``first_ts``: open = previous close, high / low 0.5 beyond the body, volume 1000.

    With ``mirror`` every price p becomes ``mirror - p`` (highs and lows swap): the same moves upside down.
    """
    close = np.asarray(close, dtype=np.float64)
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + 0.5
    low = np.minimum(open_, close) - 0.5
    if mirror is not None:
        open_, high, low, close = mirror - open_, mirror - low, mirror - high, mirror - close
    return Candles(
        symbol="BTC/USDT",
        timeframe=timeframe,
        ts=first_ts + np.arange(close.size, dtype=np.int64) * timeframe_ms(timeframe),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=np.full(close.size, 1000.0),
    )


def base_series(turn_close: float = 168.0, *, shift_ms: int = 0, mirror: float | None = None) -> Candles:
    """61 15m bars: 50 falling 200 -> 151, 10 rising 152 -> 161 (close < SMA 50, RSI > 50), then bar 60.

    The SMA 50 at bar 60 is (sum of bars 11..59 = 8195 + turn_close) / 50, so bar 60 closes above it
    exactly when turn_close > 8195 / 49 = 167.245: 168 turns bullish, 167 does not. Bar 60 opens at
    TURN_TS + ``shift_ms``.
    """
    close = np.r_[200.0 - np.arange(50), 152.0 + np.arange(10), turn_close]
    return candles("15m", TURN_TS + shift_ms - TURN * QUARTER, close, mirror=mirror)


def zigzag(count: int, start: float, up: float, down: float) -> np.ndarray:
    """``count`` closes from ``start``, alternately ``up`` and ``down`` (net rising: RSI 14 about 68)."""
    steps = np.where(np.arange(1, count) % 2 == 1, up, -down)
    closes: np.ndarray = np.r_[start, start + np.cumsum(steps)]
    return closes


def hourly(close: np.ndarray, last_ts: int = T0 + 15 * HOUR, mirror: float | None = None) -> Candles:
    """1h candles whose last one opens at ``last_ts`` (15:00: the last 1h candle closed at 16:30)."""
    return candles("1h", last_ts - (len(close) - 1) * HOUR, close, mirror=mirror)


def four_hourly(close: np.ndarray, last_ts: int = T0 + 12 * HOUR, mirror: float | None = None) -> Candles:
    """4h candles whose last one opens at ``last_ts`` (12:00: the last 4h candle closed at 16:30)."""
    return candles("4h", last_ts - (len(close) - 1) * 4 * HOUR, close, mirror=mirror)


H1_UP = zigzag(70, 100.0, 2.0, 1.0)  # SMA 50 = 123, close 136: bullish
H2_UP = zigzag(70, 1000.0, 20.0, 10.0)  # SMA 50 = 1230, close 1360: bullish


def scan(base: Candles, h1: Candles | None, h2: Candles | None, params: MtfParams = DEFAULTS) -> list[Setup]:
    """The bot's setups with ``h1`` as the 1h and ``h2`` as the 4h series (None: not handed at all)."""
    others = {name: series for name, series in (("1h", h1), ("4h", h2)) if series is not None}
    return list(BOT.scan(MarketData(candles=base, other_timeframes=others), params))


def sig(value: float) -> float:
    """A price as the context rounds it: 8 significant digits."""
    return float(f"{value:.8g}")


def indicators(series: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SMA 50, RSI 14 and ATR 14 straight from TA-Lib."""
    sma = talib.SMA(series.close, timeperiod=50)
    rsi = talib.RSI(series.close, timeperiod=14)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    return sma, rsi, atr


# -- parameters and data needs ---------------------------------------------------------------------


def test_trend_state_needs_both_conditions_and_defined_values() -> None:
    """Bullish needs close > SMA and RSI > 50, bearish both below; equality, mixed or NaN is neutral (0)."""
    close = np.array([101.0, 101.0, 99.0, 99.0, 100.0, 101.0, 101.0])
    sma = np.array([100.0, 100.0, 100.0, 100.0, 100.0, np.nan, 100.0])
    rsi = np.array([50.1, 50.0, 49.9, 60.0, 70.0, 70.0, np.nan])
    assert trend_state(close, sma, rsi).tolist() == [1, 0, -1, 0, 0, 0, 0]


def test_needs_follow_the_default_table() -> None:
    """needs() asks for lookback 300 bars, the table's two higher timeframes and 120 bars of each."""
    assert DEFAULT_HIGHER == {
        "5m": ("15m", "1h"),
        "15m": ("1h", "4h"),
        "30m": ("4h", "1d"),
        "1h": ("4h", "1d"),
        "4h": ("1d", "1w"),
    }
    assert BOT.needs(DEFAULTS, "15m") == DataNeeds(
        lookback=300, extra_timeframes=("1h", "4h"), extra_lookback=120
    )
    assert BOT.needs(DEFAULTS, "4h").extra_timeframes == ("1d", "1w")
    assert BOT.needs(DEFAULTS, "15m").lookback_for("4h", "15m") == 120


def test_configured_higher_timeframes_replace_the_table() -> None:
    """An explicit pair is used as given, on a timeframe the table has and on one it has not (8h)."""
    params = MtfParams(higher_timeframes=("30m", "4h"))
    assert BOT.needs(params, "15m").extra_timeframes == ("30m", "4h")
    assert BOT.needs(MtfParams(higher_timeframes=["1d", "1w"]), "8h").extra_timeframes == ("1d", "1w")


def test_no_default_for_a_timeframe_outside_the_table() -> None:
    """On 1m (not in the table) with higher_timeframes None, needs() and scan() raise a clear ValueError."""
    with pytest.raises(
        ValueError,
        match=r"no default higher timeframes for 1m \(defaults exist for 5m, 15m, 30m, 1h, 4h\): set params",
    ):
        BOT.needs(DEFAULTS, "1m")
    one_minute = candles("1m", T0, np.full(60, 100.0))
    with pytest.raises(ValueError, match="no default higher timeframes for 1m"):
        BOT.scan(MarketData(candles=one_minute), DEFAULTS)


@pytest.mark.parametrize("pair", [("15m", "4h"), ("5m", "1h"), ("1h", "4h")])
def test_a_higher_timeframe_not_coarser_than_the_base_is_an_error(pair: tuple[str, str]) -> None:
    """A configured higher timeframe at or below a 1h base timeframe: ValueError from needs() and scan()."""
    params = MtfParams(higher_timeframes=pair)
    with pytest.raises(
        ValueError, match=f"higher timeframe {pair[0]} is not coarser than the bot's timeframe 1h"
    ):
        BOT.needs(params, "1h")
    base = candles("1h", T0, np.full(60, 100.0))
    with pytest.raises(ValueError, match="is not coarser"):
        BOT.scan(MarketData(candles=base), params)


@pytest.mark.parametrize(
    "bad",
    [
        {"sma_period": 1},
        {"rsi_period": 1},
        {"atr_period": 0},
        {"min_strength": 1},
        {"min_strength": 4},
        {"lookback": 5001},
        {"lookback": 50},  # SMA 50 at t and at t-1 needs 51 bars
        {"higher_lookback": 49},
        {"higher_timeframes": ["4h"]},
        {"higher_timeframes": ["1h", "4h", "1d"]},
        {"higher_timeframes": ["4h", "1h"]},  # the nearer one first
        {"higher_timeframes": ["4h", "4h"]},
        {"higher_timeframes": ["2h", "4h"]},  # MEXC has no 2h
        {"higher_timeframes": ["1h", "1M"]},
        {"rsi_level": 55},  # unknown parameter
    ],
)
def test_params_reject_out_of_range_and_unknown_values(bad: dict[str, object]) -> None:
    """Out-of-range periods, strengths, lookbacks, malformed higher timeframes and unknown keys are errors."""
    with pytest.raises(pydantic.ValidationError):
        MtfParams.model_validate(bad)


def test_params_defaults() -> None:
    """The defaults are the documented ones; the lookbacks' floors follow the periods."""
    assert DEFAULTS.model_dump() == {
        "sma_period": 50,
        "rsi_period": 14,
        "atr_period": 14,
        "min_strength": 2,
        "higher_timeframes": None,
        "lookback": 300,
        "higher_lookback": 120,
    }
    assert MtfParams(lookback=52, higher_lookback=50).lookback == 52


# -- hand-built series ----------------------------------------------------------------------------


def test_long_turn_confirmed_by_both_higher_timeframes() -> None:
    """Bar 60 closes 168 above its SMA 167.26 with RSI 69: LONG strength 3; ATR levels 1.5 / 2, 3, 4.5 ATR."""
    base, h1, h2 = base_series(), hourly(H1_UP), four_hourly(H2_UP)
    sma, rsi, atr = indicators(base)
    assert (base.close[TURN - 1], sma[TURN - 1]) == (161.0, 167.7)  # bar 59: below its SMA, not bullish
    assert rsi[TURN - 1] > 50  # neutral, not bearish
    assert sma[TURN] == pytest.approx(167.26, abs=1e-12)
    assert rsi[TURN] > 50
    h1_sma, h1_rsi = talib.SMA(h1.close, 50)[-1], talib.RSI(h1.close, 14)[-1]
    h2_sma, h2_rsi = talib.SMA(h2.close, 50)[-1], talib.RSI(h2.close, 14)[-1]
    assert (h1.close[-1], h1_sma, h2.close[-1], h2_sma) == (136.0, 123.0, 1360.0, 1230.0)
    assert h1_rsi > 50
    assert h2_rsi > 50
    # ATR: bars 47..59 have true range 2 (a 1.0 body and 0.5 wicks), bar 60 7 + 1 = 8; Wilder from bar 14.
    assert atr[TURN] == pytest.approx(atr[TURN - 1] * 13 / 14 + 8 / 14, rel=1e-12)
    [setup] = scan(base, h1, h2)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=TURN_TS,
        entry=168.0,
        reason=f"15m turned bullish: close 168 > SMA 50 167.26, RSI {rsi[TURN]:.1f}; 1h bull, 4h bull: "
        "strength 3 (STRONG)",
        atr=float(atr[TURN]),
        context={
            "strength": 3,
            "base_timeframe": "15m",
            "base_state": "bull",
            "base_sma": 167.26,
            "base_rsi": round(float(rsi[TURN]), 2),
            "higher1_timeframe": "1h",
            "higher1_state": "bull",
            "higher1_sma": 123.0,
            "higher1_rsi": round(float(h1_rsi), 2),
            "higher2_timeframe": "4h",
            "higher2_state": "bull",
            "higher2_sma": 1230.0,
            "higher2_rsi": round(float(h2_rsi), 2),
            "atr": sig(float(atr[TURN])),
        },
    )
    assert setup.context["base_rsi"] == 69.02
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    a = float(atr[TURN])
    assert (levels.direction, levels.entry) == (Direction.LONG, 168.0)
    assert levels.sl == 168.0 - 1.5 * a
    assert levels.tps == (168.0 + 2.0 * a, 168.0 + 3.0 * a, 168.0 + 4.5 * a)
    assert levels.risk_reward(0) == pytest.approx(2.0 / 1.5, rel=1e-12)  # 1.33 >= min_rr 1.3


def test_short_turn_is_the_mirror() -> None:
    """The series upside down: SHORT at bar 60, entry 232 below SMA 232.74, 1h and 4h bearish: strength 3."""
    base = base_series(mirror=400.0)
    h1, h2 = hourly(H1_UP, mirror=400.0), four_hourly(H2_UP, mirror=3000.0)
    sma, rsi, atr = indicators(base)
    assert sma[TURN] == pytest.approx(232.74, abs=1e-12)
    assert rsi[TURN] < 50
    h1_sma, h1_rsi = talib.SMA(h1.close, 50)[-1], talib.RSI(h1.close, 14)[-1]
    h2_sma, h2_rsi = talib.SMA(h2.close, 50)[-1], talib.RSI(h2.close, 14)[-1]
    assert (h1.close[-1], h1_sma, h2.close[-1], h2_sma) == (264.0, 277.0, 1640.0, 1770.0)
    assert h1_rsi < 50
    assert h2_rsi < 50
    [setup] = scan(base, h1, h2)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=TURN_TS,
        entry=232.0,
        reason=f"15m turned bearish: close 232 < SMA 50 232.74, RSI {rsi[TURN]:.1f}; 1h bear, 4h bear: "
        "strength 3 (STRONG)",
        atr=float(atr[TURN]),
        context={
            "strength": 3,
            "base_timeframe": "15m",
            "base_state": "bear",
            "base_sma": 232.74,
            "base_rsi": round(float(rsi[TURN]), 2),
            "higher1_timeframe": "1h",
            "higher1_state": "bear",
            "higher1_sma": 277.0,
            "higher1_rsi": round(float(h1_rsi), 2),
            "higher2_timeframe": "4h",
            "higher2_state": "bear",
            "higher2_sma": 1770.0,
            "higher2_rsi": round(float(h2_rsi), 2),
            "atr": sig(float(atr[TURN])),
        },
    )
    assert setup.context["base_rsi"] == 30.98
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    a = float(atr[TURN])
    assert levels.sl == 232.0 + 1.5 * a
    assert levels.tps == (232.0 - 2.0 * a, 232.0 - 3.0 * a, 232.0 - 4.5 * a)


def test_strength_two_when_only_the_first_higher_timeframe_agrees() -> None:
    """1h bullish, 4h bearish: LONG strength 2 (no STRONG); with min_strength 3 it is not a signal."""
    base, h1, h2 = base_series(), hourly(H1_UP), four_hourly(H2_UP, mirror=3000.0)
    [setup] = scan(base, h1, h2)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.LONG, TURN_TS, 168.0)
    assert setup.reason.endswith("; 1h bull, 4h bear: strength 2")
    assert (setup.context["strength"], setup.context["higher2_state"]) == (2, "bear")
    assert scan(base, h1, h2, MtfParams(min_strength=3)) == []


def test_no_signal_when_only_the_second_higher_timeframe_agrees() -> None:
    """1h bearish, 4h bullish: strength 1 (4h alone does not confirm), so no signal."""
    base, h1, h2 = base_series(), hourly(H1_UP, mirror=400.0), four_hourly(H2_UP)
    assert scan(base, h1, h2) == []


def test_near_miss_close_just_below_its_sma() -> None:
    """Bar 60 closing 167, 0.24 below its SMA 167.24 (RSI 67, both higher bullish), is no turn: no signal."""
    base = base_series(turn_close=167.0)
    sma, rsi, _ = indicators(base)
    assert sma[TURN] == pytest.approx(167.24, abs=1e-12)
    assert base.close[TURN] < sma[TURN]
    assert rsi[TURN] > 50
    assert scan(base, hourly(H1_UP), four_hourly(H2_UP)) == []


def test_near_miss_first_higher_timeframe_neutral() -> None:
    """1h ending down 7.5 (over its SMA, RSI 49.5: neutral) does not confirm; down 7 (RSI 50.4) does."""
    neutral = np.r_[H1_UP, 128.5]
    sma, rsi = talib.SMA(neutral, 50), talib.RSI(neutral, 14)
    assert (neutral[-1], sma[-1]) == (128.5, 123.37)
    assert 49.5 < rsi[-1] < 50
    assert scan(base_series(), hourly(neutral), four_hourly(H2_UP)) == []
    bullish = np.r_[H1_UP, 129.0]
    assert 50 < talib.RSI(bullish, 14)[-1] < 50.5
    [setup] = scan(base_series(), hourly(bullish), four_hourly(H2_UP))
    assert (setup.direction, setup.context["strength"], setup.context["higher1_sma"]) == (
        Direction.LONG,
        3,
        123.38,
    )


def test_a_forming_higher_candle_never_counts() -> None:
    """The 1h candle 16:00-17:00 flips 1h bullish: it does not count for a bar closing 16:30, does at 17:00.

    The full 1h series (as a backtest has it) holds that candle; the 4h series holds its 16:00-20:00
    candle, a crash that would make 4h bearish. At 16:30 the last closed 1h candle (15:00) is bearish:
    strength 1, no signal, the same as with only the closed candles. A turn bar closing at 17:00 sees
    the 16:00 1h candle closed (a candle closing at the base bar's close counts) but not the 4h crash:
    strength 3.
    """
    h1_close = np.r_[H1_UP[::-1], 130.0]  # falling to 100 (SMA 113, RSI 32), then 16:00 closes 130
    h1 = hourly(h1_close, last_ts=T0 + 16 * HOUR)
    h1_sma, h1_rsi = talib.SMA(h1_close, 50), talib.RSI(h1_close, 14)
    assert trend_state(h1_close, h1_sma, h1_rsi)[-2:].tolist() == [-1, 1]  # the forming candle flips it
    h2_close = np.r_[H2_UP, 900.0]  # 12:00 closes 1360 (bullish); 16:00 crashes to 900
    h2 = four_hourly(h2_close, last_ts=T0 + 16 * HOUR)
    h2_sma, h2_rsi = talib.SMA(h2_close, 50), talib.RSI(h2_close, 14)
    assert trend_state(h2_close, h2_sma, h2_rsi)[-2:].tolist() == [1, -1]

    at_1630 = base_series()
    assert at_1630.close_time(TURN) == T0 + 16 * HOUR + 30 * MINUTE
    assert scan(at_1630, h1, h2) == []
    assert scan(at_1630, h1.head(len(h1) - 1), h2.head(len(h2) - 1)) == []
    # The same 1h history without its forming candle, but bullish at 15:00: the turn would fire.
    assert len(scan(at_1630, hourly(H1_UP), h2.head(len(h2) - 1))) == 1

    at_1700 = base_series(shift_ms=30 * MINUTE)
    assert at_1700.close_time(TURN) == h1.close_time(-1) == T0 + 17 * HOUR
    [setup] = scan(at_1700, h1, h2)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.LONG, TURN_TS + 30 * MINUTE, 168.0)
    assert setup.context["strength"] == 3
    assert (setup.context["higher1_state"], setup.context["higher1_sma"]) == ("bull", sig(float(h1_sma[-1])))
    assert setup.context["higher1_rsi"] == round(float(h1_rsi[-1]), 2)
    assert (setup.context["higher2_state"], setup.context["higher2_sma"]) == ("bull", 1230.0)
    assert scan(at_1700, h1, h2.head(len(h2) - 1)) == [setup]


def test_a_missing_or_empty_higher_timeframe_gives_nothing() -> None:
    """Without the 4h series (or with an empty one) the scan returns [] instead of raising."""
    base, h1, h2 = base_series(), hourly(H1_UP), four_hourly(H2_UP)
    assert scan(base, h1, None) == []
    assert scan(base, None, h2) == []
    assert scan(base, h1, h2.head(0)) == []


def test_higher_timeframe_without_a_closed_candle_or_warm_up_gives_nothing() -> None:
    """A 4h series with under 50 closed candles, or none closed yet by 16:30, has no state: no signal."""
    base, h1 = base_series(), hourly(H1_UP)
    assert scan(base, h1, four_hourly(H2_UP[-49:])) == []
    assert scan(base, h1, four_hourly(H2_UP, last_ts=T0 + 16 * HOUR + 69 * 4 * HOUR)) == []
    assert len(scan(base, h1, four_hourly(H2_UP[-50:]))) == 1


def test_mislabelled_higher_series_is_an_error() -> None:
    """A 1h series handed under the key '4h' is a wiring error: ValueError, not a silently wrong mapping."""
    base, h1 = base_series(), hourly(H1_UP)
    with pytest.raises(ValueError, match=r"other_timeframes\['4h'\] holds 1h candles"):
        scan(base, h1, h1)


def test_placeholder_bar_never_fires() -> None:
    """The turn bar marked as an exchange placeholder candle is not a signal."""
    series = base_series()
    flags = np.zeros(len(series), dtype=np.bool_)
    flags[TURN] = True
    marked = Candles(
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
    assert scan(marked, hourly(H1_UP), four_hourly(H2_UP)) == []


def test_too_short_history_gives_nothing() -> None:
    """No turn out of the warm-up: bar 49 (first SMA 50) is bullish but bar 48 had no SMA; <= 50 bars: []."""
    jump = candles("15m", TURN_TS - 50 * QUARTER, np.r_[200.0 - np.arange(49), 260.0, 261.0])
    sma, rsi, _ = indicators(jump)
    assert np.isnan(sma[48])
    assert (jump.close[49] > sma[49], rsi[49] > 50) == (True, True)  # bullish on its first defined bar
    assert (jump.close[50] > sma[50], rsi[50] > 50) == (True, True)  # still bullish: no turn at bar 50
    assert scan(jump, hourly(H1_UP), four_hourly(H2_UP)) == []
    assert scan(base_series().tail(50), hourly(H1_UP), four_hourly(H2_UP)) == []
    assert scan(base_series().head(0), hourly(H1_UP), four_hourly(H2_UP)) == []


# -- real data ------------------------------------------------------------------------------------


@cache
def with_higher(relative: str, rows: int | None = None) -> tuple[Candles, Candles, Candles]:
    """A real 15m series and its 1h and 4h candles aggregated from it (as the exchange would build them)."""
    base = real(relative, rows)
    return base, aggregate(base, "1h"), aggregate(base, "4h")


def closed_by(series: Candles, when_ms: int) -> Candles:
    """The candles of ``series`` closed at or before ``when_ms``: what the runner hands at that moment."""
    return series.head(int(np.searchsorted(series.ts + series.period_ms, when_ms, side="right")))


def test_no_look_ahead_on_real_btc_15m_with_aggregated_higher_timeframes() -> None:
    """At 50 cuts t, base[:t] with the higher series closed by then (or whole) gives the full scan's start."""
    base, h1, h2 = with_higher("binance_spot/BTC_USDT-15m.csv.gz", 3000)
    everything = scan(base, h1, h2)
    index_of = {int(ts): i for i, ts in enumerate(base.ts)}
    fired = sorted({index_of[s.bar_ts] + 1 for s in everything})
    assert len(fired) >= 50
    rng = np.random.default_rng(20240101)
    on_signals = rng.choice(fired, size=25, replace=False).tolist()
    at_random = rng.choice(np.arange(40, len(base) + 1), size=25, replace=False).tolist()
    compared_nonempty = 0
    for t in (*on_signals, *at_random):
        last_ts, now = int(base.ts[t - 1]), base.close_time(t - 1)
        expected = [s for s in everything if s.bar_ts <= last_ts]
        handed = scan(base.head(t), closed_by(h1, now), closed_by(h2, now))
        assert handed == expected, f"cut at bar {t}: differs from the full scan's prefix"
        assert scan(base.head(t), h1, h2) == expected, f"cut at bar {t}: later higher candles changed it"
        compared_nonempty += any(s.bar_ts == last_ts for s in expected)
    assert compared_nonempty >= 25


def reference_states(series: Candles) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(state, SMA 50, RSI 14) of every candle of ``series``: TA-Lib's values, the rule written out."""
    sma = talib.SMA(series.close, 50)
    rsi = talib.RSI(series.close, 14)
    states = [
        1 if close > s and r > 50 else -1 if close < s and r < 50 else 0
        for close, s, r in zip(series.close.tolist(), sma.tolist(), rsi.tolist(), strict=True)
    ]
    return states, sma, rsi


@pytest.mark.parametrize("relative", ["binance_spot/BTC_USDT-15m.csv.gz", "binance_spot/ETH_USDT-15m.csv.gz"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 15m series (1h, 4h aggregated) it fires on under 5 % of bars; each setup checks out."""
    base, h1, h2 = with_higher(relative)
    setups = scan(base, h1, h2)
    assert_fires_rarely(setups, base)
    assert {s.context["strength"] for s in setups} == {2, 3}
    assert {s.direction for s in setups} == {Direction.LONG, Direction.SHORT}
    atr = talib.ATR(base.high, base.low, base.close, 14)
    states, sma, rsi = reference_states(base)
    states1, sma1, rsi1 = reference_states(h1)
    states2, sma2, rsi2 = reference_states(h2)
    index_of = {int(ts): i for i, ts in enumerate(base.ts)}
    names = {1: "bull", -1: "bear", 0: "neutral"}
    h1_closes, h2_closes = (h1.ts + h1.period_ms).tolist(), (h2.ts + h2.period_ms).tolist()
    for setup in setups:
        i = index_of[setup.bar_ts]
        sign = setup.direction.sign
        assert (states[i], states[i - 1] != sign) == (sign, True)
        assert (setup.entry, setup.atr) == (float(base.close[i]), float(atr[i]))
        # The last 1h / 4h candle closed by the base candle's close.
        j1 = bisect_right(h1_closes, base.close_time(i)) - 1
        j2 = bisect_right(h2_closes, base.close_time(i)) - 1
        assert states1[j1] == sign
        assert setup.context == {
            "strength": 3 if states2[j2] == sign else 2,
            "base_timeframe": "15m",
            "base_state": names[sign],
            "base_sma": sig(float(sma[i])),
            "base_rsi": round(float(rsi[i]), 2),
            "higher1_timeframe": "1h",
            "higher1_state": names[sign],
            "higher1_sma": sig(float(sma1[j1])),
            "higher1_rsi": round(float(rsi1[j1]), 2),
            "higher2_timeframe": "4h",
            "higher2_state": names[states2[j2]],
            "higher2_sma": sig(float(sma2[j2])),
            "higher2_rsi": round(float(rsi2[j2]), 2),
            "atr": sig(float(atr[i])),
        }
