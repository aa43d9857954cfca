"""mtf_bot: a trend turn on the bot's timeframe, confirmed by two higher timeframes.

Rule (on each closed candle t of the bot's own, the *base*, timeframe):

* Each timeframe has a **state**: bullish when its close > ``SMA(sma_period)`` and
  ``RSI(rsi_period)`` > 50; bearish when close < SMA and RSI < 50; neutral otherwise.
* A **turn**: the base timeframe is bullish at t and was not bullish at t-1 (bearish at t and not
  bearish at t-1 for the mirror).
* The **higher timeframes** h1 (the nearer) and h2 give their state as of the base candle's close
  time (``ts + base period``): the state of the last higher candle whose own close time
  (``ts + higher period``) is at or before it, found with ``np.searchsorted``. A higher candle still
  forming at that moment never counts, even when the series handed to the scan (a backtest's
  whole history) holds it.
* **Strength**: 2 when h1 agrees with the turn's direction, 3 (STRONG) when h1 and h2 both agree; a
  turn whose h1 does not agree has strength 1 (h2 alone does not confirm). A setup needs strength
  >= ``min_strength``.
* Turn up -> LONG, turn down -> SHORT. Entry is the close of t. Levels are ATR-based: ``Setup.atr``
  is ``ATR(atr_period)`` of the base timeframe at t, and the bot's risk block places the stop
  (1.5 ATR) and the targets (2, 3 and 4.5 ATR); there is no ``Setup.stop``.
* The setup's context: ``strength``; ``base_timeframe``, ``base_state`` (bull / bear / neutral),
  ``base_sma``, ``base_rsi``; the same four for ``higher1_*`` and ``higher2_*``; ``atr``. Prices
  are rounded to 8 significant digits, RSI to 2 decimals.

Higher timeframes, by the bot's timeframe, when ``higher_timeframes`` is None:

    ======  ===========
    base    h1, h2
    ======  ===========
    5m      15m, 1h
    15m     1h, 4h
    30m     4h, 1d
    1h      4h, 1d
    4h      1d, 1w
    ======  ===========

Any other bot timeframe (1m, 8h, 1d, 1w) needs ``higher_timeframes`` set explicitly. The params model
checks that ``higher_timeframes`` are two MEXC timeframes, h1 finer than h2; the base timeframe is
known only in ``needs`` and ``scan`` (``data.candles.timeframe``), which raise ValueError when a
higher timeframe is not coarser than it. ``data.other_timeframes[tf]`` holds the closed candles of
each higher timeframe; when one is missing or empty the scan returns [] (the runner could not
fetch it this cycle).

Parameters (``bots.mtf_bot.params``), with defaults: sma_period 50, rsi_period 14, atr_period 14,
min_strength 2, higher_timeframes None (the table), lookback 300 (base bars per scan), higher_lookback
120 (bars of each higher timeframe per scan; SMA 50 needs 50, and Wilder's RSI has forgotten its
starting point after about 100; kept well below 300 so a 1d or 1w series of a young market, or a
replay over a few hundred days, has enough of them).

Where the rule is silent, decided here: a bar never fires unless every input is defined, i.e. the
base SMA, RSI and ATR at t, the base SMA and RSI at t-1 (a turn out of the warm-up is no turn) and
the SMA and RSI of a closed candle of BOTH higher timeframes (so the strength is always measured out
of three); a turn on a placeholder candle never fires. A placeholder higher candle counts with its
filled close (the previous close). Nothing is deliberately changed from the rule as given.

The rule fires often: on Binance BTC and ETH 15m (2024, 1h and 4h aggregated) on about 4.5 % of
bars, about 70 % of turns coming out of a neutral bar (bull -> neutral -> bull), a quarter of them
within 4 bars of the previous setup. The bot's ``cooldown_minutes`` is what thins them out.

TA-Lib conventions used: SMA(n) has lookback n - 1, RSI(n) and ATR(n) lookback n; earlier values
are NaN. RSI and ATR use Wilder's smoothing, so they depend slightly on where the history starts:
the runner's ``lookback`` window can give values a little different from a scan of the whole file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import talib
from pydantic import Field, field_validator, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.config import MEXC_TIMEFRAMES
from common.types import Candles, Direction, FloatArray, Setup, timeframe_ms

#: The higher timeframes (h1, h2) used when ``higher_timeframes`` is None, by the bot's timeframe.
DEFAULT_HIGHER: dict[str, tuple[str, str]] = {
    "5m": ("15m", "1h"),
    "15m": ("1h", "4h"),
    "30m": ("4h", "1d"),
    "1h": ("4h", "1d"),
    "4h": ("1d", "1w"),
}

_STATE_NAMES = {1: "bull", -1: "bear", 0: "neutral"}


class MtfParams(StrategyParams):
    """mtf_bot's parameters (see the module docstring)."""

    sma_period: int = Field(50, ge=2, le=500)
    rsi_period: int = Field(14, ge=2, le=200)
    atr_period: int = Field(14, ge=1, le=200)
    min_strength: int = Field(2, ge=2, le=3)
    higher_timeframes: tuple[str, str] | None = None
    lookback: int = Field(300, ge=30, le=5_000)
    higher_lookback: int = Field(120, ge=30, le=5_000)

    @field_validator("higher_timeframes")
    @classmethod
    def _two_known_timeframes_finer_first(cls, value: tuple[str, str] | None) -> tuple[str, str] | None:
        if value is None:
            return None
        for timeframe in value:
            if timeframe not in MEXC_TIMEFRAMES:
                raise ValueError(f"unknown timeframe {timeframe!r}: use one of {', '.join(MEXC_TIMEFRAMES)}")
        first, second = value
        if timeframe_ms(first) >= timeframe_ms(second):
            raise ValueError(f"the first higher timeframe ({first}) must be finer than the second ({second})")
        return value

    @model_validator(mode="after")
    def _lookbacks_cover_the_indicators(self) -> MtfParams:
        # The base needs SMA and RSI defined at t-1 (SMA n from index n - 1, RSI n from index n) and
        # ATR at t (from index n); a higher series needs SMA and RSI defined on one candle.
        base_need = max(self.sma_period + 1, self.rsi_period + 2, self.atr_period + 1)
        if self.lookback < base_need:
            raise ValueError(f"lookback {self.lookback} must be at least {base_need} for these periods")
        higher_need = max(self.sma_period, self.rsi_period + 1)
        if self.higher_lookback < higher_need:
            raise ValueError(
                f"higher_lookback {self.higher_lookback} must be at least {higher_need} for these periods"
            )
        return self


def higher_timeframes_for(params: MtfParams, timeframe: str) -> tuple[str, str]:
    """The (h1, h2) the bot reads on ``timeframe``; ValueError if none is known or one is not coarser."""
    if params.higher_timeframes is None:
        if timeframe not in DEFAULT_HIGHER:
            raise ValueError(
                f"mtf_bot has no default higher timeframes for {timeframe} (defaults exist for "
                f"{', '.join(DEFAULT_HIGHER)}): set params.higher_timeframes"
            )
        return DEFAULT_HIGHER[timeframe]
    base_ms = timeframe_ms(timeframe)
    for higher in params.higher_timeframes:
        if timeframe_ms(higher) <= base_ms:
            raise ValueError(
                f"mtf_bot higher timeframe {higher} is not coarser than the bot's timeframe {timeframe}"
            )
    return params.higher_timeframes


def trend_state(close: FloatArray, sma: FloatArray, rsi: FloatArray) -> npt.NDArray[np.int64]:
    """+1 bullish (close > SMA and RSI > 50), -1 bearish (both below), 0 neutral or undefined (NaN)."""
    bull = (close > sma) & (rsi > 50.0)
    bear = (close < sma) & (rsi < 50.0)
    state: npt.NDArray[np.int64] = bull.astype(np.int64) - bear.astype(np.int64)
    return state


def _round_price(value: float) -> float:
    """A price for the context: 8 significant digits (enough for any quote, short in an alert)."""
    return float(f"{value:.8g}")


class _Frame:
    """State, SMA and RSI of a timeframe at each base bar: its own bar, or the last closed higher candle."""

    def __init__(
        self, candles: Candles, params: MtfParams, base_close_ms: npt.NDArray[np.int64] | None = None
    ) -> None:
        self.timeframe = candles.timeframe
        close = candles.close
        sma = talib.SMA(close, timeperiod=params.sma_period)
        rsi = talib.RSI(close, timeperiod=params.rsi_period)
        if base_close_ms is not None:
            # The last candle that closed at or before each base close (-1 when none has).
            index = np.searchsorted(candles.ts + candles.period_ms, base_close_ms, side="right") - 1
            seen = index >= 0
            safe = np.where(seen, index, 0)
            close = np.where(seen, close[safe], np.nan)
            sma = np.where(seen, sma[safe], np.nan)
            rsi = np.where(seen, rsi[safe], np.nan)
        self.sma: FloatArray = sma
        self.rsi: FloatArray = rsi
        self.defined = np.isfinite(sma) & np.isfinite(rsi)
        self.state = trend_state(close, sma, rsi)


class MtfBot:
    """A base-timeframe trend turn (close vs SMA 50, RSI 14 vs 50) confirmed by two higher timeframes."""

    name = "mtf_bot"
    params_model = MtfParams

    def needs(self, params: MtfParams, timeframe: str) -> DataNeeds:
        """``lookback`` base bars and ``higher_lookback`` bars of each of the two higher timeframes."""
        return DataNeeds(
            lookback=params.lookback,
            extra_timeframes=higher_timeframes_for(params, timeframe),
            extra_lookback=params.higher_lookback,
        )

    def scan(self, data: MarketData, params: MtfParams) -> Sequence[Setup]:
        """Every confirmed turn in ``data.candles``, oldest first."""
        c = data.candles
        highers: list[Candles] = []
        for name in higher_timeframes_for(params, c.timeframe):
            higher = data.other_timeframes.get(name)
            if higher is None or len(higher) == 0:
                return []  # not fetched this cycle: nothing to confirm with
            if higher.timeframe != name:
                raise ValueError(f"other_timeframes[{name!r}] holds {higher.timeframe} candles")
            highers.append(higher)
        if len(c) < params.sma_period + 1:
            return []
        base = _Frame(c, params)
        close_ms = c.ts + c.period_ms
        h1, h2 = (_Frame(higher, params, close_ms) for higher in highers)
        atr = talib.ATR(c.high, c.low, c.close, timeperiod=params.atr_period)

        previous_state = np.r_[0, base.state[:-1]]
        previous_defined = np.r_[False, base.defined[:-1]]
        turn = np.where(base.state != previous_state, base.state, 0)
        agree1 = (turn != 0) & (h1.state == turn)
        strength = np.where(turn != 0, 1 + agree1 + (agree1 & (h2.state == turn)), 0)
        fires = (
            (strength >= params.min_strength)
            & base.defined
            & previous_defined
            & h1.defined
            & h2.defined
            & np.isfinite(atr)
            & (atr > 0)
            & ~c.placeholder
        )
        setups = []
        for i in np.flatnonzero(fires):
            long = bool(turn[i] > 0)
            direction = Direction.LONG if long else Direction.SHORT
            entry = float(c.close[i])
            level = int(strength[i])
            word = "bullish" if long else "bearish"
            relation = ">" if long else "<"
            state1, state2 = _STATE_NAMES[int(h1.state[i])], _STATE_NAMES[int(h2.state[i])]
            others = f"{h1.timeframe} {state1}, {h2.timeframe} {state2}"
            setups.append(
                Setup(
                    direction=direction,
                    bar_ts=int(c.ts[i]),
                    entry=entry,
                    atr=float(atr[i]),
                    reason=(
                        f"{c.timeframe} turned {word}: close {entry:.8g} {relation} SMA {params.sma_period} "
                        f"{float(base.sma[i]):.8g}, RSI {float(base.rsi[i]):.1f}; {others}: strength "
                        f"{level}{' (STRONG)' if level == 3 else ''}"
                    ),
                    context={
                        "strength": level,
                        "base_timeframe": c.timeframe,
                        "base_state": _STATE_NAMES[int(base.state[i])],
                        "base_sma": _round_price(float(base.sma[i])),
                        "base_rsi": round(float(base.rsi[i]), 2),
                        "higher1_timeframe": h1.timeframe,
                        "higher1_state": state1,
                        "higher1_sma": _round_price(float(h1.sma[i])),
                        "higher1_rsi": round(float(h1.rsi[i]), 2),
                        "higher2_timeframe": h2.timeframe,
                        "higher2_state": state2,
                        "higher2_sma": _round_price(float(h2.sma[i])),
                        "higher2_rsi": round(float(h2.rsi[i]), 2),
                        "atr": _round_price(float(atr[i])),
                    },
                )
            )
        return setups
