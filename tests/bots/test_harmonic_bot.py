"""Tests of bots/harmonic_bot.py: hand-built XABCD zigzags, filters, levels, no look-ahead, real data."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import talib

from bots.base import MarketData
from bots.harmonic_bot import PATTERNS, RATIO_NAMES, HarmonicBot, HarmonicParams, Ratios, pattern_errors
from common.pivots import zigzag
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real, with_placeholders
from tp_sl_calculator import LevelsRejected, RejectReason, RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = HarmonicBot()
DEFAULTS = HarmonicParams()
#: The risk block reported for global_config.json: stop at Setup.stop, TPs at 0.382 / 0.618 / 1.0 of AD.
RISK = {
    "sl_method": "structure",
    "tp_method": "fibonacci",
    "fib_extensions": [0.382, 0.618, 1.0],
    "min_rr": 1.0,
}
#: The rule read on confirmed pivots (see the module docstring): RSI at D's bar, close within 3.5 ATR
#: of D. The defaults fire on no 1h series of the shared data; this override is what they would use.
CONFIRMED_READING = HarmonicParams(rsi_bar="d", d_zone_atr=3.5)

#: Bars of the hand-built legs: 30 bars down to X, 20 up to A, 12 down to B, 8 up to C, 10 down to D.
LEG_BARS = (30, 20, 12, 8, 10)
X_BAR, A_BAR, B_BAR, C_BAR, D_BAR = 30, 50, 62, 70, 80


def candles(open_: list[float], high: list[float], low: list[float], close: list[float]) -> Candles:
    """Hourly candles from T0 with volume 1000 (so none is a placeholder)."""
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(len(close), dtype=np.int64) * HOUR,
        open=np.array(open_),
        high=np.array(high),
        low=np.array(low),
        close=np.array(close),
        volume=np.full(len(close), 1000.0),
    )


Bar = tuple[float, float, float, float]


def after_d(d: float, last_close: float = 0.35, extra: tuple[Bar, ...] = (), wick: float = 12.0) -> list[Bar]:
    """Three bars after a low D: two quiet bars drifting down, then a bar whose wick reaches D + ``wick``
    (past 3 ATR at D, so it confirms D) and closes at D + ``last_close``; then ``extra`` (offsets from D).
    """
    bars = [(0.5, 0.75, 0.2, 0.45), (0.45, 0.7, 0.15, 0.4), (0.4, wick, 0.1, last_close), *extra]
    return [(d + o, d + h, d + lo, d + c) for o, h, lo, c in bars]


def pattern_series(
    x: float, a: float, b: float, c: float, d: float, tail: list[Bar] | None = None
) -> Candles:
    """A bullish XABCD: from 150 straight legs to X, A, B, C, D (bars ``LEG_BARS``), then ``tail`` (OHLC).

    Each leg's closes move evenly and stop 0.5 short of the pivot; candles open at the previous close
    with 0.25 wicks; the pivot bar's low (high) is the pivot price itself. The default tail is
    :func:`after_d`: D is confirmed on the last bar, whose close is 0.35 above D.
    """
    closes = [150.0]
    pivots = []
    for price, bars in zip((x, a, b, c, d), LEG_BARS, strict=True):
        start = closes[-1]
        end = price + 0.5 if price < start else price - 0.5
        closes += [start + (end - start) * (i + 1) / bars for i in range(bars)]
        pivots.append((len(closes) - 1, price, price < start))
    opens = [closes[0], *closes[:-1]]
    highs = [max(o, c) + 0.25 for o, c in zip(opens, closes, strict=True)]
    lows = [min(o, c) - 0.25 for o, c in zip(opens, closes, strict=True)]
    for i, price, is_low in pivots:
        if is_low:
            lows[i] = price
        else:
            highs[i] = price
    for o, h, lo, cl in after_d(d) if tail is None else tail:
        opens.append(o)
        highs.append(h)
        lows.append(lo)
        closes.append(cl)
    return candles(opens, highs, lows, closes)


def mirrored(series: Candles, around: float = 300.0) -> Candles:
    """The series reflected in price (p -> around - p): highs become lows, a bullish pattern bearish."""
    return candles(
        list(around - series.open),
        list(around - series.low),
        list(around - series.high),
        list(around - series.close),
    )


def scan(series: Candles, params: HarmonicParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def indicators(series: Candles) -> tuple[np.ndarray, np.ndarray]:
    """ATR(14) and RSI(14) straight from TA-Lib."""
    return (
        talib.ATR(series.high, series.low, series.close, timeperiod=14),
        talib.RSI(series.close, timeperiod=14),
    )


def key_points(series: Candles, prices: tuple[float, ...], bars: tuple[int, ...]) -> tuple[KeyPoint, ...]:
    """X, A, B, C, D at their bars."""
    return tuple(
        KeyPoint(ts=int(series.ts[bar]), price=price, label=label)
        for bar, price, label in zip(bars, prices, "XABCD", strict=True)
    )


# -- the pattern table -----------------------------------------------------------------------------


def ratios(**columns: list[float]) -> Ratios:
    """A Ratios of hand-picked columns."""
    return Ratios(**{name: np.array(values) for name, values in columns.items()})


def test_each_pattern_at_its_ideal_ratios_matches_itself_with_zero_error() -> None:
    """One column per pattern at its ideal ratios (gates at their midpoints): that pattern wins, error 0."""
    columns: dict[str, list[float]] = {name: [] for name in RATIO_NAMES}
    for pattern in PATTERNS:
        for name in RATIO_NAMES:
            window = pattern.windows.get(name)
            if window is None:
                value = 0.3  # not checked by this pattern: a value no other pattern's windows accept
            elif window.ideal is None:
                value = (window.low + window.high) / 2
            else:
                value = window.ideal
            columns[name].append(value)
    errors = pattern_errors(ratios(**columns))
    assert errors.shape == (8, 8)
    assert errors.argmin(axis=0).tolist() == list(range(8))
    assert errors.min(axis=0).tolist() == [0.0] * 8
    assert [p.name for p in PATTERNS] == [
        "Gartley",
        "Bat",
        "Butterfly",
        "Crab",
        "Deep Crab",
        "Shark",
        "Cypher",
        "AB=CD",
    ]


def test_two_matching_patterns_the_smaller_error_wins_and_patterns_filters() -> None:
    """XAB 0.615, XAD 0.786, ABC 1.272 is a Gartley (error 0.003) and a Cypher (0.115): Gartley wins."""
    both = ratios(xab=[0.615], xad=[0.786], abc=[1.272], bcd=[1.0], cd_ab=[1.5])
    errors = pattern_errors(both)
    gartley, cypher = 0, 6
    assert errors[gartley, 0] == pytest.approx(0.003, abs=1e-12)
    assert errors[cypher, 0] == pytest.approx(0.115, abs=1e-12)
    assert np.isinf(np.delete(errors[:, 0], [gartley, cypher])).all()
    assert int(errors[:, 0].argmin()) == gartley
    only_cypher = pattern_errors(both, ("cypher",))
    assert np.isinf(only_cypher[gartley, 0])
    assert only_cypher[cypher, 0] == errors[cypher, 0]


def test_window_bounds_are_inclusive_and_the_error_cap_bounds_open_windows() -> None:
    """XAB exactly 0.61 / 0.625 is a Gartley, 0.6099 is not; a Bat's XAD 0.78 is over its 0.10 error cap."""
    column = ratios(xab=[0.61, 0.625, 0.6099], xad=[0.786] * 3, abc=[0.3] * 3, bcd=[0.3] * 3, cd_ab=[0.3] * 3)
    assert np.isfinite(pattern_errors(column)[0]).tolist() == [True, True, False]
    bat = ratios(xab=[0.441, 0.441], xad=[0.787, 0.785], abc=[0.3] * 2, bcd=[0.3] * 2, cd_ab=[0.3] * 2)
    assert np.isfinite(pattern_errors(bat)[1]).tolist() == [True, False]


# -- hand-built patterns ---------------------------------------------------------------------------


def test_bullish_gartley_on_a_hand_built_zigzag() -> None:
    """X 100, A 140, B 115.2, C 127.6, D 108.4: a bullish Gartley on D's confirming bar; its levels."""
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    t = len(series) - 1
    atr, rsi = indicators(series)
    # The zigzag (3 x ATR, legs >= 3 bars) finds the top of the start (bar 14, the first with an ATR),
    # then X..D; D is confirmed by the wick of the last bar (D + 12 > D + 3 x ATR at D).
    pivots = zigzag(series.high, series.low, min_move=3.0 * atr, min_bars=3)
    assert pivots.index.tolist() == [14, X_BAR, A_BAR, B_BAR, C_BAR, D_BAR]
    assert pivots.confirmed_at.tolist()[-1] == t == D_BAR + 3
    assert 3.0 * atr[D_BAR] <= 12.0
    assert rsi[t] <= 30
    xab = abs(115.2 - 140.0) / abs(100.0 - 140.0)
    xad = abs(108.4 - 140.0) / abs(100.0 - 140.0)
    abc = abs(127.6 - 115.2) / abs(140.0 - 115.2)
    bcd = abs(108.4 - 127.6) / abs(115.2 - 127.6)
    cd_ab = abs(108.4 - 127.6) / abs(115.2 - 140.0)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + t * HOUR,
        entry=108.4 + 0.05 * float(atr[t]),
        reason="Bullish Gartley: XAB 0.620, XAD 0.790, ABC 0.50, BCD 1.55",
        atr=float(atr[t]),
        stop=108.4 - 0.5 * (127.6 - 108.4),
        swing=(108.4, 140.0),
        context={
            "pattern": "Gartley",
            "xab": round(xab, 4),
            "xad": round(xad, 4),
            "abc": round(abc, 4),
            "bcd": round(bcd, 4),
            "cd_ab": round(cd_ab, 4),
            "error": round(abs(xab - 0.618) + abs(xad - 0.786), 4),
            "rsi": round(float(rsi[t]), 2),
            "atr": float(f"{float(atr[t]):.10g}"),
            "x": 100.0,
            "a": 140.0,
            "b": 115.2,
            "c": 127.6,
            "d": 108.4,
            "d_confirmed_bars_ago": 0,
            "close_from_d_atr": round((float(series.close[t]) - 108.4) / float(atr[t]), 3),
        },
        key_points=key_points(
            series, (100.0, 140.0, 115.2, 127.6, 108.4), (X_BAR, A_BAR, B_BAR, C_BAR, D_BAR)
        ),
    )
    assert setup.context["error"] == 0.006
    # Levels: stop at Setup.stop (98.8), TPs at the 0.382 / 0.618 / 1.0 retracements of AD from D.
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(
        direction=Direction.LONG,
        entry=setup.entry,
        sl=108.4 - 0.5 * (127.6 - 108.4),
        tps=(108.4 + 0.382 * (140.0 - 108.4), 108.4 + 0.618 * (140.0 - 108.4), 140.0),
    )
    assert levels.sl == pytest.approx(98.8, abs=1e-12)
    assert levels.tps[:2] == pytest.approx((120.4712, 127.9288), abs=1e-12)
    # R multiples instead: TP1 at 2R from the same entry and stop.
    r_levels = calculate_levels(
        setup, RiskSettings.model_validate({**RISK, "tp_method": "r", "tp_multiples": [2.0]})
    )
    assert r_levels.tps == (setup.entry + 2.0 * (setup.entry - levels.sl),)


def test_bearish_gartley_is_the_mirror() -> None:
    """The same zigzag reflected (X 200, A 160, B 184.8, C 172.4, D 191.6): a bearish Gartley, SHORT."""
    series = mirrored(pattern_series(100.0, 140.0, 115.2, 127.6, 108.4))
    t = len(series) - 1
    atr, rsi = indicators(series)
    assert rsi[t] >= 70
    x, a, b, c, d = 300.0 - 100.0, 300.0 - 140.0, 300.0 - 115.2, 300.0 - 127.6, 300.0 - 108.4
    xab, xad = abs(b - a) / abs(x - a), abs(d - a) / abs(x - a)
    [setup] = scan(series)
    assert (setup.direction, setup.bar_ts) == (Direction.SHORT, T0 + t * HOUR)
    assert setup.reason == "Bearish Gartley: XAB 0.620, XAD 0.790, ABC 0.50, BCD 1.55"
    assert setup.entry == d - 0.05 * float(atr[t])
    assert setup.stop == d + 0.5 * abs(d - c)
    assert setup.swing == (a, d)
    assert setup.atr == float(atr[t])
    assert setup.context["xab"] == round(xab, 4)
    assert setup.context["error"] == round(abs(xab - 0.618) + abs(xad - 0.786), 4)
    assert setup.context["rsi"] == round(float(rsi[t]), 2)
    assert setup.context["close_from_d_atr"] == round((series.close[t] - d) / atr[t], 3)
    assert setup.key_points == key_points(series, (x, a, b, c, d), (X_BAR, A_BAR, B_BAR, C_BAR, D_BAR))
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(
        direction=Direction.SHORT,
        entry=setup.entry,
        sl=d + 0.5 * abs(d - c),
        tps=(d - 0.382 * (d - a), d - 0.618 * (d - a), d - 1.0 * (d - a)),
    )


def test_ab_equals_cd_names_its_leg_ratio() -> None:
    """A 140, B 120, C 132, D 112 (AB = CD = 20) after X 98: a bullish AB=CD with error 0."""
    series = pattern_series(98.0, 140.0, 120.0, 132.0, 112.0)
    [setup] = scan(series)
    assert setup.reason == "Bullish AB=CD: XAB 0.476, XAD 0.667, ABC 0.60, BCD 1.67, CD/AB 1.00"
    assert setup.context["pattern"] == "AB=CD"
    assert (setup.context["cd_ab"], setup.context["error"]) == (1.0, 0.0)
    assert setup.stop == 112.0 - 0.5 * 20.0
    assert setup.swing == (112.0, 140.0)


def test_xab_just_outside_the_gartley_window_does_not_fire() -> None:
    """B at XAB 0.627 (window 0.61-0.625) fits no pattern: nothing; at XAB 0.624 the Gartley fires."""
    # C keeps ABC 0.5 and D stays at 108.4; no other pattern's windows hold (AB=CD: CD/AB 0.76).
    outside = pattern_series(
        100.0, 140.0, 140.0 - 0.627 * 40.0, 140.0 - 0.627 * 40.0 + 0.5 * 0.627 * 40.0, 108.4
    )
    assert scan(outside) == []
    inside = pattern_series(
        100.0, 140.0, 140.0 - 0.624 * 40.0, 140.0 - 0.624 * 40.0 + 0.5 * 0.624 * 40.0, 108.4
    )
    [setup] = scan(inside)
    assert setup.reason.startswith("Bullish Gartley: XAB 0.624, XAD 0.790")


def test_close_just_outside_the_d_zone_does_not_fire() -> None:
    """The confirming bar closing 0.01 beyond D + 0.5 ATR: nothing; 0.01 inside: the setup."""
    probe = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    t = len(probe) - 1
    # The last bar's true range is its high - low (the previous close lies inside it), so its ATR does
    # not depend on its close.
    atr_t = float(indicators(probe)[0][t])
    edge = 0.5 * atr_t
    for offset, fires in ((edge + 0.01, False), (edge - 0.01, True)):
        series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4, after_d(108.4, last_close=offset))
        atr, rsi = indicators(series)
        assert float(atr[t]) == atr_t
        assert rsi[t] <= 30
        assert len(scan(series)) == fires
        assert len(scan(series, HarmonicParams(d_zone_atr=(offset + 0.02) / atr_t))) == 1


def test_rsi_threshold_is_inclusive_and_can_be_read_at_d() -> None:
    """rsi_oversold at exactly RSI(t) fires, a hair below does not; rsi_bar 'd' reads RSI at D's bar."""
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    t = len(series) - 1
    _, rsi = indicators(series)
    assert len(scan(series, HarmonicParams(rsi_oversold=float(rsi[t])))) == 1
    assert scan(series, HarmonicParams(rsi_oversold=float(rsi[t]) - 1e-9)) == []
    at_d = HarmonicParams(rsi_bar="d", rsi_oversold=float(rsi[D_BAR]))
    [setup] = scan(series, at_d)
    assert setup.context["rsi"] == round(float(rsi[D_BAR]), 2)
    assert scan(series, HarmonicParams(rsi_bar="d", rsi_oversold=float(rsi[D_BAR]) - 1e-9)) == []
    # 100 / 0 turn the filter off: a bearish reading passes too.
    assert len(scan(mirrored(series), HarmonicParams(rsi_oversold=100.0, rsi_overbought=0.0))) == 1


def test_a_later_bar_in_the_window_fires_once_and_not_after_max_bars_since_d() -> None:
    """Confirming bar closes 1.6 above D (out of the zone), the next ones inside: one setup, on the first."""
    # A wick of 7 (3 x ATR at D is 6.90) confirms D without becoming a pivot itself within the window
    # (the 12 of the other tests is confirmed as a high 3 bars later, which ends D's window there).
    extra: tuple[Bar, ...] = (
        (1.6, 1.8, 0.6, 0.9),
        (0.9, 1.1, 0.5, 0.8),
        (0.8, 1.0, 0.4, 0.7),
        (0.7, 0.9, 0.3, 0.6),
    )
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4, after_d(108.4, 1.6, extra, wick=7.0))
    confirm = D_BAR + 3
    atr, rsi = indicators(series)
    assert 3.0 * atr[D_BAR] <= 7.0
    assert zigzag(series.high, series.low, min_move=3.0 * atr).index.tolist()[-1] == D_BAR
    assert abs(series.close[confirm] - 108.4) > 0.5 * atr[confirm]
    for bar in range(confirm + 1, confirm + 5):
        assert abs(series.close[bar] - 108.4) <= 0.5 * atr[bar]
        assert rsi[bar] <= 30
    [setup] = scan(series)
    assert setup.bar_ts == T0 + (confirm + 1) * HOUR
    assert setup.context["d_confirmed_bars_ago"] == 1
    assert setup.entry == 108.4 + 0.05 * float(atr[confirm + 1])
    assert scan(series, HarmonicParams(max_bars_since_d=0)) == []
    # Without the first in-zone bar the next one fires.
    assert [s.bar_ts for s in scan(with_placeholders(series, confirm + 1))] == [T0 + (confirm + 2) * HOUR]
    # Three more bars out of the zone: the first in-zone bar is 4 after the confirmation, one too late.
    out: Bar = (1.6, 1.8, 1.4, 1.6)
    late = pattern_series(
        100.0, 140.0, 115.2, 127.6, 108.4, after_d(108.4, 1.6, (out, out, out, extra[1]), 7.0)
    )
    assert scan(late) == []
    [setup] = scan(late, HarmonicParams(max_bars_since_d=4))
    assert setup.bar_ts == T0 + (confirm + 4) * HOUR


def test_placeholder_bar_never_fires() -> None:
    """The confirming bar flagged as an exchange placeholder is not a signal."""
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    assert len(scan(series)) == 1
    assert scan(with_placeholders(series, len(series) - 1)) == []


def test_too_short_history_gives_nothing() -> None:
    """Too few bars for ATR / RSI, or a history ending before D is confirmed: no setup."""
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    assert scan(series.head(14)) == []
    assert scan(series.head(D_BAR + 3)) == []  # D is confirmed on the bar after this history
    assert scan(series.head(0)) == []


def test_percent_zigzag_finds_the_same_pattern() -> None:
    """With zigzag_pct 5 instead of 3 ATR the hand-built legs (>= 10 %) give the same pivots and setup."""
    series = pattern_series(100.0, 140.0, 115.2, 127.6, 108.4)
    pivots = BOT.pivots(MarketData(candles=series), HarmonicParams(zigzag_pct=5.0))
    assert pivots.index.tolist()[1:] == [X_BAR, A_BAR, B_BAR, C_BAR, D_BAR]
    assert scan(series, HarmonicParams(zigzag_pct=5.0)) == scan(series)


def test_params_reject_unknown_and_out_of_range_values() -> None:
    """Unknown keys, out-of-range numbers, unknown or repeated patterns and a bad rsi_bar are errors."""
    bad_values: list[dict[str, object]] = [
        {"unknown": 1},
        {"zigzag_atr_mult": 0},
        {"zigzag_pct": 0},
        {"min_leg_bars": 0},
        {"rsi_oversold": 101},
        {"rsi_overbought": -1},
        {"max_bars_since_d": -1},
        {"d_zone_atr": -0.1},
        {"stop_cd_fraction": 0},
        {"lookback": 99},
        {"patterns": []},
        {"patterns": ["gartley", "gartley"]},
        {"patterns": ["wolfe"]},
        {"rsi_bar": "x"},
    ]
    for bad in bad_values:
        with pytest.raises(pydantic.ValidationError):
            HarmonicParams.model_validate(bad)
    assert HarmonicParams.model_validate({"patterns": ["bat", "abcd"]}).patterns == ("bat", "abcd")
    assert BOT.needs(DEFAULTS, "1h").lookback == 1000


# -- real data -------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_5m() -> None:
    """At 50 cut points t, scanning the first t bars gives the setups on bars < t of scanning all 12,000.

    Filters loosened (RSI off, zone 3.5 ATR) so that about 30 setups are compared; the pivots and the
    pattern windows, where look-ahead could hide, are the defaults'.
    """
    loose = HarmonicParams(rsi_oversold=100.0, rsi_overbought=0.0, d_zone_atr=3.5)
    assert_no_look_ahead(
        lambda s: BOT.scan(MarketData(candles=s), loose), real("binance_spot/BTC_USDT-5m.csv.gz", 12_000)
    )


def test_no_look_ahead_with_rsi_at_d_on_real_eth_1h() -> None:
    """The same with RSI read at D's bar (the confirmed reading) over 20,000 ETH 1h bars."""
    assert_no_look_ahead(
        lambda s: BOT.scan(MarketData(candles=s), CONFIRMED_READING),
        real("binance_usdm_perp/ETH_USDT-1h.csv.gz", 20_000),
        min_nonempty=10,
    )


def check_real_setups(setups: list[Setup], series: Candles, params: HarmonicParams) -> None:
    """Every setup: D's pivot and filters as documented, levels either placed as the rule says or rejected."""
    atr, rsi = indicators(series)
    pivots = BOT.pivots(MarketData(candles=series), params)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    risk = RiskSettings.model_validate(RISK)
    for setup in setups:
        t = index_of[setup.bar_ts]
        known = pivots.confirmed_at <= t
        d = int(np.flatnonzero(known)[-1])
        assert [kp.price for kp in setup.key_points] == pivots.price[d - 4 : d + 1].tolist()
        d_price = float(pivots.price[d])
        assert 0 <= t - int(pivots.confirmed_at[d]) <= params.max_bars_since_d
        assert abs(series.close[t] - d_price) <= params.d_zone_atr * atr[t]
        reading = rsi[t] if params.rsi_bar == "signal" else rsi[int(pivots.index[d])]
        if setup.direction is Direction.LONG:
            assert reading <= params.rsi_oversold
            assert setup.entry == d_price + 0.05 * float(atr[t])
        else:
            assert reading >= params.rsi_overbought
            assert setup.entry == d_price - 0.05 * float(atr[t])
        outcome = _levels_or_reason(setup, risk)
        if isinstance(outcome, Levels):
            assert outcome.sl == setup.stop
            assert outcome.tps[2] == pytest.approx(setup.key_points[1].price, rel=1e-12)  # TP3 = A
        else:
            assert outcome in {RejectReason.RR_TOO_LOW, RejectReason.STOP_TOO_WIDE}


def _levels_or_reason(setup: Setup, risk: RiskSettings) -> Levels | RejectReason:
    """The levels of ``setup``, or why the calculator rejected it."""
    try:
        return calculate_levels(setup, risk)
    except LevelsRejected as rejected:
        return rejected.reason


@pytest.mark.parametrize(
    "relative", ["binance_spot/BTC_USDT-5m.csv.gz", "binance_usdm_perp/ETH_USDT-15m.csv.gz"]
)
def test_defaults_fire_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """With the defaults, on the shared series where they fire at all (5m / 15m wicks back to D): rarely."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    check_real_setups(setups, series, DEFAULTS)


@pytest.mark.parametrize(
    "relative", ["binance_usdm_perp/BTC_USDT-1h.csv.gz", "binance_usdm_perp/ETH_USDT-1h.csv.gz"]
)
def test_confirmed_reading_fires_rarely_on_long_1h_series_where_the_defaults_never_fire(
    relative: str,
) -> None:
    """On 57k-59k 1h bars the defaults never fire; RSI at D with a 3.5 ATR zone fires on < 0.1 % of bars."""
    series = real(relative)
    assert scan(series) == []
    setups = scan(series, CONFIRMED_READING)
    assert_fires_rarely(setups, series, at_most=0.001)
    assert len(setups) >= 30
    check_real_setups(setups, series, CONFIRMED_READING)
    assert {setup.direction for setup in setups} == {Direction.LONG, Direction.SHORT}


def test_a_lookback_window_scan_gives_the_whole_scans_setup() -> None:
    """For every setup on BTC 1h, scanning only the ``lookback`` bars ending at its bar finds it too."""
    series = real("binance_usdm_perp/BTC_USDT-1h.csv.gz")
    setups = scan(series, CONFIRMED_READING)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for setup in setups:
        end = index_of[setup.bar_ts] + 1
        window = series.slice(max(0, end - CONFIRMED_READING.lookback), end)
        found = scan(window, CONFIRMED_READING)
        assert found
        assert found[-1].bar_ts == setup.bar_ts
        assert (found[-1].reason, found[-1].stop, found[-1].key_points) == (
            setup.reason,
            setup.stop,
            setup.key_points,
        )
        assert found[-1].entry == pytest.approx(setup.entry, rel=1e-9)  # ATR remembers its start
