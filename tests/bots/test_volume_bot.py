"""Tests of bots/volume_bot.py: a volume spike scored by five factors, on hand-built and real series."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.volume_bot import (
    PATTERNS,
    VolumeBot,
    VolumeParams,
    hvn_sides,
    last_mean_volume,
    price_row,
    prior_mean,
)
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import RiskSettings, calculate_levels
from volume_profile import calculate_volume_profile

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = VolumeBot()
DEFAULTS = VolumeParams()
#: The risk block recommended for global_config.json: stop from the setup, targets 2R and 3R.
RISK = {"sl_method": "structure", "tp_method": "r", "tp_multiples": [2.0, 3.0], "min_rr": 1.5}
SIGNAL = 118  # the spike bar of spike_series()


def scan(series: Candles, params: VolumeParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def spike_series(spike_volume: float = 3000.0) -> Candles:
    """119 hourly candles: a high-volume shelf at 104-105, a decline, a shelf at 100-101, a green spike.

    * bars 0-19: zig-zag 104.2 / 104.8 (range 104-105), volume 1000 (before the profile window);
    * bars 20-59: the same zig-zag with volume 1200: the POC row [104, 105];
    * bars 60-79: a decline of 0.2 a bar from 104 to 100, volume 1000; bar 60's high is 114 and bar 61's
      low 90, so the profile of bars 19..118 spans 90..114: 24 rows of exactly 1.0;
    * bars 80-117: zig-zag 100.2 / 100.8 (range 100-101), volume 1000: an HVN row [100, 101] below the
      POC; even bars green, odd bars red, so bar 117 is red (open 100.8, close 100.2);
    * bar 118: open 100.1, high 101.6, low 100, close 101.5 (a bullish engulfing), ``spike_volume``.
    """
    open_: list[float] = []
    high: list[float] = []
    low: list[float] = []
    close: list[float] = []
    volume: list[float] = []

    def bar(o: float, h: float, lo: float, c: float, v: float) -> None:
        open_.append(o)
        high.append(h)
        low.append(lo)
        close.append(c)
        volume.append(v)

    for k in range(60):
        v = 1000.0 if k < 20 else 1200.0
        if k % 2 == 0:
            bar(104.2, 105.0, 104.0, 104.8, v)
        else:
            bar(104.8, 105.0, 104.0, 104.2, v)
    for k in range(20):
        o, c = 104.0 - 0.2 * k, 104.0 - 0.2 * (k + 1)
        bar(o, o, c, c, 1000.0)
    high[60], low[61] = 114.0, 90.0
    for k in range(38):
        if k % 2 == 0:
            bar(100.2, 101.0, 100.0, 100.8, 1000.0)
        else:
            bar(100.8, 101.0, 100.0, 100.2, 1000.0)
    bar(100.1, 101.6, 100.0, 101.5, spike_volume)
    return make(open_, high, low, close, volume)


def make(
    open_: object, high: object, low: object, close: object, volume: object, placeholder: object = None
) -> Candles:
    """Hourly BTC/USDT candles from T0 (placeholder flags derived unless given)."""
    size = len(np.asarray(close))
    extra = {} if placeholder is None else {"placeholder": np.asarray(placeholder, dtype=np.bool_)}
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(size, dtype=np.int64) * HOUR,
        open=np.asarray(open_, dtype=np.float64),
        high=np.asarray(high, dtype=np.float64),
        low=np.asarray(low, dtype=np.float64),
        close=np.asarray(close, dtype=np.float64),
        volume=np.asarray(volume, dtype=np.float64),
        **extra,
    )


def mirrored(series: Candles) -> Candles:
    """Prices reflected around 100 (p -> 200 - p): highs become lows, green candles red, trends reverse."""
    return make(200 - series.open, 200 - series.low, 200 - series.high, 200 - series.close, series.volume)


def sig8(value: float) -> float:
    """A price as the context shows it: 8 significant digits."""
    return float(f"{value:.8g}")


# -- helpers --------------------------------------------------------------------------------------


def test_prior_mean_excludes_the_bar_itself() -> None:
    """The baseline of bar t is the mean of the bars before it; the first ``period`` bars have none."""
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    out = prior_mean(values, 3)
    assert np.isnan(out[:3]).all()
    assert out[3:].tolist() == [2.0, 3.0]  # (1 + 2 + 3) / 3, (2 + 3 + 4) / 3


def test_last_mean_volume_takes_the_last_count_inside_the_window() -> None:
    """Mean volume of the last 2 marked bars within 4 bars; NaN where fewer than 2 are in the window."""
    mask = np.array([True, False, True, False, False, False, True, True])
    volume = np.array([10.0, 0.0, 20.0, 0.0, 0.0, 0.0, 30.0, 50.0])
    out = last_mean_volume(mask, volume, 2, 4)
    # t=2: bars 0 and 2 -> 15; t=3: window 0..3 still holds both -> 15; t=4: window 1..4 holds one;
    # t=5, t=6: one each; t=7: bars 6 and 7 -> 40.
    assert np.isnan(out[[0, 1, 4, 5, 6]]).all()
    assert out[[2, 3, 7]].tolist() == [15.0, 15.0, 40.0]


def test_price_row_and_hvn_sides_follow_the_profile() -> None:
    """The close's row uses the profile's [lower, upper) rows; HVNs count by side of the POC and distance."""
    profile = calculate_volume_profile(spike_series().tail(100))
    assert profile.edges.tolist() == [90.0 + i for i in range(25)]
    assert (profile.poc_index, profile.hvn_indices) == (14, (10, 14))
    assert price_row(profile, 101.5) == 11
    assert price_row(profile, 101.0) == 11  # a row's lower edge belongs to it
    assert price_row(profile, 114.0) == 23  # the top edge belongs to the top row
    assert hvn_sides(profile, 11, 2) == (True, False)
    assert hvn_sides(profile, 11, 0) == (False, False)
    assert hvn_sides(profile, 13, 2) == (False, False)  # 14 is the POC itself, 10 is three rows away


# -- hand-built series ----------------------------------------------------------------------------


def test_long_on_a_green_spike_with_all_five_factors() -> None:
    """The 3x green spike at bar 118 is a LONG scoring 5 to 0: entry 101.5, stop VAL - 1 row = 99, 2R / 3R."""
    series = spike_series()
    window = series.slice(SIGNAL - 99, SIGNAL + 1)
    profile = calculate_volume_profile(window, rows=24, value_area_pct=70.0, hvn_factor=1.5)
    assert (profile.poc_price, profile.val, profile.vah, profile.row_height) == (104.5, 100.0, 105.0, 1.0)
    ema = float(talib.EMA(series.close, timeperiod=20)[SIGNAL])
    rsi = float(talib.RSI(series.close, timeperiod=14)[SIGNAL])
    engulfing = int(talib.CDLENGULFING(series.open, series.high, series.low, series.close)[SIGNAL])
    others = [
        getattr(talib, name)(series.open, series.high, series.low, series.close)[SIGNAL] for name in PATTERNS
    ]
    assert engulfing == 100
    assert sum(value != 0 for value in others) == 1  # only the engulfing fires on bar 118
    assert ema < 101.5  # the shelf at 100-101 keeps EMA 20 below the close
    assert 55 < rsi <= 80  # in the long band 45-80 only, not in the short band 20-55
    assert float(np.mean(series.volume[SIGNAL - 20 : SIGNAL])) == 1000.0  # baseline; the spike is 3x
    # Pressure in bars 99..118: the last 3 green (1000, 1000, 3000) against the last 3 red (1000 each).
    recent = range(SIGNAL - 19, SIGNAL + 1)
    greens = [i for i in recent if series.close[i] > series.open[i]][-3:]
    reds = [i for i in recent if series.close[i] < series.open[i]][-3:]
    assert (greens, reds) == ([114, 116, 118], [113, 115, 117])
    assert float(np.mean(series.volume[greens])) > 1.2 * float(np.mean(series.volume[reds]))

    [setup] = scan(series)
    ts = T0 + SIGNAL * HOUR
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=ts,
        entry=101.5,
        stop=99.0,  # VAL 100 minus one row (1.0); further than the 1 % floor 100.485
        reason=(
            f"Volume 3.0x its 20-bar mean, LONG 5/5: close above EMA 20, RSI {rsi:.1f}, "
            "near an HVN below the POC, bullish ENGULFING, buying pressure"
        ),
        context={
            "volume_ratio": 3.0,
            "ema": sig8(ema),
            "rsi": round(rsi, 2),
            "poc": 104.5,
            "vah": 105.0,
            "val": 100.0,
            "pattern": "CDLENGULFING +100",
            "long_score": 5,
            "short_score": 0,
            "factors": "ema,rsi,hvn,pattern,pressure",
        },
        key_points=(KeyPoint(ts, 104.5, "POC"), KeyPoint(ts, 105.0, "VAH"), KeyPoint(ts, 100.0, "VAL")),
    )
    # Risk 101.5 - 99 = 2.5: TP1 = 101.5 + 2 x 2.5, TP2 = 101.5 + 3 x 2.5.
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.LONG, entry=101.5, sl=99.0, tps=(106.5, 109.0))


def test_short_on_the_mirrored_series() -> None:
    """Reflected prices give a red spike: SHORT 5 to 0, entry 98.5, stop VAH + 1 row = 101, TPs 93.5 / 91."""
    series = mirrored(spike_series())
    profile = calculate_volume_profile(series.slice(SIGNAL - 99, SIGNAL + 1))
    assert (profile.poc_index, profile.hvn_indices) == (9, (9, 13))  # the HVN row 13 is above the POC
    assert (profile.poc_price, profile.val, profile.vah) == (95.5, 95.0, 100.0)
    entry = float(series.close[SIGNAL])
    assert entry == 98.5
    assert price_row(profile, entry) == 12
    ema = float(talib.EMA(series.close, timeperiod=20)[SIGNAL])
    rsi = float(talib.RSI(series.close, timeperiod=14)[SIGNAL])
    assert entry < ema
    assert 20 <= rsi < 45  # short band only
    assert int(talib.CDLENGULFING(series.open, series.high, series.low, series.close)[SIGNAL]) == -100

    [setup] = scan(series)
    ts = T0 + SIGNAL * HOUR
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=ts,
        entry=98.5,
        stop=101.0,  # VAH 100 plus one row; further than the 1 % floor 99.485
        reason=(
            f"Volume 3.0x its 20-bar mean, SHORT 5/5: close below EMA 20, RSI {rsi:.1f}, "
            "near an HVN above the POC, bearish ENGULFING, selling pressure"
        ),
        context={
            "volume_ratio": 3.0,
            "ema": sig8(ema),
            "rsi": round(rsi, 2),
            "poc": 95.5,
            "vah": 100.0,
            "val": 95.0,
            "pattern": "CDLENGULFING -100",
            "long_score": 0,
            "short_score": 5,
            "factors": "ema,rsi,hvn,pattern,pressure",
        },
        key_points=(KeyPoint(ts, 95.5, "POC"), KeyPoint(ts, 100.0, "VAH"), KeyPoint(ts, 95.0, "VAL")),
    )
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.SHORT, entry=98.5, sl=101.0, tps=(93.5, 91.0))


def test_the_minimum_risk_floor_binds_when_the_value_area_is_close() -> None:
    """With min_risk_pct 3 the stop is entry x 0.97 = 98.455, below VAL - 1 row (99); TPs 2R / 3R from it."""
    [setup] = scan(spike_series(), VolumeParams(min_risk_pct=3.0))
    assert setup.stop is not None
    assert setup.stop == pytest.approx(101.5 * 0.97, rel=1e-15)
    risk = 101.5 - setup.stop
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels.sl == setup.stop
    assert levels.tps == pytest.approx((101.5 + 2 * risk, 101.5 + 3 * risk), rel=1e-12)


def test_no_signal_when_the_volume_is_exactly_one_and_a_half_times_the_mean() -> None:
    """Volume 1500 on a 1000 baseline is not above 1.5x: no spike, no setup; 1500.5 is a spike (4 factors)."""
    assert scan(spike_series(1500.0)) == []
    [setup] = scan(spike_series(1500.5))
    # Pressure is gone: (1500.5 + 1000 + 1000) / 3 = 1166.83 is not above 1.2 x 1000.
    assert (setup.direction, setup.context["long_score"]) == (Direction.LONG, 4)
    assert setup.context["factors"] == "ema,rsi,hvn,pattern"


def test_no_signal_when_the_hvn_is_one_row_out_of_reach() -> None:
    """Needing all five factors, the HVN one row below the close's row must be within hvn_distance_rows."""
    assert scan(spike_series(), VolumeParams(min_factors=5, hvn_distance_rows=0)) == []
    [setup] = scan(spike_series(), VolumeParams(min_factors=5, hvn_distance_rows=1))
    assert setup.context["factors"] == "ema,rsi,hvn,pattern,pressure"
    # Without the profile factor the other four still make the default 4.
    [four] = scan(spike_series(), VolumeParams(hvn_distance_rows=0))
    assert (four.context["long_score"], four.context["factors"]) == (4, "ema,rsi,pattern,pressure")


def test_three_factors_fire_only_with_min_factors_three() -> None:
    """The 1500.5 spike without its engulfing (open 100.3) scores 3: silent by default, LONG with 3 needed."""
    base = spike_series(1500.5)
    open_ = base.open.copy()
    open_[SIGNAL] = 100.3
    series = make(open_, base.high, base.low, base.close, base.volume)
    ohlc = (series.open, series.high, series.low, series.close)
    assert all(getattr(talib, name)(*ohlc)[SIGNAL] == 0 for name in PATTERNS)
    assert scan(series) == []
    [setup] = scan(series, VolumeParams(min_factors=3))
    assert (setup.direction, setup.context["factors"]) == (Direction.LONG, "ema,rsi,hvn")
    assert "pattern" not in setup.context


def test_placeholder_bar_never_fires() -> None:
    """The spike bar marked as an exchange placeholder candle is not a signal."""
    series = spike_series()
    flags = np.zeros(len(series), dtype=np.bool_)
    flags[SIGNAL] = True
    marked = make(series.open, series.high, series.low, series.close, series.volume, placeholder=flags)
    assert scan(marked) == []


def test_nan_in_the_profile_window_never_fires() -> None:
    """A NaN volume anywhere in the 100-bar profile window keeps the spike bar silent."""
    series = spike_series()
    volume = series.volume.copy()
    volume[SIGNAL - 99] = np.nan
    assert scan(make(series.open, series.high, series.low, series.close, volume)) == []
    volume[SIGNAL - 99] = 1000.0
    assert len(scan(make(series.open, series.high, series.low, series.close, volume))) == 1


def test_too_short_history_gives_nothing() -> None:
    """Fewer bars than the 100-bar profile window: no setup, even with the spike as the last bar."""
    assert scan(spike_series().tail(99)) == []
    assert len(scan(spike_series().tail(100))) == 1


# -- parameters -----------------------------------------------------------------------------------


def test_params_defaults_and_needs() -> None:
    """Every default is the documented one, and the scan asks for ``lookback`` bars."""
    assert DEFAULTS.model_dump() == {
        "volume_period": 20,
        "spike_mult": 1.5,
        "ema_period": 20,
        "rsi_period": 14,
        "rsi_long_min": 45.0,
        "rsi_long_max": 80.0,
        "rsi_short_min": 20.0,
        "rsi_short_max": 55.0,
        "profile_candles": 100,
        "profile_rows": 24,
        "value_area_pct": 70.0,
        "hvn_factor": 1.5,
        "hvn_distance_rows": 2,
        "pressure_bars": 20,
        "pressure_candles": 3,
        "pressure_mult": 1.2,
        "min_factors": 4,
        "min_risk_pct": 1.0,
        "lookback": 300,
    }
    assert BOT.needs(DEFAULTS, "1h") == DataNeeds(lookback=300)
    assert BOT.name == "volume_bot"
    assert BOT.params_model is VolumeParams


@pytest.mark.parametrize(
    "bad",
    [
        {"volume_period": 1},
        {"spike_mult": 0.9},
        {"min_factors": 0},
        {"min_factors": 6},
        {"profile_rows": 2},
        {"value_area_pct": 0},
        {"rsi_long_max": 101},
        {"min_risk_pct": 0},
        {"rsi_long_min": 60, "rsi_long_max": 50},
        {"rsi_short_min": 60, "rsi_short_max": 50},
        {"pressure_bars": 5, "pressure_candles": 3},
        {"lookback": 99},
        {"profile_candles": 400},  # above the default lookback 300
        {"volume_threshold": 2},  # unknown key
    ],
)
def test_params_reject_out_of_range_and_unknown_values(bad: dict[str, object]) -> None:
    """Out-of-range values, inconsistent pairs, a lookback shorter than the windows and unknown keys fail."""
    with pytest.raises(ValidationError):
        VolumeParams.model_validate(bad)


# -- real data ------------------------------------------------------------------------------------


def reference_scan(series: Candles, params: VolumeParams) -> list[tuple[int, Direction, float, int, int]]:
    """Bar by bar, the plain way: a profile on EVERY bar, loops for the baseline and the pressure."""
    o, h, lo, c, v = series.open, series.high, series.low, series.close, series.volume
    ema = talib.EMA(c, timeperiod=params.ema_period)
    rsi = talib.RSI(c, timeperiod=params.rsi_period)
    patterns = [getattr(talib, name)(o, h, lo, c) for name in PATTERNS]
    found = []
    for t in range(params.profile_candles - 1, len(series)):
        baseline = float(np.mean(v[t - params.volume_period : t]))
        if not (baseline > 0 and v[t] > params.spike_mult * baseline) or series.placeholder[t]:
            continue
        window = range(t - params.pressure_bars + 1, t + 1)
        greens = [v[i] for i in window if c[i] > o[i]][-params.pressure_candles :]
        reds = [v[i] for i in window if c[i] < o[i]][-params.pressure_candles :]
        enough = min(len(greens), len(reds)) == params.pressure_candles
        green, red = (float(np.mean(greens)), float(np.mean(reds))) if enough else (0.0, 0.0)
        profile = calculate_volume_profile(series.slice(t - params.profile_candles + 1, t + 1))
        row = min(max(int(np.searchsorted(profile.edges, c[t], side="right")) - 1, 0), 23)
        near = [x for x in profile.hvn_indices if abs(x - row) <= params.hvn_distance_rows]
        long_hits = [
            c[t] > ema[t],
            45 <= rsi[t] <= 80,
            any(x < profile.poc_index for x in near),
            any(p[t] > 0 for p in patterns),
            enough and green > 1.2 * red,
        ]
        short_hits = [
            c[t] < ema[t],
            20 <= rsi[t] <= 55,
            any(x > profile.poc_index for x in near),
            any(p[t] < 0 for p in patterns),
            enough and red > 1.2 * green,
        ]
        long_score, short_score = sum(long_hits), sum(short_hits)
        entry = float(c[t])
        if long_score >= params.min_factors and long_score > short_score:
            stop = min(profile.val - profile.row_height, entry * 0.99)
            found.append((int(series.ts[t]), Direction.LONG, stop, long_score, short_score))
        elif short_score >= params.min_factors and short_score > long_score:
            stop = max(profile.vah + profile.row_height, entry * 1.01)
            found.append((int(series.ts[t]), Direction.SHORT, stop, long_score, short_score))
    return found


@pytest.mark.parametrize("min_factors", [3, 4])
def test_profiling_only_candidates_matches_profiling_every_bar(min_factors: int) -> None:
    """On 700 real 4h bars the scan equals a bar-by-bar reference that profiles every bar."""
    series = real("binance_spot/ETH_USDT-4h.csv.gz", 700)
    params = VolumeParams(min_factors=min_factors)
    expected = reference_scan(series, params)
    assert len(expected) >= 15
    got = [
        (s.bar_ts, s.direction, s.stop, s.context["long_score"], s.context["short_score"])
        for s in scan(series, params)
    ]
    assert got == expected


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


@pytest.mark.parametrize("relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_spot/SOL_USDT-4h.csv.gz"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 4h series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(series.close[i])
        assert float(series.volume[i]) > 1.5 * float(np.mean(series.volume[i - 20 : i]))
        long_score, short_score = setup.context["long_score"], setup.context["short_score"]
        assert isinstance(long_score, int)
        assert isinstance(short_score, int)
        assert setup.stop is not None
        val, vah = setup.context["val"], setup.context["vah"]
        assert isinstance(val, float)
        assert isinstance(vah, float)
        assert [p.label for p in setup.key_points] == ["POC", "VAH", "VAL"]
        if setup.direction is Direction.LONG:
            assert long_score >= 4
            assert long_score > short_score
            assert setup.stop <= setup.entry * 0.99
            assert setup.stop < val
        else:
            assert short_score >= 4
            assert short_score > long_score
            assert setup.stop >= setup.entry * 1.01
            assert setup.stop > vah
        assert len(str(setup.context["factors"]).split(",")) == max(long_score, short_score)


def test_keep_from_skips_earlier_bars_and_keeps_the_later_setups_exact() -> None:
    """With keep_from k the scan returns exactly the full scan's setups on bars >= k (and none before)."""
    series = real("binance_spot/ETH_USDT-4h.csv.gz")
    full = BOT.scan(MarketData(candles=series), DEFAULTS)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for keep_from in (len(series) // 2, len(series) - 200, len(series) - 1):
        kept = BOT.scan(MarketData(candles=series, keep_from=keep_from), DEFAULTS)
        assert kept == [s for s in full if index_of[s.bar_ts] >= keep_from]
    assert len([s for s in full if index_of[s.bar_ts] >= len(series) // 2]) >= 5
