"""Tests of bots/fib_swing_bot.py: Fibonacci pullbacks on hand-built impulses, filters, levels, look-ahead."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import talib

from bots.base import MarketData
from bots.fib_swing_bot import FibSwingBot, FibSwingParams
from common.pivots import swing_pivots
from common.types import Candles, Direction, KeyPoint, Levels, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tp_sl_calculator import LevelsRejected, RejectReason, RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
BOT = FibSwingBot()
DEFAULTS = FibSwingParams()
RISK = RiskSettings.model_validate(
    {"sl_method": "structure", "tp_method": "fibonacci", "fib_extensions": [1.0, 1.272, 1.618], "min_rr": 1.0}
)

# The hand-built impulse (see ``impulse_series``): swing low 1021.5 at bar 59, swing high 1054.5 at bar
# 75 (confirmed at bar 85), range 33. Its retracements (high - r x 33) and the 2 % tolerance (0.66):
#   0.65 -> 1033.05  band [1032.39, 1033.71]      0.618 -> 1034.106  band [1033.446, 1034.766]
#   0.5  -> 1038.0   band [1037.34, 1038.66]      0.382 -> 1041.894  band [1041.234, 1042.554]
LOW, HIGH = 1021.5, 1054.5
MIRROR = 2100.0  # prices p -> 2100 - p turn the uptrend impulse into a downtrend one


def candles(
    open_: list[float],
    high: list[float],
    low: list[float],
    close: list[float],
    volume: list[float] | None = None,
    placeholder: list[bool] | None = None,
) -> Candles:
    """Hourly candles from T0, volume 1000 unless given."""
    size = len(close)
    return Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=T0 + np.arange(size, dtype=np.int64) * HOUR,
        open=np.array(open_),
        high=np.array(high),
        low=np.array(low),
        close=np.array(close),
        volume=np.array(volume if volume is not None else [1000.0] * size),
        placeholder=np.array(placeholder if placeholder is not None else [], dtype=np.bool_),
    )


def impulse_closes() -> list[float]:
    """Closes of bars 0..85: a slow rise, a dip to 1022 (bar 59), a rally to 1054 (bar 75), a drift down.

    Bars 0..54 rise 0.5 a bar from 1000 to 1027, bars 55..59 fall 1 a bar to 1022, bars 60..75 rise 2 a
    bar to 1054, bars 76..85 fall 1 a bar to 1044 (lows stay above the 0.382 band: 1043.5 > 1042.554).
    """
    return (
        [1000.0 + 0.5 * k for k in range(55)]
        + [1027.0 - (k - 54) for k in range(55, 60)]
        + [1022.0 + 2 * (k - 59) for k in range(60, 76)]
        + [1054.0 - (k - 75) for k in range(76, 86)]
    )


def impulse_series(*extra: tuple[float, float, float, float], volume: float = 1000.0) -> Candles:
    """The 86 impulse bars (open = previous close, high / low = close +/- 0.5), then ``extra`` OHLC bars.

    The extra bars get ``volume``; the others 1000.
    """
    close = impulse_closes()
    open_ = [close[0], *close[:-1]]
    high = [c + 0.5 for c in close]
    low = [c - 0.5 for c in close]
    for o, h, lo, c in extra:
        open_.append(o)
        high.append(h)
        low.append(lo)
        close.append(c)
    volumes = [1000.0] * 86 + [volume] * len(extra)
    return candles(open_, high, low, close, volumes)


def mirrored(series: Candles) -> Candles:
    """The series upside down: every price p becomes 2100 - p (high and low swap)."""
    return candles(
        (MIRROR - series.open).tolist(),
        (MIRROR - series.low).tolist(),
        (MIRROR - series.high).tolist(),
        (MIRROR - series.close).tolist(),
        series.volume.tolist(),
    )


def scan(series: Candles, params: FibSwingParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series``."""
    return list(BOT.scan(MarketData(candles=series), params))


def emas(series: Candles, fast: int = 20, slow: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """EMA(fast) and EMA(slow) of the close, straight from TA-Lib."""
    return talib.EMA(series.close, timeperiod=fast), talib.EMA(series.close, timeperiod=slow)


def sig(value: float) -> float:
    """10 significant digits, as the context rounds EMAs."""
    return float(f"{value:.10g}")


def test_the_hand_built_impulse_is_what_the_tests_assume() -> None:
    """The swing low is bar 59 (1021.5), the swing high bar 75 (1054.5), confirmed at bar 85; EMA 20 > 50."""
    series = impulse_series((1044.0, 1044.5, 1034.0, 1036.0))
    pivots = swing_pivots(series.high, series.low, 10)
    assert list(
        zip(pivots.index.tolist(), pivots.price.tolist(), pivots.confirmed_at.tolist(), strict=True)
    ) == [
        (59, LOW, 69),
        (75, HIGH, 85),
    ]
    fast, slow = emas(series)
    assert (fast[75:87] > slow[75:87]).all()


def test_long_pullback_to_the_618_level() -> None:
    """Bar 86's low 1034.0 touches the 0.618 level (1034.106) and closes above it: a PREMIUM LONG at 1036."""
    series = impulse_series((1044.0, 1044.5, 1034.0, 1036.0))
    fast, slow = emas(series)
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 86 * HOUR,
        entry=1036.0,
        reason=(
            "PREMIUM pullback to Fib 0.618 (1034.11) in an uptrend: low 1034.00, close 1036.00; "
            "impulse 1021.50 -> 1054.50; volume 1.00x average"
        ),
        stop=1020.84,  # the origin 1021.5 less 2 % of the range 33 (0.66)
        swing=(LOW, HIGH),
        context={
            "ema20": sig(float(fast[86])),
            "ema50": sig(float(slow[86])),
            "level": 0.618,
            "level_price": 1034.106,
            "quality": "PREMIUM",
            "volume_ratio": 1.0,
            "impulse_low": LOW,
            "impulse_high": HIGH,
        },
        key_points=(
            KeyPoint(ts=T0 + 59 * HOUR, price=LOW, label="impulse low"),
            KeyPoint(ts=T0 + 75 * HOUR, price=HIGH, label="impulse high"),
            KeyPoint(ts=T0 + 86 * HOUR, price=1034.106, label="Fib 0.618"),
        ),
    )


def test_long_levels_from_the_risk_block() -> None:
    """SL 1020.84 (the setup's stop), TPs at the 1.0 / 1.272 / 1.618 extensions of 1021.5 -> 1054.5."""
    [setup] = scan(impulse_series((1044.0, 1044.5, 1034.0, 1036.0)))
    levels = calculate_levels(setup, RISK)
    assert levels.direction is Direction.LONG
    assert levels.entry == 1036.0
    assert levels.sl == pytest.approx(1020.84, rel=1e-12)
    # 1021.5 + e x 33: 1054.5, 1063.476, 1074.894.
    assert levels.tps == pytest.approx((1054.5, 1063.476, 1074.894), rel=1e-12)
    # TP1 is 18.5 above entry, the stop 15.16 below: R:R 1.22, above min_rr 1.0.
    assert levels.risk_reward(0) == pytest.approx(18.5 / 15.16, rel=1e-12)


def test_short_pullback_mirrors_the_long() -> None:
    """Upside down, bar 86's high 1066.0 touches 0.618 (1065.894) and closes below it: a PREMIUM SHORT."""
    series = mirrored(impulse_series((1044.0, 1044.5, 1034.0, 1036.0)))
    fast, slow = emas(series)
    assert fast[86] < slow[86]
    low, high = MIRROR - HIGH, MIRROR - LOW  # 1045.5, 1078.5
    [setup] = scan(series)
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 86 * HOUR,
        entry=1064.0,
        reason=(
            "PREMIUM pullback to Fib 0.618 (1065.89) in a downtrend: high 1066.00, close 1064.00; "
            "impulse 1078.50 -> 1045.50; volume 1.00x average"
        ),
        stop=1079.16,  # the origin 1078.5 plus 0.66
        swing=(low, high),
        context={
            "ema20": sig(float(fast[86])),
            "ema50": sig(float(slow[86])),
            "level": 0.618,
            "level_price": 1065.894,  # 1045.5 + 0.618 x 33
            "quality": "PREMIUM",
            "volume_ratio": 1.0,
            "impulse_low": low,
            "impulse_high": high,
        },
        key_points=(
            KeyPoint(ts=T0 + 59 * HOUR, price=high, label="impulse high"),
            KeyPoint(ts=T0 + 75 * HOUR, price=low, label="impulse low"),
            KeyPoint(ts=T0 + 86 * HOUR, price=1065.894, label="Fib 0.618"),
        ),
    )
    levels = calculate_levels(setup, RISK)
    assert levels.sl == pytest.approx(1079.16, rel=1e-12)
    # 1078.5 - e x 33: 1045.5, 1036.524, 1025.106.
    assert levels.tps == pytest.approx((1045.5, 1036.524, 1025.106), rel=1e-12)
    assert levels == Levels(Direction.SHORT, 1064.0, levels.sl, levels.tps)


def test_near_miss_low_just_above_the_band() -> None:
    """A low of 1034.8, 0.034 above the 0.618 band's top (1034.766) and far from the 0.5 band: no setup."""
    assert scan(impulse_series((1044.0, 1044.5, 1034.8, 1036.0))) == []
    # 0.04 lower (1034.76) it is inside the band and fires.
    [setup] = scan(impulse_series((1044.0, 1044.5, 1034.76, 1036.0)))
    assert (setup.bar_ts, setup.context["level"]) == (T0 + 86 * HOUR, 0.618)


def test_near_miss_close_just_below_the_level() -> None:
    """The low touches 0.618 but the close 1034.1 stays just below the level 1034.106: no setup."""
    assert scan(impulse_series((1044.0, 1044.5, 1034.0, 1034.1))) == []
    [setup] = scan(impulse_series((1044.0, 1044.5, 1034.0, 1034.11)))
    assert setup.entry == 1034.11


def test_near_miss_in_the_mirror_short() -> None:
    """Upside down, a high 0.034 below the 0.618 band's bottom gives no SHORT."""
    assert scan(mirrored(impulse_series((1044.0, 1044.5, 1034.8, 1036.0)))) == []


def test_a_low_through_the_band_is_not_a_touch() -> None:
    """A wick to 1031.0, below the 0.65 band (1032.39), closing at 1036: a deeper dip, no level touched."""
    assert scan(impulse_series((1044.0, 1044.5, 1031.0, 1036.0))) == []


def test_065_is_checked_before_0618() -> None:
    """A low of 1033.5 is in both the 0.65 and 0.618 bands; closing above 0.65 (1033.05) makes it 0.65."""
    [setup] = scan(impulse_series((1044.0, 1044.5, 1033.5, 1036.0)))
    assert setup.context["level"] == 0.65
    assert setup.context["level_price"] == 1033.05
    assert setup.context["quality"] == "PREMIUM"
    assert setup.key_points[2] == KeyPoint(ts=T0 + 86 * HOUR, price=1033.05, label="Fib 0.65")


def test_05_is_confirmed_and_rejected_by_min_rr_1() -> None:
    """A touch of 0.5 (1038.0) is CONFIRMED; TP1 (1054.5) is under 1 R away, so min_rr 1.0 rejects it."""
    [setup] = scan(impulse_series((1044.0, 1044.5, 1038.0, 1039.0)))
    assert (setup.context["level"], setup.context["quality"]) == (0.5, "CONFIRMED")
    assert setup.reason.startswith("CONFIRMED pullback to Fib 0.5 (1038.00) in an uptrend")
    with pytest.raises(LevelsRejected) as rejected:
        calculate_levels(setup, RISK)
    assert rejected.value.reason is RejectReason.RR_TOO_LOW
    # Reward 15.5, risk 1039 - 1020.84 = 18.16: R:R 0.854, accepted with min_rr 0.85.
    levels = calculate_levels(setup, RISK.merged({"min_rr": 0.85}))
    assert levels.risk_reward(0) == pytest.approx(15.5 / 18.16, rel=1e-12)


def test_0382_needs_above_average_volume() -> None:
    """A touch of 0.382 at average volume is no setup; at 1500 (1.463x the 20-bar mean) it is SHALLOW."""
    touch = (1044.0, 1044.5, 1042.0, 1043.0)  # low 1042.0 in the 0.382 band, close above 1041.894
    assert scan(impulse_series(touch, volume=1000.0)) == []
    series = impulse_series(touch, volume=1500.0)
    [setup] = scan(series)
    ratio = 1500.0 / float(talib.SMA(series.volume, timeperiod=20)[86])
    assert ratio == pytest.approx(1500.0 / 1025.0, rel=1e-12)
    assert (setup.context["level"], setup.context["quality"]) == (0.382, "SHALLOW")
    assert setup.context["volume_ratio"] == round(ratio, 3) == 1.463
    assert setup.reason.endswith("volume 1.46x average")


def test_one_signal_per_impulse() -> None:
    """After the 0.618 touch at bar 86, a 0.5 touch at bar 87 and a 0.618 touch at 88 give nothing more."""
    series = impulse_series(
        (1044.0, 1044.5, 1034.0, 1036.0),
        (1036.0, 1040.0, 1038.0, 1039.0),
        (1039.0, 1039.5, 1034.0, 1035.0),
    )
    assert [(s.bar_ts, s.context["level"]) for s in scan(series)] == [(T0 + 86 * HOUR, 0.618)]


def test_an_impulse_broken_below_its_origin_is_spent() -> None:
    """A dip to 1021.4, below the origin 1021.5, voids the impulse: bar 87's 0.618 touch is no setup."""
    broken = impulse_series((1044.0, 1044.5, 1021.4, 1030.0), (1030.0, 1036.5, 1034.0, 1036.0))
    fast, slow = emas(broken)
    assert fast[87] > slow[87]  # still an uptrend: only the break stops it
    assert scan(broken) == []
    # A dip exactly to the origin is not beyond it: bar 87 fires.
    held = impulse_series((1044.0, 1044.5, 1021.5, 1030.0), (1030.0, 1036.5, 1034.0, 1036.0))
    [setup] = scan(held)
    assert (setup.bar_ts, setup.context["level"]) == (T0 + 87 * HOUR, 0.618)


def test_no_long_against_the_ema_trend() -> None:
    """With EMA 2 / 3 the drop of bar 86 turns the trend down (EMA 2 < EMA 3): the 0.618 touch is no LONG."""
    series = impulse_series((1044.0, 1044.5, 1034.0, 1036.0))
    fast, slow = emas(series, 2, 3)
    assert fast[86] < slow[86]
    assert scan(series, FibSwingParams(ema_fast=2, ema_slow=3)) == []


def test_placeholder_bar_never_fires() -> None:
    """The same touch on a bar marked as an exchange placeholder is not a setup."""
    series = impulse_series((1044.0, 1044.5, 1034.0, 1036.0))
    flags = [False] * 86 + [True]
    marked = candles(
        series.open.tolist(),
        series.high.tolist(),
        series.low.tolist(),
        series.close.tolist(),
        series.volume.tolist(),
        flags,
    )
    assert scan(marked) == []


def test_too_short_history_gives_nothing() -> None:
    """Fewer bars than EMA 50 needs: no setup (and no error), even on the touching bar."""
    series = impulse_series((1044.0, 1044.5, 1034.0, 1036.0))
    assert scan(series.tail(49)) == []
    assert scan(series.head(10)) == []


def test_params_reject_bad_values() -> None:
    """Out-of-range values, ema_fast >= ema_slow, a lookback too short and unknown keys are errors."""
    for bad in (
        {"ema_fast": 1},
        {"ema_fast": 50},
        {"ema_fast": 60, "ema_slow": 50},
        {"pivot_lookback": 0},
        {"tolerance_pct": -0.1},
        {"tolerance_pct": 21},
        {"stop_buffer_pct": -1},
        {"volume_sma_period": 1},
        {"lookback": 49},
        {"ema_slow": 400},  # needs lookback >= 400
        {"lookback": 60, "pivot_lookback": 30},  # a swing pair needs 62 bars
        {"levels": [0.5]},
    ):
        with pytest.raises(pydantic.ValidationError):
            FibSwingParams.model_validate(bad)
    assert FibSwingParams.model_validate({"ema_slow": 400, "lookback": 400}).ema_slow == 400
    assert BOT.needs(DEFAULTS, "1h").lookback == 300


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 3000), min_nonempty=25)


@pytest.mark.parametrize(
    "relative", ["binance_spot/ETH_USDT-4h.csv.gz", "binance_usdm_perp/BTC_USDT-1h.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    series = real(relative)
    setups = scan(series)
    assert_fires_rarely(setups, series)
    fast, slow = emas(series)
    sma = talib.SMA(series.volume, timeperiod=20)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    impulses = set()
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(series.close[i])
        assert not series.placeholder[i]
        assert setup.swing is not None
        low, high = setup.swing
        span = high - low
        level = float(setup.context["level"])
        price = high - level * span if setup.direction is Direction.LONG else low + level * span
        assert setup.context["level_price"] == pytest.approx(price, rel=1e-9)
        assert setup.context["quality"] == {0.65: "PREMIUM", 0.618: "PREMIUM", 0.5: "CONFIRMED"}.get(
            level, "SHALLOW"
        )
        if setup.direction is Direction.LONG:
            assert fast[i] > slow[i]
            assert abs(series.low[i] - price) <= 0.02 * span + 1e-9
            assert series.close[i] > price
            assert setup.stop == pytest.approx(low - 0.02 * span, rel=1e-12)
            assert series.low[index_of[setup.key_points[1].ts] + 1 : i + 1].min() >= low
        else:
            assert fast[i] < slow[i]
            assert abs(series.high[i] - price) <= 0.02 * span + 1e-9
            assert series.close[i] < price
            assert setup.stop == pytest.approx(high + 0.02 * span, rel=1e-12)
            assert series.high[index_of[setup.key_points[1].ts] + 1 : i + 1].max() <= high
        if level == 0.382:
            assert series.volume[i] > sma[i]
        # One setup per impulse: its end pivot's bar and the direction identify it.
        impulse = (setup.direction, setup.key_points[1].ts)
        assert impulse not in impulses
        impulses.add(impulse)
