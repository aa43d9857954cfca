"""liquidation_bot: liquidation cascades inferred from the trade tape, the order book and flush candles.

MEXC publishes no liquidation feed through ccxt, so liquidations are inferred, and the alert says which
evidence fired. Each closed candle t gets a score; positive is LONG, negative SHORT.

Evidence A, the trade tape and the order book (``MarketData.trades`` / ``MarketData.book``; absent when
they are None, e.g. a replay without a trades file or any replay for the book):

* A bar's trades are those with ``ts`` in ``[open time, open time + timeframe)``, the window the
  exchange aggregates into that candle. Live that is only ever the newest closed bar (the tape is the
  newest ``trade_count`` trades, fetched after the close); a replay with a trades file scores every bar
  its tape reaches. Trades after the newest bar's close belong to the forming candle and are ignored.
  Live on a MEXC swap one request returns at most 100 trades; on a busy market those fetched a few
  seconds after the close may all be after it, and evidence A then has nothing for the closed bar.
* A trade is **liquidation-like** when its notional (price x amount, quote currency) is at least
  ``max(large_trade_mult x baseline, min_large_notional)``, where the baseline is the mean notional of
  the ``baseline_trades`` trades just BEFORE it in the tape (fewer at the start of the tape; a trade
  with fewer than ``min_baseline_trades`` predecessors is not judged).
* **Imbalance** (+/-2): among a bar's liquidation-like trades, taker-sell notional >= ``imbalance_ratio``
  x taker-buy notional (bursts of sells: longs liquidated -> LONG, +2), or the mirror (shorts squeezed
  -> SHORT, -2). One side alone (the other zero) counts as any ratio.
* **Taker flow** (+/-1): taker sells are at least ``taker_share_pct`` % of the bar's notional with a known
  side -> +1 (contrarian, as the original bot: sellers exhausted -> LONG); taker buys likewise -> -1.
* **Book** (+/-1, the newest bar only): the notional resting in the best ``book_levels`` bids is at least
  ``book_ratio`` x that of the asks -> +1 (support under price -> LONG); the mirror -> -1. The book is a
  snapshot of one moment, so it counts only for the newest bar, and only when it was taken while that
  bar was the newest known one: ``book.ts`` in ``[bar open, bar close + timeframe)`` (a stale book, or
  one handed to a scan of an older history, is ignored).

Evidence B, the candles (always):

* A **flush candle**: range (high - low) >= ``flush_atr_mult`` x ``ATR(atr_period)`` of the bar BEFORE t,
  volume >= ``volume_mult`` x the mean volume of the ``volume_period`` bars before t (``SMA`` of t - 1),
  and a rejection wick of at least ``wick_pct`` % of the range: a lower wick (``min(open, close) -
  low``) -> longs liquidated into a bounce -> LONG +2; an upper wick -> SHORT -2.

Decision: score = flush + imbalance + taker + book. A LONG when score >= ``min_score``, a SHORT when
score <= -``min_score``, gated by Bollinger bands (``BBANDS(bb_period, bb_std, bb_std)`` of the close,
simple moving average): a LONG only when the bar's LOW is at or below the lower band, a SHORT only when
its HIGH is at or above the upper band. Entry is the close of t. ``Setup.atr`` is ATR(atr_period) at t
(the flush included) for the ATR stop and targets of the recommended risk block
``{"sl_method": "atr", "sl_atr_mult": 1.5, "tp_method": "atr", "tp_multiples": [1.5, 2.5, 3.5],
"min_rr": 1.0}``; ``Setup.stop`` is the signal bar's wick extreme (its low for a LONG, its high for a
SHORT): where the flush's liquidations ran out, the structural invalidation, used only by a
``"structure"`` risk block and drawn as a key point.

Never on a placeholder candle, nor where ATR (at t or t - 1), the volume baseline or the bands are NaN
(so a signal from evidence A alone needs the candles' indicators too). Fewer than
``max(atr_period + 2, volume_period + 1, bb_period)`` bars give no setup.

Parameters (``bots.liquidation_bot.params``), with defaults: atr_period 14, flush_atr_mult 2.0,
volume_period 20, volume_mult 3.0, wick_pct 50, bb_period 20, bb_std 2.0, trade_count 500 (trades
fetched per cycle), large_trade_mult 20, min_large_notional 1000 (quote currency, USDT on the
suggested symbols), baseline_trades 100, min_baseline_trades 20, imbalance_ratio 1.5, taker_share_pct
60, book_levels 20 (also the book depth fetched), book_ratio 1.3, min_score 2, lookback 300 (bars of
history per scan; ATR settles well within it).

TA-Lib conventions used: ATR(n) has lookback n, SMA(n) and BBANDS(n) lookback n - 1; earlier values
are NaN.

Where this differs from the original bot (the rule text it replaced):

* The trade window is ``[open, open + timeframe)``, not ``(open, close]``: that is how exchanges build
  the candle, so a trade stamped exactly at the close belongs to the next (still forming) candle and
  one stamped exactly at the open belongs to this one.
* Trades are judged against the mean of the trades BEFORE each one, not the last 100 of the whole tape:
  a burst of liquidations inside its own baseline hides itself (five trades of 20x the mean of the
  others can never be 20x a mean that includes them), and the mean of later trades would look ahead.
* The flush's range and volume are measured against ATR and mean volume of the bars before t, for the
  same reason (a flush inflates an ATR(14) that includes it by a fourteenth of its own range).
* The Bollinger gate reads the bar's low (high), not its close: after a rejection wick the close is
  usually back inside the bands, so a close gate would block the very flushes this bot is about.
* The risk block keeps the original's ATR stop although it lies inside the flush's wick on about 70 %
  of the real signals: on the shared 15m and 1h series a stop beyond the wick with R targets did no
  better (TP1 before SL about as often, mean result slightly lower), so ``Setup.stop`` only offers it.
* Taker flow is contrarian, as the original bot was (sellers >= 60 % -> LONG): the bot fades
  liquidation cascades, and a momentum reading would contradict the imbalance score on the same trades.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.market import ExtrasNeed
from common.market.extras import BookTop, Trades
from common.prices import format_price
from common.types import Candles, ContextValue, Direction, FloatArray, IntArray, KeyPoint, Setup

BoolArray = npt.NDArray[np.bool_]


class LiquidationParams(StrategyParams):
    """liquidation_bot's parameters (see the module docstring)."""

    atr_period: int = Field(14, ge=1, le=200)
    flush_atr_mult: float = Field(2.0, gt=0, le=50)
    volume_period: int = Field(20, ge=2, le=500)
    volume_mult: float = Field(3.0, gt=0, le=100)
    wick_pct: float = Field(50.0, gt=0, le=100)
    bb_period: int = Field(20, ge=2, le=500)
    bb_std: float = Field(2.0, gt=0, le=10)
    trade_count: int = Field(500, ge=10, le=1_000)
    large_trade_mult: float = Field(20.0, gt=0, le=1_000)
    min_large_notional: float = Field(1_000.0, ge=0, le=1e9)
    baseline_trades: int = Field(100, ge=1, le=1_000)
    min_baseline_trades: int = Field(20, ge=1, le=1_000)
    imbalance_ratio: float = Field(1.5, ge=1, le=100)
    taker_share_pct: float = Field(60.0, gt=50, le=100)
    book_levels: int = Field(20, ge=1, le=100)
    book_ratio: float = Field(1.3, ge=1, le=100)
    min_score: int = Field(2, ge=1, le=6)
    lookback: int = Field(300, ge=50, le=5_000)

    @model_validator(mode="after")
    def _consistent(self) -> LiquidationParams:
        if self.min_baseline_trades > self.baseline_trades:
            raise ValueError("min_baseline_trades must not exceed baseline_trades")
        if self.lookback < max(self.atr_period + 2, self.volume_period + 1, self.bb_period):
            raise ValueError("lookback must cover atr_period + 2, volume_period + 1 and bb_period bars")
        return self


@dataclass(frozen=True)
class TapeEvidence:
    """Evidence A from the trade tape, per bar of the candles (zeros where no trade fell in a bar)."""

    trades: IntArray  # trades in the bar's window
    liquidations: IntArray  # liquidation-like trades among them
    liq_sell: FloatArray  # notional of liquidation-like taker sells
    liq_buy: FloatArray  # ... and buys
    taker_sell: FloatArray  # notional of all taker sells in the window
    taker_buy: FloatArray  # ... and buys


def liquidation_like(trades: Trades, params: LiquidationParams) -> BoolArray:
    """Which trades of the tape are liquidation-like (see the module docstring), oldest first.

    The baseline of trade k is the mean notional of trades max(0, k - baseline_trades) .. k - 1.
    """
    cost = trades.cost
    count = cost.size
    index = np.arange(count)
    start = np.maximum(0, index - params.baseline_trades)
    before = index - start
    sums = np.r_[0.0, np.cumsum(cost)]
    with np.errstate(invalid="ignore", divide="ignore"):
        baseline = (sums[index] - sums[start]) / before
    threshold = np.maximum(params.large_trade_mult * baseline, params.min_large_notional)
    like: BoolArray = (before >= params.min_baseline_trades) & (cost >= threshold)
    return like


def tape_evidence(trades: Trades | None, c: Candles, params: LiquidationParams) -> TapeEvidence:
    """Per-bar trade counts and notionals of ``trades`` falling in each candle's window."""
    size = len(c)
    zeros_i = np.zeros(size, dtype=np.int64)
    zeros_f = np.zeros(size)
    if trades is None or len(trades) == 0 or size == 0:
        return TapeEvidence(zeros_i, zeros_i, zeros_f, zeros_f, zeros_f, zeros_f)
    bar = np.searchsorted(c.ts, trades.ts, side="right") - 1
    inside = bar >= 0
    inside[inside] &= trades.ts[inside] < c.ts[bar[inside]] + c.period_ms
    like = liquidation_like(trades, params) & inside
    cost = trades.cost
    sell = (trades.side < 0) & inside
    buy = (trades.side > 0) & inside

    def total(mask: BoolArray) -> FloatArray:
        summed: FloatArray = np.bincount(bar[mask], weights=cost[mask], minlength=size).astype(np.float64)
        return summed

    return TapeEvidence(
        trades=np.bincount(bar[inside], minlength=size).astype(np.int64),
        liquidations=np.bincount(bar[like], minlength=size).astype(np.int64),
        liq_sell=total(like & sell),
        liq_buy=total(like & buy),
        taker_sell=total(sell),
        taker_buy=total(buy),
    )


def imbalance_score(sell: FloatArray, buy: FloatArray, ratio: float) -> IntArray:
    """+2 where ``sell`` >= ratio x ``buy`` (and positive), -2 for the mirror, else 0."""
    score: IntArray = 2 * ((sell > 0) & (sell >= ratio * buy)).astype(np.int64) - 2 * (
        (buy > 0) & (buy >= ratio * sell)
    ).astype(np.int64)
    return score


def taker_score(sell: FloatArray, buy: FloatArray, share_pct: float) -> IntArray:
    """+1 where taker sells are >= share_pct % of the known-side notional (contrarian), -1 the mirror."""
    known = sell + buy
    # Compared as 100 x part >= pct x whole: 15,000 of 25,000 is exactly 60 %, not 59.999...
    score: IntArray = ((known > 0) & (100.0 * sell >= share_pct * known)).astype(np.int64) - (
        (known > 0) & (100.0 * buy >= share_pct * known)
    ).astype(np.int64)
    return score


def book_score(bids: float, asks: float, ratio: float) -> int:
    """+1 when ``bids`` >= ratio x ``asks`` (and positive), -1 for the mirror, else 0."""
    if bids > 0 and bids >= ratio * asks:
        return 1
    if asks > 0 and asks >= ratio * bids:
        return -1
    return 0


def book_applies(book: BookTop | None, c: Candles) -> bool:
    """Whether ``book`` was taken while the newest candle of ``c`` was the newest known one."""
    if book is None or len(c) == 0:
        return False
    return int(c.ts[-1]) <= book.ts < c.close_time(-1) + c.period_ms


def _ratio_text(side: str, other: str, mine: float, theirs: float) -> str:
    """'sells 2.1x buys', or 'sells only (15,000)' when the other side is zero."""
    if theirs <= 0:
        return f"{side} only ({mine:,.0f})"
    return f"{side} {mine / theirs:.1f}x {other}"


@dataclass(frozen=True)
class Evidence:
    """Everything the decision on each bar reads, as whole-history arrays (the book: newest bar only)."""

    atr: FloatArray  # ATR at t (Setup.atr)
    atr_before: FloatArray  # ATR at t - 1 (the flush's yardstick)
    volume_base: FloatArray  # mean volume of the volume_period bars before t
    upper: FloatArray  # Bollinger bands at t
    lower: FloatArray
    lower_wick: FloatArray
    upper_wick: FloatArray
    flush: IntArray  # +2 / -2 / 0
    tape: TapeEvidence
    imbalance: IntArray  # +2 / -2 / 0
    taker: IntArray  # +1 / -1 / 0
    book: IntArray  # +1 / -1 / 0, only ever non-zero on the newest bar
    book_notional: tuple[float, float] | None  # (bids, asks) when the book applies to the newest bar
    score: IntArray
    valid: BoolArray  # every candle indicator finite and not a placeholder


def evidence(data: MarketData, params: LiquidationParams) -> Evidence:
    """Evidence A and B and the score of every bar of ``data.candles`` (vectorised)."""
    c = data.candles
    size = len(c)
    atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
    atr_before = np.r_[np.nan, atr[:-1]]
    volume_base = np.r_[np.nan, talib.SMA(c.volume, timeperiod=params.volume_period)[:-1]]
    upper, _, lower = talib.BBANDS(
        c.close,
        timeperiod=params.bb_period,
        nbdevup=params.bb_std,
        nbdevdn=params.bb_std,
    )
    rng = c.high - c.low
    lower_wick = np.minimum(c.open, c.close) - c.low
    upper_wick = c.high - np.maximum(c.open, c.close)
    with np.errstate(invalid="ignore"):
        flush = (
            (rng > 0)
            & (rng >= params.flush_atr_mult * atr_before)
            & (volume_base > 0)
            & (c.volume >= params.volume_mult * volume_base)
        )
    wick = params.wick_pct * rng
    flush_score = 2 * (flush & (100.0 * lower_wick >= wick)).astype(np.int64) - 2 * (
        flush & (100.0 * upper_wick >= wick)
    ).astype(np.int64)

    tape = tape_evidence(data.trades, c, params)
    imbalance = imbalance_score(tape.liq_sell, tape.liq_buy, params.imbalance_ratio)
    taker = taker_score(tape.taker_sell, tape.taker_buy, params.taker_share_pct)
    book = np.zeros(size, dtype=np.int64)
    notional: tuple[float, float] | None = None
    if data.book is not None and book_applies(data.book, c):
        notional = (data.book.bid_notional(params.book_levels), data.book.ask_notional(params.book_levels))
        book[-1] = book_score(*notional, params.book_ratio)
    valid = (
        np.isfinite(atr)
        & np.isfinite(atr_before)
        & np.isfinite(volume_base)
        & np.isfinite(upper)
        & np.isfinite(lower)
        & ~c.placeholder
    )
    return Evidence(
        atr=atr,
        atr_before=atr_before,
        volume_base=volume_base,
        upper=upper,
        lower=lower,
        lower_wick=lower_wick,
        upper_wick=upper_wick,
        flush=flush_score,
        tape=tape,
        imbalance=imbalance,
        taker=taker,
        book=book,
        book_notional=notional,
        score=flush_score + imbalance + taker + book,
        valid=valid,
    )


def _setup(c: Candles, ev: Evidence, i: int, direction: Direction, params: LiquidationParams) -> Setup:
    """The setup on bar ``i``: reason naming the evidence that fired in ``direction``, context, key points."""
    long_ = direction is Direction.LONG
    sign = direction.sign
    rng = float(c.high[i] - c.low[i])
    extreme = float(c.low[i] if long_ else c.high[i])
    band = float(ev.lower[i] if long_ else ev.upper[i])
    wick = float(ev.lower_wick[i] if long_ else ev.upper_wick[i])
    context: dict[str, ContextValue] = {
        "score": int(ev.score[i]),
        "flush_score": int(ev.flush[i]),
        "imbalance_score": int(ev.imbalance[i]),
        "taker_score": int(ev.taker[i]),
        "book_score": int(ev.book[i]),
        "atr": float(ev.atr[i]),
        "range_atr": round(rng / float(ev.atr_before[i]), 3),
        "volume_ratio": round(float(c.volume[i] / ev.volume_base[i]), 3),
        "wick_pct": round(wick / rng * 100.0, 1) if rng > 0 else 0.0,
        "bb_band": band,
    }
    parts: list[str] = []
    if ev.flush[i] * sign > 0:
        parts.append(
            f"Flush candle with {context['wick_pct']:.0f} % {'lower' if long_ else 'upper'} wick, "
            f"{context['volume_ratio']:.1f}x volume, {context['range_atr']:.1f}x ATR range"
        )
    tape = ev.tape
    sell, buy = float(tape.liq_sell[i]), float(tape.liq_buy[i])
    taker_sell, taker_buy = float(tape.taker_sell[i]), float(tape.taker_buy[i])
    if tape.trades[i] > 0:
        context.update(
            trades=int(tape.trades[i]),
            liq_trades=int(tape.liquidations[i]),
            liq_sell_notional=round(sell, 2),
            liq_buy_notional=round(buy, 2),
            taker_sell_notional=round(taker_sell, 2),
            taker_buy_notional=round(taker_buy, 2),
        )
    if ev.imbalance[i] * sign > 0:
        text = _ratio_text("sells", "buys", sell, buy) if long_ else _ratio_text("buys", "sells", buy, sell)
        parts.append(f"liquidation-like {text}")
    if ev.taker[i] * sign > 0:
        share = (taker_sell if long_ else taker_buy) / (taker_sell + taker_buy) * 100.0
        parts.append(f"taker {'sells' if long_ else 'buys'} {share:.0f} % of notional")
    if ev.book_notional is not None and i == len(c) - 1:
        bids, asks = ev.book_notional
        context.update(book_bid_notional=round(bids, 2), book_ask_notional=round(asks, 2))
        if ev.book[i] * sign > 0:
            text = (
                _ratio_text("bids", "asks", bids, asks) if long_ else _ratio_text("asks", "bids", asks, bids)
            )
            parts.append(f"book {text} in the top {params.book_levels} levels")
    parts.append(
        f"low at the lower Bollinger band {format_price(band)}"
        if long_
        else f"high at the upper Bollinger band {format_price(band)}"
    )
    ts = int(c.ts[i])
    kind = "flush" if ev.flush[i] * sign > 0 else "bar"
    return Setup(
        direction=direction,
        bar_ts=ts,
        entry=float(c.close[i]),
        reason="; ".join(parts),
        atr=float(ev.atr[i]),
        stop=extreme,
        context=context,
        key_points=(
            KeyPoint(ts, extreme, f"{kind} {'low' if long_ else 'high'}"),
            KeyPoint(ts, band, "lower band" if long_ else "upper band"),
        ),
    )


class LiquidationBot:
    """Inferred liquidations: flush candles and, where available, the trade tape and the order book."""

    name = "liquidation_bot"
    params_model = LiquidationParams

    def needs(self, params: LiquidationParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars, the newest ``trade_count`` trades and ``book_levels`` levels of the book."""
        return DataNeeds(
            lookback=params.lookback,
            extras=ExtrasNeed(trades=params.trade_count, book_depth=params.book_levels),
        )

    def scan(self, data: MarketData, params: LiquidationParams) -> Sequence[Setup]:
        """Every bar whose evidence reaches ``min_score`` inside the Bollinger gate, oldest first."""
        c = data.candles
        if len(c) < max(params.atr_period + 2, params.volume_period + 1, params.bb_period):
            return []
        ev = evidence(data, params)
        long_ = ev.valid & (ev.score >= params.min_score) & (c.low <= ev.lower)
        short = ev.valid & (ev.score <= -params.min_score) & (c.high >= ev.upper)
        return [
            _setup(c, ev, int(i), Direction.LONG if long_[i] else Direction.SHORT, params)
            for i in np.flatnonzero(long_ | short)
            if i >= data.keep_from
        ]
