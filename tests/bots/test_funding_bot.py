"""Tests of bots/funding_bot.py: crowded funding on hand-built candles and settlements, no look-ahead."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.funding_bot import FundingBot, FundingParams, funding_zscores
from common.market import ExtrasNeed
from common.market.extras import FundingRates, read_funding_file
from common.market.replay import read_ohlcv_file
from common.types import Candles, Direction, Setup
from tests.bots.checks import assert_fires_rarely
from tests.fakes.csvdata import require_shared_data
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
HOUR = 3_600_000
H8 = 8 * HOUR
BOT = FundingBot()
DEFAULTS = FundingParams()
RISK = {
    "sl_method": "atr",
    "sl_atr_mult": 1.5,
    "tp_method": "atr",
    "tp_multiples": [2.0, 3.0, 4.0],
    "min_rr": 1.3,
}
#: The settlement under test: number 33, at T0 + 24 h. Bars 23..30 (closing T0 + 24 h .. 31 h) see it.
TESTED = 33


def candles(close: list[float], placeholder_at: int | None = None) -> Candles:
    """Hourly candles from T0: open = previous close, high / low 1 beyond the body, volume 1000."""
    closes = np.array(close)
    opens = np.r_[closes[0], closes[:-1]]
    flags = np.zeros(closes.size, dtype=np.bool_)
    if placeholder_at is not None:
        flags[placeholder_at] = True
    return Candles(
        symbol="BTC/USDT:USDT",
        timeframe="1h",
        ts=T0 + np.arange(closes.size, dtype=np.int64) * HOUR,
        open=opens,
        high=np.maximum(opens, closes) + 1.0,
        low=np.minimum(opens, closes) - 1.0,
        close=closes,
        volume=np.full(closes.size, 1000.0),
        placeholder=flags,
    )


def falling(flat_until: int = 25, bars: int = 40) -> list[float]:
    """Closes at 100 up to bar ``flat_until - 1``, then 1.0 lower every bar (99 at ``flat_until``)."""
    return [100.0 if i < flat_until else 100.0 - (i - flat_until + 1) for i in range(bars)]


def rising(flat_until: int = 25, bars: int = 40) -> list[float]:
    """The mirror of :func:`falling`: 101 at ``flat_until``, then 1.0 higher every bar."""
    return [100.0 if i < flat_until else 100.0 + (i - flat_until + 1) for i in range(bars)]


def funding(window: tuple[float, float], tested: float, after: float = 0.0001) -> FundingRates:
    """35 settlements every 8 h, number 30 at T0: numbers 0..32 alternate the ``window`` pair,
    number 33 (T0 + 24 h) is ``tested``, number 34 (T0 + 32 h) ``after``."""
    rates = [window[j % 2] for j in range(TESTED)] + [tested, after]
    ts = T0 + (np.arange(len(rates), dtype=np.int64) - 30) * H8
    return FundingRates(symbol="BTC/USDT:USDT", ts=ts, rate=np.array(rates), interval_ms=H8)


def scan(series: Candles, rates: FundingRates | None, params: FundingParams = DEFAULTS) -> list[Setup]:
    """The bot's setups on ``series`` with ``rates``."""
    return list(BOT.scan(MarketData(candles=series, funding=rates), params))


def atr14(series: Candles) -> np.ndarray:
    """ATR(14) straight from TA-Lib."""
    return talib.ATR(series.high, series.low, series.close, timeperiod=14)


def sma20(series: Candles) -> np.ndarray:
    """SMA(20) straight from TA-Lib."""
    return talib.SMA(series.close, timeperiod=20)


def test_short_on_crowded_long_funding_confirmed_by_price() -> None:
    """+0.06 % funding and the first close below SMA 20 after it: SHORT at bar 25, ATR levels 1.5 / 2-3-4."""
    series = candles(falling())
    rates = funding((-0.0001, 0.0004), 0.0006)
    sma, atr = sma20(series), atr14(series)
    # Bars 23 and 24 see the settlement but close at their SMA (100 = 100): no confirmation yet.
    assert (series.close[23], sma[23], series.close[24], sma[24]) == (100.0, 100.0, 100.0, 100.0)
    assert sma[25] == pytest.approx((19 * 100 + 99) / 20, rel=1e-12)
    # The window (settlements 3..32) alternates -0.01 % / +0.04 %: mean 0.015 %, std 0.025 %, z 1.8.
    window = np.array([(-0.0001, 0.0004)[j % 2] for j in range(3, 33)])
    assert window.mean() == pytest.approx(0.00015, rel=1e-9)
    assert window.std() == pytest.approx(0.00025, rel=1e-9)
    z = (0.0006 - window.mean()) / window.std()
    assert z == pytest.approx(1.8, rel=1e-9)
    [setup] = scan(series, rates)  # bars 26..30 qualify too: one signal per settlement
    assert setup == Setup(
        direction=Direction.SHORT,
        bar_ts=T0 + 25 * HOUR,
        entry=99.0,
        atr=float(atr[25]),
        reason=(
            "Funding +0.0600 % per 8 h (65.7 %/yr) crowded long; close below SMA 20; "
            "next settlement 2024-01-02 08:00 UTC"
        ),
        context={
            "rate": 0.0006,
            "annualised_pct": 65.7,  # 0.0006 x 3 settlements a day x 365 days, in %
            "settlement_ms": T0 + 24 * HOUR,
            "next_settlement_ms": T0 + 32 * HOUR,
            "interval_h": 8.0,
            "trigger": "threshold",
            "score": -3,
            "sma": float(sma[25]),
            "atr": float(atr[25]),
            "zscore": round(z, 2),
        },
    )
    # ATR(14) at bar 25: true ranges are 2 on the flat bars and 3 on the falling ones (1 body + 2 wicks).
    assert 2.0 < atr[25] < 3.0
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert (levels.direction, levels.entry) == (Direction.SHORT, 99.0)
    assert levels.sl == pytest.approx(99.0 + 1.5 * atr[25], rel=1e-12)
    assert levels.tps == pytest.approx(
        (99.0 - 2 * atr[25], 99.0 - 3 * atr[25], 99.0 - 4 * atr[25]), rel=1e-12
    )


def test_long_on_crowded_short_funding_confirmed_by_price() -> None:
    """The mirror: -0.06 % funding and the first close above SMA 20: LONG at bar 25, ATR levels."""
    series = candles(rising())
    rates = funding((0.0001, -0.0004), -0.0006)
    sma, atr = sma20(series), atr14(series)
    window = np.array([(0.0001, -0.0004)[j % 2] for j in range(3, 33)])
    z = (-0.0006 - window.mean()) / window.std()
    assert z == pytest.approx(-1.8, rel=1e-9)
    [setup] = scan(series, rates)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=T0 + 25 * HOUR,
        entry=101.0,
        atr=float(atr[25]),
        reason=(
            "Funding -0.0600 % per 8 h (-65.7 %/yr) crowded short; close above SMA 20; "
            "next settlement 2024-01-02 08:00 UTC"
        ),
        context={
            "rate": -0.0006,
            "annualised_pct": -65.7,
            "settlement_ms": T0 + 24 * HOUR,
            "next_settlement_ms": T0 + 32 * HOUR,
            "interval_h": 8.0,
            "trigger": "threshold",
            "score": 3,
            "sma": float(sma[25]),
            "atr": float(atr[25]),
            "zscore": round(z, 2),
        },
    )
    levels = calculate_levels(setup, RiskSettings.model_validate(RISK))
    assert levels.sl == pytest.approx(101.0 - 1.5 * atr[25], rel=1e-12)
    assert levels.tps == pytest.approx(
        (101.0 + 2 * atr[25], 101.0 + 3 * atr[25], 101.0 + 4 * atr[25]), rel=1e-12
    )
    # TP1's reward:risk is 2 / 1.5 = 1.33, above the block's min_rr 1.3.
    assert (levels.tps[0] - levels.entry) / levels.risk == pytest.approx(4 / 3, rel=1e-9)


def test_near_miss_rate_just_below_the_threshold() -> None:
    """+0.0499 % (z 1.4, under 2) with the same confirming price: no signal at all."""
    assert scan(candles(falling()), funding((-0.0001, 0.0004), 0.000499)) == []
    # Exactly at the threshold it fires (>=).
    [setup] = scan(candles(falling()), funding((-0.0001, 0.0004), 0.0005))
    assert (setup.bar_ts, setup.direction, setup.context["trigger"]) == (
        T0 + 25 * HOUR,
        Direction.SHORT,
        "threshold",
    )


def test_near_miss_price_not_confirming_needs_min_score_2() -> None:
    """Crowded funding while the close stays at its SMA scores only -2: no signal; min_score 2 takes it."""
    series = candles([100.0] * 40)
    rates = funding((-0.0001, 0.0004), 0.0006)
    assert scan(series, rates) == []
    [setup] = scan(series, rates, FundingParams(min_score=2))
    # The first bar after the settlement (bar 23, closing at T0 + 24 h, the settlement's time).
    assert (setup.bar_ts, setup.direction, setup.entry) == (T0 + 23 * HOUR, Direction.SHORT, 100.0)
    assert setup.context["score"] == -2
    assert setup.reason == (
        "Funding +0.0600 % per 8 h (65.7 %/yr) crowded long; close not confirming (SMA 20 100.000); "
        "next settlement 2024-01-02 08:00 UTC"
    )
    # A rising price contradicts a SHORT: still only -2.
    assert scan(candles(rising()), rates) == []


def test_zscore_trigger_when_the_rate_is_below_the_threshold() -> None:
    """+0.03 % after a window alternating 0.01 / 0.02 % (mean 0.015 %, std 0.005 %): z +3 scores -2."""
    series = candles(falling())
    rates = funding((0.0001, 0.0002), 0.0003)
    window = np.array([(0.0001, 0.0002)[j % 2] for j in range(3, 33)])
    z = (0.0003 - window.mean()) / window.std()
    assert z == pytest.approx(3.0, rel=1e-9)
    [setup] = scan(series, rates)
    yearly = 0.0003 * 1095 * 100
    assert (setup.bar_ts, setup.direction, setup.entry) == (T0 + 25 * HOUR, Direction.SHORT, 99.0)
    assert setup.reason == (
        f"Funding +0.0300 % per 8 h ({yearly:.1f} %/yr), z-score +3.00 over the last 30 settlements: "
        "unusually high; close below SMA 20; next settlement 2024-01-02 08:00 UTC"
    )
    assert setup.context["trigger"] == "zscore"
    assert setup.context["zscore"] == 3.0
    assert setup.context["score"] == -3
    assert setup.context["annualised_pct"] == round(yearly, 2)
    # The LONG mirror: -0.03 % after a window alternating -0.01 / -0.02 %, price rising.
    [long] = scan(candles(rising()), funding((-0.0001, -0.0002), -0.0003))
    assert (long.bar_ts, long.direction, long.context["zscore"]) == (T0 + 25 * HOUR, Direction.LONG, -3.0)
    assert "unusually low; close above SMA 20" in long.reason
    # z just under 2 (+0.0249 %: z 1.98) is a near miss.
    assert scan(series, funding((0.0001, 0.0002), 0.0002490)) == []
    # The window excludes the rate itself: the settlement's own rate does not dilute its z.
    assert funding_zscores(rates.rate, 30)[TESTED] == pytest.approx(3.0, rel=1e-9)


def test_triggers_do_not_add_up_and_the_threshold_wins_a_conflict() -> None:
    """+0.06 % after a window averaging 0.25 % (z -3.8, 'LONG') is a SHORT: the threshold wins, score -3."""
    rates = funding((0.0020, 0.0030), 0.0006, after=0.0025)
    assert funding_zscores(rates.rate, 30)[TESTED] == pytest.approx((0.0006 - 0.0025) / 0.0005, rel=1e-9)
    setups = scan(candles(falling()), rates)
    # Settlements 31 and 32 (0.3 %, 0.2 %) are crowded too, but before bar 25 no close is below its SMA.
    assert [(s.bar_ts, s.direction, s.context["score"], s.context["trigger"]) for s in setups] == [
        (T0 + 25 * HOUR, Direction.SHORT, -3, "threshold"),
        (T0 + 31 * HOUR, Direction.SHORT, -3, "threshold"),  # settlement 34 (0.25 %) from bar 31
    ]
    assert setups[0].context["zscore"] == -3.8


def test_one_signal_per_settlement_and_again_after_the_next() -> None:
    """Bars 25..30 all qualify on settlement 33: one signal (bar 25); settlement 34 crowded too: bar 31."""
    setups = scan(candles(falling()), funding((-0.0001, 0.0004), 0.0006, after=0.0006))
    assert [s.bar_ts for s in setups] == [T0 + 25 * HOUR, T0 + 31 * HOUR]
    assert [s.context["settlement_ms"] for s in setups] == [T0 + 24 * HOUR, T0 + 32 * HOUR]
    assert setups[1].context["next_settlement_ms"] == T0 + 40 * HOUR
    assert setups[1].reason.endswith("next settlement 2024-01-02 16:00 UTC")


def test_flat_window_has_no_zscore() -> None:
    """After 30 identical rates z is undefined: +0.03 % does not fire; +0.06 % fires without a zscore."""
    assert scan(candles(falling()), funding((0.0001, 0.0001), 0.0003)) == []
    [setup] = scan(candles(falling()), funding((0.0001, 0.0001), 0.0006))
    assert setup.context["trigger"] == "threshold"
    assert "zscore" not in setup.context
    flat = np.full(31, 0.0001)
    assert 0 < np.std(flat[:30]) < 1e-18  # float noise, not a spread
    assert np.isnan(funding_zscores(flat, 30)[30])


def test_settlement_seen_only_from_the_bar_closing_at_or_after_it() -> None:
    """A settlement at T0 + 24 h is first seen by bar 23 (closing at 24 h), with 1 ms of jitter by bar 24."""
    series = candles([100.0] * 40)
    rates = funding((-0.0001, 0.0004), 0.0006)
    [setup] = scan(series, rates, FundingParams(min_score=2))
    assert setup.bar_ts == T0 + 23 * HOUR
    assert series.close_time(23) == int(rates.ts[TESTED])
    # One millisecond of exchange jitter later, the settlement is first seen by bar 24.
    late = FundingRates(
        symbol=rates.symbol,
        ts=np.r_[rates.ts[:TESTED], rates.ts[TESTED:] + 1],
        rate=rates.rate,
        interval_ms=H8,
    )
    [setup] = scan(series, late, FundingParams(min_score=2))
    assert setup.bar_ts == T0 + 24 * HOUR
    assert setup.context["next_settlement_ms"] == T0 + 32 * HOUR + 1


def test_placeholder_bar_never_fires() -> None:
    """The first confirming bar marked as a placeholder is skipped: the signal moves to bar 26."""
    rates = funding((-0.0001, 0.0004), 0.0006)
    [setup] = scan(candles(falling(), placeholder_at=25), rates)
    assert (setup.bar_ts, setup.entry) == (T0 + 26 * HOUR, 98.0)


def test_without_funding_or_history_nothing() -> None:
    """No funding, empty funding, fewer than 31 settlements, or fewer than 20 candles: no setup, no error."""
    series = candles(falling())
    rates = funding((-0.0001, 0.0004), 0.0006)
    assert scan(series, None) == []
    empty = FundingRates(symbol="BTC/USDT:USDT", ts=np.array([], dtype=np.int64), rate=np.array([]))
    assert scan(series, empty) == []
    few = FundingRates(symbol="BTC/USDT:USDT", ts=rates.ts[-30:], rate=rates.rate[-30:], interval_ms=H8)
    assert scan(series, few) == []
    assert scan(candles(falling()[:19]), rates) == []
    # Settlements 3..34 only: the rate at T0 + 24 h still has its full window, so the signal stands.
    enough = FundingRates(symbol="BTC/USDT:USDT", ts=rates.ts[3:], rate=rates.rate[3:], interval_ms=H8)
    assert [s.bar_ts for s in scan(series, enough)] == [T0 + 25 * HOUR]


def test_needs_and_params_bounds() -> None:
    """needs() asks lookback candles and 31 settlements; unknown or out-of-range parameters are errors."""
    assert BOT.needs(DEFAULTS, "1h") == DataNeeds(lookback=200, extras=ExtrasNeed(funding=31))
    assert BOT.needs(FundingParams(zscore_window=50), "1h").extras.funding == 51
    assert DEFAULTS.model_dump() == {
        "threshold": 0.0005,
        "zscore_window": 30,
        "zscore_min": 2.0,
        "sma_period": 20,
        "min_score": 3,
        "atr_period": 14,
        "lookback": 200,
    }
    for bad in (
        {"threshold": 0},
        {"threshold": 0.1},
        {"zscore_window": 4},
        {"zscore_min": 0},
        {"sma_period": 1},
        {"min_score": 0},
        {"min_score": 4},
        {"atr_period": 0},
        {"lookback": 10},
        {"thresold": 0.001},
    ):
        with pytest.raises(ValidationError):
            FundingParams.model_validate(bad)


# -- real data ------------------------------------------------------------------------------------


@cache
def perp(base: str) -> tuple[Candles, FundingRates]:
    """The shared 1h perpetual candles of ``base`` and its funding settlements."""
    symbol = f"{base}/USDT:USDT"
    series = read_ohlcv_file(require_shared_data("binance_usdm_perp", f"{base}_USDT-1h.csv.gz"), symbol, "1h")
    rates = read_funding_file(
        require_shared_data("binance_usdm_funding", f"{base}_USDT-funding_rate.csv.gz"), symbol
    )
    return series, rates


def test_no_look_ahead_on_real_btc_1h() -> None:
    """At 50 seeded cuts t, candles[:t] with the funding known at bar t-1's close give the full prefix."""
    series, rates = perp("BTC")
    everything = scan(series, rates)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    fired = sorted(index_of[s.bar_ts] + 1 for s in everything)
    assert len(fired) >= 25
    rng = np.random.default_rng(20240101)
    on_signals = rng.choice(fired, size=25, replace=False).tolist()
    at_random = rng.choice(np.arange(40, len(series) + 1), size=25, replace=False).tolist()
    compared = 0
    for t in (*on_signals, *at_random):
        head = series.head(t)
        partial = scan(head, rates.until(head.close_time(-1)))
        last_ts = int(series.ts[t - 1])
        expected = [s for s in everything if s.bar_ts <= last_ts]
        assert partial == expected, f"cut at bar {t}"
        compared += any(s.bar_ts == last_ts for s in expected)
    assert compared >= 25


def test_runner_window_gives_the_newest_bar_as_the_full_scan() -> None:
    """200 candles + 31 settlements (the runner's view) fire on the newest bar as the full scan does."""
    # Only SMA and ATR may differ in their last bits: their history starts later.
    series, rates = perp("ETH")
    everything = {s.bar_ts: s for s in scan(series, rates)}
    cuts = sorted(np.searchsorted(series.ts, list(everything))[::40] + 1)
    assert len(cuts) >= 10
    for t in cuts:
        window = series.head(t).tail(200)
        shown = rates.until(window.close_time(-1)).last(31)
        newest = [s for s in scan(window, shown) if s.bar_ts == int(window.ts[-1])]
        [full] = [everything[int(window.ts[-1])]]
        [got] = newest
        assert (got.direction, got.bar_ts, got.entry, got.reason) == (
            full.direction,
            full.bar_ts,
            full.entry,
            full.reason,
        )
        assert got.atr == pytest.approx(full.atr, rel=1e-6)
        for key, value in full.context.items():
            assert got.context[key] == (pytest.approx(value, rel=1e-6) if key in {"sma", "atr"} else value)


@pytest.mark.parametrize("base", ["BTC", "ETH"])
def test_fires_sometimes_but_rarely_on_a_whole_real_series(base: str) -> None:
    """On a whole real 1h perp series it fires at least once and on under 5 % of bars; each setup is sane."""
    series, rates = perp(base)
    setups = scan(series, rates)
    assert_fires_rarely(setups, series)
    sma, atr = sma20(series), atr14(series)
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    settlements = [s.context["settlement_ms"] for s in setups]
    assert len(set(settlements)) == len(settlements)  # one per settlement
    for setup in setups:
        i = index_of[setup.bar_ts]
        k = int(np.searchsorted(rates.ts, series.close_time(i), side="right")) - 1
        rate = float(rates.rate[k])
        assert setup.context["settlement_ms"] == int(rates.ts[k]) <= series.close_time(i)
        assert setup.context["rate"] == round(rate, 8)
        assert setup.entry == float(series.close[i])
        assert setup.atr == float(atr[i])
        assert setup.context["sma"] == float(sma[i])
        assert int(setup.context["next_settlement_ms"]) > series.close_time(i)
        sign = setup.direction.sign
        assert sign * (float(series.close[i]) - sma[i]) > 0  # price confirms
        if setup.context["trigger"] == "threshold":
            assert -sign * rate >= 0.0005
        else:
            window = rates.rate[k - 30 : k]
            assert -sign * (rate - window.mean()) / window.std() > 2.0
            assert abs(rate) < 0.0005
