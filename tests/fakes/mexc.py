"""A fake MEXC REST server that the real ccxt ``mexc`` client can talk to.

It is a real HTTP server (aiohttp) on 127.0.0.1 that speaks the wire protocol of the public
endpoints ccxt 4.5's async ``mexc`` class calls (spot v3 under ``/api/v3`` and USDT-margined
contracts under ``/api/v1/contract``), plus the one signed endpoint that ``load_markets`` calls
when credentials are configured. Tests feed it real history (``tests/fakes/csvdata.py``) and point
ccxt at it with ``common.market.override_api_host``, so the project's real exchange code runs
unchanged, including ccxt's own parsing and error mapping.

Faithful on purpose, where MEXC differs from intuition:
- the still-forming candle (open <= now < open + timeframe) IS served, as the exchange does;
- swap volumes are in CONTRACTS on the wire (kline ``vol``, ticker ``volume24``, deals ``v``): the
  fake converts the base-asset volumes it is given by dividing by the contract size;
- swap kline times are in SECONDS, spot ones in milliseconds; interval names differ per market
  (``1h`` is ``60m`` on spot and ``Min60`` on swap);
- contract errors come back as HTTP 200 with ``{"success": false, "code": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final, Literal, Self

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler
from numpy.typing import ArrayLike, NDArray

from tests.fakes.csvdata import OhlcvArrays

MarketType = Literal["spot", "swap"]
FaultKind = Literal["http_429", "http_500", "too_frequent", "hang", "malformed", "gap"]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

#: Candle length per ccxt timeframe name (the names callers use with ``add_candles``).
TIMEFRAME_MS: Final[dict[str, int]] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": HOUR_MS,
    "4h": 4 * HOUR_MS,
    "8h": 8 * HOUR_MS,
    "1d": DAY_MS,
    "1w": 7 * DAY_MS,
}
#: ccxt timeframe -> MEXC spot ``interval`` (ccxt's options['timeframes']['spot']; spot has no 8h).
SPOT_INTERVALS: Final[dict[str, str]] = {
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "60m",
    "4h": "4h",
    "1d": "1d",
    "1w": "1W",
}
#: ccxt timeframe -> MEXC contract ``interval`` (ccxt's options['timeframes']['swap']).
SWAP_INTERVALS: Final[dict[str, str]] = {
    "1m": "Min1",
    "5m": "Min5",
    "15m": "Min15",
    "30m": "Min30",
    "1h": "Min60",
    "4h": "Hour4",
    "8h": "Hour8",
    "1d": "Day1",
    "1w": "Week1",
}
# Month candles are valid on the wire but have no fixed length; the fake answers them with no data.
_MONTH_INTERVALS: Final = {"spot": "1M", "swap": "Month1"}

SPOT_KLINES_DEFAULT_LIMIT: Final = 500
SPOT_KLINES_MAX_LIMIT: Final = 1000  # documented maximum; ccxt itself never asks for more than 500
SWAP_KLINES_MAX: Final = 2000  # the contract kline endpoint takes no limit; it answers at most this many
SPOT_TRADES_DEFAULT_LIMIT: Final = 500
SPOT_TRADES_MAX_LIMIT: Final = 1000
SWAP_DEALS_MAX: Final = 100
SPOT_DEPTH_DEFAULT_LIMIT: Final = 100
SPOT_DEPTH_MAX_LIMIT: Final = 5000
SWAP_DEPTH_DEFAULT_LIMIT: Final = 50
FUNDING_PAGE_DEFAULT: Final = 20
FUNDING_PAGE_MAX: Final = 100

# Hands a gap fault from the middleware to the kline handlers.
_GAP_KEY: Final = web.RequestKey("fake_mexc.gap", frozenset[int])
_KLINE_PATHS: Final = ("/api/v3/klines", "/api/v1/contract/kline/")


def shift_to_now(ts: ArrayLike, timeframe_ms: int, now_ms: int) -> NDArray[np.int64]:
    """Timestamps moved by a whole number of candles so the LAST one is the forming candle at ``now_ms``.

    After the shift, ``last <= now_ms < last + timeframe_ms``. Moving by whole candles keeps the series
    on its own grid (a daily series stays at midnight, a Monday-weekly one on Mondays), so history can
    be served "as if live". Works in both directions (history from the past or the future).
    """
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be positive, got {timeframe_ms}")
    arr = np.asarray(ts, dtype=np.int64)
    if arr.size == 0:
        return arr.copy()
    candles = (now_ms - int(arr[-1])) // timeframe_ms  # floor division: also right for negative offsets
    return arr + np.int64(candles * timeframe_ms)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (faulted ones included), for counting and assertions."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    monotonic: float  # time.monotonic() at arrival: for measuring spacing between requests
    wall_time: float  # time.time() at arrival
    fault: FaultKind | None  # the injected fault that answered (or altered) this request, if any


@dataclass(frozen=True)
class Fault:
    """A misbehaviour to inject; build one with the static constructors, then ``FakeMexc.inject``."""

    kind: FaultKind
    retry_after: float | None = None
    seconds: float = 0.0
    drop_ts: frozenset[int] = frozenset()
    body: str = ""

    @staticmethod
    def http_429(retry_after: float | None = None) -> Fault:
        """HTTP 429 with MEXC's body ``{"code":429,"msg":"Too Many Requests"}`` (ccxt: RateLimitExceeded).

        ``retry_after`` seconds go into a ``Retry-After`` header (whole numbers as integers).
        """
        return Fault("http_429", retry_after=retry_after)

    @staticmethod
    def http_500() -> Fault:
        """HTTP 500 with an HTML gateway page, not JSON (ccxt: ExchangeNotAvailable, a temporary error)."""
        return Fault("http_500")

    @staticmethod
    def too_frequent() -> Fault:
        """HTTP 200 whose body carries MEXC's business code 510 "too frequent" (ccxt: RateLimitExceeded).

        Spot paths get ``{"code":510,"msg":...}``, contract paths ``{"success":false,"code":510,...}``.
        """
        return Fault("too_frequent")

    @staticmethod
    def hang(seconds: float) -> Fault:
        """Wait ``seconds`` before answering normally; a shorter client timeout gives RequestTimeout."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        return Fault("hang", seconds=seconds)

    @staticmethod
    def malformed(body: str = '{"code":0,"data":[[1700000000000,"4') -> Fault:
        """HTTP 200, ``application/json`` content type, but a body that does not parse as JSON."""
        return Fault("malformed", body=body)

    @staticmethod
    def gap(ts_to_drop: int | np.integer[Any] | Sequence[int] | NDArray[np.int64]) -> Fault:
        """Omit the candles opening at these ms timestamps from kline answers (other paths unaffected)."""
        if isinstance(ts_to_drop, int | np.integer):
            return Fault("gap", drop_ts=frozenset([int(ts_to_drop)]))
        return Fault("gap", drop_ts=frozenset(int(t) for t in ts_to_drop))


@dataclass
class _PendingFault:
    fault: Fault
    remaining: int
    path_contains: str | None

    def matches(self, path: str) -> bool:
        if self.path_contains is not None and self.path_contains not in path:
            return False
        # A gap only makes sense for candles; it must not be used up by, say, exchangeInfo.
        return self.fault.kind != "gap" or path.startswith(_KLINE_PATHS)


@dataclass(frozen=True)
class _SpotMarket:
    symbol_id: str
    base: str
    quote: str
    price_tick: Decimal
    amount_step: Decimal


@dataclass(frozen=True)
class _SwapMarket:
    symbol_id: str
    base: str
    quote: str
    price_unit: Decimal
    contract_size: float


@dataclass(frozen=True)
class _Funding:
    ts: NDArray[np.int64]
    rate: NDArray[np.float64]
    interval_hours: int


@dataclass(frozen=True)
class _Trades:
    ts: NDArray[np.int64]
    ids: list[str] | None
    sides: list[str]
    prices: NDArray[np.float64]
    amounts: NDArray[np.float64]


@dataclass(frozen=True)
class _DayStats:
    last: float
    open: float
    high: float
    low: float
    base_volume: float
    quote_volume: float
    open_time: int


class _WireError(Exception):
    """Raised in a handler to answer with an exchange-style error; the middleware renders it."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(status, payload)
        self.status = status
        self.payload = payload


def _spot_error(status: int, code: int, msg: str) -> _WireError:
    return _WireError(status, {"code": code, "msg": msg})


def _contract_error(code: int, message: str) -> _WireError:
    # MEXC's contract API reports business errors in the body with HTTP 200.
    return _WireError(200, {"success": False, "code": code, "message": message})


def _fmt(value: float | np.floating[Any] | Decimal) -> str:
    """A number as MEXC's spot API writes it: a plain decimal string, no exponent.

    Floats use the shortest repr that round-trips, so ``float(_fmt(x)) == x`` exactly.
    """
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(np.format_float_positional(value, trim="-"))


def _decimals(step: Decimal) -> int:
    """Number of decimals of a power-of-ten step ("0.01" -> 2); MEXC spot precision is a digit count."""
    normal = step.normalize()
    sign, digits, exponent = normal.as_tuple()
    if sign or digits != (1,) or not isinstance(exponent, int):
        raise ValueError(f"MEXC spot precision must be a power of ten such as 0.01, got {step}")
    return -exponent


def _json(payload: object, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status)


def _int_param(query: Any, name: str, *, contract: bool, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        if contract:
            raise _contract_error(600, "Param error!") from None
        raise _spot_error(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


def _select(
    ts: NDArray[np.int64],
    *,
    now_ms: int,
    start: int | None,
    end_exclusive: int | None,
    limit: int,
    drop: frozenset[int] = frozenset(),
) -> NDArray[np.intp]:
    """Indices of the rows MEXC would answer: open <= now, within [start, end), ``limit`` of them.

    With a start the window runs forward from it; without, it is the most recent ``limit`` rows,
    ending at the newest one that exists at ``now_ms`` (for candles: the forming candle).
    """
    hi = int(np.searchsorted(ts, now_ms, side="right"))
    if end_exclusive is not None:
        hi = min(hi, int(np.searchsorted(ts, end_exclusive, side="left")))
    lo = int(np.searchsorted(ts, start, side="left")) if start is not None else 0
    idx = np.arange(lo, max(lo, hi), dtype=np.intp)
    if drop and idx.size:
        idx = idx[~np.isin(ts[idx], np.fromiter(drop, dtype=np.int64, count=len(drop)))]
    return idx[:limit] if start is not None else idx[max(idx.size - limit, 0) :]


def _fault_response(fault: Fault, *, contract: bool) -> web.Response:
    """The canned answer of an error-type fault (429, 500, too frequent, malformed)."""
    if fault.kind == "http_429":
        headers = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
        return web.json_response({"code": 429, "msg": "Too Many Requests"}, status=429, headers=headers)
    if fault.kind == "http_500":
        # What a gateway in front of the API sends: HTML, so ccxt falls back to the HTTP status.
        html = "<html><head><title>500 Internal Server Error</title></head><body>500</body></html>"
        return web.Response(status=500, text=html, content_type="text/html")
    if fault.kind == "too_frequent":
        message = "Requests are too frequent, please try again later"
        if contract:
            return _json({"success": False, "code": 510, "message": message})
        return _json({"code": 510, "msg": message})
    if fault.kind == "malformed":
        return web.Response(status=200, text=fault.body, content_type="application/json")
    raise AssertionError(f"fault {fault.kind} has no canned response")


class FakeMexc:
    """Fake MEXC REST server on 127.0.0.1 serving registered markets and real history to ccxt.

    "Now" comes from ``now_ms`` (wall clock by default) and decides what exists: candles, trades and
    funding settlements at or before now. Register markets (``add_spot`` / ``add_swap``), then data
    (``add_candles``, ``add_funding``, ``add_trades``); this may happen before or after ``start``.
    Every request is recorded in ``requests``; ``inject`` / ``fail_all`` make it misbehave.
    """

    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        """Create a stopped server; ``now_ms`` returns the fake's current time in Unix ms."""
        self._now_ms: Callable[[], int] = now_ms or (lambda: int(time.time() * 1000))
        self.requests: list[RecordedRequest] = []
        self._spot: dict[str, _SpotMarket] = {}
        self._swap: dict[str, _SwapMarket] = {}
        self._candles: dict[tuple[str, MarketType, str], OhlcvArrays] = {}
        self._funding: dict[str, _Funding] = {}
        self._trades: dict[tuple[str, MarketType], _Trades] = {}
        self._faults: list[_PendingFault] = []
        self._fail_all: Fault | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        # Set by stop() so that hanging handlers return at once instead of delaying shutdown.
        self._closing = asyncio.Event()

    # ----------------------------------------------------------------- registration

    def add_spot(
        self,
        symbol_id: str,
        base: str,
        quote: str,
        *,
        price_tick: str = "0.01",
        amount_step: str = "0.000001",
    ) -> None:
        """Register a spot market such as ``("BTCUSDT", "BTC", "USDT")`` for /api/v3/exchangeInfo.

        MEXC states spot precision as a number of decimals, so both steps must be powers of ten; ccxt
        then reports ``precision.price == float(price_tick)``, ``precision.amount == float(amount_step)``.
        """
        tick, step = Decimal(price_tick), Decimal(amount_step)
        _decimals(tick)
        _decimals(step)
        self._spot[symbol_id] = _SpotMarket(symbol_id, base, quote, tick, step)

    def add_swap(
        self, symbol_id: str, base: str, quote: str, *, price_unit: float = 0.1, contract_size: float = 0.0001
    ) -> None:
        """Register a USDT-margined perpetual such as ``("BTC_USDT", "BTC", "USDT")`` for /contract/detail.

        ``price_unit`` is the price tick; ``contract_size`` is the base amount of one contract.
        """
        if price_unit <= 0 or contract_size <= 0:
            raise ValueError("price_unit and contract_size must be positive")
        self._swap[symbol_id] = _SwapMarket(symbol_id, base, quote, Decimal(str(price_unit)), contract_size)

    def _require_market(self, symbol_id: str, market: MarketType) -> None:
        known = symbol_id in self._spot if market == "spot" else symbol_id in self._swap
        if not known:
            adder = "add_spot" if market == "spot" else "add_swap"
            raise KeyError(f"{market} market {symbol_id!r} is not registered; call {adder}() first")

    def add_candles(
        self,
        symbol_id: str,
        market: MarketType,
        timeframe: str,
        ts: ArrayLike,
        open: ArrayLike,
        high: ArrayLike,
        low: ArrayLike,
        close: ArrayLike,
        volume: ArrayLike,
    ) -> None:
        """Store (or replace) a candle series; ``timeframe`` is a ccxt name (1m 5m 15m 30m 1h 4h 8h 1d 1w).

        ``ts`` are open times in ms, strictly increasing; ``volume`` is in the BASE asset (as in the
        shared CSVs). Swap answers convert it to contracts, as MEXC does.
        """
        self._require_market(symbol_id, market)
        if timeframe not in TIMEFRAME_MS:
            raise ValueError(f"unknown timeframe {timeframe!r}; use one of {sorted(TIMEFRAME_MS)}")
        if market == "spot" and timeframe not in SPOT_INTERVALS:
            raise ValueError(f"MEXC spot has no {timeframe} candles (ccxt cannot request them)")
        arrays = OhlcvArrays(
            ts=np.asarray(ts, dtype=np.int64).copy(),
            open=np.asarray(open, dtype=np.float64).copy(),
            high=np.asarray(high, dtype=np.float64).copy(),
            low=np.asarray(low, dtype=np.float64).copy(),
            close=np.asarray(close, dtype=np.float64).copy(),
            volume=np.asarray(volume, dtype=np.float64).copy(),
        )
        lengths = {
            a.shape for a in (arrays.ts, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume)
        }
        if len(lengths) != 1 or arrays.ts.ndim != 1:
            raise ValueError(f"ts/open/high/low/close/volume must be 1-D and of equal length, got {lengths}")
        if arrays.ts.size > 1 and not bool(np.all(np.diff(arrays.ts) > 0)):
            raise ValueError("candle timestamps must be strictly increasing")
        self._candles[(symbol_id, market, timeframe)] = arrays

    def add_funding(self, symbol_id: str, ts: ArrayLike, rates: ArrayLike, interval_hours: int = 8) -> None:
        """Store funding settlements (ms, fraction per interval) for a registered swap symbol."""
        self._require_market(symbol_id, "swap")
        ts_arr = np.asarray(ts, dtype=np.int64).copy()
        rate_arr = np.asarray(rates, dtype=np.float64).copy()
        if ts_arr.shape != rate_arr.shape or ts_arr.ndim != 1:
            raise ValueError("ts and rates must be 1-D and of equal length")
        if ts_arr.size > 1 and not bool(np.all(np.diff(ts_arr) > 0)):
            raise ValueError("funding timestamps must be strictly increasing")
        if interval_hours <= 0:
            raise ValueError(f"interval_hours must be positive, got {interval_hours}")
        self._funding[symbol_id] = _Funding(ts_arr, rate_arr, interval_hours)

    def add_trades(
        self,
        symbol_id: str,
        market: MarketType,
        ts: ArrayLike,
        ids: Sequence[str] | NDArray[np.str_] | None,
        sides: Sequence[str] | NDArray[np.str_],
        prices: ArrayLike,
        amounts: ArrayLike,
    ) -> None:
        """Store public trades (ms, id, taker side "buy"/"sell", price, BASE amount), ascending by time.

        Spot answers carry ``ids`` in the documented id fields; pass ``None`` to send null there as live
        MEXC usually does (ccxt then makes up ids). Swap deals never carry ids.
        """
        self._require_market(symbol_id, market)
        ts_arr = np.asarray(ts, dtype=np.int64).copy()
        side_list = [str(s) for s in sides]
        id_list = None if ids is None else [str(i) for i in ids]
        price_arr = np.asarray(prices, dtype=np.float64).copy()
        amount_arr = np.asarray(amounts, dtype=np.float64).copy()
        n = ts_arr.shape[0]
        if not (len(side_list) == price_arr.shape[0] == amount_arr.shape[0] == n) or (
            id_list is not None and len(id_list) != n
        ):
            raise ValueError("ts, ids, sides, prices and amounts must have equal lengths")
        if bad := {s for s in side_list if s not in ("buy", "sell")}:
            raise ValueError(f"sides must be 'buy' or 'sell', got {sorted(bad)}")
        if n > 1 and not bool(np.all(np.diff(ts_arr) >= 0)):
            raise ValueError("trade timestamps must be non-decreasing")
        self._trades[(symbol_id, market)] = _Trades(ts_arr, id_list, side_list, price_arr, amount_arr)

    # ----------------------------------------------------------------- faults and counting

    def inject(self, fault: Fault, *, times: int = 1, path_contains: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``fault`` (queued faults apply in order).

        ``path_contains`` restricts the fault to request paths containing that text (e.g. "klines").
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        self._faults.append(_PendingFault(fault, times, path_contains))

    def fail_all(self, fault: Fault) -> None:
        """Answer every request with ``fault`` until ``recover()`` (the exchange is "down")."""
        self._fail_all = fault

    def recover(self) -> None:
        """Back to healthy: end ``fail_all`` and drop every injected fault still pending."""
        self._fail_all = None
        self._faults.clear()

    def count(self, path_prefix: str) -> int:
        """Number of recorded requests whose path starts with ``path_prefix`` (e.g. "/api/v3/klines")."""
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def _take_fault(self, path: str) -> Fault | None:
        if self._fail_all is not None:
            if self._fail_all.kind != "gap" or path.startswith(_KLINE_PATHS):
                return self._fail_all
            return None
        for pending in self._faults:
            if pending.matches(path):
                pending.remaining -= 1
                if pending.remaining == 0:
                    self._faults.remove(pending)
                return pending.fault
        return None

    async def _apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        """The response that replaces the normal one, or None to go on to the handler."""
        if fault.kind == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=fault.seconds)
            return None
        if fault.kind == "gap":
            request[_GAP_KEY] = fault.drop_ts  # the kline handlers drop these candles
            return None
        return _fault_response(fault, contract=request.path.startswith("/api/v1/"))

    # ----------------------------------------------------------------- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self._base_url is None:
            raise RuntimeError("FakeMexc is not started")
        return self._base_url

    async def start(self) -> str:
        """Bind 127.0.0.1 on a free port, start serving, and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("FakeMexc is already started")
        self._closing = asyncio.Event()
        # handler_cancellation: when ccxt gives up on a hanging request, stop that handler too.
        runner = web.AppRunner(
            self._build_app(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._runner = runner
        self._base_url = f"http://{host}:{port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop serving (hanging requests are released first); safe to call twice."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._base_url = None

    async def __aenter__(self) -> Self:
        """Start the server for an ``async with`` block."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the server at the end of an ``async with`` block."""
        await self.stop()

    def _build_app(self) -> web.Application:
        @web.middleware
        async def record_and_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
            fault = self._take_fault(request.path)
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query={key: request.query[key] for key in request.query},
                    headers={key: request.headers[key] for key in request.headers},
                    monotonic=time.monotonic(),
                    wall_time=time.time(),
                    fault=fault.kind if fault else None,
                )
            )
            if fault is not None:
                replaced = await self._apply_fault(fault, request)
                if replaced is not None:
                    return replaced
            try:
                return await handler(request)
            except _WireError as err:
                return _json(err.payload, status=err.status)

        app = web.Application(middlewares=[record_and_fault])
        app.router.add_get("/api/v3/ping", self._spot_ping)
        app.router.add_get("/api/v3/time", self._spot_time)
        app.router.add_get("/api/v3/exchangeInfo", self._spot_exchange_info)
        app.router.add_get("/api/v3/klines", self._spot_klines)
        app.router.add_get("/api/v3/ticker/24hr", self._spot_ticker)
        app.router.add_get("/api/v3/trades", self._spot_trades)
        app.router.add_get("/api/v3/historicalTrades", self._spot_trades)
        app.router.add_get("/api/v3/aggTrades", self._spot_agg_trades)
        app.router.add_get("/api/v3/depth", self._spot_depth)
        app.router.add_get("/api/v3/capital/config/getall", self._spot_capital_config)
        app.router.add_get("/api/v1/contract/ping", self._contract_ping)
        app.router.add_get("/api/v1/contract/detail", self._contract_detail)
        app.router.add_get("/api/v1/contract/kline/{symbol}", self._contract_kline)
        app.router.add_get("/api/v1/contract/ticker", self._contract_ticker)
        app.router.add_get("/api/v1/contract/funding_rate/history", self._contract_funding_history)
        app.router.add_get("/api/v1/contract/funding_rate/{symbol}", self._contract_funding_rate)
        app.router.add_get("/api/v1/contract/deals/{symbol}", self._contract_deals)
        app.router.add_get("/api/v1/contract/depth/{symbol}", self._contract_depth)
        return app

    # ----------------------------------------------------------------- shared market logic

    def _spot_market(self, request: web.Request) -> _SpotMarket:
        symbol = request.query.get("symbol")
        if not symbol:
            raise _spot_error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null.")
        market = self._spot.get(symbol)
        if market is None:
            raise _spot_error(400, -1121, "Invalid symbol.")
        return market

    def _swap_market(self, symbol: str | None) -> _SwapMarket:
        market = self._swap.get(symbol or "")
        if market is None:
            raise _contract_error(1001, "contract not exist")
        return market

    def _finest(self, symbol_id: str, market: MarketType) -> OhlcvArrays | None:
        """The series with the shortest timeframe: the most current view of the price."""
        best: tuple[int, OhlcvArrays] | None = None
        for (sym, mkt, tf), arrays in self._candles.items():
            if sym == symbol_id and mkt == market and (best is None or TIMEFRAME_MS[tf] < best[0]):
                best = (TIMEFRAME_MS[tf], arrays)
        return None if best is None else best[1]

    def _day_stats(self, symbol_id: str, market: MarketType, now: int) -> _DayStats | None:
        """24 h statistics from the finest series: candles opening in (now - 24 h, now].

        Volume sums use math.fsum (correctly rounded) so a test can recompute them exactly.
        """
        series = self._finest(symbol_id, market)
        if series is None:
            return None
        hi = int(np.searchsorted(series.ts, now, side="right"))
        if hi == 0:
            return None
        # Stale data still yields a ticker from the newest candle rather than none at all.
        lo = min(int(np.searchsorted(series.ts, now - DAY_MS, side="right")), hi - 1)
        window = slice(lo, hi)
        return _DayStats(
            last=float(series.close[hi - 1]),
            open=float(series.open[lo]),
            high=float(np.max(series.high[window])),
            low=float(np.min(series.low[window])),
            base_volume=math.fsum(series.volume[window].tolist()),
            quote_volume=math.fsum((series.volume[window] * series.close[window]).tolist()),
            open_time=int(series.ts[lo]),
        )

    @staticmethod
    def _best_prices(last: float, tick: Decimal) -> tuple[Decimal, Decimal]:
        """Best bid and ask, one tick either side of the last price floored to the tick: bid < last < ask."""
        floor = (Decimal(_fmt(last)) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
        return floor - tick, floor + tick

    def _current_funding(self, symbol_id: str, now: int) -> tuple[float, int, int]:
        """(rate of the latest settlement <= now, next settlement time, interval hours)."""
        funding = self._funding.get(symbol_id)
        interval_h = funding.interval_hours if funding is not None else 8
        interval_ms = interval_h * HOUR_MS
        i = -1 if funding is None else int(np.searchsorted(funding.ts, now, side="right")) - 1
        if funding is None or i < 0:
            return 0.0, (now // interval_ms + 1) * interval_ms, interval_h
        next_settle = int(funding.ts[i]) + interval_ms
        if next_settle <= now:
            # The series ended before now: the next settlement is still in the future on the exchange.
            next_settle += ((now - next_settle) // interval_ms + 1) * interval_ms
        return float(funding.rate[i]), next_settle, interval_h

    def _coins(self) -> list[str]:
        coins: set[str] = set()
        for spot in self._spot.values():
            coins.update((spot.base, spot.quote))
        for swap in self._swap.values():
            coins.update((swap.base, swap.quote))
        return sorted(coins)

    # ----------------------------------------------------------------- spot v3 handlers

    async def _spot_ping(self, request: web.Request) -> web.StreamResponse:
        return _json({})

    async def _spot_time(self, request: web.Request) -> web.StreamResponse:
        return _json({"serverTime": self._now_ms()})

    def _spot_symbol_info(self, m: _SpotMarket) -> dict[str, Any]:
        price_decimals, amount_decimals = _decimals(m.price_tick), _decimals(m.amount_step)
        return {
            "symbol": m.symbol_id,
            "status": "1",  # "1" = online; ccxt marks the market active only with isSpotTradingAllowed too
            "baseAsset": m.base,
            "baseAssetPrecision": amount_decimals,  # a digit count: ccxt turns 6 into 0.000001
            "quoteAsset": m.quote,
            "quotePrecision": price_decimals,
            "quoteAssetPrecision": price_decimals,
            "baseCommissionPrecision": amount_decimals,
            "quoteCommissionPrecision": price_decimals,
            "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "quoteAmountPrecision": "1",  # minimum order cost in quote
            "baseSizePrecision": _fmt(m.amount_step),  # minimum order amount in base
            "permissions": ["SPOT"],
            "filters": [],
            "maxQuoteAmount": "2000000",
            "makerCommission": "0",
            "takerCommission": "0.0005",
            "quoteAmountPrecisionMarket": "1",
            "maxQuoteAmountMarket": "100000",
            "fullName": m.base,
            "tradeSideType": 1,
        }

    async def _spot_exchange_info(self, request: web.Request) -> web.StreamResponse:
        wanted = request.query.get("symbol") or request.query.get("symbols")
        markets = list(self._spot.values())
        if wanted:
            names = wanted.split(",")
            if any(name not in self._spot for name in names):
                raise _spot_error(400, -1121, "Invalid symbol.")
            markets = [self._spot[name] for name in names]
        return _json(
            {
                "timezone": "CST",
                "serverTime": self._now_ms(),
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [self._spot_symbol_info(m) for m in markets],
            }
        )

    async def _spot_klines(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._spot_market(request)
        interval = request.query.get("interval", "")
        by_wire = {wire: tf for tf, wire in SPOT_INTERVALS.items()}
        if interval == _MONTH_INTERVALS["spot"]:
            return _json([])
        if interval not in by_wire:
            raise _spot_error(400, -1120, "Invalid interval.")
        timeframe = by_wire[interval]
        q = request.query
        limit = (
            _int_param(q, "limit", contract=False, default=SPOT_KLINES_DEFAULT_LIMIT)
            or SPOT_KLINES_DEFAULT_LIMIT
        )
        limit = max(1, min(limit, SPOT_KLINES_MAX_LIMIT))
        series = self._candles.get((market.symbol_id, "spot", timeframe))
        if series is None:
            return _json([])
        idx = _select(
            series.ts,
            now_ms=now,
            start=_int_param(q, "startTime", contract=False),
            end_exclusive=_int_param(q, "endTime", contract=False),  # exclusive: ccxt sends until + 1
            limit=limit,
            drop=request.get(_GAP_KEY, frozenset()),
        )
        tf_ms = TIMEFRAME_MS[timeframe]
        rows = [
            [
                int(series.ts[i]),
                _fmt(series.open[i]),
                _fmt(series.high[i]),
                _fmt(series.low[i]),
                _fmt(series.close[i]),
                _fmt(series.volume[i]),
                int(series.ts[i]) + tf_ms,  # MEXC's closeTime is the next candle's open
                _fmt(series.volume[i] * series.close[i]),
            ]
            for i in idx.tolist()
        ]
        return _json(rows)

    def _spot_ticker_entry(self, m: _SpotMarket, now: int) -> dict[str, Any]:
        stats = self._day_stats(m.symbol_id, "spot", now)
        if stats is None:
            stats = _DayStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, now)
        bid, ask = self._best_prices(stats.last, m.price_tick) if stats.last > 0 else (Decimal(0), Decimal(0))
        change = stats.last - stats.open
        return {
            "symbol": m.symbol_id,
            "priceChange": _fmt(change),
            "priceChangePercent": _fmt(change / stats.open if stats.open else 0.0),  # a fraction on MEXC
            "prevClosePrice": _fmt(stats.open),
            "lastPrice": _fmt(stats.last),
            "lastQty": "",
            "bidPrice": _fmt(bid),
            "bidQty": _fmt(m.amount_step * 10_000),
            "askPrice": _fmt(ask),
            "askQty": _fmt(m.amount_step * 10_000),
            "openPrice": _fmt(stats.open),
            "highPrice": _fmt(stats.high),
            "lowPrice": _fmt(stats.low),
            "volume": _fmt(stats.base_volume),
            "quoteVolume": _fmt(stats.quote_volume),
            "openTime": stats.open_time,
            "closeTime": now,
            "count": None,
        }

    async def _spot_ticker(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        if request.query.get("symbol"):
            return _json(self._spot_ticker_entry(self._spot_market(request), now))
        return _json([self._spot_ticker_entry(m, now) for m in self._spot.values()])

    def _spot_trade_window(
        self, request: web.Request, *, with_range: bool
    ) -> tuple[_Trades | None, list[int]]:
        now = self._now_ms()
        market = self._spot_market(request)
        q = request.query
        limit = (
            _int_param(q, "limit", contract=False, default=SPOT_TRADES_DEFAULT_LIMIT)
            or SPOT_TRADES_DEFAULT_LIMIT
        )
        limit = max(1, min(limit, SPOT_TRADES_MAX_LIMIT))
        trades = self._trades.get((market.symbol_id, "spot"))
        if trades is None:
            return None, []
        start = _int_param(q, "startTime", contract=False) if with_range else None
        end = _int_param(q, "endTime", contract=False) if with_range else None
        idx = _select(
            trades.ts, now_ms=now, start=start, end_exclusive=None if end is None else end + 1, limit=limit
        )
        return trades, idx.tolist()

    async def _spot_trades(self, request: web.Request) -> web.StreamResponse:
        trades, idx = self._spot_trade_window(request, with_range=False)
        if trades is None:
            return _json([])
        return _json(
            [
                {
                    "id": None if trades.ids is None else trades.ids[i],
                    "price": _fmt(trades.prices[i]),
                    "qty": _fmt(trades.amounts[i]),
                    "quoteQty": _fmt(trades.prices[i] * trades.amounts[i]),
                    "time": int(trades.ts[i]),
                    "isBuyerMaker": trades.sides[i] == "sell",  # the taker sold into a resting bid
                    "isBestMatch": True,
                    "tradeType": "BID" if trades.sides[i] == "buy" else "ASK",
                }
                for i in idx
            ]
        )

    async def _spot_agg_trades(self, request: web.Request) -> web.StreamResponse:
        # ccxt's default spot fetchTrades method (options['fetchTradesMethod'] = spotPublicGetAggTrades).
        trades, idx = self._spot_trade_window(request, with_range=True)
        if trades is None:
            return _json([])
        return _json(
            [
                {
                    "a": None if trades.ids is None else trades.ids[i],
                    "f": None,
                    "l": None,
                    "p": _fmt(trades.prices[i]),
                    "q": _fmt(trades.amounts[i]),
                    "T": int(trades.ts[i]),
                    "m": trades.sides[i] == "sell",
                    "M": True,
                }
                for i in idx
            ]
        )

    async def _spot_depth(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._spot_market(request)
        limit = _int_param(request.query, "limit", contract=False, default=SPOT_DEPTH_DEFAULT_LIMIT)
        levels = max(1, min(limit or SPOT_DEPTH_DEFAULT_LIMIT, SPOT_DEPTH_MAX_LIMIT))
        stats = self._day_stats(market.symbol_id, "spot", now)
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        if stats is not None and stats.last > 0:
            best_bid, best_ask = self._best_prices(stats.last, market.price_tick)
            tick = market.price_tick
            for k in range(levels):
                qty = _fmt(market.amount_step * 10_000 * (k + 1))
                if best_bid - k * tick > 0:
                    bids.append([_fmt(best_bid - k * tick), qty])
                asks.append([_fmt(best_ask + k * tick), qty])
        return _json({"lastUpdateId": now, "bids": bids, "asks": asks, "timestamp": now})

    async def _spot_capital_config(self, request: web.Request) -> web.StreamResponse:
        # Signed endpoint: any key and signature pass, but they must be there, as ccxt's sign() sends them.
        if not request.headers.get("X-MEXC-APIKEY"):
            raise _spot_error(400, 700001, "API-key format invalid.")
        if "signature" not in request.query or "timestamp" not in request.query:
            raise _spot_error(400, 700002, "Signature for this request is not valid.")
        networks = {"BTC": "BTC", "ETH": "ERC20", "USDT": "ERC20", "USDC": "ERC20"}
        return _json(
            [
                {
                    "coin": coin,
                    "name": coin,
                    "networkList": [
                        {
                            "coin": coin,
                            "depositDesc": None,
                            "depositEnable": True,
                            "minConfirm": 12,
                            "name": coin,
                            "network": networks.get(coin, "ERC20"),
                            "withdrawEnable": True,
                            "withdrawFee": "1.000000000000000000",
                            "withdrawIntegerMultiple": None,
                            "withdrawMax": "1000000.000000000000000000",
                            "withdrawMin": "10.000000000000000000",
                            "sameAddress": False,
                            "contract": "",
                        }
                    ],
                }
                for coin in self._coins()
            ]
        )

    # ----------------------------------------------------------------- contract v1 handlers

    async def _contract_ping(self, request: web.Request) -> web.StreamResponse:
        return _json({"success": True, "code": 0, "data": self._now_ms()})

    def _contract_info(self, m: _SwapMarket) -> dict[str, Any]:
        price_scale = max(0, -int(m.price_unit.normalize().as_tuple().exponent))
        return {
            "symbol": m.symbol_id,
            "displayName": f"{m.symbol_id}永续",
            "displayNameEn": f"{m.symbol_id} PERPETUAL",
            "positionOpenType": 3,
            "baseCoin": m.base,
            "quoteCoin": m.quote,
            "settleCoin": m.quote,  # USDT-margined (linear) perpetuals only
            "contractSize": m.contract_size,
            "minLeverage": 1,
            "maxLeverage": 200,
            "priceScale": price_scale,
            "volScale": 0,
            "amountScale": 4,
            "priceUnit": float(m.price_unit),  # the price tick ccxt uses as precision.price
            "volUnit": 1,  # contracts step: precision.amount
            "minVol": 1,
            "maxVol": 1_000_000,
            "bidLimitPriceRate": 0.1,
            "askLimitPriceRate": 0.1,
            "takerFeeRate": 0.0002,
            "makerFeeRate": 0.0,
            "maintenanceMarginRate": 0.004,
            "initialMarginRate": 0.005,
            "riskBaseVol": 10000,
            "riskIncrVol": 200000,
            "riskIncrMmr": 0.004,
            "riskIncrImr": 0.004,
            "riskLevelLimit": 5,
            "priceCoefficientVariation": 0.1,
            "indexOrigin": ["BINANCE", "OKX", "BYBIT", "MEXC"],
            "state": 0,  # 0 = enabled; ccxt: active == (state == "0")
            "isNew": False,
            "isHot": True,
            "isHidden": False,
            "futureType": 1,
            "apiAllowed": True,
        }

    async def _contract_detail(self, request: web.Request) -> web.StreamResponse:
        symbol = request.query.get("symbol")
        if symbol:  # with a symbol MEXC answers a single object, not a list
            return _json({"success": True, "code": 0, "data": self._contract_info(self._swap_market(symbol))})
        return _json(
            {"success": True, "code": 0, "data": [self._contract_info(m) for m in self._swap.values()]}
        )

    async def _contract_kline(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._swap_market(request.match_info["symbol"])
        q = request.query
        interval = q.get("interval", "Min1")  # MEXC's default interval
        by_wire = {wire: tf for tf, wire in SWAP_INTERVALS.items()}
        empty: dict[str, list[float]] = {
            key: [] for key in ("time", "open", "close", "high", "low", "vol", "amount")
        }
        if interval == _MONTH_INTERVALS["swap"]:
            return _json({"success": True, "code": 0, "data": empty})
        if interval not in by_wire:
            raise _contract_error(600, "Param error!")
        timeframe = by_wire[interval]
        start_s = _int_param(q, "start", contract=True)
        end_s = _int_param(q, "end", contract=True)
        series = self._candles.get((market.symbol_id, "swap", timeframe))
        if series is None:
            return _json({"success": True, "code": 0, "data": empty})
        idx = _select(
            series.ts,
            now_ms=now,
            start=None if start_s is None else start_s * 1000,  # seconds on this API
            end_exclusive=None if end_s is None else end_s * 1000 + 1,  # inclusive end, in seconds
            limit=SWAP_KLINES_MAX,
            drop=request.get(_GAP_KEY, frozenset()),
        )
        volume = series.volume[idx]
        close = series.close[idx]
        data = {
            "time": (series.ts[idx] // 1000).tolist(),
            "open": series.open[idx].tolist(),
            "close": close.tolist(),
            "high": series.high[idx].tolist(),
            "low": series.low[idx].tolist(),
            "vol": (volume / market.contract_size).tolist(),  # contracts, not base units
            "amount": (volume * close).tolist(),  # turnover in the quote currency
            "realOpen": series.open[idx].tolist(),
            "realClose": close.tolist(),
            "realHigh": series.high[idx].tolist(),
            "realLow": series.low[idx].tolist(),
        }
        return _json({"success": True, "code": 0, "data": data})

    def _contract_ticker_entry(self, m: _SwapMarket, now: int) -> dict[str, Any]:
        stats = self._day_stats(m.symbol_id, "swap", now) or _DayStats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, now)
        bid, ask = self._best_prices(stats.last, m.price_unit) if stats.last > 0 else (Decimal(0), Decimal(0))
        rate, _, _ = self._current_funding(m.symbol_id, now)
        change = stats.last - stats.open
        contracts = stats.base_volume / m.contract_size
        return {
            "contractId": 1,
            "symbol": m.symbol_id,
            "lastPrice": stats.last,
            "bid1": float(bid),
            "ask1": float(ask),
            "volume24": contracts,  # contracts; ccxt multiplies by contractSize
            "amount24": stats.quote_volume,
            "holdVol": round(contracts / 2),
            "lower24Price": stats.low,
            "high24Price": stats.high,
            "riseFallRate": change / stats.open if stats.open else 0.0,  # a fraction
            "riseFallValue": change,
            "indexPrice": stats.last,
            "fairPrice": stats.last,
            "fundingRate": rate,
            "maxBidPrice": stats.last * 1.1,
            "minAskPrice": stats.last * 0.9,
            "timestamp": now,
        }

    async def _contract_ticker(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        symbol = request.query.get("symbol")
        if symbol:  # one symbol: "data" is a single object
            data: object = self._contract_ticker_entry(self._swap_market(symbol), now)
        else:
            data = [self._contract_ticker_entry(m, now) for m in self._swap.values()]
        return _json({"success": True, "code": 0, "data": data})

    async def _contract_funding_rate(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._swap_market(request.match_info["symbol"])
        rate, next_settle, interval_h = self._current_funding(market.symbol_id, now)
        data = {
            "symbol": market.symbol_id,
            "fundingRate": rate,
            "maxFundingRate": 0.03,
            "minFundingRate": -0.03,
            "collectCycle": interval_h,
            "nextSettleTime": next_settle,
            "timestamp": now,
        }
        return _json({"success": True, "code": 0, "data": data})

    async def _contract_funding_history(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        q = request.query
        market = self._swap_market(q.get("symbol"))
        page_size = (
            _int_param(q, "page_size", contract=True, default=FUNDING_PAGE_DEFAULT) or FUNDING_PAGE_DEFAULT
        )
        page_size = max(1, min(page_size, FUNDING_PAGE_MAX))
        page_num = max(1, _int_param(q, "page_num", contract=True, default=1) or 1)
        funding = self._funding.get(market.symbol_id)
        result: list[dict[str, Any]] = []
        settled = 0
        if funding is not None:
            settled = int(np.searchsorted(funding.ts, now, side="right"))  # only settlements <= now exist
            # Newest first, as MEXC pages them: page 1 holds the latest page_size settlements.
            newest = settled - (page_num - 1) * page_size
            result = [
                {
                    "symbol": market.symbol_id,
                    "fundingRate": float(funding.rate[i]),
                    "settleTime": int(funding.ts[i]),
                }
                for i in range(newest - 1, max(newest - page_size, 0) - 1, -1)
            ]
        data = {
            "pageSize": page_size,
            "totalCount": settled,
            "totalPage": (settled + page_size - 1) // page_size,
            "currentPage": page_num,
            "resultList": result,
        }
        return _json({"success": True, "code": 0, "data": data})

    async def _contract_deals(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._swap_market(request.match_info["symbol"])
        limit = _int_param(request.query, "limit", contract=True, default=SWAP_DEALS_MAX) or SWAP_DEALS_MAX
        limit = max(1, min(limit, SWAP_DEALS_MAX))
        trades = self._trades.get((market.symbol_id, "swap"))
        if trades is None:
            return _json({"success": True, "code": 0, "data": []})
        idx = _select(trades.ts, now_ms=now, start=None, end_exclusive=None, limit=limit)
        data = [
            {
                "p": float(trades.prices[i]),
                "v": float(trades.amounts[i] / market.contract_size),  # contracts
                "T": 1 if trades.sides[i] == "buy" else 2,  # taker side: 1 buy, 2 sell
                "O": 3,  # position unchanged (1 open, 2 close)
                "M": 2,  # not a self-trade
                "t": int(trades.ts[i]),
            }
            for i in reversed(idx.tolist())  # newest first
        ]
        return _json({"success": True, "code": 0, "data": data})

    async def _contract_depth(self, request: web.Request) -> web.StreamResponse:
        now = self._now_ms()
        market = self._swap_market(request.match_info["symbol"])
        limit = _int_param(request.query, "limit", contract=True, default=SWAP_DEPTH_DEFAULT_LIMIT)
        levels = max(1, limit or SWAP_DEPTH_DEFAULT_LIMIT)
        stats = self._day_stats(market.symbol_id, "swap", now)
        bids: list[list[float]] = []
        asks: list[list[float]] = []
        if stats is not None and stats.last > 0:
            best_bid, best_ask = self._best_prices(stats.last, market.price_unit)
            tick = market.price_unit
            for k in range(levels):
                if best_bid - k * tick > 0:
                    # [price, contracts, number of orders]
                    bids.append([float(best_bid - k * tick), 100 * (k + 1), k + 1])
                asks.append([float(best_ask + k * tick), 100 * (k + 1), k + 1])
        return _json(
            {
                "success": True,
                "code": 0,
                "data": {"asks": asks, "bids": bids, "version": now, "timestamp": now},
            }
        )
