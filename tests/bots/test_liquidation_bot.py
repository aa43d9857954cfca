"""Tests of bots/liquidation_bot.py: flush candles, the trade tape, the book, the Bollinger gate, levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import talib
from pydantic import ValidationError

from bots.base import DataNeeds, MarketData
from bots.liquidation_bot import LiquidationBot, LiquidationParams, liquidation_like, tape_evidence
from common.market import ExtrasNeed
from common.market.extras import BookTop, Trades, read_trades_file
from common.prices import format_price
from common.types import Candles, Direction, KeyPoint, Setup
from tests.bots.checks import assert_fires_rarely, assert_no_look_ahead, real
from tests.fakes.csvdata import require_shared_data
from tp_sl_calculator import RiskSettings, calculate_levels

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
STEP = 900_000  # 15 minutes
BOT = LiquidationBot()
DEFAULTS = LiquidationParams()
RISK = RiskSettings.model_validate(
    {
        "sl_method": "atr",
        "sl_atr_mult": 1.5,
        "tp_method": "atr",
        "tp_multiples": [1.5, 2.5, 3.5],
        "min_rr": 1.0,
    }
)
LAST = 40  # the bar under test in every hand-built series
LAST_OPEN = T0 + LAST * STEP
LAST_CLOSE = LAST_OPEN + STEP


def series(last: tuple[float, float, float, float, float], *, placeholder_last: bool = False) -> Candles:
    """40 flat 15m bars (open = close = 100, high 101, low 99, volume 100), then bar 40 = ``last`` (OHLCV).

    On the flat bars every true range is 2, so ATR(14) is exactly 2 and the 20-bar mean volume exactly 100.
    """
    o, h, low, c, v = last
    flags = np.zeros(LAST + 1, dtype=np.bool_)
    flags[LAST] = placeholder_last
    return Candles(
        symbol="BTC/USDT:USDT",
        timeframe="15m",
        ts=T0 + np.arange(LAST + 1, dtype=np.int64) * STEP,
        open=np.array([*[100.0] * LAST, o]),
        high=np.array([*[101.0] * LAST, h]),
        low=np.array([*[99.0] * LAST, low]),
        close=np.array([*[100.0] * LAST, c]),
        volume=np.array([*[100.0] * LAST, v]),
        placeholder=flags,
    )


#: A flush down: range 6.5 (3.25 x ATR 2), volume 4x, lower wick 99.5 - 94 = 5.5 (84.6 % of the range).
FLUSH_DOWN = (100.0, 100.5, 94.0, 99.5, 400.0)
#: The mirror: range 6.5, volume 4x, upper wick 106 - 100.5 = 5.5.
FLUSH_UP = (100.0, 106.0, 99.5, 100.5, 400.0)
#: Quiet bars that touch a band (the flat closes make the bands narrow) but are no flush (range 1.2).
DIP = (100.0, 100.2, 99.0, 99.2, 100.0)
POP = (100.0, 101.0, 99.8, 100.8, 100.0)


def scan(
    candles: Candles,
    params: LiquidationParams = DEFAULTS,
    trades: Trades | None = None,
    book: BookTop | None = None,
) -> list[Setup]:
    """The bot's setups on ``candles`` with optional trades and book."""
    return list(BOT.scan(MarketData(candles=candles, trades=trades, book=book), params))


def bands(candles: Candles) -> tuple[float, float]:
    """(lower, upper) Bollinger band (20, 2) at bar 40, straight from TA-Lib."""
    upper, _, lower = talib.BBANDS(candles.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    return float(lower[LAST]), float(upper[LAST])


def atr_now(candles: Candles) -> float:
    """ATR(14) at bar 40 from TA-Lib."""
    return float(talib.ATR(candles.high, candles.low, candles.close, timeperiod=14)[LAST])


def tape(rows: list[tuple[int, int, float]]) -> Trades:
    """Trades at price 100: ``(ts, side, notional)`` rows; amount = notional / 100."""
    return Trades(
        symbol="BTC/USDT:USDT",
        ts=np.array([r[0] for r in rows], dtype=np.int64),
        price=np.full(len(rows), 100.0),
        amount=np.array([r[2] / 100.0 for r in rows]),
        side=np.array([r[1] for r in rows], dtype=np.int8),
    )


def background() -> list[tuple[int, int, float]]:
    """100 trades of 100 USDT in bar 39, alternating buy / sell: a baseline of exactly 100 per trade."""
    return [(LAST_OPEN - STEP + 1000 * k, 1 if k % 2 == 0 else -1, 100.0) for k in range(100)]


def book(bids: float, asks: float, ts: int = LAST_CLOSE + 3000) -> BookTop:
    """A one-level book taken 3 s after bar 40 closed: ``bids`` USDT at 80, ``asks`` USDT at 125.

    The prices divide the test's notionals exactly, so the book's notionals are exactly ``bids``, ``asks``.
    """
    return BookTop(
        symbol="BTC/USDT:USDT",
        ts=ts,
        bid_price=np.array([80.0]),
        bid_amount=np.array([bids / 80.0]),
        ask_price=np.array([125.0]),
        ask_amount=np.array([asks / 125.0]),
    )


# -- evidence B: flush candles ---------------------------------------------------------------------


def test_long_on_a_flush_down_with_a_long_lower_wick() -> None:
    """A 3.25x-ATR, 4x-volume flush with an 85 % lower wick below the lower band: LONG, every field exact."""
    candles = series(FLUSH_DOWN)
    lower, _ = bands(candles)
    atr = atr_now(candles)
    assert atr == pytest.approx((13 * 2.0 + 6.5) / 14, rel=1e-12)  # Wilder: the flush's true range is 6.5
    assert float(candles.low[LAST]) <= lower  # the low pierces the lower band
    [setup] = scan(candles)
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=LAST_OPEN,
        entry=99.5,
        reason=(
            "Flush candle with 85 % lower wick, 4.0x volume, 3.2x ATR range; "
            f"low at the lower Bollinger band {format_price(lower)}"
        ),
        atr=atr,
        stop=94.0,
        context={
            "score": 2,
            "flush_score": 2,
            "imbalance_score": 0,
            "taker_score": 0,
            "book_score": 0,
            "atr": atr,
            "range_atr": 3.25,
            "volume_ratio": 4.0,
            "wick_pct": 84.6,  # 5.5 / 6.5
            "bb_band": lower,
        },
        key_points=(KeyPoint(LAST_OPEN, 94.0, "flush low"), KeyPoint(LAST_OPEN, lower, "lower band")),
    )
    levels = calculate_levels(setup, RISK)
    assert levels.sl == pytest.approx(99.5 - 1.5 * atr, rel=1e-12)
    assert levels.tps == pytest.approx((99.5 + 1.5 * atr, 99.5 + 2.5 * atr, 99.5 + 3.5 * atr), rel=1e-12)


def test_short_on_a_flush_up_with_a_long_upper_wick() -> None:
    """The mirror: an 85 % upper wick above the upper band is a SHORT with the ATR levels above and below."""
    candles = series(FLUSH_UP)
    _, upper = bands(candles)
    atr = atr_now(candles)
    [setup] = scan(candles)
    assert (setup.direction, setup.bar_ts, setup.entry, setup.stop) == (
        Direction.SHORT,
        LAST_OPEN,
        100.5,
        106.0,
    )
    assert setup.reason == (
        "Flush candle with 85 % upper wick, 4.0x volume, 3.2x ATR range; "
        f"high at the upper Bollinger band {format_price(upper)}"
    )
    assert setup.context["score"] == -2
    assert setup.context["flush_score"] == -2
    assert setup.context["bb_band"] == upper
    assert setup.key_points == (
        KeyPoint(LAST_OPEN, 106.0, "flush high"),
        KeyPoint(LAST_OPEN, upper, "upper band"),
    )
    levels = calculate_levels(setup, RISK)
    assert levels.sl == pytest.approx(100.5 + 1.5 * atr, rel=1e-12)
    assert levels.tps == pytest.approx((100.5 - 1.5 * atr, 100.5 - 2.5 * atr, 100.5 - 3.5 * atr), rel=1e-12)


@pytest.mark.parametrize(
    ("last", "why"),
    [
        ((100.0, 100.5, 94.0, 99.5, 300.0), "volume exactly 3x the mean: fires (control)"),
        ((100.0, 100.5, 94.0, 99.5, 299.0), "volume 2.99x the mean, not 3x"),
        ((100.0, 100.0, 96.0, 99.9, 400.0), "range 4.0 = exactly 2 ATR: fires (control)"),
        ((100.0, 100.0, 96.01, 99.99, 400.0), "range 3.99 = 1.995 ATR, not 2"),
        ((100.0, 101.0, 95.0, 98.0, 400.0), "lower wick 3 of range 6 = exactly 50 %: fires (control)"),
        ((100.0, 101.0, 95.0, 97.99, 400.0), "lower wick 2.99 of range 6 = 49.8 %, not 50 %"),
    ],
)
def test_flush_thresholds(last: tuple[float, float, float, float, float], why: str) -> None:
    """Each flush condition just short gives nothing; just past it gives the LONG."""
    fires = "control" in why
    assert [s.direction for s in scan(series(last))] == ([Direction.LONG] if fires else []), why


def test_bollinger_gate_blocks_a_flush_whose_low_stays_inside_the_band() -> None:
    """A flush in a steep uptrend (the lower band far below) is no LONG: its low stays above the band."""
    rise = 100.0 + 2.0 * np.arange(LAST, dtype=np.float64)  # closes rising 2 a bar; open = previous close
    opens = np.r_[100.0, rise[:-1]]
    top = float(rise[-1])
    candles = Candles(
        symbol="BTC/USDT:USDT",
        timeframe="15m",
        ts=T0 + np.arange(LAST + 1, dtype=np.int64) * STEP,
        open=np.r_[opens, top],
        high=np.r_[rise + 1.0, top + 2.0],
        low=np.r_[opens - 1.0, top - 10.0],
        close=np.r_[rise, top + 1.0],
        volume=np.r_[np.full(LAST, 100.0), 400.0],
    )
    atr = talib.ATR(candles.high, candles.low, candles.close, timeperiod=14)
    assert atr[LAST - 1] == pytest.approx(4.0, rel=1e-12)  # every rising bar's true range is 4
    assert 2 * atr[LAST - 1] <= 12.0  # range 12 is a flush; lower wick 10 of 12
    lower, _ = bands(candles)
    assert float(candles.low[LAST]) > lower  # ... but the bar stays well inside the band
    assert scan(candles) == []


# -- evidence A: the trade tape and the book on the newest bar -------------------------------------


def test_long_from_liquidation_like_sells_alone() -> None:
    """A quiet bar at the lower band fires on sell bursts alone: liquidation sells 15,000 vs buys 4,000."""
    candles = series(DIP)
    lower, _ = bands(candles)
    assert scan(candles) == []  # the candle alone is no flush
    rows = [
        *background(),
        (LAST_OPEN + 1000, 1, 4000.0),  # 40x the baseline 100: liquidation-like buy
        (LAST_OPEN + 2000, -1, 5000.0),  # baseline (99 x 100 + 4000) / 100 = 139: 5000 >= 2780
        (LAST_OPEN + 3000, -1, 5000.0),  # baseline 188: 5000 >= 3760
        (LAST_OPEN + 4000, -1, 5000.0),  # baseline 237: 5000 >= 4740
        *[(LAST_OPEN + 5000 + 100 * k, 1, 300.0) for k in range(40)],  # 12,000 of ordinary buys
        (LAST_CLOSE, -1, 50_000.0),  # at the close: the next candle's, ignored
    ]
    trades = tape(rows)
    like = liquidation_like(trades, DEFAULTS)
    assert np.flatnonzero(like).tolist() == [100, 101, 102, 103, 144]
    [setup] = scan(candles, trades=trades)
    # taker sells 15,000 of 31,000 (48 %): no taker point; imbalance 15,000 / 4,000 = 3.75 >= 1.5: +2.
    assert setup == Setup(
        direction=Direction.LONG,
        bar_ts=LAST_OPEN,
        entry=99.2,
        reason=f"liquidation-like sells 3.8x buys; low at the lower Bollinger band {format_price(lower)}",
        atr=atr_now(candles),
        stop=99.0,
        context={
            "score": 2,
            "flush_score": 0,
            "imbalance_score": 2,
            "taker_score": 0,
            "book_score": 0,
            "atr": atr_now(candles),
            "range_atr": 0.6,
            "volume_ratio": 1.0,
            "wick_pct": 16.7,
            "bb_band": lower,
            "trades": 44,
            "liq_trades": 4,
            "liq_sell_notional": 15_000.0,
            "liq_buy_notional": 4_000.0,
            "taker_sell_notional": 15_000.0,
            "taker_buy_notional": 16_000.0,
        },
        key_points=(KeyPoint(LAST_OPEN, 99.0, "bar low"), KeyPoint(LAST_OPEN, lower, "lower band")),
    )


def test_near_miss_imbalance_and_taker_flow_just_short() -> None:
    """Liquidation sells 1.49x buys and taker sells 59.8 %: score 0, no setup; at 1.5x and 60 % it fires."""
    candles = series(DIP)

    def bursts(sell: float) -> Trades:
        return tape(
            [
                *background(),
                (LAST_OPEN + 1000, 1, 10_000.0),
                (LAST_OPEN + 2000, -1, sell),
                (LAST_OPEN + 3000, -1, sell),
            ]
        )

    short_of_it = bursts(7450.0)
    assert liquidation_like(short_of_it, DEFAULTS)[100:].tolist() == [True, True, True]
    assert scan(candles, trades=short_of_it) == []
    [setup] = scan(candles, trades=bursts(7500.0))  # 15,000 / 10,000 = 1.5 and 60 % exactly
    assert setup.direction is Direction.LONG
    assert (setup.context["imbalance_score"], setup.context["taker_score"], setup.context["score"]) == (
        2,
        1,
        3,
    )
    assert setup.reason.startswith("liquidation-like sells 1.5x buys; taker sells 60 % of notional; low at")


def test_short_from_liquidation_like_buys_and_taker_buys() -> None:
    """A quiet bar at the upper band: buy-only liquidation bursts (-2) and 100 % taker buys (-1): SHORT."""
    candles = series(POP)
    _, upper = bands(candles)
    trades = tape([*background(), (LAST_OPEN + 1000, 1, 6000.0), (LAST_OPEN + 2000, 1, 6000.0)])
    [setup] = scan(candles, trades=trades)
    assert (setup.direction, setup.entry, setup.stop) == (Direction.SHORT, 100.8, 101.0)
    assert setup.reason == (
        "liquidation-like buys only (12,000); taker buys 100 % of notional; "
        f"high at the upper Bollinger band {format_price(upper)}"
    )
    assert (setup.context["score"], setup.context["imbalance_score"], setup.context["taker_score"]) == (
        -3,
        -2,
        -1,
    )
    assert setup.key_points == (
        KeyPoint(LAST_OPEN, 101.0, "bar high"),
        KeyPoint(LAST_OPEN, upper, "upper band"),
    )
    levels = calculate_levels(setup, RISK)
    atr = atr_now(candles)
    assert levels.sl == pytest.approx(100.8 + 1.5 * atr, rel=1e-12)
    assert levels.tps == pytest.approx((100.8 - 1.5 * atr, 100.8 - 2.5 * atr, 100.8 - 3.5 * atr), rel=1e-12)


def test_taker_flow_plus_book_reach_the_score_only_together() -> None:
    """Taker sells 70 % (+1) and bids 1.3x asks (+1) make a LONG; either alone, or a stale book, does not."""
    candles = series(DIP)
    lower, _ = bands(candles)
    trades = tape([*background(), (LAST_OPEN + 1000, -1, 700.0), (LAST_OPEN + 2000, 1, 300.0)])
    assert not liquidation_like(trades, DEFAULTS).any()
    support = book(13_000.0, 10_000.0)
    assert scan(candles, trades=trades) == []
    assert scan(candles, book=support) == []
    [setup] = scan(candles, trades=trades, book=support)
    assert setup.reason == (
        "taker sells 70 % of notional; book bids 1.3x asks in the top 20 levels; "
        f"low at the lower Bollinger band {format_price(lower)}"
    )
    assert (setup.context["taker_score"], setup.context["book_score"], setup.context["score"]) == (1, 1, 2)
    assert (setup.context["book_bid_notional"], setup.context["book_ask_notional"]) == (13_000.0, 10_000.0)
    # A book taken after the next candle closed (or a slightly thinner bid side) does not count.
    assert scan(candles, trades=trades, book=book(13_000.0, 10_000.0, ts=LAST_CLOSE + STEP)) == []
    assert scan(candles, trades=trades, book=book(12_990.0, 10_000.0)) == []
    # A book taken during the bar counts: it was known when the bar closed.
    assert len(scan(candles, trades=trades, book=book(13_000.0, 10_000.0, ts=LAST_OPEN))) == 1


def test_evidence_against_the_flush_lowers_its_score() -> None:
    """A flush (+2) with asks 2x bids (-1) scores 1 and with buy bursts (-2, -1) scores -1: no setup."""
    candles = series(FLUSH_DOWN)
    assert scan(candles, book=book(5_000.0, 10_000.0)) == []  # +2 - 1 = 1 < 2
    squeezed = tape([*background(), (LAST_OPEN + 1000, 1, 6000.0)])
    assert scan(candles, trades=squeezed) == []  # +2 - 2 (bursts) - 1 (taker buys) = -1
    assert [s.direction for s in scan(candles, book=book(10_000.0, 5_000.0))] == [Direction.LONG]


def test_missing_extras_and_trades_outside_the_history_never_crash() -> None:
    """No trades, an empty tape, or trades only outside the bars' windows: the candles alone decide."""
    candles = series(FLUSH_DOWN)
    expected = scan(candles)
    assert len(expected) == 1
    empty = Trades(
        symbol="BTC/USDT:USDT",
        ts=np.array([], dtype=np.int64),
        price=np.array([]),
        amount=np.array([]),
        side=np.array([], dtype=np.int8),
    )
    outside = tape([(T0 - 5, -1, 9e6), *[(LAST_CLOSE + k, 1, 100.0) for k in range(30)]])
    assert scan(candles, trades=empty) == expected
    assert scan(candles, trades=outside) == expected


def test_tape_evidence_on_the_real_eth_trades_matches_a_hand_count() -> None:
    """On the real ETH/USDT tape (1,000 trades), 1m windows: trade counts, liquidation-like trades and
    notionals per bar equal a plain loop over the trades."""
    path = require_shared_data("trades", "ETH_USDT-trades.csv.gz")
    trades = read_trades_file(path, "ETH/USDT")
    minute = trades.ts // 60_000 * 60_000
    opens = np.unique(minute)
    at = np.searchsorted(opens, minute)
    candles = Candles(
        symbol="ETH/USDT",
        timeframe="1m",
        ts=opens,
        open=np.array([trades.price[at == k][0] for k in range(opens.size)]),
        high=np.array([trades.price[at == k].max() for k in range(opens.size)]),
        low=np.array([trades.price[at == k].min() for k in range(opens.size)]),
        close=np.array([trades.price[at == k][-1] for k in range(opens.size)]),
        volume=np.array([trades.amount[at == k].sum() for k in range(opens.size)]),
    )
    got = tape_evidence(trades, candles, DEFAULTS)
    costs = [float(p) * float(a) for p, a in zip(trades.price, trades.amount, strict=True)]
    like = []
    for k, cost in enumerate(costs):
        before = costs[max(0, k - 100) : k]
        like.append(len(before) >= 20 and cost >= max(20 * math.fsum(before) / len(before), 1000.0))
    assert liquidation_like(trades, DEFAULTS).tolist() == like
    assert sum(like) == 7  # six taker sells of 119k..216k USDT and one 606k buy
    for bar, start in enumerate(opens.tolist()):
        members = [k for k in range(len(costs)) if start <= int(trades.ts[k]) < start + 60_000]
        assert got.trades[bar] == len(members)
        assert got.liquidations[bar] == sum(like[k] for k in members)
        for name, side, only_like in (
            ("liq_sell", -1, True),
            ("liq_buy", 1, True),
            ("taker_sell", -1, False),
            ("taker_buy", 1, False),
        ):
            want = math.fsum(
                costs[k] for k in members if trades.side[k] == side and (like[k] or not only_like)
            )
            assert getattr(got, name)[bar] == pytest.approx(want, rel=1e-12), (bar, name)


# -- parameters, edges ------------------------------------------------------------------------------


def test_needs_asks_for_the_tape_and_the_book() -> None:
    """needs(): lookback bars, the newest 500 trades and 20 book levels."""
    assert BOT.needs(DEFAULTS, "15m") == DataNeeds(300, extras=ExtrasNeed(trades=500, book_depth=20))


@pytest.mark.parametrize(
    "bad",
    [
        {"wick_pct": 0},
        {"wick_pct": 101},
        {"flush_atr_mult": 0},
        {"taker_share_pct": 50},
        {"imbalance_ratio": 0.9},
        {"book_ratio": 0.5},
        {"min_score": 0},
        {"trade_count": 5},
        {"lookback": 10},
        {"baseline_trades": 10, "min_baseline_trades": 20},
        {"bb_period": 400, "lookback": 300},
        {"liquidations": True},
    ],
)
def test_params_reject_out_of_range_and_unknown_values(bad: dict[str, object]) -> None:
    """Out-of-range, inconsistent or unknown parameters are validation errors."""
    with pytest.raises(ValidationError):
        LiquidationParams.model_validate(bad)


def test_placeholder_bar_never_fires() -> None:
    """The same flush marked as an exchange placeholder candle, even with bursts on the tape, is no signal."""
    candles = series(FLUSH_DOWN, placeholder_last=True)
    trades = tape([*background(), (LAST_OPEN + 1000, -1, 6000.0)])
    assert scan(candles, trades=trades) == []


def test_too_short_history_gives_nothing() -> None:
    """21 bars (volume_period + 1) still fire on the flush; 20 give no setup."""
    candles = series(FLUSH_DOWN)
    assert [s.bar_ts for s in scan(candles.tail(21))] == [LAST_OPEN]
    assert scan(candles.tail(20)) == []


def test_keep_from_keeps_the_full_scans_later_setups() -> None:
    """With keep_from the setups from that bar on are exactly the full scan's."""
    candles = real("binance_spot/BTC_USDT-15m.csv.gz", 3000)
    full = scan(candles)
    cut = len(candles) // 2
    kept = list(BOT.scan(MarketData(candles=candles, keep_from=cut), DEFAULTS))
    assert kept == [s for s in full if s.bar_ts >= int(candles.ts[cut])]
    assert kept


# -- real data ------------------------------------------------------------------------------------


def test_no_look_ahead_on_real_btc_15m() -> None:
    """At 50 seeded cut points t, scanning the first t bars gives the setups on bar t-1 as scanning all."""
    assert_no_look_ahead(scan, real("binance_spot/BTC_USDT-15m.csv.gz", 5000), min_nonempty=15)


@pytest.mark.parametrize(
    "relative", ["binance_spot/ETH_USDT-15m.csv.gz", "binance_usdm_perp/BTC_USDT-1h.csv.gz"]
)
def test_fires_sometimes_but_rarely_on_a_whole_real_series(relative: str) -> None:
    """On a whole real series the bot fires at least once and on under 5 % of bars; each setup is sane."""
    candles = real(relative)
    setups = scan(candles)
    assert_fires_rarely(setups, candles)
    upper, _, lower = talib.BBANDS(candles.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    index_of = {int(ts): i for i, ts in enumerate(candles.ts)}
    for setup in setups:
        i = index_of[setup.bar_ts]
        assert setup.entry == float(candles.close[i])
        # Candles only: the flush is the only evidence, and it points the setup's way.
        assert setup.context["flush_score"] == 2 * setup.direction.sign
        if setup.direction is Direction.LONG:
            assert candles.low[i] <= lower[i]
            assert setup.stop == float(candles.low[i])
        else:
            assert candles.high[i] >= upper[i]
            assert setup.stop == float(candles.high[i])
