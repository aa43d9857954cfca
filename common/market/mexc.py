"""Live market source: MEXC spot and USDT perpetuals through ccxt's async ``mexc`` class.

Facts about ccxt's mexc class this module relies on (ccxt 4.5):

* ``load_markets`` calls spot ``GET /api/v3/exchangeInfo`` and contract ``GET /api/v1/contract/detail``;
  with an API key and secret it also calls the signed ``GET /api/v3/capital/config/getall``
  (``fetch_currencies``); without keys it skips that call. Public market data needs no key.
* ``fetch_ohlcv`` caps one request at 500 candles for spot and 2000 for swap; spot intervals are named
  '60m', '4h', '1d', '1W' and swap intervals 'Min60', 'Hour4', 'Hour8', 'Day1' (ccxt maps '1h' etc.;
  spot has no 8h). Candle timestamps are OPEN times in ms. Without ``until`` the newest row is the
  still-forming candle, and for spot with ``since`` ccxt sets ``endTime`` from the WALL clock; we
  always pass ``since`` and ``until`` (the newest closed candle's open time; ccxt adds 1 ms for spot's
  exclusive endTime and sends seconds for swap), and still drop any row that has not closed.
* Swap kline volume (``vol``) is in CONTRACTS; ccxt does not convert it. We multiply by the
  market's ``contractSize`` so every volume in the fleet is in the base asset.
* Rate limiting: ccxt's own throttler charges per-endpoint costs (contract/detail costs 100, which
  stalls the next request about 5 s). We replace ``exchange.throttler`` with the process's
  :class:`~common.ratelimit.RequestBudget`, which ``fetch2`` awaits before EVERY HTTP request
  (``await self.throttle(cost)`` -> ``await self.throttler(cost)``), retries included.
* Market precision is in TICK_SIZE mode: ``market['precision']['price']`` is the price tick (0.01).
* Errors: 429 / "too frequent" -> ``RateLimitExceeded`` (a ``DDoSProtection``), 5xx ->
  ``ExchangeNotAvailable``, timeouts -> ``RequestTimeout`` (all ``NetworkError``), unknown symbols ->
  ``BadSymbol``, keys -> ``AuthenticationError``. We translate them where they enter, below.
"""

from __future__ import annotations

import asyncio
import contextvars
import difflib
import email.utils
import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base import errors as ccxt_errors

from common.clock import Clock, utc_text
from common.config import ExchangeSettings
from common.errors import ExchangeError, RateLimited, TemporaryError
from common.logging_config import get_logger
from common.market import ExtrasNeed, MarketInfo, SeriesKey, SourceProblem, SymbolExtras
from common.market.extras import (
    BookTop,
    FundingRates,
    Ticker24h,
    Trades,
    book_from_ccxt,
    funding_from_ccxt,
    ticker_from_ccxt,
    trades_from_ccxt,
)
from common.market.series import fill_gaps, merge, missing_opens, newest_closed_open_ms, rows_to_candles
from common.observe import NO_OBSERVER, Observer
from common.ratelimit import RequestBudget
from common.resilience import CircuitBreaker, call_with_retry
from common.types import Candles, timeframe_ms

T = TypeVar("T")
log = get_logger(__name__)

#: Largest number of candles one ccxt fetch_ohlcv call returns, per market kind.
PAGE_LIMIT = {"spot": 500, "swap": 2000}
#: Timeframes each MEXC market offers through ccxt (fixed-length ones; 1M is calendar-based).
MARKET_TIMEFRAMES = {
    "spot": ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"),
    "swap": ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d", "1w"),
}
#: MEXC's page size cap for the funding history, and the most trades one request returns.
FUNDING_PAGE = 100
#: The most settlements the tracker asks for (a month of hourly funding).
FUNDING_TRACK_MAX = 720
TRADES_LIMIT = {"spot": 1000, "swap": 100}
#: Set while the health probe's request runs (a contextvar: per task, so the loop's requests are unaffected).
_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("mexc_probing", default=False)
#: Extra candles fetched before a series' first window, so a hole at its very start can be filled
#: from the candle before it, exactly as the replay source (which has the whole file) fills it.
FIRST_LOAD_MARGIN = 20


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


def request_endpoint(url: str, market_ids: Any) -> str:
    """The path of a request URL with a market id in it replaced by ``{symbol}`` (one metric label
    per endpoint, not per market): ``/api/v1/contract/kline/BTC_USDT`` -> ``/api/v1/contract/kline/{symbol}``.

    Spot endpoints take the symbol in the query string, so their path is already the endpoint.
    """
    parts = urlsplit(url).path.split("/")
    known = market_ids if isinstance(market_ids, dict) else {}
    return "/".join("{symbol}" if part in known else part for part in parts)


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


def reject_malformed_json(
    status: int, reason: str, url: str, method: str, headers: Any, body: Any, *request: Any
) -> Any:
    """ccxt's ``on_rest_response`` hook: a body that starts like JSON but does not parse is an error.

    ccxt's ``parse_json`` swallows the decoding error and hands the raw text on, and ``fetch_ohlcv``
    then turns that text into an empty list: a truncated answer would look like "no candles".
    Raising ``BadResponse`` here makes it a temporary error that is retried.
    """
    if isinstance(body, str) and body.lstrip()[:1] in ("{", "["):
        try:
            json.loads(body)
        except ValueError:
            raise ccxt_errors.BadResponse(
                f"{method} {urlsplit(url).path}: HTTP {status} body is not valid JSON"
            ) from None
    return body


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
    """Closed candles and market info from MEXC: cached per series, rate-budgeted, retried, breakered.

    After a series' first load each call fetches only the candles that closed since the last one
    (one request per candle close); a hole is asked for once more and then filled with a marked
    placeholder and reported, so a strategy never sees a silently broken series.
    """

    def __init__(
        self,
        settings: ExchangeSettings,
        clock: Clock,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        base_url: str | None = None,
        budget: RequestBudget | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self.clock = clock
        self._settings = settings
        config: dict[str, Any] = {
            # The flag makes ccxt's fetch2 await its throttler before every request; the throttler
            # itself is replaced by our budget below.
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
        self.budget = budget or RequestBudget("mexc", settings.requests_per_second)
        self._exchange.throttler = self.budget
        self._exchange.on_rest_response = reject_malformed_json
        self._observer = observer
        self._exchange.fetch = self._observed(self._exchange.fetch)
        self._breakers = {
            kind: CircuitBreaker(
                f"mexc-{kind}",
                failure_threshold=settings.breaker_failures,
                reset_timeout_s=settings.breaker_reset_s,
            )
            for kind in ("spot", "swap", "markets")
        }
        self._markets: dict[str, MarketInfo] = {}
        # Per series: the candles kept (the newest `limit`) and the `limit` they were loaded for.
        self._cache: dict[SeriesKey, tuple[Candles, int]] = {}
        # Funding history per symbol (settlement time -> ccxt row) and when the next one is due.
        self._settlements: dict[str, dict[int, dict[str, Any]]] = {}
        self._next_settlement: dict[str, int | None] = {}

    def _observed(self, fetch: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        """ccxt's ``fetch`` (one HTTP request, retries and probes included) reporting to the observer.

        ``fetch2`` awaits ``self.fetch(url, method, headers, body)`` for every request, so an
        instance attribute wrapping it sees each one with its outcome, whichever ccxt method sent it.
        """

        async def observed(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            started = time.monotonic()
            endpoint = request_endpoint(url, self._exchange.markets_by_id)
            probe = _PROBING.get()
            try:
                answer = await fetch(url, method, headers, body)
            except Exception as exc:
                self._observer.request_done(
                    endpoint, time.monotonic() - started, type(exc).__name__, probe=probe
                )
                raise
            self._observer.request_done(endpoint, time.monotonic() - started, None, probe=probe)
            return answer

        return observed

    async def ping(self, timeout_s: float) -> str | None:
        """Ask MEXC for its time once (no retry, no breaker): None when it answered, else one line why not.

        The health endpoint's probe; it goes through the request budget like every other request.
        """
        probing = _PROBING.set(True)  # this task only: the health handler awaiting the probe
        try:
            async with asyncio.timeout(timeout_s):
                await self._exchange.fetch_time()
        except TimeoutError:
            return f"MEXC did not answer within {timeout_s:g} s"
        except Exception as exc:  # any client error is an answer to report, not a crash
            return str(translate_ccxt_error(exc, "fetch_time"))
        finally:
            _PROBING.reset(probing)
        return None

    async def _call(self, kind: str, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """One exchange call: translated errors, retried when temporary, through the breaker."""

        async def translated() -> T:
            try:
                return await operation()
            except Exception as exc:  # translate every client error where it enters
                error = translate_ccxt_error(exc, what, self._exchange.last_response_headers)
                if isinstance(error, RateLimited):
                    self.budget.slow_down()
                raise error from exc

        return await call_with_retry(
            lambda: self._breakers[kind].call(translated), attempts=self._settings.retry_attempts, what=what
        )

    async def open(
        self, series: list[SeriesKey], extras: Mapping[str, ExtrasNeed] | None = None
    ) -> list[SourceProblem]:
        """Load MEXC's markets; a one-line problem for each unknown symbol (with close matches), each
        timeframe its market lacks and each impossible extra (funding on spot)."""
        markets: dict[str, Any] = await self._call("markets", "load_markets", self._exchange.load_markets)
        problems: list[SourceProblem] = []
        for symbol in dict.fromkeys(key.symbol for key in series):
            market = markets.get(symbol)
            if market is None or not market.get("active", True):
                state = "is not listed" if market is None else "is not active"
                nearest = difflib.get_close_matches(symbol, list(markets), n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(nearest)}?" if nearest else ""
                problems.append(SourceProblem(symbol, f"symbol {symbol} {state} on MEXC{hint}"))
                continue
            kind = "swap" if market.get("swap") else "spot"
            offered = ", ".join(MARKET_TIMEFRAMES[kind])
            problems.extend(
                SourceProblem(
                    symbol,
                    f"symbol {symbol}: MEXC {kind} has no {key.timeframe} candles (offered: {offered})",
                    timeframe=key.timeframe,
                )
                for key in series
                if key.symbol == symbol and key.timeframe not in MARKET_TIMEFRAMES[kind]
            )
            if (extras or {}).get(symbol, ExtrasNeed()).funding and kind != "swap":
                text = (
                    f"symbol {symbol}: funding rates exist only for perpetual swaps "
                    f'(use {{"symbol": "{symbol}", "market": "swap"}})'
                )
                problems.append(SourceProblem(symbol, text, extras=True))
            self._markets[symbol] = _market_info(symbol, kind, market)
        return problems

    def market(self, symbol: str) -> MarketInfo:
        """Market information for a symbol that ``open`` accepted."""
        return self._markets[symbol]

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` closed candles: one request for what closed since the last call."""
        key = SeriesKey(symbol, timeframe)
        info = self._markets[symbol]
        period = timeframe_ms(timeframe)
        newest = newest_closed_open_ms(self.clock.now_ms(), timeframe)
        cached, loaded_limit = self._cache.get(key, (None, 0))
        if cached is None or len(cached) == 0 or loaded_limit < limit:
            since = newest - (limit + FIRST_LOAD_MARGIN - 1) * period  # first load (or a longer window)
        elif int(cached.ts[-1]) >= newest:
            return cached.tail(limit)  # nothing has closed since the last call: no request
        elif (newest - int(cached.ts[-1])) // period > PAGE_LIMIT[info.kind]:
            cached, since = None, newest - (limit + FIRST_LOAD_MARGIN - 1) * period  # long pause: reload
        else:
            since = int(cached.ts[-1]) + period  # only what closed since the last call
        candles = self._to_candles(info, timeframe, await self._fetch_range(info, timeframe, since, newest))
        if cached is not None and loaded_limit >= limit:
            candles = merge(cached, candles)
        holes = missing_opens(candles.ts, timeframe)
        if holes.size:
            # Exchanges sometimes answer before a candle is stored: ask once more for the hole.
            again = await self._fetch_range(info, timeframe, int(holes[0]), int(holes[-1]))
            candles, filled = fill_gaps(merge(candles, self._to_candles(info, timeframe, again)))
            if filled.size:
                log.warning(
                    "candles missing on MEXC; filled with placeholders",
                    symbol=symbol,
                    timeframe=timeframe,
                    count=int(filled.size),
                    first=utc_text(int(filled[0])),
                    last=utc_text(int(filled[-1])),
                )
        candles = candles.tail(limit)
        self._cache[key] = (candles, limit)
        return candles

    def _to_candles(self, info: MarketInfo, timeframe: str, rows: list[list[Any]]) -> Candles:
        now = self.clock.now_ms()
        period = timeframe_ms(timeframe)
        closed = [row for row in rows if row and row[0] is not None and int(row[0]) + period <= now]
        return rows_to_candles(info.symbol, timeframe, closed, volume_scale=info.contract_size, where="MEXC")

    async def _fetch_range(self, info: MarketInfo, timeframe: str, since: int, until: int) -> list[list[Any]]:
        """Candles opening in [since, until], in pages of the exchange's per-call cap."""
        period = timeframe_ms(timeframe)
        page = PAGE_LIMIT[info.kind]
        what = f"fetch_ohlcv {info.symbol} {timeframe}"
        rows: list[list[Any]] = []
        cursor = since
        while cursor <= until:
            count = min(page, (until - cursor) // period + 1)
            fetch_page = functools.partial(
                self._exchange.fetch_ohlcv,
                info.symbol,
                timeframe,
                since=cursor,
                limit=count,
                params={"until": until},
            )
            batch: list[list[Any]] = await self._call(info.kind, what, fetch_page) or []
            rows.extend(batch)
            stamps = [int(row[0]) for row in batch if row and row[0] is not None]
            if len(batch) < count or not stamps or max(stamps) < cursor:
                break  # the last page, or an exchange that ignored `since` (never loop on one page)
            cursor = max(stamps) + period
        return rows

    async def extras(self, symbol: str, need: ExtrasNeed) -> SymbolExtras:
        """Funding, trades, order book and ticker as ``need`` asks, fetched concurrently."""
        info = self._markets[symbol]
        funding, trades, book, ticker = await asyncio.gather(
            self._funding(info, need.funding) if need.funding else _none(),
            self._trades(info, need.trades) if need.trades else _none(),
            self._book(info, need.book_depth) if need.book_depth else _none(),
            self._ticker(info) if need.ticker else _none(),
        )
        return SymbolExtras(funding=funding, trades=trades, book=book, ticker=ticker)

    async def _funding(self, info: MarketInfo, settlements: int) -> FundingRates:
        """The newest ``settlements`` funding settlements and the current rate.

        The history is loaded once (pages of 100, MEXC's cap) and afterwards only asked for again
        when a settlement has passed; the current rate costs one request per call.
        """
        symbol = info.symbol
        current: dict[str, Any] = await self._call(
            "swap", f"fetch_funding_rate {symbol}", lambda: self._exchange.fetch_funding_rate(symbol)
        )
        known = self._settlements.setdefault(symbol, {})
        due = self._next_settlement.get(symbol)
        if len(known) < settlements:
            pages = range(1, -(-settlements // FUNDING_PAGE) + 1)
        elif due is not None and self.clock.now_ms() >= due:
            pages = range(1, 2)
        else:
            pages = range(0)
        for page in pages:
            rows: list[dict[str, Any]] = await self._call(
                "swap",
                f"fetch_funding_rate_history {symbol}",
                functools.partial(
                    self._exchange.fetch_funding_rate_history,
                    symbol,
                    limit=FUNDING_PAGE,
                    params={"page_num": page},
                ),
            )
            known.update({int(row["timestamp"]): row for row in rows if row.get("timestamp") is not None})
            if len(rows) < FUNDING_PAGE:
                break  # no older settlements
        for stale in sorted(known)[:-settlements]:
            del known[stale]
        funding = funding_from_ccxt(symbol, list(known.values()), current)
        self._next_settlement[symbol] = funding.next_ts
        return funding

    async def funding_since(self, symbol: str, since_ms: int) -> FundingRates | None:
        """Settlements since ``since_ms`` of a swap (None on spot), for the tracker's P&L.

        Asks for one settlement per hour of the window (MEXC settles every 1, 4 or 8 hours), so the
        window is covered whatever the symbol's interval; capped at ``FUNDING_TRACK_MAX``.
        """
        info = self._markets[symbol]
        if info.kind != "swap":
            return None
        hours = -(-max(0, self.clock.now_ms() - since_ms) // 3_600_000)
        return await self._funding(info, min(hours + 1, FUNDING_TRACK_MAX))

    def breakers(self) -> Mapping[str, str]:
        """Each endpoint family's circuit breaker (``mexc-spot``, ``mexc-swap``, ``mexc-markets``) and
        its state (closed, open, half_open)."""
        return {breaker.name: breaker.state.value for breaker in self._breakers.values()}

    async def _trades(self, info: MarketInfo, limit: int) -> Trades:
        """The newest public trades, at most one request's worth (spot 1,000, swap 100)."""
        count = min(limit, TRADES_LIMIT[info.kind])
        rows: list[dict[str, Any]] = await self._call(
            info.kind,
            f"fetch_trades {info.symbol}",
            functools.partial(self._exchange.fetch_trades, info.symbol, limit=count),
        )
        trades = trades_from_ccxt(info.symbol, rows, contract_size=info.contract_size)
        return trades.until(self.clock.now_ms(), limit)

    async def _book(self, info: MarketInfo, depth: int) -> BookTop:
        """The top ``depth`` levels of each side of the order book."""
        book: dict[str, Any] = await self._call(
            info.kind,
            f"fetch_order_book {info.symbol}",
            functools.partial(self._exchange.fetch_order_book, info.symbol, limit=depth),
        )
        return book_from_ccxt(
            info.symbol, book, contract_size=info.contract_size, depth=depth, received_ms=self.clock.now_ms()
        )

    async def _ticker(self, info: MarketInfo) -> Ticker24h:
        """24 h statistics (volume, last price, best bid and ask)."""
        ticker: dict[str, Any] = await self._call(
            info.kind, f"fetch_ticker {info.symbol}", lambda: self._exchange.fetch_ticker(info.symbol)
        )
        return ticker_from_ccxt(info.symbol, ticker, contract_size=info.contract_size)

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """Live sources start now."""
        return None

    def finished(self) -> bool:
        """A live market never ends."""
        return False

    async def close(self) -> None:
        """Close ccxt's HTTP session."""
        await self._exchange.close()


async def _none() -> None:
    """An awaitable placeholder for an extra nobody asked for."""


def _market_info(symbol: str, kind: str, market: dict[str, Any]) -> MarketInfo:
    """The fleet's view of one ccxt market structure (precision is in TICK_SIZE mode on MEXC)."""
    precision = market.get("precision") or {}
    limits = (market.get("limits") or {}).get("amount") or {}
    tick, step, minimum = precision.get("price"), precision.get("amount"), limits.get("min")
    contract = market.get("contractSize") if kind == "swap" else None
    return MarketInfo(
        symbol=symbol,
        kind=kind,
        tick_size=float(tick) if tick else None,
        contract_size=float(contract) if contract else 1.0,
        amount_step=float(step) if step else None,
        min_amount=float(minimum) if minimum else None,
    )
