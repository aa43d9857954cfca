"""Tests of bots/volume_profile_bot.py: level crosses of the profile between the last two pivots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.volume_profile_bot import VolumeProfileBot, VolumeProfileParams
from common.pivots import swing_pivots
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real, with_placeholders
from tp_sl_calculator import RiskSettings, calculate_levels
from volume_profile import calculate_volume_profile

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = VolumeProfileBot()
DEFAULTS = VolumeProfileParams()
#: The risk block recommended for global_config.json.
RISK = {"sl_method": "structure", "tp_method": "r", "tp_multiples": [1.2, 1.8], "min_rr": 1.1}

#: Volume of the rising bars 60 + row (one bar per profile row); the others trade 100.
ROW_VOLUME = {8: 200.0, 9: 400.0, 10: 600.0, 11: 1000.0, 12: 500.0, 13: 300.0, 14: 200.0}


def scan(series: Candles, params: VolumeProfileParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def make(
    open_: list[float], high: list[float], low: list[float], close: list[float], volume: list[float]
) -> Candles:
    """Hourly candles from T0."""
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(len(close), dtype=np.int64) * HOUR,
        open=np.array(open_),
        high=np.array(high),
        low=np.array(low),
        close=np.array(close),
        volume=np.array(volume),
    )


def low_high_then_cross(decline: int = 25, last_close: float = 112.0, last_volume: float = 400.0) -> Candles:
    """A slide to a pivot low, a climb to a pivot high, a slide back, then one bar closing ``last_close``.

    * Bars 0..59 slide from low 130 to 100.5 in steps of 0.5 (each bar 1.0 tall, close 0.25 above its low).
    * Bars 60..84 climb one row at a time: bar 60 + j spans exactly [100 + j, 101 + j], so bar 60 (low 100)
      is the pivot low (confirmed at bar 80) and bar 84 (high 125) the pivot high (confirmed at 104).
      The profile between them has 25 rows of height 1.0 from 100 to 125, row j holding bar 60 + j's
      volume: 100, except rows 8..14 (``ROW_VOLUME``): POC row 11 (111..112, POC 111.5).
    * ``decline`` bars slide from 125 down to a close of 111.25, below the POC, on volume 100.
    * The last bar closes at ``last_close`` on ``last_volume``.
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

    for i in range(60):
        bottom = 100.0 + (60 - i) * 0.5
        bar(bottom + 0.75, bottom + 1.0, bottom, bottom + 0.25, 100.0)
    for j in range(25):
        bar(100.25 + j, 101.0 + j, 100.0 + j, 100.75 + j, ROW_VOLUME.get(j, 100.0))
    for m in range(1, decline + 1):
        top = 125.0 - 12.5 * m / decline
        bar(close[-1], top, top - 1.5, top - 1.25, 100.0)
    bar(
        close[-1],
        max(close[-1], last_close) + 0.5,
        min(close[-1], last_close) - 0.25,
        last_close,
        last_volume,
    )
    return make(open_, high, low, close, volume)


def mirrored(series: Candles) -> Candles:
    """``series`` upside down around 125 (price p -> 250 - p): highs become lows, a LONG a SHORT."""
    return make(
        (250.0 - series.open).tolist(),
        (250.0 - series.low).tolist(),
        (250.0 - series.high).tolist(),
        (250.0 - series.close).tolist(),
        series.volume.tolist(),
    )


# Volume SMA(89) at bar 110 covers bars 22..110: 81 bars of 100, the seven rows of ROW_VOLUME (3,200)
# and the last bar: (8,100 + 3,200 + V) / 89.
def volume_ratio(last_volume: float) -> float:
    """Bar 110's volume over its SMA(89), by hand."""
    return last_volume / ((11_300.0 + last_volume) / 89)


def test_the_hand_built_profile() -> None:
    """The profile of bars 60..84 is as computed by hand: POC 111.5, value area 105..115."""
    # Total 5,000, target 3,500. From the POC row 11 (1,000) the walk adds row 10 (600 > 500),
    # 12 (500 > 400), 9 (400 > 300), 13 (300 > 200), 8 (200 = 200, tie: below), 14 (200 > 100), then
    # rows 7, 6, 5 (100 = 100, ties: below): 1,000 + 600 + 500 + 400 + 300 + 200 + 200 + 300 = 3,500.
    profile = calculate_volume_profile(low_high_then_cross().slice(60, 85), rows=25, value_area_pct=70.0)
    assert profile.edges.tolist() == [100.0 + k for k in range(26)]
    assert (profile.poc_price, profile.val, profile.vah) == (111.5, 105.0, 115.0)
    # Sanity of the SMA by hand against TA-Lib.
    sma = talib.SMA(low_high_then_cross().volume, timeperiod=89)
    assert 400.0 / sma[110] == pytest.approx(volume_ratio(400.0), rel=1e-12)


def test_long_when_the_close_crosses_the_poc_on_high_volume() -> None:
    """Bar 110 closes 111.25 -> 112 through the POC 111.5 on 3.04x volume: LONG, stop 107, TPs 118 / 121."""
    series = low_high_then_cross()
    ratio = volume_ratio(400.0)  # 35,600 / 11,700 = 3.0427
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 110 * HOUR,
        entry=112.0,
        # Risk = max(0.5 x (115 - 105), 0.2 % x 112) = max(5, 0.224) = 5.
        stop=107.0,
        reason=(
            "Close 112.000 crossed above POC 111.500 on 3.04x average volume; "
            "profile pivot low 100.000 -> pivot high 125.000"
        ),
        context={
            "poc": 111.5,
            "vah": 115.0,
            "val": 105.0,
            "crossed": "POC",
            "volume_ratio": round(ratio, 3),
            "pivot_1": 100.0,
            "pivot_1_kind": "low",
            "pivot_2": 125.0,
            "pivot_2_kind": "high",
            "profile_bars": 25,
            "risk": 5.0,
        },
        key_points=(
            KeyPoint(ts=T0 + 60 * HOUR, price=100.0, label="pivot low"),
            KeyPoint(ts=T0 + 84 * HOUR, price=125.0, label="pivot high"),
            KeyPoint(ts=T0 + 110 * HOUR, price=111.5, label="POC"),
            KeyPoint(ts=T0 + 110 * HOUR, price=115.0, label="VAH"),
            KeyPoint(ts=T0 + 110 * HOUR, price=105.0, label="VAL"),
        ),
    )
    assert setup.context["volume_ratio"] == 3.043
    # TP1 = 112 + 1.2 x 5, TP2 = 112 + 1.8 x 5.
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.LONG, entry=112.0, sl=107.0, tps=(118.0, 121.0))


def test_short_when_the_close_crosses_the_poc_down() -> None:
    """The mirror (pivot high 150 then low 125): bar 110 closes 138.75 -> 138 through the POC 138.5: SHORT."""
    series = mirrored(low_high_then_cross())
    # Mirrored rows: row 24 - j holds bar 60 + j's volume: POC row 13 (138..139). The walk adds 14 (600),
    # 12 (500), 15 (400), 11 (300), 10 (200 = 200, tie: below), 16 (200), 9, 8, 7 (ties: below):
    # value area rows 7..16, VAL 132, VAH 142 (ties go below, so it is not the mirror of 105..115).
    profile = calculate_volume_profile(series.slice(60, 85), rows=25, value_area_pct=70.0)
    assert (profile.poc_price, profile.val, profile.vah) == (138.5, 132.0, 142.0)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 110 * HOUR,
        entry=138.0,
        stop=143.0,  # 138 + max(0.5 x 10, 0.276)
        reason=(
            "Close 138.000 crossed below POC 138.500 on 3.04x average volume; "
            "profile pivot high 150.000 -> pivot low 125.000"
        ),
        context={
            "poc": 138.5,
            "vah": 142.0,
            "val": 132.0,
            "crossed": "POC",
            "volume_ratio": 3.043,
            "pivot_1": 150.0,
            "pivot_1_kind": "high",
            "pivot_2": 125.0,
            "pivot_2_kind": "low",
            "profile_bars": 25,
            "risk": 5.0,
        },
        key_points=(
            KeyPoint(ts=T0 + 60 * HOUR, price=150.0, label="pivot high"),
            KeyPoint(ts=T0 + 84 * HOUR, price=125.0, label="pivot low"),
            KeyPoint(ts=T0 + 110 * HOUR, price=138.5, label="POC"),
            KeyPoint(ts=T0 + 110 * HOUR, price=142.0, label="VAH"),
            KeyPoint(ts=T0 + 110 * HOUR, price=132.0, label="VAL"),
        ),
    )
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.SHORT, entry=138.0, sl=143.0, tps=(132.0, 129.0))


def test_one_setup_names_every_level_crossed() -> None:
    """A close from 111.25 to 115.5 crosses the POC (111.5) and the VAH (115): one LONG naming both."""
    [setup] = scan(low_high_then_cross(last_close=115.5))
    assert (setup.direction, setup.bar_ts, setup.entry, setup.stop) == (
        Direction.LONG,
        T0 + 110 * HOUR,
        115.5,
        110.5,
    )
    assert setup.context["crossed"] == "POC,VAH"
    assert setup.reason.startswith("Close 115.500 crossed above POC 111.500 and VAH 115.000 on 3.04x")
    # From 111.25 (already below the POC) down to 104.5 the close crosses only the VAL (105): a SHORT.
    [down] = scan(low_high_then_cross(last_close=104.5))
    assert (down.direction, down.entry, down.stop, down.context["crossed"]) == (
        Direction.SHORT,
        104.5,
        109.5,
        "VAL",
    )


def test_levels_named_in_the_order_the_price_met_them_going_down() -> None:
    """The mirror of a close through POC and VAH: SHORT through the POC (138.5) then the VAL (132)."""
    [setup] = scan(mirrored(low_high_then_cross(last_close=118.5)))  # 250 - 118.5 = 131.5
    assert (setup.direction, setup.entry, setup.context["crossed"]) == (Direction.SHORT, 131.5, "POC,VAL")
    assert "crossed below POC 138.500 and VAL 132.000 on" in setup.reason


def test_risk_floor_of_min_risk_pct() -> None:
    """With risk_va_fraction 0.02 the value-area risk (0.2) is below 0.2 % of 112 (0.224): the floor wins."""
    [setup] = scan(low_high_then_cross(), VolumeProfileParams(risk_va_fraction=0.02))
    assert setup.stop == pytest.approx(112.0 - 0.224, rel=1e-15)
    assert setup.context["risk"] == 0.224  # 112 x 0.2 / 100, to 10 significant digits
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels.sl == setup.stop
    assert levels.tps == pytest.approx((112.0 + 1.2 * 0.224, 112.0 + 1.8 * 0.224), rel=1e-15)


def test_near_miss_volume_just_below_the_threshold() -> None:
    """Volume 209 is 1.6162x its SMA (below 1.618): no signal; 210 (1.6238x) fires; no filter: it fires."""
    assert volume_ratio(209.0) < 1.618 < volume_ratio(210.0)
    assert scan(low_high_then_cross(last_volume=209.0)) == []
    [setup] = scan(low_high_then_cross(last_volume=210.0))
    assert setup.context["volume_ratio"] == round(volume_ratio(210.0), 3)
    # Without the volume filter the low-volume cross fires, and so does bar 109's slide through the POC
    # (close 112.75 -> 111.25 on ordinary volume).
    loose = scan(low_high_then_cross(last_volume=209.0), VolumeProfileParams(require_high_volume=False))
    assert [(s.bar_ts, s.direction, s.context["crossed"]) for s in loose] == [
        (T0 + 109 * HOUR, Direction.SHORT, "POC"),
        (T0 + 110 * HOUR, Direction.LONG, "POC"),
    ]
    # Bar 109's SMA covers bars 21..109: 82 bars of 100 and the 3,200 of ROW_VOLUME.
    assert loose[0].context["volume_ratio"] == round(100.0 / (11_400.0 / 89), 3)


def test_near_miss_close_reaching_the_level_but_not_beyond() -> None:
    """A close exactly on the POC (111.5) has not crossed it; a close on it the bar before counts as below."""
    assert scan(low_high_then_cross(last_close=111.5)) == []
    series = low_high_then_cross(last_close=111.5)
    extended = make(
        [*series.open, 111.5],
        [*series.high, 112.5],
        [*series.low, 111.25],
        [*series.close, 112.0],
        [*series.volume, 400.0],
    )
    [setup] = scan(extended)
    assert (setup.bar_ts, setup.direction, setup.context["crossed"]) == (
        T0 + 111 * HOUR,
        Direction.LONG,
        "POC",
    )


def test_the_profile_exists_only_once_the_second_pivot_is_confirmed() -> None:
    """The pivot high (bar 84) is known at bar 104: a cross on bar 104 fires, the same cross on 103 not."""
    [setup] = scan(low_high_then_cross(decline=19))
    assert (setup.bar_ts, setup.context["poc"], setup.context["pivot_2"]) == (T0 + 104 * HOUR, 111.5, 125.0)
    assert scan(low_high_then_cross(decline=18)) == []


def test_placeholder_bar_never_fires() -> None:
    """The same crossing bar flagged as an exchange placeholder candle is not a signal."""
    assert scan(with_placeholders(low_high_then_cross(), 110)) == []


def test_too_short_history_gives_nothing() -> None:
    """88 bars (volume SMA 89 undefined on every bar) give []; 89 bars give the setup on the last bar."""
    series = low_high_then_cross()
    assert scan(series.tail(88)) == []
    [setup] = scan(series.tail(89))
    assert setup.bar_ts == T0 + 110 * HOUR
    assert scan(series.head(30)) == []


def test_needs_the_lookback() -> None:
    """needs() asks for ``lookback`` bars of the bot's own timeframe and nothing else."""
    assert BOT.needs(DEFAULTS, "1h") == DataNeeds(lookback=400)
    assert BOT.needs(VolumeProfileParams(lookback=900), "15m") == DataNeeds(lookback=900)


def test_defaults() -> None:
    """The defaults are the rule's and the module docstring's, parameter by parameter."""
    assert DEFAULTS.model_dump() == {
        "pivot_lookback": 20,
        "profile_rows": 25,
        "value_area_pct": 70.0,
        "require_high_volume": True,
        "volume_sma_period": 89,
        "volume_factor": 1.618,
        "risk_va_fraction": 0.5,
        "min_risk_pct": 0.2,
        "lookback": 400,
    }


@pytest.mark.parametrize(
    "bad",
    [
        {"pivot_lookback": 0},
        {"pivot_lookback": 201},
        {"profile_rows": 1},
        {"value_area_pct": 0},
        {"value_area_pct": 100.5},
        {"volume_sma_period": 1},
        {"volume_factor": 0},
        {"risk_va_fraction": 0},
        {"min_risk_pct": 0},
        {"lookback": 49},
        {"lookback": 88},  # shorter than the volume SMA
        {"pivot_lookback": 200, "lookback": 401},  # two pivots of 200 bars each side need 402
        {"unknown": 1},
    ],
)
def test_params_reject_out_of_range_values(bad: dict[str, Any]) -> None:
    """Out-of-range values, a lookback too short for the indicators and unknown keys are errors."""
    with pytest.raises(ValidationError):
        VolumeProfileParams.model_validate(bad)


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


def test_a_lookback_window_scan_matches_the_full_scan() -> None:
    """Scanning only the last ``lookback`` bars up to t (as the runner does) gives the full scan's bar t."""
    series = real("binance_usdm_perp/BTC_USDT-1h.csv.gz", 8000, last=True)
    everything = {s.bar_ts: s for s in scan(series)}
    fired = [i for i in (int(np.searchsorted(series.ts, ts)) for ts in everything) if i >= 400]
    rng = np.random.default_rng(7)
    bars = [*rng.choice(fired, size=60, replace=False).tolist(), *rng.integers(400, len(series), 60).tolist()]
    for t in bars:
        window = series.slice(t + 1 - DEFAULTS.lookback, t + 1)
        got = [s for s in scan(window) if s.bar_ts == int(series.ts[t])]
        expected = [everything[int(series.ts[t])]] if int(series.ts[t]) in everything else []
        assert got == expected, f"bar {t}"


@pytest.mark.parametrize("relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_spot/BTC_USDT-4h.csv.gz"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 4h series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    sma = talib.SMA(series.volume, timeperiod=89)
    pivot_bars = set(swing_pivots(series.high, series.low, 20).index.tolist())
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    for setup in setups:
        i = index_of[setup.bar_ts]
        entry, previous = float(series.close[i]), float(series.close[i - 1])
        assert setup.entry == entry
        assert series.volume[i] > 1.618 * sma[i]
        assert setup.context["volume_ratio"] == round(float(series.volume[i] / sma[i]), 3)
        # The profile between the two key-point pivots, which are swing pivots confirmed by bar i.
        first, second = (index_of[point.ts] for point in setup.key_points[:2])
        assert {first, second} <= pivot_bars
        assert first <= second <= i - 20
        profile = calculate_volume_profile(series.slice(first, second + 1), rows=25, value_area_pct=70.0)
        levels = {"VAL": profile.val, "POC": profile.poc_price, "VAH": profile.vah}
        for name, level in levels.items():
            assert setup.context[name.lower()] == float(f"{level:.10g}")
        crossed = str(setup.context["crossed"]).split(",")
        for name in crossed:
            if setup.direction is Direction.LONG:
                assert previous <= levels[name] < entry
            else:
                assert previous >= levels[name] > entry
        risk = max(0.5 * (profile.vah - profile.val), entry * 0.2 / 100.0)
        assert setup.stop == entry - setup.direction.sign * risk
        assert [p.label for p in setup.key_points[2:]] == ["POC", "VAH", "VAL"]
        assert {p.label for p in setup.key_points[:2]} <= {"pivot high", "pivot low"}
