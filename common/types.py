"""The typed values that travel through the fleet: candles in, setups, levels and signals out.

Every type here is frozen and checks itself on construction, so a value that exists is a valid
value: no later stage has to wonder whether a stop is on the right side of the entry.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Values a strategy may put in a setup's context (they go into events and alerts).
ContextValue = float | int | str | bool

_TIMEFRAME_UNITS_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def timeframe_ms(timeframe: str) -> int:
    """Length of one candle of ``timeframe`` ('5m', '1h', '1d', '1w') in milliseconds.

    Monthly candles ('1M') have no fixed length and are rejected here; the market source handles
    them by calendar where needed.
    """
    if len(timeframe) < 2 or not timeframe[:-1].isdigit() or timeframe[-1] not in _TIMEFRAME_UNITS_MS:
        raise ValueError(f"unsupported timeframe {timeframe!r} (use e.g. 1m, 5m, 15m, 1h, 4h, 1d, 1w)")
    count = int(timeframe[:-1])
    if count <= 0:
        raise ValueError(f"unsupported timeframe {timeframe!r}: the count must be positive")
    return count * _TIMEFRAME_UNITS_MS[timeframe[-1]]


def timeframe_offset_ms(timeframe: str) -> int:
    """Where the candle grid of ``timeframe`` starts relative to the epoch.

    Weekly candles open on Monday 00:00 UTC (1970-01-05, four days after the epoch's Thursday),
    as on MEXC and every major exchange; every shorter timeframe's grid starts at the epoch.
    """
    return 4 * 86_400_000 if timeframe.endswith("w") else 0


def candle_open_ms(when_ms: int, timeframe: str) -> int:
    """Open time of the ``timeframe`` candle that contains the moment ``when_ms``."""
    period, offset = timeframe_ms(timeframe), timeframe_offset_ms(timeframe)
    return (when_ms - offset) // period * period + offset


class Direction(enum.StrEnum):
    """The side of a setup. Only two exist; 'neutral' is the absence of a setup."""

    LONG = "LONG"
    SHORT = "SHORT"

    @classmethod
    def parse(cls, value: str) -> Direction:
        """Normalise the words strategies and users write (bullish, buy, long, ...) to a Direction."""
        word = value.strip().lower()
        if word in {"long", "buy", "bull", "bullish", "up"}:
            return cls.LONG
        if word in {"short", "sell", "bear", "bearish", "down"}:
            return cls.SHORT
        raise ValueError(f"unknown direction {value!r}: use long/buy/bullish or short/sell/bearish")

    @property
    def sign(self) -> int:
        """+1 for LONG, -1 for SHORT: multiply a price move by it to get the move in the trade's favour."""
        return 1 if self is Direction.LONG else -1


def _readonly(values: npt.ArrayLike, dtype: type[np.generic], name: str) -> Any:
    # A view, so that freezing it never freezes the caller's own array.
    array = np.ascontiguousarray(values, dtype=dtype).view()
    if array.ndim != 1:
        raise ValueError(f"candles.{name} must be one-dimensional, got shape {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Candles:
    """Closed OHLCV candles of one series, oldest first, as read-only numpy arrays.

    ``ts`` is each candle's OPEN time in Unix milliseconds (UTC), as exchanges and ccxt give it.
    The arrays are read-only because one series is shared by every bot in a process.
    ``placeholder`` marks flat zero-volume candles that exchanges insert during outages.
    """

    symbol: str
    timeframe: str
    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    placeholder: npt.NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=np.bool_))

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "ts", _readonly(self.ts, np.int64, "ts"))
        for name in ("open", "high", "low", "close", "volume"):
            set_(self, name, _readonly(getattr(self, name), np.float64, name))
        size = self.ts.size
        for name in ("open", "high", "low", "close", "volume"):
            if getattr(self, name).size != size:
                raise ValueError(f"candles.{name} has {getattr(self, name).size} values, ts has {size}")
        if size > 1 and not bool(np.all(np.diff(self.ts) > 0)):
            raise ValueError(f"{self.symbol} {self.timeframe}: candle timestamps are not strictly increasing")
        if np.size(self.placeholder) != size:
            # Not given (or not matching): derive it. Exchanges fill outages with flat, empty candles.
            flat = (self.volume == 0) & (self.high == self.low)
            set_(self, "placeholder", _readonly(flat, np.bool_, "placeholder"))
        else:
            set_(self, "placeholder", _readonly(self.placeholder, np.bool_, "placeholder"))
        timeframe_ms(self.timeframe)  # rejects an unknown timeframe early

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def period_ms(self) -> int:
        """Length of one candle in milliseconds."""
        return timeframe_ms(self.timeframe)

    def close_time(self, index: int = -1) -> int:
        """Close time (ms) of the candle at ``index``: the moment it stopped changing."""
        return int(self.ts[index]) + self.period_ms

    def head(self, count: int) -> Candles:
        """The first ``count`` candles: the history as it stood when candle ``count - 1`` closed."""
        return self.slice(0, count)

    def tail(self, count: int) -> Candles:
        """The last ``count`` candles (all of them when there are fewer)."""
        return self.slice(max(0, len(self) - count), len(self))

    def slice(self, start: int, stop: int) -> Candles:
        """Candles ``start`` (inclusive) to ``stop`` (exclusive), sharing memory with this series."""
        return Candles(
            symbol=self.symbol,
            timeframe=self.timeframe,
            ts=self.ts[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
            placeholder=self.placeholder[start:stop],
        )


@dataclass(frozen=True)
class KeyPoint:
    """A point a chart can draw: a pivot, a swing, a pattern corner."""

    ts: int
    price: float
    label: str


@dataclass(frozen=True)
class Setup:
    """What a strategy found on one closed bar, before levels are computed.

    ``stop`` is the strategy's own stop (SAR, swing, MOST line) when it has one; ``atr`` is the
    volatility the level calculator scales ATR targets by; ``swing`` is the (low, high) of the swing
    that structure- and Fibonacci-based levels are measured from. ``context`` holds the indicator values
    behind the decision; they go into the SIGNAL_EMITTED event and the alert.
    """

    direction: Direction
    bar_ts: int
    entry: float
    reason: str
    atr: float | None = None
    stop: float | None = None
    swing: tuple[float, float] | None = None
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    key_points: tuple[KeyPoint, ...] = ()
    #: Absolute take-profit prices, for a bot whose risk block says ``"tp_method": "setup"``.
    targets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.targets) > 3 or not all(math.isfinite(t) and t > 0 for t in self.targets):
            raise ValueError(f"setup targets must be at most 3 positive prices, got {self.targets!r}")
        if not (math.isfinite(self.entry) and self.entry > 0):
            raise ValueError(f"setup entry must be a positive finite price, got {self.entry!r}")
        if self.atr is not None and not (math.isfinite(self.atr) and self.atr > 0):
            raise ValueError(f"setup atr must be a positive finite number, got {self.atr!r}")
        if self.stop is not None and not (math.isfinite(self.stop) and self.stop > 0):
            raise ValueError(f"setup stop must be a positive finite price, got {self.stop!r}")
        if self.swing is not None:
            low, high = self.swing
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
                raise ValueError(f"setup swing must be (low, high) with 0 < low < high, got {self.swing!r}")
        if not self.reason.strip():
            raise ValueError("setup reason must not be empty")


@dataclass(frozen=True)
class Levels:
    """Entry, stop-loss and one to three take-profits, always on the right sides.

    LONG: sl < entry < tp1 < tp2 < tp3. SHORT: the mirror. Anything else cannot be constructed.
    """

    direction: Direction
    entry: float
    sl: float
    tps: tuple[float, ...]

    def __post_init__(self) -> None:
        prices = (self.entry, self.sl, *self.tps)
        if not all(math.isfinite(p) and p > 0 for p in prices):
            raise ValueError(f"levels must be positive finite prices, got {prices}")
        if not 1 <= len(self.tps) <= 3:
            raise ValueError(f"levels need one to three take-profits, got {len(self.tps)}")
        sign = self.direction.sign
        if (self.entry - self.sl) * sign <= 0:
            raise ValueError(f"{self.direction} stop {self.sl} is not on the loss side of entry {self.entry}")
        previous = self.entry
        for number, tp in enumerate(self.tps, start=1):
            if (tp - previous) * sign <= 0:
                raise ValueError(f"{self.direction} TP{number} {tp} is not beyond {previous}")
            previous = tp

    @property
    def risk(self) -> float:
        """Distance from entry to stop, in price."""
        return abs(self.entry - self.sl)

    def risk_reward(self, tp_index: int) -> float:
        """Reward-to-risk ratio of take-profit ``tp_index`` (0-based)."""
        return abs(self.tps[tp_index] - self.entry) / self.risk

    def pct_from_entry(self, price: float) -> float:
        """Signed distance of ``price`` from entry in percent of entry."""
        return (price - self.entry) / self.entry * 100.0


@dataclass(frozen=True)
class Signal:
    """A setup that passed level validation and the gate: what is stored, sent and tracked.

    ``bar_ts`` is the open time of the closed candle the signal was found on; ``created_ms`` is the
    clock time when it was emitted. The id is derived from (bot, symbol, timeframe, bar, direction),
    so the same signal found twice (a restart, two processes) has the same id.
    """

    id: str
    bot: str
    symbol: str
    timeframe: str
    direction: Direction
    levels: Levels
    reason: str
    bar_ts: int
    created_ms: int
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    key_points: tuple[KeyPoint, ...] = ()

    def __post_init__(self) -> None:
        if self.levels.direction is not self.direction:
            raise ValueError(
                f"signal {self.id}: levels are {self.levels.direction}, signal is {self.direction}"
            )
        if not self.id or not self.bot or not self.symbol:
            raise ValueError("signal id, bot and symbol must not be empty")
