"""Live market source: MEXC spot and USDT perpetuals through ccxt's async ``mexc`` class.

Facts about ccxt's mexc class this module relies on (ccxt 4.5):

* ``load_markets`` calls spot ``GET /api/v3/exchangeInfo`` and contract ``GET /api/v1/contract/detail``;
  with an API key and secret it also calls the signed ``GET /api/v3/capital/config/getall``
  (``fetch_currencies``); without keys it skips that call. Public market data needs no key.
* ``fetch_ohlcv`` caps one request at 500 candles for spot and 2000 for swap; spot intervals are named
  '60m', '4h', '1d', '1W' and swap intervals 'Min60', 'Hour4', 'Day1' (ccxt maps '1h' etc.).
  Candle timestamps are OPEN times in ms. The newest row is the still-forming candle: we drop every
  row whose close time (open + timeframe) is after now.
* Market precision is in TICK_SIZE mode: ``market['precision']['price']`` is the price tick (0.01).
* Errors: 429 / "too frequent" -> ``RateLimitExceeded`` (a ``DDoSProtection``), 5xx ->
  ``ExchangeNotAvailable``, timeouts -> ``RequestTimeout`` (all ``NetworkError``), unknown symbols ->
  ``BadSymbol``, keys -> ``AuthenticationError``. We translate them where they enter, below.
"""

from __future__ import annotations

import difflib
import email.utils
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
import numpy as np
from ccxt.base import errors as ccxt_errors

from common.clock import Clock
from common.config import ExchangeSettings
from common.errors import ExchangeError, RateLimited, TemporaryError
from common.logging_config import get_logger
from common.market import MarketInfo, SeriesKey
from common.market.validate import build_candles
from common.resilience import CircuitBreaker, call_with_retry
from common.types import Candles, timeframe_ms

T = TypeVar("T")
log = get_logger(__name__)

#: Largest number of candles one ccxt fetch_ohlcv call returns, per market kind.
PAGE_LIMIT = {"spot": 500, "swap": 2000}


def override_api_host(urls: Any, base_url: str) -> Any:
    """Copy of ccxt's ``urls['api']`` tree with every URL's scheme and host replaced by ``base_url``.

    MEXC's REST endpoints live on several hosts (api.mexc.com for spot v3 and contracts,
    www.mexc.com for the old v2 API); ``MEXC_API_BASE_URL`` points all of them at one server,
    keeping each path, so a self-hosted proxy or the tests' fake server sees ccxt's real calls.
    """
    base = base_url.rstrip("/")
    if isinstance(urls, dict):
        return {key: override_api_host(value, base) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        return base + urlsplit(urls).path
    return urls


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a Retry-After header (number or HTTP date), if the last response had one."""
    if not isinstance(headers, dict):
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(str(value))
        return max(0.0, parsed.timestamp() - time.time())


def translate_ccxt_error(error: Exception, what: str, headers: Any = None) -> Exception:
    """Map a ccxt (or parsing) exception to the fleet's own tree; the message stays one line."""
    text = f"{what}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    if isinstance(error, ccxt_errors.RateLimitExceeded | ccxt_errors.DDoSProtection):
        return RateLimited(text, retry_after=_retry_after_seconds(headers))
    if isinstance(
        error,
        ccxt_errors.BadSymbol
        | ccxt_errors.AuthenticationError
        | ccxt_errors.PermissionDenied
        | ccxt_errors.AccountSuspended
        | ccxt_errors.NotSupported
        | ccxt_errors.ArgumentsRequired,
    ):
        return ExchangeError(text)
    if isinstance(error, ccxt_errors.NetworkError | ccxt_errors.BadResponse | ccxt_errors.ExchangeError):
        # Network trouble, 5xx, malformed bodies and unclassified exchange errors may pass.
        return TemporaryError(text)
    # A body that parsed as JSON but not in the expected shape surfaces as a Python error inside ccxt.
    return TemporaryError(f"{what}: malformed response ({type(error).__name__})")


class MexcSource:
    """Closed candles and market info from MEXC, with retries and a circuit breaker per endpoint family."""

    def __init__(
        self,
        settings: ExchangeSettings,
        clock: Clock,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
    ) -> None:
        self.clock = clock
        self._settings = settings
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": settings.timeout_ms,
            "options": {"defaultType": settings.default_market},
        }
        if api_key and api_secret:
            config["apiKey"] = api_key
            config["secret"] = api_secret
        self._exchange = ccxt_async.mexc(config)
        if base_url:
            self._exchange.urls["api"] = override_api_host(self._exchange.urls["api"], base_url)
        self._breakers = {
            kind: CircuitBreaker(
                f"mexc-{kind}",
                failure_threshold=settings.breaker_failures,
                reset_timeout_s=settings.breaker_reset_s,
            )
            for kind in ("spot", "swap", "markets")
        }
        self._markets: dict[str, MarketInfo] = {}

    async def _call(self, kind: str, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """One exchange call: translated errors, retried when temporary, through the breaker."""

        async def translated() -> T:
            try:
                return await operation()
            except Exception as exc:  # translate every client error where it enters
                raise translate_ccxt_error(exc, what, self._exchange.last_response_headers) from exc

        return await call_with_retry(
            lambda: self._breakers[kind].call(translated), attempts=self._settings.retry_attempts, what=what
        )

    async def open(self, series: list[SeriesKey]) -> dict[str, str]:
        """Load MEXC's markets; return a one-line problem (with close matches) for each unknown symbol."""
        markets: dict[str, Any] = await self._call("markets", "load_markets", self._exchange.load_markets)
        problems: dict[str, str] = {}
        for symbol in dict.fromkeys(key.symbol for key in series):
            market = markets.get(symbol)
            if market is None or not market.get("active", True):
                state = "is not listed" if market is None else "is not active"
                nearest = difflib.get_close_matches(symbol, list(markets), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(nearest)}?" if nearest else ""
                problems[symbol] = f"symbol {symbol} {state} on MEXC{hint}"
                continue
            tick = (market.get("precision") or {}).get("price")
            self._markets[symbol] = MarketInfo(
                symbol=symbol,
                kind="swap" if market.get("swap") else "spot",
                tick_size=float(tick) if tick else None,
            )
        return problems

    def market(self, symbol: str) -> MarketInfo:
        """Market information for a symbol that ``open`` accepted."""
        return self._markets[symbol]

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` closed candles; the forming candle is dropped by its close time."""
        info = self._markets[symbol]
        period = timeframe_ms(timeframe)
        # One extra row because the newest one is usually still forming and gets dropped.
        wanted = limit + 1
        page = PAGE_LIMIT[info.kind]
        what = f"fetch_ohlcv {symbol} {timeframe}"
        now = self.clock.now_ms()
        if wanted <= page:
            rows: list[list[Any]] = await self._call(
                info.kind, what, lambda: self._exchange.fetch_ohlcv(symbol, timeframe, limit=wanted)
            )
        else:
            rows = await self._fetch_pages(info.kind, what, symbol, timeframe, now - wanted * period, page)
        closed = [row for row in rows if int(row[0]) + period <= now]
        if not closed:
            return build_candles(symbol, timeframe, *_empty_arrays(), where="MEXC")
        data = np.asarray([[float(v) if v is not None else np.nan for v in row[1:6]] for row in closed])
        ts = np.asarray([int(row[0]) for row in closed], dtype=np.int64)
        candles = build_candles(
            symbol, timeframe, ts, data[:, 0], data[:, 1], data[:, 2], data[:, 3], data[:, 4], where="MEXC"
        )
        return candles.tail(limit)

    async def _fetch_pages(
        self, kind: str, what: str, symbol: str, timeframe: str, since: int, page: int
    ) -> list[list[Any]]:
        """Fetch from ``since`` to now in pages of ``page`` candles (the exchange's per-call cap)."""
        period = timeframe_ms(timeframe)
        by_ts: dict[int, list[Any]] = {}
        cursor = since - since % period
        while True:
            fetch_page = functools.partial(
                self._exchange.fetch_ohlcv, symbol, timeframe, since=cursor, limit=page
            )
            batch: list[list[Any]] = await self._call(kind, what, fetch_page)
            for row in batch:
                by_ts[int(row[0])] = row
            if len(batch) < page or int(batch[-1][0]) + period <= cursor:
                break  # the last page, or an exchange that ignored `since` (never loop on one page)
            cursor = int(batch[-1][0]) + period
        return [by_ts[ts] for ts in sorted(by_ts)]

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """Live sources start now."""
        return None

    def finished(self) -> bool:
        """A live market never ends."""
        return False

    async def close(self) -> None:
        """Close ccxt's HTTP session."""
        await self._exchange.close()


def _empty_arrays() -> tuple[Any, Any, Any, Any, Any, Any]:
    empty = np.empty(0, dtype=np.float64)
    return np.empty(0, dtype=np.int64), empty, empty, empty, empty, empty
