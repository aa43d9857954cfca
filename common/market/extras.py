"""Market data beyond candles: funding rates, public trades, the top of the order book, 24 h tickers.

Each type is a frozen dataclass over read-only numpy arrays (like :class:`common.types.Candles`) that
checks itself on construction and raises :class:`common.errors.DataError` with one line naming the
symbol and what is wrong; the parsers and file readers put where the data came from ("MEXC" or the
file's path) in front. Amounts are always in the BASE asset, prices in the quote currency, times in
Unix milliseconds (UTC).

Facts about ccxt 4.5's ``mexc`` class that the parsers rely on (read in
``ccxt/async_support/mexc.py`` and ``ccxt/base/exchange.py``, 4.5.90, and checked against the fake
server in ``tests/test_market_extras.py``):

* ``market['contractSize']`` is the base amount of one contract for swaps (contract ``contractSize``)
  and None for spot markets; pass ``market['contractSize'] or 1.0`` as ``contract_size``.
* ``fetch_funding_rate_history`` (swap only; ``GET /api/v1/contract/funding_rate/history``,
  ``page_size`` = limit, at most 100, newest page first on the wire) returns rows ``{'symbol',
  'timestamp': settleTime, 'fundingRate'}`` sorted by ccxt oldest first. ``since`` is not sent to
  MEXC, only filtered locally.
* ``fetch_funding_rate`` (``GET /api/v1/contract/funding_rate/{symbol}``): ``fundingRate`` is the rate
  of the CURRENT, not yet settled interval; ``fundingTimestamp`` is MEXC's ``nextSettleTime`` (when that
  rate settles); ``timestamp`` is the server's time, NOT a settlement time; ``interval`` is MEXC's
  ``collectCycle`` (hours) with an 'h' appended ('8h', '4h'). ``nextFundingRate`` and
  ``previousFunding*`` are always None.
* ``fetch_trades``: spot uses ``GET /api/v3/aggTrades`` by default (``options['fetchTradesMethod']``);
  ``amount`` is ``q`` in the BASE asset, ``cost`` = price x amount; ``side`` comes from ``m``
  (buyer is maker -> the taker SOLD); ``id`` is ``a`` (MEXC usually sends null, ccxt then builds an id
  from time, side, amount and price). Swap uses ``GET /api/v1/contract/deals/{symbol}`` (at most
  100, newest first on the wire); ``amount`` is ``v`` in CONTRACTS (ccxt does not convert it), but
  ``cost`` = price x contractSize x amount is already in the quote currency; ``side`` comes from ``T``
  (1 buy, 2 sell; any other value passes through as its string). ccxt sorts by (timestamp, id).
* ``fetch_order_book``: levels are ``[price, amount]`` on spot (BASE amounts, ``timestamp`` from the
  body's ``timestamp`` field, which may be absent) and ``[price, amount, order count]`` on swap with
  amounts in CONTRACTS (ccxt does not convert them). ccxt sorts bids high to low, asks low to high.
* ``fetch_ticker``: spot (``GET /api/v3/ticker/24hr``): ``baseVolume`` = ``volume`` (BASE),
  ``quoteVolume`` = ``quoteVolume`` (quote; ccxt's own sample shows MEXC sending null),
  ``timestamp`` = ``closeTime``, ``percentage`` = ``priceChangePercent`` x 100 (MEXC sends a
  fraction). Swap (``GET /api/v1/contract/ticker``): ``baseVolume`` = ``volume24`` x contractSize,
  ALREADY CONVERTED to the base asset by ccxt for linear swaps (inverse ones swap base and quote),
  ``quoteVolume`` = ``amount24`` (quote), ``percentage`` = ``riseFallRate`` x 100, ``bid``/``ask`` =
  ``bid1``/``ask1``, no bid or ask volume. ``safe_ticker`` turns a zero bid, ask, last or percentage
  into None (a zero percentage is then recomputed from change and open).

So only trade amounts and order book amounts of swaps are converted here (``contract_size``);
ticker volumes are taken as ccxt gives them and ``contract_size`` only cross-checks them.
"""

from __future__ import annotations

import csv
import gzip
import math
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from common.clock import utc_text
from common.errors import DataError
from common.types import FloatArray, IntArray

Int8Array = npt.NDArray[np.int8]
T = TypeVar("T")

HOUR_MS = 3_600_000
#: Funding interval assumed when none is known (most perpetuals settle every 8 hours).
DEFAULT_FUNDING_INTERVAL_MS = 8 * HOUR_MS
YEAR_MS = 365 * 24 * HOUR_MS
#: Number of recent settlement spacings whose median gives the funding interval.
INTERVAL_WINDOW = 10

FUNDING_HEADER = ("timestamp_ms", "funding_rate")
TRADES_HEADER = ("timestamp_ms", "id", "side", "price", "amount", "cost")

_SIDES: dict[str | None, int] = {"buy": 1, "sell": -1, None: 0, "": 0}
_INTERVAL_UNITS_MS = {"m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}


# --------------------------------------------------------------------------- helpers


def _frozen(values: npt.ArrayLike, dtype: type[np.generic], what: str, name: str) -> Any:
    """A read-only one-dimensional view of ``values`` (never freezes the caller's own array)."""
    array = np.ascontiguousarray(values, dtype=dtype).view()
    if array.ndim != 1:
        raise DataError(f"{what}: {name} must be one-dimensional, got shape {array.shape}")
    array.setflags(write=False)
    return array


def _at(ts: IntArray, mask: npt.NDArray[np.bool_]) -> str:
    """The first flagged moment as 'YYYY-MM-DD HH:MM UTC (ts=...)'."""
    index = int(np.flatnonzero(mask)[0])
    return f"{utc_text(int(ts[index]))} (ts={int(ts[index])})"


def _check_times(ts: IntArray, what: str, *, strict: bool) -> None:
    if ts.size > 1:
        steps = np.diff(ts)
        bad = steps <= 0 if strict else steps < 0
        if bad.any():
            problem = "not strictly increasing" if strict else "decreasing"
            raise DataError(f"{what}: timestamps {problem} at {_at(ts[1:], bad)}")


def _check_values(
    values: FloatArray, ts: IntArray, what: str, name: str, *, positive: bool = False, nonneg: bool = False
) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(f"{what}: {name} is not a finite number at {_at(ts, bad)}")
    if positive and (values <= 0).any():
        raise DataError(f"{what}: non-positive {name} at {_at(ts, values <= 0)}")
    if nonneg and (values < 0).any():
        raise DataError(f"{what}: negative {name} at {_at(ts, values < 0)}")


def _finite(value: float | None, what: str, name: str, *, positive: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise DataError(f"{what}: {name} is not a finite number ({value!r})")
    if positive and value <= 0:
        raise DataError(f"{what}: {name} must be positive, got {value!r}")


def _spread_pct(bid: float | None, ask: float | None) -> float | None:
    if bid is None or ask is None:
        return None
    return (ask - bid) / ((ask + bid) / 2) * 100.0


def infer_funding_interval(ts: IntArray) -> int | None:
    """Funding interval (ms) from the median spacing of the last settlements, to the nearest minute.

    The median of the last ``INTERVAL_WINDOW`` spacings follows a symbol that moved from 8 h to 4 h,
    shrugs off a single hole in the data and the millisecond jitter of some exchanges' timestamps.
    None with fewer than two settlements.
    """
    if ts.size < 2:
        return None
    spacing = float(np.median(np.diff(ts[-(INTERVAL_WINDOW + 1) :])))
    minutes = round(spacing / 60_000)
    return minutes * 60_000 if minutes > 0 else None


def parse_funding_interval(text: str) -> int:
    """ccxt's funding ``interval`` text ('8h', '4h', '30m', '1d') in milliseconds; ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhd])\s*", text)
    if match is None or int(match.group(1)) <= 0:
        raise ValueError(f"funding interval {text!r} is not like '8h'")
    return int(match.group(1)) * _INTERVAL_UNITS_MS[match.group(2)]


def _next_settlement(anchor: int | None, interval_ms: int | None, now_ms: int) -> int | None:
    """The first ``anchor + k * interval_ms`` (k >= 1) after ``now_ms``: the schedule's next settlement."""
    if anchor is None or interval_ms is None:
        return None
    nxt = anchor + interval_ms
    if nxt <= now_ms:
        nxt += ((now_ms - nxt) // interval_ms + 1) * interval_ms
    return nxt


# --------------------------------------------------------------------------- types


@dataclass(frozen=True, eq=False)
class FundingRates:
    """Funding settlements of one perpetual up to a moment, oldest first, and the next one if known.

    ``rate`` is a fraction per interval (0.0001 = 0.01 %); positive means longs pay shorts.
    ``next_ts`` is when the next settlement happens and ``predicted_rate`` the rate the exchange
    publishes for it now (it may still change until ``next_ts``).
    """

    symbol: str
    ts: IntArray
    rate: FloatArray
    interval_ms: int | None = None
    next_ts: int | None = None
    predicted_rate: float | None = None

    def __post_init__(self) -> None:
        what = f"{self.symbol} funding"
        set_ = object.__setattr__
        set_(self, "ts", _frozen(self.ts, np.int64, what, "ts"))
        set_(self, "rate", _frozen(self.rate, np.float64, what, "rate"))
        if self.rate.size != self.ts.size:
            raise DataError(f"{what}: {self.rate.size} rates for {self.ts.size} timestamps")
        _check_times(self.ts, what, strict=True)
        _check_values(self.rate, self.ts, what, "rate")
        if self.interval_ms is not None and self.interval_ms <= 0:
            raise DataError(f"{what}: interval must be positive, got {self.interval_ms} ms")
        if self.next_ts is not None and self.ts.size and self.next_ts <= int(self.ts[-1]):
            raise DataError(
                f"{what}: next settlement {utc_text(self.next_ts)} (ts={self.next_ts}) is not after "
                f"the last settled one (ts={int(self.ts[-1])})"
            )
        _finite(self.predicted_rate, what, "predicted rate")

    def __len__(self) -> int:
        return int(self.ts.size)

    def until(self, now_ms: int) -> FundingRates:
        """The funding as it stood at ``now_ms``: settlements at or before it, and the next one after it.

        With nothing dropped, an exchange-given ``next_ts`` still in the future is kept with its
        predicted rate (the object is assumed fetched at or before ``now_ms``). Otherwise the next
        settlement is projected on the schedule (the last known settlement plus whole intervals, past
        ``now_ms``) and the predicted rate is unknown (None): the settled rate that follows would be a
        look into the future. When settlements are dropped, the interval is inferred again from the
        ones kept (a symbol that moved from 8 h to 4 h had 8 h back then), falling back to
        ``interval_ms``.
        """
        end = int(np.searchsorted(self.ts, now_ms, side="right"))
        if end == self.ts.size:
            if self.next_ts is not None and self.next_ts > now_ms:
                return self
            anchor = self.next_ts if self.next_ts is not None else (int(self.ts[-1]) if end else None)
            interval = self.interval_ms
        else:
            anchor = int(self.ts[end - 1]) if end else None
            interval = infer_funding_interval(self.ts[:end]) or self.interval_ms
        return FundingRates(
            symbol=self.symbol,
            ts=self.ts[:end],
            rate=self.rate[:end],
            interval_ms=interval,
            next_ts=_next_settlement(anchor, interval, now_ms),
            predicted_rate=None,
        )

    def last(self, count: int) -> FundingRates:
        """Only the newest ``count`` settlements (the next settlement and predicted rate are kept)."""
        if count >= len(self):
            return self
        return FundingRates(
            symbol=self.symbol,
            ts=self.ts[len(self) - count :],
            rate=self.rate[len(self) - count :],
            interval_ms=self.interval_ms,
            next_ts=self.next_ts,
            predicted_rate=self.predicted_rate,
        )

    def annualised_pct(self, rate: float) -> float:
        """``rate`` per interval as a simple (not compounded) percentage per year: 0.0001 / 8 h is 10.95.

        Uses 365 days of settlements every ``interval_ms`` (8 h when unknown).
        """
        interval = self.interval_ms or DEFAULT_FUNDING_INTERVAL_MS
        return rate * (YEAR_MS / interval) * 100.0


@dataclass(frozen=True, eq=False)
class Trades:
    """Public trades, oldest first (several may share a millisecond).

    ``amount`` is in the BASE asset; ``side`` is the taker's: +1 buy, -1 sell, 0 unknown.
    """

    symbol: str
    ts: IntArray
    price: FloatArray
    amount: FloatArray
    side: Int8Array

    def __post_init__(self) -> None:
        what = f"{self.symbol} trades"
        set_ = object.__setattr__
        set_(self, "ts", _frozen(self.ts, np.int64, what, "ts"))
        set_(self, "price", _frozen(self.price, np.float64, what, "price"))
        set_(self, "amount", _frozen(self.amount, np.float64, what, "amount"))
        set_(self, "side", _frozen(self.side, np.int8, what, "side"))
        for name in ("price", "amount", "side"):
            size = getattr(self, name).size
            if size != self.ts.size:
                raise DataError(f"{what}: {name} has {size} values for {self.ts.size} timestamps")
        _check_times(self.ts, what, strict=False)
        _check_values(self.price, self.ts, what, "price", positive=True)
        _check_values(self.amount, self.ts, what, "amount", nonneg=True)
        odd = (self.side < -1) | (self.side > 1)
        if odd.any():
            raise DataError(
                f"{what}: side must be +1, -1 or 0, not {int(self.side[odd][0])} at {_at(self.ts, odd)}"
            )

    def __len__(self) -> int:
        return int(self.ts.size)

    @property
    def cost(self) -> FloatArray:
        """price x amount of each trade, in the quote currency."""
        cost: FloatArray = self.price * self.amount
        cost.setflags(write=False)
        return cost

    def until(self, now_ms: int, limit: int | None = None) -> Trades:
        """The trades at or before ``now_ms``; only the newest ``limit`` of them when given."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        end = int(np.searchsorted(self.ts, now_ms, side="right"))
        start = 0 if limit is None else max(0, end - limit)
        return Trades(
            symbol=self.symbol,
            ts=self.ts[start:end],
            price=self.price[start:end],
            amount=self.amount[start:end],
            side=self.side[start:end],
        )


@dataclass(frozen=True, eq=False)
class BookTop:
    """The top of the order book at one moment; amounts in the BASE asset; best level first.

    Bids strictly decrease in price, asks strictly increase, and the best bid is below the best ask.
    Either side may be empty.
    """

    symbol: str
    ts: int
    bid_price: FloatArray
    bid_amount: FloatArray
    ask_price: FloatArray
    ask_amount: FloatArray

    def __post_init__(self) -> None:
        what = f"{self.symbol} order book (ts={self.ts})"
        set_ = object.__setattr__
        for side in ("bid", "ask"):
            price = _frozen(getattr(self, f"{side}_price"), np.float64, what, f"{side}_price")
            amount = _frozen(getattr(self, f"{side}_amount"), np.float64, what, f"{side}_amount")
            set_(self, f"{side}_price", price)
            set_(self, f"{side}_amount", amount)
            if price.size != amount.size:
                raise DataError(f"{what}: {price.size} {side} prices for {amount.size} amounts")
            for name, values in (("price", price), ("amount", amount)):
                bad = ~np.isfinite(values)
                if bad.any():
                    raise DataError(f"{what}: {side} {name} is not a finite number at level {_level(bad)}")
            if (price <= 0).any():
                raise DataError(f"{what}: non-positive {side} price at level {_level(price <= 0)}")
            if (amount < 0).any():
                raise DataError(f"{what}: negative {side} amount at level {_level(amount < 0)}")
            steps = np.diff(price) if side == "ask" else -np.diff(price)
            if (steps <= 0).any():
                order = "increasing" if side == "ask" else "decreasing"
                raise DataError(
                    f"{what}: {side} prices not strictly {order} at level {_level(steps <= 0) + 1}"
                )
        if self.bid_price.size and self.ask_price.size and self.bid_price[0] >= self.ask_price[0]:
            bid, ask = float(self.bid_price[0]), float(self.ask_price[0])
            raise DataError(f"{what}: crossed book, best bid {bid} >= best ask {ask}")

    @property
    def best_bid(self) -> float | None:
        """Highest bid price, None when there are no bids."""
        return float(self.bid_price[0]) if self.bid_price.size else None

    @property
    def best_ask(self) -> float | None:
        """Lowest ask price, None when there are no asks."""
        return float(self.ask_price[0]) if self.ask_price.size else None

    @property
    def spread_pct(self) -> float | None:
        """(best ask - best bid) in percent of their midpoint; None when one side is empty."""
        return _spread_pct(self.best_bid, self.best_ask)

    def bid_notional(self, levels: int | None = None) -> float:
        """Quote value (price x amount) resting in the best ``levels`` bid levels (all when None)."""
        return _notional(self.bid_price, self.bid_amount, levels)

    def ask_notional(self, levels: int | None = None) -> float:
        """Quote value (price x amount) resting in the best ``levels`` ask levels (all when None)."""
        return _notional(self.ask_price, self.ask_amount, levels)


def _level(mask: npt.NDArray[np.bool_]) -> int:
    """1-based book level of the first flagged entry."""
    return int(np.flatnonzero(mask)[0]) + 1


def _notional(price: FloatArray, amount: FloatArray, levels: int | None) -> float:
    if levels is not None and levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    return math.fsum((price[:levels] * amount[:levels]).tolist())


@dataclass(frozen=True)
class Ticker24h:
    """24-hour statistics at one moment (``ts``).

    ``base_volume`` is in the BASE asset, ``quote_volume`` in the quote currency (None when the
    exchange did not say); ``change_pct`` is the 24 h price change in percent (1.5 = +1.5 %).
    """

    symbol: str
    ts: int
    last: float
    bid: float | None
    ask: float | None
    base_volume: float
    quote_volume: float | None
    change_pct: float | None

    def __post_init__(self) -> None:
        what = f"{self.symbol} ticker (ts={self.ts})"
        _finite(self.last, what, "last price", positive=True)
        _finite(self.bid, what, "bid", positive=True)
        _finite(self.ask, what, "ask", positive=True)
        if self.bid is not None and self.ask is not None and self.bid >= self.ask:
            raise DataError(f"{what}: crossed quote, bid {self.bid} >= ask {self.ask}")
        for name, value in (("base volume", self.base_volume), ("quote volume", self.quote_volume)):
            _finite(value, what, name)
            if value is not None and value < 0:
                raise DataError(f"{what}: negative {name} {value!r}")
        _finite(self.change_pct, what, "change")

    @property
    def spread_pct(self) -> float | None:
        """(ask - bid) in percent of their midpoint; None when either is unknown."""
        return _spread_pct(self.bid, self.ask)


# --------------------------------------------------------------------------- ccxt parsers


def _built(where: str, make: Callable[[], T]) -> T:
    """Construct a value, putting ``where`` in front of its validation error."""
    try:
        return make()
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _number(value: Any, what: str, name: str) -> float | None:
    """ccxt's number (float, int or numeric string) as a float; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DataError(f"{what}: {name} is {value!r}, not a number")
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{what}: {name} is {value!r}, not a number") from None


def _required(value: Any, what: str, name: str) -> float:
    number = _number(value, what, name)
    if number is None:
        raise DataError(f"{what}: {name} is missing")
    return number


def _timestamp(value: Any, what: str, name: str = "timestamp") -> int:
    number = _required(value, what, name)
    if not number.is_integer():
        raise DataError(f"{what}: {name} {value!r} is not a whole number of milliseconds")
    return int(number)


def _check_symbol(entry: Mapping[str, Any], symbol: str, what: str) -> None:
    given = entry.get("symbol")
    if given is not None and given != symbol:
        raise DataError(f"{what}: the data is for {given}, not {symbol}")


def _contract_size(contract_size: float, what: str) -> Decimal:
    if not (math.isfinite(contract_size) and contract_size > 0):
        raise DataError(f"{what}: contract size must be a positive number, got {contract_size!r}")
    return Decimal(repr(float(contract_size)))


def _to_base(values: list[float], size: Decimal) -> list[float]:
    """Contracts x contract size, multiplied in decimal as ccxt's Precise does (3 x 0.1 is 0.3)."""
    if size == 1:
        return values
    return [float(Decimal(repr(v)) * size) if math.isfinite(v) else v for v in values]


def funding_from_ccxt(
    symbol: str,
    history: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any] | None,
    *,
    where: str = "MEXC",
) -> FundingRates:
    """Funding from ccxt's ``fetch_funding_rate_history`` rows and ``fetch_funding_rate`` (optional).

    Rows are sorted and repeated settlements (overlapping pages) dropped; the same settlement with two
    different rates is an error. The interval is ``current['interval']`` ('8h'), else inferred from
    the history's spacing.
    """
    what = f"{where}: {symbol} funding"
    by_ts: dict[int, float] = {}
    for index, entry in enumerate(history):
        _check_symbol(entry, symbol, what)
        ts = _timestamp(entry.get("timestamp"), what, f"history row {index} timestamp")
        rate = _required(entry.get("fundingRate"), what, f"history row {index} fundingRate")
        if ts in by_ts and by_ts[ts] != rate:
            raise DataError(
                f"{what}: settlement {utc_text(ts)} (ts={ts}) has two rates, {by_ts[ts]} and {rate}"
            )
        by_ts[ts] = rate
    times = sorted(by_ts)
    ts_array = np.asarray(times, dtype=np.int64)
    interval: int | None = None
    next_ts: int | None = None
    predicted: float | None = None
    if current is not None:
        _check_symbol(current, symbol, what)
        text = current.get("interval")
        if text is not None:
            try:
                interval = parse_funding_interval(str(text))
            except ValueError as exc:
                raise DataError(f"{what}: {exc}") from None
        if current.get("fundingTimestamp") is not None:
            next_ts = _timestamp(current["fundingTimestamp"], what, "fundingTimestamp")
        predicted = _number(current.get("fundingRate"), what, "fundingRate")
    if interval is None:
        interval = infer_funding_interval(ts_array)
    return _built(
        where,
        lambda: FundingRates(
            symbol=symbol,
            ts=ts_array,
            rate=np.asarray([by_ts[t] for t in times], dtype=np.float64),
            interval_ms=interval,
            next_ts=next_ts,
            predicted_rate=predicted,
        ),
    )


def trades_from_ccxt(
    symbol: str, rows: Sequence[Mapping[str, Any]], *, contract_size: float = 1.0, where: str = "MEXC"
) -> Trades:
    """Trades from ccxt's ``fetch_trades`` rows; swap amounts (contracts) x ``contract_size`` -> base.

    Rows are put in time order (stable: trades in one millisecond keep ccxt's order). A side other than
    'buy', 'sell' or None is an error.
    """
    what = f"{where}: {symbol} trades"
    size = _contract_size(contract_size, what)
    ts: list[int] = []
    price: list[float] = []
    amount: list[float] = []
    side: list[int] = []
    for index, row in enumerate(rows):
        _check_symbol(row, symbol, what)
        ts.append(_timestamp(row.get("timestamp"), what, f"trade {index} timestamp"))
        price.append(_required(row.get("price"), what, f"trade {index} price"))
        amount.append(_required(row.get("amount"), what, f"trade {index} amount"))
        taker = row.get("side")
        if not (taker is None or isinstance(taker, str)) or taker not in _SIDES:
            raise DataError(f"{what}: trade {index} side is {taker!r}, expected 'buy', 'sell' or None")
        side.append(_SIDES[taker])
    order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable")
    return _built(
        where,
        lambda: Trades(
            symbol=symbol,
            ts=np.asarray(ts, dtype=np.int64)[order],
            price=np.asarray(price, dtype=np.float64)[order],
            amount=np.asarray(_to_base(amount, size), dtype=np.float64)[order],
            side=np.asarray(side, dtype=np.int8)[order],
        ),
    )


def book_from_ccxt(
    symbol: str,
    book: Mapping[str, Any],
    *,
    contract_size: float = 1.0,
    depth: int | None = None,
    where: str = "MEXC",
    received_ms: int | None = None,
) -> BookTop:
    """The top ``depth`` levels (all when None) of ccxt's ``fetch_order_book``; amounts -> base.

    ``received_ms`` is used as the book's time when the exchange sent none (MEXC spot may omit it);
    without either the book is refused.
    """
    what = f"{where}: {symbol} order book"
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    size = _contract_size(contract_size, what)
    _check_symbol(book, symbol, what)
    stamp = book.get("timestamp")
    ts = _timestamp(stamp if stamp is not None else received_ms, what)
    sides: dict[str, tuple[list[float], list[float]]] = {}
    for key in ("bids", "asks"):
        levels = book.get(key) or []
        prices: list[float] = []
        amounts: list[float] = []
        for number, level in enumerate(levels[:depth], start=1):
            if not isinstance(level, Sequence) or isinstance(level, str) or len(level) < 2:
                raise DataError(f"{what}: {key} level {number} is {level!r}, not [price, amount, ...]")
            prices.append(_required(level[0], what, f"{key} level {number} price"))
            amounts.append(_required(level[1], what, f"{key} level {number} amount"))
        sides[key] = (prices, _to_base(amounts, size))
    return _built(
        where,
        lambda: BookTop(
            symbol=symbol,
            ts=ts,
            bid_price=np.asarray(sides["bids"][0], dtype=np.float64),
            bid_amount=np.asarray(sides["bids"][1], dtype=np.float64),
            ask_price=np.asarray(sides["asks"][0], dtype=np.float64),
            ask_amount=np.asarray(sides["asks"][1], dtype=np.float64),
        ),
    )


def ticker_from_ccxt(
    symbol: str, ticker: Mapping[str, Any], *, contract_size: float = 1.0, where: str = "MEXC"
) -> Ticker24h:
    """A 24 h ticker from ccxt's ``fetch_ticker``.

    ccxt already gives swap ``baseVolume`` in the base asset (``volume24`` x contractSize), so
    nothing is converted; with a ``contract_size`` other than 1 and MEXC's raw ``volume24`` in
    ``info``, the volume is checked to be that conversion, so a ccxt release that changed the unit
    is refused instead of silently read as base amounts.
    """
    what = f"{where}: {symbol} ticker"
    size = _contract_size(contract_size, what)
    _check_symbol(ticker, symbol, what)
    ts = _timestamp(ticker.get("timestamp"), what)
    last = _number(ticker.get("last"), what, "last")
    if last is None:
        last = _required(ticker.get("close"), what, "last")
    base_volume = _required(ticker.get("baseVolume"), what, "baseVolume")
    info = ticker.get("info")
    if size != 1 and isinstance(info, Mapping) and info.get("volume24") is not None:
        contracts = _required(info["volume24"], what, "info.volume24")
        expected = _to_base([contracts], size)[0]
        if not math.isclose(base_volume, expected, rel_tol=1e-9, abs_tol=1e-12):
            raise DataError(
                f"{what}: baseVolume {base_volume} is not volume24 {contracts} x contract size "
                f"{contract_size} (has ccxt changed its unit?)"
            )
    return _built(
        where,
        lambda: Ticker24h(
            symbol=symbol,
            ts=ts,
            last=last,
            bid=_number(ticker.get("bid"), what, "bid"),
            ask=_number(ticker.get("ask"), what, "ask"),
            base_volume=base_volume,
            quote_volume=_number(ticker.get("quoteVolume"), what, "quoteVolume"),
            change_pct=_number(ticker.get("percentage"), what, "percentage"),
        ),
    )


# --------------------------------------------------------------------------- replay files


def _read_rows(path: Path, header: tuple[str, ...]) -> tuple[list[int], list[list[str]]]:
    """(line numbers, fields) of the data rows of a .csv / .csv.gz file whose header is ``header``."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    lines = text.splitlines()
    expected = ",".join(header)
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: empty file, expected the header {expected}")
    if tuple(cell.strip() for cell in lines[0].split(",")) != header:
        raise DataError(f"{path}: header is {lines[0][:200]!r}, expected {expected}")
    numbers: list[int] = []
    rows: list[list[str]] = []
    for number, fields in enumerate(csv.reader(lines[1:]), start=2):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank lines (a trailing newline) are harmless
        if len(fields) != len(header):
            raise DataError(
                f"{path}: line {number}: {len(fields)} fields, expected {len(header)} ({expected})"
            )
        numbers.append(number)
        rows.append(fields)
    if not rows:
        raise DataError(f"{path}: no rows after the header")
    return numbers, rows


def _malformed(path: Path, number: int, fields: list[str], problem: str) -> DataError:
    return DataError(f"{path}: line {number}: {problem} in {','.join(fields)[:200]!r}")


def _file_order(path: Path, numbers: list[int], ts: IntArray, *, strict: bool) -> None:
    steps = np.diff(ts)
    bad = steps <= 0 if strict else steps < 0
    if bad.any():
        index = int(np.flatnonzero(bad)[0]) + 1
        problem = "not after" if strict else "before"
        raise DataError(
            f"{path}: line {numbers[index]}: timestamp {int(ts[index])} is {problem} the previous row's "
            f"{int(ts[index - 1])} (rows must be {'strictly increasing' if strict else 'in time order'})"
        )


def read_funding_file(path: Path, symbol: str) -> FundingRates:
    """Read ``timestamp_ms,funding_rate`` (.csv or .csv.gz); raise a one-line ``DataError`` naming the file.

    Timestamps are kept as written (some carry millisecond jitter) but must strictly increase. The
    interval is inferred from the last settlements' spacing; ``next_ts`` is None (``until`` projects it).
    """
    numbers, rows = _read_rows(path, FUNDING_HEADER)
    ts: list[int] = []
    rate: list[float] = []
    for number, fields in zip(numbers, rows, strict=True):
        try:
            ts.append(int(fields[0]))
            rate.append(float(fields[1]))
        except ValueError:
            raise _malformed(path, number, fields, "not a whole-millisecond time and a number") from None
    ts_array = np.asarray(ts, dtype=np.int64)
    _file_order(path, numbers, ts_array, strict=True)
    return _built(
        str(path),
        lambda: FundingRates(
            symbol=symbol,
            ts=ts_array,
            rate=np.asarray(rate, dtype=np.float64),
            interval_ms=infer_funding_interval(ts_array),
        ),
    )


def read_trades_file(path: Path, symbol: str) -> Trades:
    """Read ``timestamp_ms,id,side,price,amount,cost`` (.csv or .csv.gz); one-line ``DataError`` if bad.

    ``id`` and ``side`` may be empty (side 0, unknown); rows must be in time order. ``cost`` must be
    price x amount (to 1e-4 relative), which catches swapped columns.
    """
    numbers, rows = _read_rows(path, TRADES_HEADER)
    ts: list[int] = []
    side: list[int] = []
    values: list[tuple[float, float, float]] = []
    for number, fields in zip(numbers, rows, strict=True):
        taker = fields[2].strip().lower()
        if taker not in _SIDES:
            raise _malformed(path, number, fields, f"side {taker!r} is not buy, sell or empty")
        try:
            ts.append(int(fields[0]))
            values.append((float(fields[3]), float(fields[4]), float(fields[5])))
        except ValueError:
            raise _malformed(path, number, fields, "not a whole-millisecond time and three numbers") from None
        side.append(_SIDES[taker])
    ts_array = np.asarray(ts, dtype=np.int64)
    _file_order(path, numbers, ts_array, strict=False)
    table = np.asarray(values, dtype=np.float64)
    price, amount, cost = table[:, 0].copy(), table[:, 1].copy(), table[:, 2].copy()
    trades = _built(
        str(path),
        lambda: Trades(
            symbol=symbol, ts=ts_array, price=price, amount=amount, side=np.asarray(side, dtype=np.int8)
        ),
    )
    off = ~np.isclose(cost, price * amount, rtol=1e-4, atol=1e-8)
    if off.any():
        index = int(np.flatnonzero(off)[0])
        raise _malformed(
            path,
            numbers[index],
            rows[index],
            f"cost {float(cost[index])!r} is not price x amount {float(price[index] * amount[index])!r}",
        )
    return trades
