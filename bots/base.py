"""The Strategy protocol: what every bot module provides to the one run loop.

A strategy is a pure function of closed market data and its parameters: no I/O, no clock, no
global state. ``scan`` computes over the whole history it is given (vectorised with TA-Lib and
numpy) and returns every setup it finds, each stamped with its bar. The runner keeps the setups on
the newest closed bar; a backtest or test can keep them all. A setup on bar t may depend only on
bars <= t: every strategy has a test that scanning the first t bars gives the same setup at bar t.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

from common.market import ExtrasNeed
from common.market.extras import BookTop, FundingRates, Ticker24h, Trades
from common.types import Candles, Direction, FloatArray, Setup, Signal


class StrategyParams(BaseModel):
    """Base of every strategy's parameter model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DataNeeds:
    """What a strategy needs from the market source besides its own timeframe.

    ``lookback`` closed candles of the bot's timeframe (enough to warm up its indicators), the
    same number of each extra timeframe unless ``extra_lookback`` says otherwise, and ``extras``
    beyond candles (funding, trades, order book, ticker) for each symbol.
    """

    lookback: int
    extra_timeframes: tuple[str, ...] = ()
    extra_lookback: int | None = None
    extras: ExtrasNeed = field(default_factory=ExtrasNeed)
    #: How far back (ms) the other bots' signals on the symbol are wanted (consensus_bot); 0: none.
    #: A bot that reads them is scanned after every other bot of the cycle, over what they emitted.
    peer_signals_ms: int = 0

    def lookback_for(self, timeframe: str, own_timeframe: str) -> int:
        """How many candles of ``timeframe`` the scan reads."""
        if timeframe == own_timeframe or self.extra_lookback is None:
            return self.lookback
        return self.extra_lookback


@dataclass(frozen=True)
class MarketData:
    """Closed market data of one symbol, as of one moment, handed to ``scan``.

    The extras are None unless ``DataNeeds.extras`` asked for them (and the order book is None in
    replay, which has none); live they are as of the cycle, in replay as of the simulated now.
    """

    candles: Candles
    other_timeframes: Mapping[str, Candles] = field(default_factory=dict)
    #: The index of the first bar whose setups the caller keeps (the runner keeps only the newest
    #: bar). A strategy MAY skip work for earlier bars, but its setups from this bar on must be
    #: exactly those of a full scan; most strategies ignore it (their whole-history pass is cheap).
    keep_from: int = 0
    funding: FundingRates | None = None
    trades: Trades | None = None
    book: BookTop | None = None
    ticker: Ticker24h | None = None
    #: Other bots' signals on this symbol created within ``DataNeeds.peer_signals_ms`` before now,
    #: oldest first (from the store; ``created_ms`` is when each was emitted).
    peer_signals: tuple[Signal, ...] = ()


P = TypeVar("P", bound=StrategyParams)
P_contra = TypeVar("P_contra", bound=StrategyParams, contravariant=True)


class Strategy(Protocol, Generic[P]):
    """One bot's logic. ``name`` is the bot's name everywhere (module, config key, unit, log field)."""

    name: str
    params_model: type[P]

    def needs(self, params: P, timeframe: str) -> DataNeeds:
        """How much history, which extra timeframes and extras the scan needs.

        ``timeframe`` is the bot's own (from global_config.json): a multi-timeframe strategy derives
        its higher timeframes from it.
        """
        ...

    def scan(self, data: MarketData, params: P) -> Sequence[Setup]:
        """Every setup in ``data``, oldest first, each on a closed bar (``Setup.bar_ts``)."""
        ...


@runtime_checkable
class TrailingStops(Protocol[P_contra]):
    """Optional, for strategies whose indicator is a stop line (psar_bot's SAR, most_bot's MOST).

    The tracker may trail an open signal's stop along it (see ARCHITECTURE.md, outcomes).
    """

    def trailing_stop(self, data: MarketData, params: P_contra, direction: Direction) -> FloatArray:
        """For a position in ``direction``: the line's stop at each bar of ``data.candles``.

        NaN where the line gives none for that side (a SAR above price does not trail a LONG). Bar t
        uses bars <= t only, like ``scan``.
        """
        ...
