"""funding_bot: contrarian signals on crowded funding of perpetual swaps.

Rule (on each closed candle t of a perpetual swap, with the symbol's funding settlements):

* The rate used at t is the LAST SETTLED funding rate at t's close: the newest settlement whose
  time is at or before ``ts[t] + period`` (``np.searchsorted(funding.ts, close_time, "right")``).
  Settled rates only: the live ``predicted_rate`` (the current, unsettled interval) is never used,
  so a scan of the same history gives the same setups live, in a replay and in a backtest.
* Funding score, from two triggers that do NOT add up:

  - threshold (the primary trigger): rate >= +``threshold`` scores -2 (longs crowded: SHORT),
    rate <= -``threshold`` scores +2 (shorts crowded: LONG);
  - z-score (the alternative, used only when the threshold does not fire): z = (rate - mean) / std
    of the ``zscore_window`` settlements BEFORE the rate's own (population standard deviation,
    ddof 0; the rate itself is not in its window); z > +``zscore_min`` scores -2, z <
    -``zscore_min`` scores +2.

  When both fire they either agree or the threshold wins (it is the primary trigger, the z-score
  its alternative): the funding score is -2, 0 or +2 whatever fired.
* Price confirmation: one more point in the same direction when the close is below
  ``SMA(sma_period)`` for a SHORT score, above it for a LONG one. So |score| is 0, 2 or 3.
* A signal when |score| >= ``min_score`` (3 by default: extreme AND confirmed): score < 0 SHORT,
  > 0 LONG. At most one signal per funding settlement: the first bar that qualifies after it.
* Entry is the close of t. No own stop: ``Setup.atr`` is ``ATR(atr_period)`` at t and the levels
  come from the bot's risk block (``sl_method`` "atr" x 1.5, ``tp_method`` "atr" 2 / 3 / 4, ``min_rr``
  1.3).
* Never a signal on a placeholder candle, where the SMA or the ATR is not defined yet, or before
  ``zscore_window`` settlements precede the rate (the z-score's warm-up, for either trigger; the
  runner always hands ``zscore_window + 1``). ``data.funding`` None or empty gives no setups.

The reason line shows the rate per interval, its simple annualised value (the rate x the intervals
in 365 days, as :meth:`FundingRates.annualised_pct`), the trigger, the price confirmation and the
next settlement. The interval is inferred from the settlements known at the bar
(:func:`infer_funding_interval`; a symbol that moved from 8 h to 4 h shows 8 h before the move), and
the next settlement is projected on that schedule (the used settlement plus whole intervals, the
first after the bar's close), never read from data after the bar nor from the exchange's live
``next_ts``, so that a later scan of the same history gives the same text.

Parameters (``bots.funding_bot.params``), with defaults: threshold 0.0005 (0.05 % per interval),
zscore_window 30, zscore_min 2.0, sma_period 20, min_score 3, atr_period 14, lookback 200 (bars per
scan: SMA 20 and ATR 14 settle, and from 5m up 200 bars cover a whole 8 h funding interval, so the
once-per-settlement rule sees every earlier bar since the settlement; below 5m raise it to at least
one interval's bars).
``needs`` asks for ``zscore_window + 1`` settlements (31): the newest rate and its window.

Context: rate (fraction per interval), annualised_pct, zscore (absent when undefined), settlement_ms
(the settlement used), next_settlement_ms, interval_h, trigger ("threshold" or "zscore"), score
(-3..3), sma, atr.

Where it departs from the previous bot:

* Levels from a real ``ATR(atr_period)`` instead of 2 % of price as a stand-in.
* The rate is the last settled one at the bar's close and the next settlement is projected, not the
  exchange's current (unsettled) rate and ``next_ts``, which no historical scan or replay can know.
* A window of identical rates (e.g. BTC's flat 0.0100 % for weeks) gives no z-score (no z trigger):
  a plain division by its standard deviation (0, or ~1e-20 of float noise, see ``FLAT_STD``) would
  fail or turn the next 0.0001 % change into a z-score of 10^15.
* The reason says "crowded long / short" only for the threshold trigger; a z-score trigger reads
  "unusually high / low": about one z-score LONG in four on real BTC comes on a positive rate
  (longs still paying, only less than usual), which is not a crowded short. The rule itself is kept.

TA-Lib conventions used: SMA(n) has lookback n - 1, ATR(n) lookback n; earlier values are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import talib
from pydantic import Field

from bots.base import DataNeeds, MarketData, StrategyParams
from common.clock import utc_text
from common.market import ExtrasNeed
from common.market.extras import (
    DEFAULT_FUNDING_INTERVAL_MS,
    HOUR_MS,
    YEAR_MS,
    FundingRates,
    infer_funding_interval,
)
from common.prices import format_price
from common.types import ContextValue, Direction, FloatArray, Setup

#: The two triggers of the funding score, as the context's ``trigger`` names them.
THRESHOLD = "threshold"
ZSCORE = "zscore"
#: A window's standard deviation at or below this is float noise of identical rates (the mean of
#: thirty 0.0001 is not exactly 0.0001): no z-score. Rates are quoted to 1e-8, so two distinct rates
#: in a window give at least 1e-8 x sqrt(29) / 30 = 1.8e-9.
FLAT_STD = 1e-12


class FundingParams(StrategyParams):
    """funding_bot's parameters (see the module docstring)."""

    threshold: float = Field(0.0005, gt=0, le=0.05)
    zscore_window: int = Field(30, ge=5, le=1_000)
    zscore_min: float = Field(2.0, gt=0, le=20)
    sma_period: int = Field(20, ge=2, le=1_000)
    min_score: int = Field(3, ge=1, le=3)
    atr_period: int = Field(14, ge=1, le=200)
    lookback: int = Field(200, ge=30, le=5_000)


def funding_zscores(rate: FloatArray, window: int) -> FloatArray:
    """z of each settlement against the ``window`` settlements before it; NaN without a full window.

    NaN too where the window's population standard deviation is at most ``FLAT_STD`` (all its rates
    equal; exactly 0 only by luck of rounding). Each value
    depends on its own window only, so it is the same whatever settlements precede the window.
    """
    z = np.full(rate.size, np.nan)
    if rate.size <= window:
        return z
    windows = np.lib.stride_tricks.sliding_window_view(rate[:-1], window)
    mean = windows.mean(axis=1)
    std = windows.std(axis=1)
    measurable = std > FLAT_STD
    z[window:] = np.where(measurable, (rate[window:] - mean) / np.where(measurable, std, 1.0), np.nan)
    return z


def interval_text(interval_ms: int) -> str:
    """A funding interval as people say it: '8 h', '4 h', '30 min'."""
    if interval_ms % HOUR_MS == 0:
        return f"{interval_ms // HOUR_MS} h"
    return f"{interval_ms / 60_000:g} min"


def next_settlement(settled_ms: int, interval_ms: int, close_ms: int) -> int:
    """The first ``settled_ms + k * interval_ms`` (k >= 1) after ``close_ms``."""
    nxt = settled_ms + interval_ms
    if nxt <= close_ms:
        nxt += ((close_ms - nxt) // interval_ms + 1) * interval_ms
    return nxt


class FundingBot:
    """Contrarian on extreme (or unusually high / low) funding, confirmed by price vs its SMA."""

    name = "funding_bot"
    params_model = FundingParams

    def needs(self, params: FundingParams, timeframe: str) -> DataNeeds:
        """``lookback`` candles and the newest ``zscore_window + 1`` funding settlements."""
        return DataNeeds(lookback=params.lookback, extras=ExtrasNeed(funding=params.zscore_window + 1))

    def scan(self, data: MarketData, params: FundingParams) -> Sequence[Setup]:
        """Every contrarian funding signal in ``data.candles``, oldest first (settled rates only)."""
        c = data.candles
        funding = data.funding
        if funding is None or len(funding) <= params.zscore_window:
            return []
        if len(c) <= max(params.sma_period - 1, params.atr_period):
            return []
        sma = talib.SMA(c.close, timeperiod=params.sma_period)
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)
        # Index of the last settlement at or before each bar's close (-1: none yet).
        settled = np.searchsorted(funding.ts, c.ts + c.period_ms, side="right") - 1
        warm = settled >= params.zscore_window
        k = np.where(warm, settled, 0)
        rate = funding.rate[k]
        z = funding_zscores(funding.rate, params.zscore_window)[k]
        by_threshold = np.where(rate >= params.threshold, -2, np.where(rate <= -params.threshold, 2, 0))
        by_zscore = np.where(z > params.zscore_min, -2, np.where(z < -params.zscore_min, 2, 0))
        funding_score = np.where(by_threshold != 0, by_threshold, by_zscore)
        confirmed = ((funding_score < 0) & (c.close < sma)) | ((funding_score > 0) & (c.close > sma))
        score = funding_score + np.sign(funding_score) * confirmed
        qualifies = (
            warm & (np.abs(score) >= params.min_score) & np.isfinite(sma) & np.isfinite(atr) & ~c.placeholder
        )
        candidates = np.flatnonzero(qualifies)
        # The first qualifying bar after each settlement (np.unique keeps each value's first index).
        _, first = np.unique(settled[candidates], return_index=True)
        return [
            _setup(
                data,
                funding,
                params,
                i=int(i),
                k=int(settled[i]),
                score=int(score[i]),
                trigger=THRESHOLD if by_threshold[i] != 0 else ZSCORE,
                z=float(z[i]),
                sma=float(sma[i]),
                atr=float(atr[i]),
            )
            for i in candidates[first]
        ]


def _setup(
    data: MarketData,
    funding: FundingRates,
    params: FundingParams,
    *,
    i: int,
    k: int,
    score: int,
    trigger: str,
    z: float,
    sma: float,
    atr: float,
) -> Setup:
    """The setup on bar ``i``, whose last settled funding is settlement ``k``."""
    c = data.candles
    interval = (
        infer_funding_interval(funding.ts[: k + 1]) or funding.interval_ms or DEFAULT_FUNDING_INTERVAL_MS
    )
    settled_ms = int(funding.ts[k])
    nxt = next_settlement(settled_ms, interval, c.close_time(i))
    rate = float(funding.rate[k])
    yearly = rate * (YEAR_MS / interval) * 100.0
    long = score > 0
    if trigger == THRESHOLD:
        why = f" crowded {'short' if long else 'long'}"
    else:
        why = (
            f", z-score {z:+.2f} over the last {params.zscore_window} settlements: "
            f"unusually {'low' if long else 'high'}"
        )
    if abs(score) == 3:
        price = f"close {'above' if long else 'below'} SMA {params.sma_period}"
    else:
        price = f"close not confirming (SMA {params.sma_period} {format_price(sma)})"
    context: dict[str, ContextValue] = {
        "rate": round(rate, 8),
        "annualised_pct": round(yearly, 2),
        "settlement_ms": settled_ms,
        "next_settlement_ms": nxt,
        "interval_h": round(interval / HOUR_MS, 4),
        "trigger": trigger,
        "score": score,
        "sma": sma,
        "atr": atr,
    }
    if np.isfinite(z):
        context["zscore"] = round(z, 2)
    return Setup(
        direction=Direction.LONG if long else Direction.SHORT,
        bar_ts=int(c.ts[i]),
        entry=float(c.close[i]),
        atr=atr,
        reason=(
            f"Funding {rate * 100:+.4f} % per {interval_text(interval)} ({yearly:.1f} %/yr){why}; "
            f"{price}; next settlement {utc_text(nxt)}"
        ),
        context=context,
    )
