"""Tests of bots/psar_bot.py: SAR flips on hand-built series, ADX and trend-length filters, no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from bots.base import MarketData
from bots.psar_bot import PsarBot, PsarParams, trend_run_lengths
from common.types import Candles, Direction, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real, with_placeholders

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = PsarBot()
DEFAULTS = PsarParams()


def candles(
    open_: list[float], high: list[float], low: list[float], close: list[float], timeframe: str = "1h"
) -> Candles:
    """Hourly candles from T0 with volume 1000 (so none is a placeholder)."""
    step = {"1h": HOUR, "15m": HOUR // 4, "4h": 4 * HOUR}[timeframe]
    return Candles(
        symbol="BTC/USDT",
        timeframe=timeframe,
        ts=T0 + np.arange(len(close), dtype=np.int64) * step,
        open=np.array(open_),
        high=np.array(high),
        low=np.array(low),
        close=np.array(close),
        volume=np.full(len(close), 1000.0),
    )


def scan(series: Candles, params: PsarParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def decline_then_spike(flip_close: float = 169.0) -> Candles:
    """40 bars falling 1.0 a bar (high 201-k, low 199-k: a pure downtrend, ADX 100), then a bar up to 170.

    Bar 40: open 160.5, high 170, low 160 (= the downtrend's lowest low), close ``flip_close``.
    """
    k = np.arange(40, dtype=np.float64)
    return candles(
        open_=[*(200.5 - k), 160.5],
        high=[*(201.0 - k), 170.0],
        low=[*(199.0 - k), 160.0],
        close=[*(199.5 - k), flip_close],
    )


def rise_then_drop() -> Candles:
    """The mirror: 40 bars rising 1.0 a bar (high 101+k, low 99+k), then bar 40: H 140, L 130, C 131."""
    k = np.arange(40, dtype=np.float64)
    return candles(
        open_=[*(99.5 + k), 139.5],
        high=[*(101.0 + k), 140.0],
        low=[*(99.0 + k), 130.0],
        close=[*(100.5 + k), 131.0],
    )


def reference(series: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SAR(0.02, 0.2), ADX(14) and ATR(14) straight from TA-Lib."""
    sar = talib.SAR(series.high, series.low, acceleration=0.02, maximum=0.2)
    adx = talib.ADX(series.high, series.low, series.close, timeperiod=14)
    atr = talib.ATR(series.high, series.low, series.close, timeperiod=14)
    return sar, adx, atr


def test_trend_run_lengths() -> None:
    """Run lengths count up within a run and restart at 1 on every change."""
    trend = np.array([0, -1, -1, -1, 1, 1, -1], dtype=np.int64)
    assert trend_run_lengths(trend).tolist() == [1, 1, 2, 3, 1, 2, 1]


def test_long_flip_after_a_strong_decline() -> None:
    """The spike bar flips the SAR up: LONG at bar 40, entry 169, stop = the SAR (160, the decline's low)."""
    series = decline_then_spike()
    sar, adx, atr = reference(series)
    # TA-Lib puts the SAR at the prior trend's extreme on a reversal: the lowest low, 160.
    assert sar[40] == 160.0
    assert float(series.close[39]) < sar[39]  # bar 39 was still in the downtrend
    # ATR: every decline bar has a true range of 2, the spike 10 (170 - 160): (13 * 2 + 10) / 14.
    assert atr[40] == pytest.approx(36 / 14, rel=1e-12)
    assert adx[40] > 90
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 40 * HOUR,
        entry=169.0,
        reason=f"Parabolic SAR flipped up after 39 bars down; ADX {adx[40]:.1f}",
        atr=float(atr[40]),
        stop=160.0,  # 5.3 % away: wider than the 0.5 % floor
        context={
            "sar": 160.0,
            "adx": round(float(adx[40]), 4),
            "atr": float(atr[40]),
            "previous_trend_bars": 39,  # SAR exists from bar 1: bars 1..39 were below it
        },
    )


def test_stop_floor_when_the_sar_is_too_close() -> None:
    """A spike closing at 160.5, only 0.31 % above the SAR (160), gets the 0.5 % floor stop 159.6975."""
    series = decline_then_spike(flip_close=160.5)
    sar, _, _ = reference(series)
    assert sar[40] == 160.0
    [setup] = scan(series)
    assert (setup.direction, setup.bar_ts, setup.entry) == (Direction.LONG, T0 + 40 * HOUR, 160.5)
    assert setup.stop == pytest.approx(160.5 * (1 - 0.005), rel=1e-12)
    assert setup.stop == pytest.approx(159.6975, rel=1e-12)
    assert setup.context["sar"] == 160.0
    # With no floor the stop is the SAR itself.
    [unfloored] = scan(series, PsarParams(min_stop_pct=0.0))
    assert unfloored.stop == 160.0


def test_short_flip_after_a_strong_rise() -> None:
    """The mirror: the drop bar flips the SAR down: SHORT at bar 40, entry 131, stop = the rise's high 140."""
    series = rise_then_drop()
    sar, adx, atr = reference(series)
    assert sar[40] == 140.0
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 40 * HOUR,
        entry=131.0,
        reason=f"Parabolic SAR flipped down after 39 bars up; ADX {adx[40]:.1f}",
        atr=float(atr[40]),
        stop=140.0,
        context={
            "sar": 140.0,
            "adx": round(float(adx[40]), 4),
            "atr": float(atr[40]),
            "previous_trend_bars": 39,
        },
    )
    # The floor works upwards for a SHORT: 131 * 1.1 = 144.1 is further than the SAR.
    [floored] = scan(series, PsarParams(min_stop_pct=10.0))
    assert floored.stop == pytest.approx(144.1, rel=1e-12)


def choppy_then_flip() -> Candles:
    """40 bars zig-zagging 100/101 (ADX near 4), five bars easing down, then a bar up to 104."""
    close = [100.0 if i % 2 == 0 else 101.0 for i in range(40)]
    open_ = [100.5, *close[:-1]]
    high = [c + 1.0 for c in close]
    low = [c - 1.0 for c in close]
    for c in (99.5, 98.8, 98.1, 97.4, 96.7):
        open_.append(close[-1])
        high.append(max(open_[-1], c) + 0.3)
        low.append(min(open_[-1], c) - 0.3)
        close.append(c)
    open_.append(96.7)
    high.append(104.5)
    low.append(96.5)
    close.append(104.0)
    return candles(open_, high, low, close)


def test_no_signal_when_adx_is_below_the_minimum() -> None:
    """A flip ending a 4-bar downtrend in a choppy market (ADX < 30) is not a signal; with adx_min 0 it is."""
    series = choppy_then_flip()
    sar, adx, _ = reference(series)
    last = len(series) - 1
    trend = np.where(series.close > sar, 1, -1)
    assert (trend[last - 4 : last] == -1).all()
    assert trend[last - 5] == 1
    assert trend[last] == 1
    assert adx[last] < 30
    assert scan(series) == []
    [setup] = scan(series, PsarParams(adx_min=0))
    assert (setup.bar_ts, setup.direction, setup.entry) == (T0 + last * HOUR, Direction.LONG, 104.0)
    assert setup.context["previous_trend_bars"] == 4


def test_no_signal_after_a_trend_shorter_than_min_trend_bars() -> None:
    """A flip back down after only 2 bars up (a whipsaw) is not a signal, even with ADX far above 30."""
    base = decline_then_spike()
    series = candles(
        open_=[*base.open, 169.0, 167.0],
        high=[*base.high, 171.0, 168.0],
        low=[*base.low, 165.0, 150.0],
        close=[*base.close, 168.0, 151.0],
    )
    sar, adx, _ = reference(series)
    assert (series.close[40:42] > sar[40:42]).all()  # bars 40 and 41 above the SAR: 2 bars up
    assert series.close[42] < sar[42]  # bar 42 flips down
    assert sar[42] == 171.0  # the uptrend's highest high
    assert adx[42] > 80
    assert [s.bar_ts for s in scan(series)] == [T0 + 40 * HOUR]
    setups = scan(series, PsarParams(min_trend_bars=2))
    assert [(s.bar_ts, s.direction) for s in setups] == [
        (T0 + 40 * HOUR, Direction.LONG),
        (T0 + 42 * HOUR, Direction.SHORT),
    ]
    assert (setups[1].entry, setups[1].stop) == (151.0, 171.0)
    assert setups[1].context["previous_trend_bars"] == 2


def test_too_short_history_gives_nothing() -> None:
    """Fewer than 2 x adx_period + 1 bars: no setup at all (ADX is undefined)."""
    assert scan(decline_then_spike().tail(28)) == []


def test_placeholder_bar_never_fires() -> None:
    """The same spike marked as an exchange placeholder candle is not a signal."""
    assert scan(with_placeholders(decline_then_spike(), 40)) == []


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
    sar, adx, _ = reference(series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(series.close[i])
        assert setup.context["sar"] == float(sar[i])
        assert setup.context["adx"] == round(float(adx[i]), 4)
        assert float(adx[i]) >= 30
        assert isinstance(setup.context["previous_trend_bars"], int)
        assert setup.context["previous_trend_bars"] >= 3
        assert setup.stop is not None
        if setup.direction is Direction.LONG:
            assert series.close[i] > sar[i]
            assert series.close[i - 1] <= sar[i - 1]
            assert setup.stop == min(float(sar[i]), setup.entry - setup.entry * 0.005)
        else:
            assert series.close[i] <= sar[i]
            assert series.close[i - 1] > sar[i - 1]
            assert setup.stop == max(float(sar[i]), setup.entry + setup.entry * 0.005)


def test_trailing_stop_is_the_sar_on_the_trade_side_without_look_ahead() -> None:
    """The LONG trail is the SAR where price is above it (NaN elsewhere), the SHORT trail the mirror;
    the trail over the first t bars equals the full one's first t values."""
    series = real("binance_spot/BTC_USDT-4h.csv.gz", 400)
    sar, _, _ = reference(series)
    long_trail = BOT.trailing_stop(MarketData(candles=series), DEFAULTS, Direction.LONG)
    short_trail = BOT.trailing_stop(MarketData(candles=series), DEFAULTS, Direction.SHORT)
    above = series.close > sar
    below = series.close < sar
    assert np.array_equal(long_trail[above], sar[above])
    assert np.isnan(long_trail[~above]).all()
    assert np.array_equal(short_trail[below], sar[below])
    assert np.isnan(short_trail[~below]).all()
    assert above.sum() > 50
    assert below.sum() > 50
    for t in (60, 137, 251, 399):
        partial = BOT.trailing_stop(MarketData(candles=series.head(t)), DEFAULTS, Direction.LONG)
        np.testing.assert_array_equal(partial, long_trail[:t])
    # While a long trend lasts the trail only rises.
    runs = trend_run_lengths(np.where(above, 1, -1).astype(np.int64))
    for i in np.flatnonzero(above[1:] & above[:-1] & (runs[1:] > 1)) + 1:
        assert long_trail[i] >= long_trail[i - 1]
