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
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from common.types import Candles, Setup


class StrategyParams(BaseModel):
    """Base of every strategy's parameter model: frozen, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DataNeeds:
    """What a strategy needs from the market source besides its own timeframe."""

    lookback: int
    extra_timeframes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarketData:
    """Closed market data of one symbol, as of one moment, handed to ``scan``."""

    candles: Candles
    other_timeframes: Mapping[str, Candles] = field(default_factory=dict)


P = TypeVar("P", bound=StrategyParams)
P_contra = TypeVar("P_contra", bound=StrategyParams, contravariant=True)


class Strategy(Protocol, Generic[P]):
    """One bot's logic. ``name`` is the bot's name everywhere (module, config key, unit, log field)."""

    name: str
    params_model: type[P]

    def needs(self, params: P) -> DataNeeds:
        """How much history and which extra timeframes the scan needs with these parameters."""
        ...

    def scan(self, data: MarketData, params: P) -> Sequence[Setup]:
        """Every setup in ``data``, oldest first, each on a closed bar (``Setup.bar_ts``)."""
        ...
