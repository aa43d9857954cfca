"""Market sources: where closed candles come from (live MEXC through ccxt, or replay files).

The runner talks to a :class:`MarketSource` and cannot tell live from replay. Only
``common/market/mexc.py`` imports ccxt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.clock import Clock
from common.types import Candles


@dataclass(frozen=True)
class MarketInfo:
    """What the fleet needs to know about one market: its kind and its price tick."""

    symbol: str
    kind: str  # "spot" or "swap"
    tick_size: float | None


@dataclass(frozen=True)
class SeriesKey:
    """One (symbol, timeframe) series that some bot in the process needs."""

    symbol: str
    timeframe: str


class MarketSource(Protocol):
    """What the runner needs from a market source."""

    @property
    def clock(self) -> Clock:
        """The clock this source serves candles by (wall time live, simulated in replay)."""
        ...

    async def open(self, series: list[SeriesKey]) -> dict[str, str]:
        """Prepare the source; returns {symbol: one-line problem} for symbols that cannot be served."""
        ...

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` CLOSED candles of a series at the clock's time (never the forming one)."""
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
