"""Market sources: where closed candles come from (live MEXC through ccxt, or replay files).

The runner talks to a :class:`MarketSource` and cannot tell live from replay. Only
``common/market/mexc.py`` imports ccxt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from common.clock import Clock
from common.types import Candles

if TYPE_CHECKING:  # extras.py imports the replay module, which imports this package
    from common.market.extras import BookTop, FundingRates, Ticker24h, Trades


@dataclass(frozen=True)
class MarketInfo:
    """What the fleet needs to know about one market: its kind, price tick and amount rules.

    ``contract_size`` is the base-asset amount of one contract (1.0 on spot); amounts here are in
    the exchange's order unit (contracts on swap), as position sizing needs them.
    """

    symbol: str
    kind: str  # "spot" or "swap"
    tick_size: float | None
    contract_size: float = 1.0
    amount_step: float | None = None
    min_amount: float | None = None


@dataclass(frozen=True)
class SeriesKey:
    """One (symbol, timeframe) series that some bot in the process needs."""

    symbol: str
    timeframe: str


@dataclass(frozen=True)
class SourceProblem:
    """Something a source cannot serve, found at ``open``: a whole symbol, one series, or its extras.

    Only the bots that need what is missing lose the symbol: a 5m series missing from a replay
    folder keeps the 1h bots on that symbol running.
    """

    symbol: str
    text: str  # one line, naming what is missing and where it was looked for
    timeframe: str | None = None  # this series only
    extras: bool = False  # the symbol's funding / trades only

    def blocks(self, symbol: str, timeframes: tuple[str, ...], needs_extras: bool) -> bool:
        """Whether a bot reading ``timeframes`` (and extras when ``needs_extras``) of ``symbol`` is hit."""
        if symbol != self.symbol:
            return False
        if self.extras:
            return needs_extras
        return self.timeframe is None or self.timeframe in timeframes


@dataclass(frozen=True)
class ExtrasNeed:
    """Market data beyond candles that a bot reads for each of its symbols (zero / False: none)."""

    funding: int = 0  # past funding settlements (perpetual swaps only)
    trades: int = 0  # most recent public trades
    book_depth: int = 0  # order book levels per side
    ticker: bool = False  # 24 h statistics

    def __bool__(self) -> bool:
        return bool(self.funding or self.trades or self.book_depth or self.ticker)

    def merged(self, other: ExtrasNeed) -> ExtrasNeed:
        """The larger of two needs, field by field: what serves both bots with one fetch."""
        return ExtrasNeed(
            funding=max(self.funding, other.funding),
            trades=max(self.trades, other.trades),
            book_depth=max(self.book_depth, other.book_depth),
            ticker=self.ticker or other.ticker,
        )


@dataclass(frozen=True)
class SymbolExtras:
    """The extras of one symbol as of one moment; a field is None when not asked for or not available."""

    funding: FundingRates | None = None
    trades: Trades | None = None
    book: BookTop | None = None
    ticker: Ticker24h | None = None


class MarketSource(Protocol):
    """What the runner needs from a market source."""

    @property
    def clock(self) -> Clock:
        """The clock this source serves candles by (wall time live, simulated in replay)."""
        ...

    async def open(
        self, series: list[SeriesKey], extras: Mapping[str, ExtrasNeed] | None = None
    ) -> list[SourceProblem]:
        """Prepare the source; returns what it cannot serve (symbols, series, extras), one line each.

        ``extras`` says which symbols need what beyond candles, so a source that cannot provide it
        (funding for a spot symbol, a replay without a funding file) says so at start.
        """
        ...

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` CLOSED candles of a series at the clock's time (never the forming one)."""
        ...

    async def extras(self, symbol: str, need: ExtrasNeed) -> SymbolExtras:
        """What ``need`` asks for, as of the clock's time (replay: nothing after it).

        A kind of data the source cannot have (an order book in replay) is None; a failure to get
        what it should have raises, like ``closed_candles``.
        """
        ...

    async def funding_since(self, symbol: str, since_ms: int) -> FundingRates | None:
        """The funding settlements of a perpetual from ``since_ms`` up to the clock's time.

        For the tracker's P&L: None when the source has no funding for the symbol (a spot market,
        a replay without a funding file); a failure to get what it should have raises.
        """
        ...

    def breakers(self) -> Mapping[str, str]:
        """The state of each circuit breaker the source has (``closed``, ``open``, ``half-open``)."""
        ...

    def market(self, symbol: str) -> MarketInfo:
        """Market information for a symbol that ``open`` accepted."""
        ...

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """Where the clock should start (replay: once every series is warm); None for live."""
        ...

    def finished(self) -> bool:
        """True when no more candles will come (end of replay data); always False live."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
