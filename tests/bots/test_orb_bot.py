"""Tests of bots/orb_bot.py: session ranges and breakouts on hand-built 5m series, levels, no look-ahead."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.orb_bot import (
    OrbBot,
    OrbConfigError,
    OrbParams,
    rolling_mean,
    session_bars,
    session_lengths,
)
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real, with_placeholders
from tp_sl_calculator import LevelsRejected, RejectReason, RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC: the 00:00 session under test starts here
FIVE = 300_000
HOUR = 3_600_000
DAY = 86_400_000
WARM_UP = 24  # 22:00 to 23:55 of the previous day: the volume mean's history, a session with no range
RANGE = 12  # 00:00 to 00:55: the default 60-minute range
FIRST_AFTER = WARM_UP + RANGE  # index of 01:00, the first bar after the range
BOT = OrbBot()
DEFAULTS = OrbParams()
#: The risk block recommended for global_config.json.
RISK = {"sl_method": "structure", "tp_method": "atr", "tp_multiples": [1.0, 2.0], "min_rr": 0.5}

Bar = tuple[float, float, float, float]  # high, low, close, volume


def candles(bars: list[Bar], start: int = T0 - WARM_UP * FIVE, timeframe: str = "5m") -> Candles:
    """Candles from (high, low, close, volume) rows, each opening at the previous close."""
    high, low, close, volume = (np.array(column, dtype=np.float64) for column in zip(*bars, strict=True))
    step = {"5m": FIVE, "1h": HOUR}[timeframe]
    return Candles(
        symbol="BTC/USDT",
        timeframe=timeframe,
        ts=start + np.arange(len(bars), dtype=np.int64) * step,
        open=np.r_[close[0], close[:-1]],
        high=high,
        low=low,
        close=close,
        volume=volume,
    )


def range_bars() -> list[Bar]:
    """The 00:00 session's first hour: closes at 100, highs 100.6 and lows 99.4 but 101.0 at 00:15 and 99.0
    at 00:35, so the 60-minute range is 99.0 to 101.0 and the 15-minute one (00:00-00:10) 99.4 to 100.6."""
    bars = [(100.6, 99.4, 100.0, 1000.0)] * RANGE
    bars[3] = (101.0, 99.4, 100.0, 1000.0)
    bars[7] = (100.6, 99.0, 100.0, 1000.0)
    return bars


def session(after: list[Bar]) -> Candles:
    """Two hours of quiet bars before midnight (close 100, volume 1000), the range hour, then ``after``."""
    return candles([(100.5, 99.5, 100.0, 1000.0)] * WARM_UP + range_bars() + after)


def scan(series: Candles, params: OrbParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def volume_ratio(series: Candles, index: int, period: int = 20) -> float:
    """The bar's volume over TA-Lib's SMA of the volume at that bar."""
    mean = talib.SMA(series.volume, timeperiod=period)
    return float(series.volume[index] / mean[index])


LONG_BREAKOUT = [
    (101.0, 100.4, 100.9, 1000.0),  # 01:00: inside the range
    (101.6, 100.8, 101.5, 3000.0),  # 01:05: closes above 101.0 x 1.001 = 101.101, volume x3
    (102.2, 101.4, 102.0, 1000.0),  # 01:10: still above, but only the first breakout counts
]
SHORT_BREAKOUT = [
    (99.6, 99.0, 99.1, 1000.0),  # 01:00: inside the range (touches the low)
    (99.2, 98.4, 98.5, 3000.0),  # 01:05: closes below 99.0 x 0.999 = 98.901, volume x3
    (98.6, 97.8, 98.0, 1000.0),  # 01:10: still below
]


# -- helpers ----------------------------------------------------------------------------------------


def test_session_lengths_wrap_to_the_next_day() -> None:
    """Each session lasts until the next start; the last one until the first start of the next day."""
    assert session_lengths(["00:00"]) == [1440]
    assert session_lengths(["00:00", "08:00", "13:30"]) == [480, 330, 630]
    assert session_lengths(["13:30", "08:00"]) == [330, 1110]


def test_session_bars_assign_each_bar_to_the_latest_start() -> None:
    """A bar belongs to the latest session start at or before it; else to yesterday's last."""
    times = [0, 8 * HOUR, 13 * HOUR + 25 * 60_000, 13 * HOUR + 30 * 60_000, DAY - FIVE, DAY + 8 * HOUR - FIVE]
    ts = T0 + np.array([*times, DAY + 8 * HOUR], dtype=np.int64)
    bars = session_bars(ts, ("08:00", "13:30"))
    late, london = 13 * HOUR + 30 * 60_000, 8 * HOUR
    expected_start = [late - DAY, london, london, late, late, late, DAY + london]
    assert bars.start_ms.tolist() == [T0 + s for s in expected_start]
    assert bars.offset_ms.tolist() == (ts - bars.start_ms).tolist()
    assert bars.offset_ms.tolist()[:4] == [DAY - late, 0, 325 * 60_000, 0]
    assert bars.group.tolist() == [0, 1, 1, 2, 2, 2, 3]
    assert bars.session_index.tolist() == [1, 0, 0, 1, 1, 1, 0]


def test_rolling_mean_is_talibs_sma_and_independent_of_the_start() -> None:
    """The volume mean equals TA-Lib's SMA, and a history cut anywhere gives bit-identical values."""
    volume = real("binance_usdm_perp/SOL_USDT-5m.csv.gz", 3000).volume
    mean = rolling_mean(volume, 20)
    np.testing.assert_allclose(mean, talib.SMA(volume, timeperiod=20), rtol=1e-12, equal_nan=True)
    assert np.isnan(mean[:19]).all()
    for cut in (1, 37, 1234):
        np.testing.assert_array_equal(rolling_mean(volume[cut:], 20)[19:], mean[cut + 19 :])


# -- the pattern on hand-built series ------------------------------------------------------------------


def test_long_breakout_of_the_first_hour() -> None:
    """01:05 closes at 101.5 above the 00:00-00:55 high 101 + 0.1 %: LONG, stop 99, TPs 103.5 / 105.5."""
    series = session(LONG_BREAKOUT)
    breakout = FIRST_AFTER + 1
    high = float(series.high[WARM_UP:FIRST_AFTER].max())
    low = float(series.low[WARM_UP:FIRST_AFTER].min())
    assert (high, low) == (101.0, 99.0)
    ratio = volume_ratio(series, breakout)
    assert ratio == 3000 / 1100  # the mean includes the breakout bar: (19 x 1000 + 3000) / 20
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 65 * 60_000,
        entry=101.5,
        reason=(
            "Opening range breakout up: close 101.5 above the 00:00 UTC 60m range high 101 + 0.1 %; "
            "volume 2.73x its 20-bar mean"
        ),
        atr=2.0,
        stop=99.0,
        swing=(99.0, 101.0),
        context={
            "session": "00:00",
            "stage_minutes": 60,
            "range_high": 101.0,
            "range_low": 99.0,
            "range_height": 2.0,
            "breakout_level": 101.101,
            "volume_ratio": round(ratio, 3),
        },
        key_points=(
            KeyPoint(ts=T0, price=101.0, label="60m range high"),
            KeyPoint(ts=T0, price=99.0, label="60m range low"),
        ),
    )
    assert setup.context["volume_ratio"] == 2.727
    # TP1 = entry + range height, TP2 = entry + 2 x range height; the stop is the range low.
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.LONG, entry=101.5, sl=99.0, tps=(103.5, 105.5))
    assert levels.risk_reward(0) == 2.0 / 2.5


def test_short_breakout_of_the_first_hour() -> None:
    """01:05 closes at 98.5 below the range low 99 - 0.1 %: SHORT, stop 101 (the high), TPs 96.5 / 94.5."""
    series = session(SHORT_BREAKOUT)
    ratio = volume_ratio(series, FIRST_AFTER + 1)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 65 * 60_000,
        entry=98.5,
        reason=(
            "Opening range breakout down: close 98.5 below the 00:00 UTC 60m range low 99 - 0.1 %; "
            "volume 2.73x its 20-bar mean"
        ),
        atr=2.0,
        stop=101.0,
        swing=(99.0, 101.0),
        context={
            "session": "00:00",
            "stage_minutes": 60,
            "range_high": 101.0,
            "range_low": 99.0,
            "range_height": 2.0,
            "breakout_level": 98.901,
            "volume_ratio": round(ratio, 3),
        },
        key_points=(
            KeyPoint(ts=T0, price=101.0, label="60m range high"),
            KeyPoint(ts=T0, price=99.0, label="60m range low"),
        ),
    )
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.SHORT, entry=98.5, sl=101.0, tps=(96.5, 94.5))


def test_stop_at_the_midpoint() -> None:
    """stop_at "mid" puts the stop at the range's midpoint 100; targets stay entry + 1 and 2 range heights."""
    [setup] = scan(session(LONG_BREAKOUT), OrbParams(stop_at="mid"))
    assert (setup.direction, setup.entry, setup.stop, setup.atr) == (Direction.LONG, 101.5, 100.0, 2.0)
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels == Levels(direction=Direction.LONG, entry=101.5, sl=100.0, tps=(103.5, 105.5))
    [short] = scan(session(SHORT_BREAKOUT), OrbParams(stop_at="mid"))
    assert (short.direction, short.stop) == (Direction.SHORT, 100.0)


def test_min_rr_rejects_a_breakout_that_ran_more_than_a_range_height() -> None:
    """min_rr 0.5: a close 2.0 past the edge (risk 4 = 2 heights) passes at 0.5 exactly; 2.5 is rejected."""
    risk = RiskSettings.model_validate(RISK)
    [at_bound] = scan(session([(103.2, 100.8, 103.0, 1000.0)]))
    assert calculate_levels(at_bound, risk) == Levels(
        direction=Direction.LONG, entry=103.0, sl=99.0, tps=(105.0, 107.0)
    )
    [chase] = scan(session([(103.7, 100.8, 103.5, 1000.0)]))
    with pytest.raises(LevelsRejected) as rejected:
        calculate_levels(chase, risk)
    assert rejected.value.reason is RejectReason.RR_TOO_LOW


def test_both_directions_in_one_session_once_each() -> None:
    """A LONG breakout, then a reversal through the low (SHORT), then new highs: one setup per direction."""
    series = session(
        [
            (101.6, 100.8, 101.5, 1000.0),  # 01:00 LONG
            (101.5, 98.0, 98.2, 1000.0),  # 01:05 SHORT: below 98.901
            (102.5, 98.2, 102.4, 1000.0),  # 01:10 above again: the LONG already fired
            (102.5, 97.5, 97.6, 1000.0),  # 01:15 below again: the SHORT already fired
        ]
    )
    setups = scan(series)
    assert [(s.bar_ts, s.direction, s.entry, s.stop) for s in setups] == [
        (T0 + 60 * 60_000, Direction.LONG, 101.5, 99.0),
        (T0 + 65 * 60_000, Direction.SHORT, 98.2, 101.0),
    ]


def test_the_next_session_gets_its_own_range_and_signal() -> None:
    """Sessions 00:00 and 01:30: a close far above the 00:00 range at 01:30 is in the 01:30 session's range,
    not a 00:00 breakout; the 01:30 range (high 105.5) is broken at 02:30 and labelled 01:30."""
    quiet = (101.0, 100.4, 100.9, 1000.0)  # inside the 00:00 range
    after = [quiet] * 6  # 01:00 to 01:25
    after += [(105.5, 100.9, 105.0, 1000.0)] + [(105.2, 104.8, 105.0, 1000.0)] * 11  # 01:30 to 02:25
    after += [(105.9, 104.9, 105.8, 1000.0)]  # 02:30: above 105.5 x 1.001 = 105.6055
    series = session(after)
    params = OrbParams(sessions=["01:30", "00:00"])
    assert params.sessions == ("00:00", "01:30")
    [setup] = scan(series, params)
    assert (setup.bar_ts, setup.direction, setup.entry) == (T0 + 150 * 60_000, Direction.LONG, 105.8)
    assert (setup.context["session"], setup.context["range_high"], setup.context["range_low"]) == (
        "01:30",
        105.5,
        100.9,
    )
    assert setup.stop == 100.9
    assert setup.key_points[0] == KeyPoint(ts=T0 + 90 * 60_000, price=105.5, label="60m range high")
    assert setup.reason.startswith(
        "Opening range breakout up: close 105.8 above the 01:30 UTC 60m range high"
    )
    # With the 00:00 session alone, 01:30 is the first close beyond the 00:00 range.
    [single] = scan(series)
    assert (single.bar_ts, single.context["session"], single.entry) == (T0 + 90 * 60_000, "00:00", 105.0)


def test_multi_stage_each_range_has_its_own_setup() -> None:
    """Stages [15, 60]: 00:15 closes above the 15-minute range (100.6) while the hour is still forming: a 15m
    LONG there; the 60-minute range fires at 01:05 as before; the 60m range gives nothing before 01:00."""
    bars = [(100.5, 99.5, 100.0, 1000.0)] * WARM_UP + range_bars() + LONG_BREAKOUT
    bars[WARM_UP + 3] = (101.0, 99.4, 100.9, 1000.0)  # 00:15: close 100.9 > 100.6 x 1.001 = 100.7006
    series = candles(bars)
    setups = scan(series, OrbParams(stages=[60, 15]))
    assert [(s.bar_ts, s.direction, s.entry, s.context["stage_minutes"]) for s in setups] == [
        (T0 + 15 * 60_000, Direction.LONG, 100.9, 15),
        (T0 + 65 * 60_000, Direction.LONG, 101.5, 60),
    ]
    fifteen = setups[0]
    assert (fifteen.stop, fifteen.atr, fifteen.swing) == (99.4, 100.6 - 99.4, (99.4, 100.6))
    assert fifteen.context["range_height"] == 1.2
    assert fifteen.context["breakout_level"] == 100.7006
    assert fifteen.key_points == (
        KeyPoint(ts=T0, price=100.6, label="15m range high"),
        KeyPoint(ts=T0, price=99.4, label="15m range low"),
    )
    levels = calculate_levels(fifteen, RiskSettings.model_validate(RISK))
    assert levels.sl == 99.4
    assert levels.tps == (100.9 + (100.6 - 99.4), 100.9 + 2 * (100.6 - 99.4))
    # The 60-minute stage alone: the 00:15 bar is inside its range, not a breakout.
    assert [s.bar_ts for s in scan(series)] == [T0 + 65 * 60_000]


def test_same_bar_can_break_several_stages() -> None:
    """Stages [60, 15]: 01:00 closing at 101.5 is the first close beyond both ranges: two setups on that bar,
    the 15-minute one first; a bar only inside the 60-minute range breaks the 15-minute one alone."""
    setups = scan(session([(101.6, 100.8, 101.5, 3000.0)]), OrbParams(stages=[60, 15]))
    assert [(s.bar_ts, s.direction, s.context["stage_minutes"], s.stop) for s in setups] == [
        (T0 + 60 * 60_000, Direction.LONG, 15, 99.4),
        (T0 + 60 * 60_000, Direction.LONG, 60, 99.0),
    ]
    setups = scan(session(LONG_BREAKOUT), OrbParams(stages=[15, 60]))
    assert [(s.bar_ts, s.context["stage_minutes"]) for s in setups] == [
        (T0 + 60 * 60_000, 15),  # 01:00 closes at 100.9 > 100.6 x 1.001, inside the hour's 101.0
        (T0 + 65 * 60_000, 60),
    ]


# -- near misses ---------------------------------------------------------------------------------------


def test_close_just_short_of_the_breakout_level_does_not_fire() -> None:
    """A close at 101.1 (above the high 101 but under 101.101) or exactly at the level is not a breakout."""
    assert scan(session([(101.2, 100.8, 101.1, 3000.0)])) == []
    level = 101.0 * (1 + 0.1 / 100)
    assert scan(session([(101.2, 100.8, level, 3000.0)])) == []
    assert scan(session([(99.2, 98.8, 99.0 * (1 - 0.1 / 100), 3000.0)])) == []
    # With breakout_pct 0 a close above the high is enough.
    [setup] = scan(session([(101.2, 100.8, 101.1, 3000.0)]), OrbParams(breakout_pct=0.0))
    assert (setup.direction, setup.entry, setup.context["breakout_level"]) == (Direction.LONG, 101.1, 101.0)


def test_no_breakout_before_the_range_is_complete() -> None:
    """A close above everything so far at 00:55 (the range's last candle) is in the range, not a signal."""
    bars = [(100.5, 99.5, 100.0, 1000.0)] * WARM_UP + range_bars()
    bars[-1] = (102.0, 99.8, 101.9, 3000.0)
    assert scan(candles(bars)) == []
    # The range now reaches 102.0: 01:00 closing at 102.05 is not beyond 102.102; 102.2 is.
    assert scan(candles([*bars, (102.3, 101.8, 102.05, 1000.0)])) == []
    [setup] = scan(candles([*bars, (102.3, 101.8, 102.2, 1000.0)]))
    assert (setup.bar_ts, setup.context["range_high"]) == (T0 + 60 * 60_000, 102.0)


def test_require_volume_waits_for_volume_above_its_mean() -> None:
    """With require_volume a breakout on average volume (ratio 1.0) is skipped; the next one on 2000 (ratio
    2000 / 1050) fires; without the filter the first one does."""
    series = session([(101.6, 100.8, 101.5, 1000.0), (101.8, 101.2, 101.7, 2000.0)])
    assert volume_ratio(series, FIRST_AFTER) == 1.0
    [setup] = scan(series, OrbParams(require_volume=True))
    assert (setup.bar_ts, setup.entry) == (T0 + 65 * 60_000, 101.7)
    assert setup.context["volume_ratio"] == round(2000 / 1050, 3) == 1.905
    [unfiltered] = scan(series)
    assert (unfiltered.bar_ts, unfiltered.context["volume_ratio"]) == (T0 + 60 * 60_000, 1.0)


def test_an_incomplete_range_gives_nothing() -> None:
    """A range with a missing candle, or a history that starts mid-range, gives no setup for that session."""
    series = session(LONG_BREAKOUT)
    keep = np.ones(len(series), dtype=np.bool_)
    keep[WARM_UP + 5] = False  # 00:25 missing
    holed = Candles(
        symbol=series.symbol,
        timeframe=series.timeframe,
        ts=series.ts[keep],
        open=series.open[keep],
        high=series.high[keep],
        low=series.low[keep],
        close=series.close[keep],
        volume=series.volume[keep],
    )
    assert scan(holed) == []
    short_mean = OrbParams(volume_period=2)  # so that 15 or 16 bars are enough for the volume mean
    assert (
        len(scan(series.slice(WARM_UP - 1, len(series)), short_mean)) == 1
    )  # from 23:55: the range is whole
    assert scan(series.slice(WARM_UP + 1, len(series)), short_mean) == []  # from 00:05: it is not


# -- placeholders, short histories, parameters, timeframes ------------------------------------------


def test_placeholder_bar_never_fires() -> None:
    """The breakout bar flagged as a placeholder is not a signal; one in the range voids the range."""
    series = session(LONG_BREAKOUT[:2])
    assert len(scan(series)) == 1
    assert scan(with_placeholders(series, FIRST_AFTER + 1)) == []
    assert scan(with_placeholders(session(LONG_BREAKOUT), WARM_UP + 4)) == []


def test_too_short_history_gives_nothing() -> None:
    """Fewer bars than the volume mean needs (19 < 20): no setup, even on a whole range and breakout."""
    series = session(LONG_BREAKOUT[:2]).tail(19)
    assert series.ts[0] <= T0 - FIVE  # the range and the breakout are all there
    assert scan(series) == []
    assert len(scan(session(LONG_BREAKOUT[:2]).tail(20))) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"breakout_pct": -0.1},
        {"breakout_pct": 11},
        {"stop_at": "wick"},
        {"sessions": []},
        {"sessions": ["24:00"]},
        {"sessions": ["8:00"]},
        {"sessions": ["00:00", "00:00"]},
        {"stages": []},
        {"stages": [0]},
        {"stages": [60, 60]},
        {"stages": [1440]},
        {"sessions": ["00:00", "08:00"], "stages": [480]},  # no bar left after the range
        {"volume_period": 1},
        {"lookback": 49},
        {"lookback": 60, "volume_period": 61},
        {"range_minutes": 60},
    ],
)
def test_params_reject_out_of_range_values(overrides: dict[str, Any]) -> None:
    """Out-of-range, malformed or unknown parameters are validation errors."""
    with pytest.raises(ValidationError):
        OrbParams.model_validate(overrides)


def test_params_defaults_and_normalisation() -> None:
    """The defaults are the rule's; sessions and stages are sorted."""
    assert DEFAULTS.model_dump() == {
        "sessions": ("00:00",),
        "stages": (60,),
        "breakout_pct": 0.1,
        "require_volume": False,
        "volume_period": 20,
        "stop_at": "edge",
        "lookback": 300,
    }
    params = OrbParams.model_validate({"sessions": ["13:30", "00:00", "08:00"], "stages": [60, 5, 30, 15]})
    assert (params.sessions, params.stages) == (("00:00", "08:00", "13:30"), (5, 15, 30, 60))


def test_timeframe_must_divide_stages_and_session_starts() -> None:
    """needs and scan refuse a timeframe that does not divide a stage or a session start: a config error."""
    assert BOT.needs(DEFAULTS, "5m") == DataNeeds(lookback=300)
    assert BOT.needs(DEFAULTS, "15m") == DataNeeds(lookback=300)
    with pytest.raises(
        OrbConfigError, match=r"timeframe 1h does not divide the opening range stage\(s\) \[5\]"
    ):
        BOT.needs(OrbParams(stages=[5, 60]), "1h")
    with pytest.raises(OrbConfigError, match=r"does not divide the session start\(s\) \['13:30'\]"):
        BOT.needs(OrbParams(sessions=["00:00", "13:30"]), "1h")
    hourly = candles([(100.5, 99.5, 100.0, 1000.0)] * 30, start=T0, timeframe="1h")
    with pytest.raises(OrbConfigError) as raised:
        scan(hourly, OrbParams(sessions=["13:30"]))
    assert isinstance(raised.value, ValueError)  # the CLI turns it into a one-line config error
    assert scan(hourly) == []  # 1h divides 60 and 00:00: a one-candle range, no breakout in a flat series


def test_lookback_must_hold_the_longest_session() -> None:
    """A 1m bot's 24-hour session is 1440 bars: needs refuses lookback 300 and accepts 1440."""
    with pytest.raises(OrbConfigError, match="lookback 300 is shorter than the longest session"):
        BOT.needs(DEFAULTS, "1m")
    assert BOT.needs(OrbParams(lookback=1440), "1m") == DataNeeds(lookback=1440)
    # Three sessions: the longest is 13:30 to 00:00, 630 minutes = 126 five-minute bars.
    assert BOT.needs(OrbParams(sessions=["00:00", "08:00", "13:30"], lookback=126), "5m").lookback == 126
    with pytest.raises(OrbConfigError):
        BOT.needs(OrbParams(sessions=["00:00", "08:00", "13:30"], lookback=125), "5m")


# -- real data -------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_sol_5m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_usdm_perp/SOL_USDT-5m.csv.gz", 6000), min_nonempty=25)


def test_no_look_ahead_multi_stage_on_real_doge_5m() -> None:
    """The same for three sessions and four stages on DOGE 5m."""
    params = OrbParams(sessions=["00:00", "08:00", "13:30"], stages=[5, 15, 30, 60])
    assert_no_look_ahead(
        lambda s: scan(s, params), real("binance_usdm_perp/DOGE_USDT-5m.csv.gz", 4000), min_nonempty=25
    )


def test_the_runners_lookback_window_gives_the_same_newest_setups() -> None:
    """Scanning only the last ``lookback`` bars (as the runner does) gives exactly the full scan's setups on
    the newest bar, at every bar where the full scan fired and at 100 random bars."""
    series = real("binance_spot/BTC_USDT-5m.csv.gz", 6000)
    everything = scan(series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    fired = sorted({index_of[s.bar_ts] for s in everything if index_of[s.bar_ts] >= DEFAULTS.lookback})
    assert len(fired) >= 30
    rng = np.random.default_rng(7)
    at_random = rng.choice(np.arange(DEFAULTS.lookback, len(series)), size=100, replace=False).tolist()
    for i in (*fired, *at_random):
        window = series.slice(i + 1 - DEFAULTS.lookback, i + 1)
        newest = [s for s in scan(window) if s.bar_ts == int(series.ts[i])]
        assert newest == [s for s in everything if s.bar_ts == int(series.ts[i])], f"bar {i}"


@pytest.mark.parametrize(
    "relative", ["binance_usdm_perp/SOL_USDT-5m.csv.gz", "binance_usdm_perp/DOGE_USDT-5m.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real 5m series the bot fires at least once and on under 5 % of bars; each setup is the
    first close beyond its day's complete first-hour range, checked bar by bar."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    mean = talib.SMA(series.volume, timeperiod=20)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    seen: set[tuple[int, Direction]] = set()
    for setup in setups:
        i = index_of[setup.bar_ts]
        day = setup.bar_ts - setup.bar_ts % DAY
        assert (day, setup.direction) not in seen
        seen.add((day, setup.direction))
        first, end = np.searchsorted(series.ts, [day, day + HOUR])
        assert end - first == 12
        assert series.ts[first] == day
        assert not series.placeholder[first:end].any()
        high, low = float(series.high[first:end].max()), float(series.low[first:end].min())
        assert i >= end
        assert setup.entry == float(series.close[i])
        assert (setup.context["range_high"], setup.context["range_low"], setup.atr) == (high, low, high - low)
        assert setup.context["volume_ratio"] == pytest.approx(series.volume[i] / mean[i], abs=5e-4 + 1e-9)
        assert not series.placeholder[i]
        closes = series.close[end : i + 1]
        if setup.direction is Direction.LONG:
            beyond = closes > high * (1 + 0.1 / 100)
            assert setup.stop == low
        else:
            beyond = closes < low * (1 - 0.1 / 100)
            assert setup.stop == high
        # The setup's bar is the first usable close beyond the level (not a placeholder, with a volume mean).
        usable = ~series.placeholder[end:i] & np.isfinite(mean[end:i])
        earlier = np.flatnonzero(beyond[:-1] & usable)
        assert beyond[-1]
        assert earlier.size == 0
        unbounded = {**RISK, "min_rr": 0.0, "min_stop_pct": 0.0, "max_stop_pct": 100.0}
        levels = calculate_levels(setup, RiskSettings.model_validate(unbounded))
        assert levels.tps[0] == pytest.approx(setup.entry + setup.direction.sign * (high - low), rel=1e-12)
