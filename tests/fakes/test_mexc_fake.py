"""The fake MEXC server speaks the wire protocol the real ccxt ``mexc`` client expects.

Every test drives ccxt's async ``mexc`` class (its request building, parsing and error mapping)
against ``FakeMexc`` on 127.0.0.1, fed with real history from ``../shared/market-data``.
"""

from __future__ import annotations

import csv
import gzip
import math
import time
from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import numpy as np
import pytest

from tests.fakes.csvdata import (
    OhlcvArrays,
    load_funding_csv,
    load_ohlcv_csv,
    load_trades_csv,
    require_shared_data,
)
from tests.fakes.mexc import HOUR_MS, TIMEFRAME_MS, FakeMexc, Fault, MarketType, shift_to_now

SPOT_4H = "binance_spot/BTC_USDT-4h.csv.gz"
SPOT_15M = "binance_spot/BTC_USDT-15m.csv.gz"
PERP_1H = "binance_usdm_perp/BTC_USDT-1h.csv.gz"
PERP_15M = "binance_usdm_perp/BTC_USDT-15m.csv.gz"
CONTRACT_SIZE = 0.0001


class Clock:
    """The fake's "now": the wall time when the test started, frozen until a test moves it.

    Wall time rather than a fixed date, because ccxt computes spot ``endTime`` from its own clock
    when paging with ``since``; a frozen value keeps every answer deterministic within a test.
    """

    def __init__(self) -> None:
        """Start at the current wall time in ms."""
        self.now = int(time.time() * 1000)

    def __call__(self) -> int:
        """The current fake time in ms."""
        return self.now


def point_at(urls: Any, base_url: str) -> Any:
    """ccxt's ``urls['api']`` tree with every host replaced by ``base_url``, paths kept.

    The same rewrite as the project's ``override_api_host``; kept here so the fake's own tests
    depend only on ccxt and the fake, not on the code the fake exists to test.
    """
    if isinstance(urls, dict):
        return {key: point_at(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        return base_url.rstrip("/") + urlsplit(urls).path
    return urls


def make_client(base_url: str, **config: Any) -> Any:
    """A real ccxt async mexc client aimed at the fake (no rate limiter: the tests count requests)."""
    exchange = ccxt.mexc({"enableRateLimit": False, "timeout": 3000, **config})
    exchange.urls["api"] = point_at(exchange.urls["api"], base_url)
    # close() waits this long for TLS sessions to wind down; plain HTTP on 127.0.0.1 has none.
    exchange.timeout_on_exit = 0
    return exchange


@cache
def shared_ohlcv(relative: str) -> OhlcvArrays:
    """A shared OHLCV file, read once per session (skips the test when the folder is absent)."""
    return load_ohlcv_csv(require_shared_data(relative))


def serve(
    fake: FakeMexc, symbol_id: str, market: MarketType, timeframe: str, candles: OhlcvArrays, *, now: int
) -> OhlcvArrays:
    """Register ``candles`` shifted so the last one is forming at ``now``; return what is served."""
    shifted = candles.with_ts(shift_to_now(candles.ts, TIMEFRAME_MS[timeframe], now))
    fake.add_candles(
        symbol_id,
        market,
        timeframe,
        shifted.ts,
        shifted.open,
        shifted.high,
        shifted.low,
        shifted.close,
        shifted.volume,
    )
    return shifted


def rows(candles: OhlcvArrays, volume_divisor: float = 1.0) -> list[list[float]]:
    """Candles as ccxt returns them: [ts, open, high, low, close, volume] per row."""
    volume = candles.volume / volume_divisor if volume_divisor != 1.0 else candles.volume
    columns = (candles.ts, candles.open, candles.high, candles.low, candles.close, volume)
    return [list(row) for row in zip(*(c.tolist() for c in columns), strict=True)]


@pytest.fixture
def clock() -> Clock:
    """A frozen clock shared by the fake and the test."""
    return Clock()


@pytest.fixture
async def fake(clock: Clock) -> AsyncIterator[FakeMexc]:
    """A running fake with BTCUSDT spot (tick 0.01) and BTC_USDT perpetual (tick 0.1) registered."""
    async with FakeMexc(now_ms=clock) as server:
        server.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01", amount_step="0.000001")
        server.add_swap("BTC_USDT", "BTC", "USDT", price_unit=0.1, contract_size=CONTRACT_SIZE)
        yield server


@pytest.fixture
async def client(fake: FakeMexc) -> AsyncIterator[Any]:
    """The real ccxt async mexc client pointed at the fake; closed after the test."""
    exchange = make_client(fake.base_url)
    yield exchange
    await exchange.close()


# --------------------------------------------------------------------------- markets


@pytest.mark.integration
async def test_load_markets_lists_spot_and_swap_with_registered_ticks(fake: FakeMexc, client: Any) -> None:
    """load_markets makes exactly two public calls and yields both markets with the registered ticks."""
    markets = await client.load_markets()

    assert sorted(markets) == ["BTC/USDT", "BTC/USDT:USDT"]
    spot, swap = markets["BTC/USDT"], markets["BTC/USDT:USDT"]
    assert (spot["id"], spot["type"], spot["active"]) == ("BTCUSDT", "spot", True)
    assert (spot["precision"]["price"], spot["precision"]["amount"]) == (0.01, 0.000001)
    assert (spot["limits"]["amount"]["min"], spot["limits"]["cost"]["min"]) == (0.000001, 1.0)
    assert (swap["id"], swap["type"], swap["settle"], swap["linear"], swap["active"]) == (
        "BTC_USDT",
        "swap",
        "USDT",
        True,
        True,
    )
    assert (swap["precision"]["price"], swap["precision"]["amount"]) == (0.1, 1.0)
    assert swap["contractSize"] == CONTRACT_SIZE
    assert sorted(r.path for r in fake.requests) == ["/api/v1/contract/detail", "/api/v3/exchangeInfo"]


@pytest.mark.integration
async def test_load_markets_with_keys_also_calls_the_signed_currency_config(fake: FakeMexc) -> None:
    """With apiKey/secret, load_markets adds the signed capital/config/getall call, which the fake accepts."""
    exchange = make_client(fake.base_url, apiKey="test-key", secret="test-secret")
    try:
        await exchange.load_markets()
        currencies = exchange.currencies
    finally:
        await exchange.close()

    assert sorted(r.path for r in fake.requests) == [
        "/api/v1/contract/detail",
        "/api/v3/capital/config/getall",
        "/api/v3/exchangeInfo",
    ]
    signed = next(r for r in fake.requests if r.path == "/api/v3/capital/config/getall")
    assert signed.headers["X-MEXC-APIKEY"] == "test-key"
    assert sorted(signed.query) == ["recvWindow", "signature", "timestamp"]
    assert sorted(currencies) == ["BTC", "USDT"]
    assert list(currencies["BTC"]["networks"]) == ["BTC"]


# --------------------------------------------------------------------------- candles


@pytest.mark.integration
async def test_spot_4h_ohlcv_equals_the_csv_and_ends_with_the_forming_candle(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """fetch_ohlcv spot 4h returns exactly the CSV's last 500 rows; the last row is the forming candle."""
    served = serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)

    got = await client.fetch_ohlcv("BTC/USDT", "4h", limit=500)

    assert got == rows(served.tail(500))
    assert got[-1][0] <= clock.now < got[-1][0] + 4 * HOUR_MS
    assert fake.requests[-1].query == {"symbol": "BTCUSDT", "interval": "4h", "limit": "500"}


@pytest.mark.integration
async def test_spot_1h_is_requested_as_60m_and_equals_the_csv(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """ccxt asks spot for '60m' when given '1h'; the fake serves the registered 1h rows unchanged."""
    served = serve(fake, "BTCUSDT", "spot", "1h", shared_ohlcv(PERP_1H).tail(600), now=clock.now)

    got = await client.fetch_ohlcv("BTC/USDT", "1h", limit=100)

    assert got == rows(served.tail(100))
    assert got[-1][0] <= clock.now < got[-1][0] + HOUR_MS
    assert fake.requests[-1].query == {"symbol": "BTCUSDT", "interval": "60m", "limit": "100"}


@pytest.mark.integration
async def test_swap_1h_ohlcv_equals_the_csv_with_volume_in_contracts(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """fetch_ohlcv swap 1h ('Min60', seconds on the wire) returns the CSV's prices; volume is in contracts."""
    served = serve(fake, "BTC_USDT", "swap", "1h", shared_ohlcv(PERP_1H).tail(3000), now=clock.now)

    got = await client.fetch_ohlcv("BTC/USDT:USDT", "1h", limit=300)

    # MEXC's contract kline "vol" counts contracts; ccxt passes it through unconverted.
    assert got == rows(served.tail(300), volume_divisor=CONTRACT_SIZE)
    assert got[-1][0] <= clock.now < got[-1][0] + HOUR_MS
    assert fake.requests[-1].path == "/api/v1/contract/kline/BTC_USDT"
    assert fake.requests[-1].query == {"interval": "Min60"}


@pytest.mark.integration
async def test_since_and_limit_page_forward_without_gaps_or_overlaps(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Paging with since+limit walks spot and swap history exactly once, up to the forming candle."""
    tf = 4 * HOUR_MS
    source = shared_ohlcv(SPOT_4H)
    cases = {
        "BTC/USDT": (serve(fake, "BTCUSDT", "spot", "4h", source, now=clock.now), 200, 1.0),
        "BTC/USDT:USDT": (serve(fake, "BTC_USDT", "swap", "4h", source, now=clock.now), 300, CONTRACT_SIZE),
    }
    await client.load_markets()
    for symbol, (served, page, divisor) in cases.items():
        first_since = since = int(served.ts[-1000])
        fake.requests.clear()
        got: list[list[float]] = []
        while True:
            page_rows = await client.fetch_ohlcv(symbol, "4h", since=since, limit=page)
            got.extend(page_rows)
            if len(page_rows) < page:
                break
            since = int(page_rows[-1][0]) + tf
        assert got == rows(served.tail(1000), volume_divisor=divisor)
        if symbol == "BTC/USDT":
            # 5 full pages, then an empty one past now; endTime is since + 500 candles (ccxt's window).
            assert fake.count("/api/v3/klines") == 6
            assert fake.requests[0].query == {
                "symbol": "BTCUSDT",
                "interval": "4h",
                "startTime": str(first_since),
                "endTime": str(first_since + 500 * tf),
                "limit": "200",
            }
        else:
            # The contract API takes no limit: ccxt sends start in seconds and trims the answer itself.
            assert fake.count("/api/v1/contract/kline/") == 4
            assert fake.requests[0].query == {"interval": "Hour4", "start": str(first_since // 1000)}


@pytest.mark.integration
async def test_candles_appear_only_once_now_reaches_their_open_time(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Candles opening after now are not served; moving the clock one candle reveals exactly one more."""
    source = shared_ohlcv(SPOT_4H)
    serve(fake, "BTCUSDT", "spot", "4h", source, now=int(source.ts[-1]))  # registered unshifted
    clock.now = int(source.ts[700]) + HOUR_MS  # inside candle 700

    before = await client.fetch_ohlcv("BTC/USDT", "4h", limit=5)
    clock.now += 4 * HOUR_MS
    after = await client.fetch_ohlcv("BTC/USDT", "4h", limit=5)

    assert [r[0] for r in before] == source.ts[696:701].tolist()
    assert [r[0] for r in after] == source.ts[697:702].tolist()


@pytest.mark.unit
def test_shift_to_now_makes_the_last_candle_the_forming_one() -> None:
    """shift_to_now moves a series by whole candles so its last candle satisfies open <= now < open + tf."""
    tf = 4 * HOUR_MS
    ts = np.arange(10, dtype=np.int64) * tf + 1_704_067_200_000  # 2024-01-01, on the 4h grid
    for now in (
        1_790_000_000_123,
        1_790_006_400_000,
        1_600_000_000_000,
    ):  # inside, on a boundary, in the past
        shifted = shift_to_now(ts, tf, now)
        assert shifted[-1] <= now < shifted[-1] + tf
        assert (shifted - ts).tolist() == [int(shifted[0] - ts[0])] * 10
        assert int(shifted[0]) % tf == 0  # still on the grid
    assert shift_to_now(ts, tf, 1_790_006_400_000)[-1] == 1_790_006_400_000


# --------------------------------------------------------------------------- tickers, funding, trades, books


@pytest.mark.integration
async def test_fetch_ticker_uses_the_newest_close_and_24h_of_the_finest_series(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """fetch_ticker's last, open, high, low and volume come from the last 24 h of the finest timeframe."""
    serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)  # coarser: must be ignored
    spot = serve(fake, "BTCUSDT", "spot", "15m", shared_ohlcv(SPOT_15M), now=clock.now).tail(96)
    swap = serve(fake, "BTC_USDT", "swap", "15m", shared_ohlcv(PERP_15M), now=clock.now).tail(96)

    spot_ticker = await client.fetch_ticker("BTC/USDT")
    swap_ticker = await client.fetch_ticker("BTC/USDT:USDT")

    for ticker, day in ((spot_ticker, spot), (swap_ticker, swap)):
        assert ticker["close"] == day.close[-1]
        assert ticker["high"] == day.high.max()
        assert ticker["low"] == day.low.min()
        assert ticker["bid"] < ticker["close"] < ticker["ask"]
        assert ticker["timestamp"] == clock.now
    assert spot_ticker["open"] == spot.open[0]
    assert spot_ticker["baseVolume"] == math.fsum(spot.volume.tolist())
    # Swap volume24 is in contracts; ccxt multiplies by contractSize in decimal strings, so allow
    # the last binary digit to differ from the float sum.
    assert swap_ticker["baseVolume"] == pytest.approx(math.fsum(swap.volume.tolist()), rel=1e-12)


@pytest.mark.integration
async def test_fetch_funding_rate_and_history_follow_the_settlements(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Current funding is the latest settlement <= now with the next time; history pages newest first."""
    funding = load_funding_csv(require_shared_data("binance_usdm_funding/BTC_USDT-funding_rate.csv.gz"))
    ts = shift_to_now(funding.ts, 8 * HOUR_MS, clock.now)
    fake.add_funding("BTC_USDT", ts, funding.rate)

    current = await client.fetch_funding_rate("BTC/USDT:USDT")
    history = await client.fetch_funding_rate_history("BTC/USDT:USDT", limit=100)
    clock.now = int(ts[-1]) - 1  # just before the latest settlement
    earlier = await client.fetch_funding_rate("BTC/USDT:USDT")

    assert (current["fundingRate"], current["fundingTimestamp"], current["interval"]) == (
        funding.rate[-1],
        ts[-1] + 8 * HOUR_MS,
        "8h",
    )
    assert [h["timestamp"] for h in history] == ts[-100:].tolist()
    assert [h["fundingRate"] for h in history] == funding.rate[-100:].tolist()
    assert fake.requests[-2].query == {"symbol": "BTC_USDT", "page_size": "100"}
    assert (earlier["fundingRate"], earlier["fundingTimestamp"]) == (funding.rate[-2], ts[-2] + 8 * HOUR_MS)


@pytest.mark.integration
async def test_fetch_trades_parses_spot_agg_trades_and_swap_deals(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Spot trades (aggTrades, ccxt's default) keep ids; swap deals carry contracts; both only up to now."""
    trades = load_trades_csv(require_shared_data("trades/ETH_USDT-trades.csv.gz"))
    fake.add_spot("ETHUSDT", "ETH", "USDT")
    fake.add_swap("ETH_USDT", "ETH", "USDT", price_unit=0.01, contract_size=0.01)
    ts = trades.ts + (clock.now - int(trades.ts[-1]) + 5_000)  # the last 5 s of trades lie in the future
    fake.add_trades("ETHUSDT", "spot", ts, trades.id, trades.side, trades.price, trades.amount)
    fake.add_trades("ETH_USDT", "swap", ts, None, trades.side, trades.price, trades.amount)
    visible = int(np.searchsorted(ts, clock.now, side="right"))
    last50 = slice(visible - 50, visible)

    spot = await client.fetch_trades("ETH/USDT", limit=50)
    swap = await client.fetch_trades("ETH/USDT:USDT", limit=50)

    assert fake.requests[-2].path == "/api/v3/aggTrades"
    assert [(t["timestamp"], t["id"], t["side"], t["price"], t["amount"]) for t in spot] == list(
        zip(
            ts[last50].tolist(),
            trades.id[last50].tolist(),
            trades.side[last50].tolist(),
            trades.price[last50].tolist(),
            trades.amount[last50].tolist(),
            strict=True,
        )
    )
    expected_swap = zip(
        ts[last50].tolist(),
        trades.side[last50].tolist(),
        trades.price[last50].tolist(),
        (trades.amount[last50] / 0.01).tolist(),
        strict=True,
    )
    # Deals carry no id; ccxt makes one up, so trades sharing a millisecond may come in either order.
    assert sorted((t["timestamp"], t["side"], t["price"], t["amount"]) for t in swap) == sorted(expected_swap)


@pytest.mark.integration
async def test_fetch_order_book_brackets_the_last_price_on_the_tick_grid(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """The synthetic book has `limit` levels each side, one tick apart, around the newest close."""
    spot = serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    swap = serve(fake, "BTC_USDT", "swap", "4h", shared_ohlcv(SPOT_4H), now=clock.now)

    spot_book = await client.fetch_order_book("BTC/USDT", limit=5)
    swap_book = await client.fetch_order_book("BTC/USDT:USDT", limit=5)

    tick = Decimal("0.01")
    floor = (Decimal(repr(float(spot.close[-1]))) / tick).to_integral_value(ROUND_FLOOR) * tick
    assert spot_book["bids"] == [
        [float(floor - (k + 1) * tick), float(Decimal("0.01") * (k + 1))] for k in range(5)
    ]
    assert spot_book["asks"] == [
        [float(floor + (k + 1) * tick), float(Decimal("0.01") * (k + 1))] for k in range(5)
    ]
    assert spot_book["timestamp"] == clock.now
    unit = Decimal("0.1")
    floor = (Decimal(repr(float(swap.close[-1]))) / unit).to_integral_value(ROUND_FLOOR) * unit
    assert swap_book["bids"] == [[float(floor - (k + 1) * unit), 100.0 * (k + 1), k + 1] for k in range(5)]
    assert swap_book["asks"] == [[float(floor + (k + 1) * unit), 100.0 * (k + 1), k + 1] for k in range(5)]


# --------------------------------------------------------------------------- faults


@pytest.mark.integration
@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT"])
@pytest.mark.parametrize(
    "case",
    [
        (Fault.http_429(retry_after=2), ccxt.RateLimitExceeded),
        (Fault.http_500(), ccxt.ExchangeNotAvailable),
        (Fault.too_frequent(), ccxt.RateLimitExceeded),
    ],
    ids=["http_429", "http_500", "too_frequent"],
)
async def test_error_faults_raise_the_mapped_ccxt_exception_once(
    fake: FakeMexc, client: Any, clock: Clock, symbol: str, case: tuple[Fault, type[Exception]]
) -> None:
    """429 and code 510 raise RateLimitExceeded, a 500 page ExchangeNotAvailable; the next call succeeds."""
    fault, error = case
    serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    serve(fake, "BTC_USDT", "swap", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    await client.load_markets()
    fake.inject(fault)

    with pytest.raises(error):
        await client.fetch_ohlcv(symbol, "4h", limit=3)
    assert len(await client.fetch_ohlcv(symbol, "4h", limit=3)) == 3
    assert [r.fault for r in fake.requests[-2:]] == [fault.kind, None]


@pytest.mark.integration
async def test_http_429_sends_retry_after_header(fake: FakeMexc, client: Any, clock: Clock) -> None:
    """The 429 answer carries Retry-After, readable from ccxt's last_response_headers."""
    fake.inject(Fault.http_429(retry_after=2))

    with pytest.raises(ccxt.RateLimitExceeded):
        await client.fetch_time()

    assert client.last_response_headers["Retry-After"] == "2"
    assert await client.fetch_time() == clock.now


@pytest.mark.integration
async def test_hang_makes_ccxt_raise_request_timeout(fake: FakeMexc, clock: Clock) -> None:
    """A hang longer than the client timeout gives RequestTimeout; the fault is spent afterwards."""
    exchange = make_client(fake.base_url, timeout=200)
    fake.inject(Fault.hang(30))  # stop() releases it, so the test never waits 30 s
    try:
        with pytest.raises(ccxt.RequestTimeout):
            await exchange.fetch_time()
        assert await exchange.fetch_time() == clock.now
    finally:
        await exchange.close()


@pytest.mark.integration
async def test_malformed_body_is_not_an_error_for_ccxt_so_callers_must_validate(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """A 200 body that is not JSON raises nothing in ccxt's mexc: klines parse to junk, markets vanish."""
    serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    serve(fake, "BTC_USDT", "swap", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    await client.load_markets()
    fake.inject(Fault.malformed(), times=2, path_contains="kline")
    fake.inject(Fault.malformed(), path_contains="exchangeInfo")

    spot_rows = await client.fetch_ohlcv("BTC/USDT", "4h", limit=3)
    swap_rows = await client.fetch_ohlcv("BTC/USDT:USDT", "4h", limit=3)
    markets = await client.load_markets(reload=True)

    # ccxt iterates the raw text as if it were a list of rows: no row has a price.
    assert spot_rows
    assert all(value is None for row in spot_rows for value in row[1:])
    assert swap_rows == []
    assert sorted(markets) == ["BTC/USDT:USDT"]


@pytest.mark.integration
async def test_gap_fault_omits_the_chosen_candles_from_one_answer(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Fault.gap drops the chosen candles from the next kline answer only; other paths do not use it up."""
    served = serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    dropped = int(served.ts[-3])
    fake.inject(Fault.gap([dropped]))

    await client.load_markets()  # not a kline request: the gap stays pending
    gapped = await client.fetch_ohlcv("BTC/USDT", "4h", limit=5)
    whole = await client.fetch_ohlcv("BTC/USDT", "4h", limit=5)

    assert [r[0] for r in gapped] == [int(t) for t in served.ts[-6:] if t != dropped]
    assert [r[0] for r in whole] == served.ts[-5:].tolist()


@pytest.mark.integration
async def test_faults_follow_times_path_and_order_and_fail_all_lasts_until_recover(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Faults hit matching paths only, in arrival order, `times` times; fail_all holds until recover()."""
    serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    await client.load_markets()
    fake.inject(Fault.http_500(), path_contains="/klines")
    fake.inject(Fault.http_429(), times=2, path_contains="/klines")

    assert await client.fetch_time() == clock.now  # another path: untouched
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await client.fetch_ohlcv("BTC/USDT", "4h", limit=2)
    for _ in range(2):
        with pytest.raises(ccxt.RateLimitExceeded):
            await client.fetch_ohlcv("BTC/USDT", "4h", limit=2)
    assert len(await client.fetch_ohlcv("BTC/USDT", "4h", limit=2)) == 2

    fake.fail_all(Fault.too_frequent())
    for _ in range(3):
        with pytest.raises(ccxt.RateLimitExceeded):
            await client.fetch_ticker("BTC/USDT")
    fake.recover()
    assert (await client.fetch_ticker("BTC/USDT"))["close"] is not None
    assert [r.fault for r in fake.requests[-9:]] == [
        None,
        "http_500",
        "http_429",
        "http_429",
        None,
        "too_frequent",
        "too_frequent",
        "too_frequent",
        None,
    ]


@pytest.mark.integration
async def test_unknown_symbols_raise_bad_symbol(fake: FakeMexc, client: Any) -> None:
    """Unknown unified symbols fail in ccxt before any request; unknown ids on the wire map to BadSymbol."""
    await client.load_markets()
    before = len(fake.requests)

    with pytest.raises(ccxt.BadSymbol):
        await client.fetch_ohlcv("NOPE/USDT", "1h")
    assert len(fake.requests) == before

    with pytest.raises(ccxt.BadSymbol, match="Invalid symbol"):
        await client.spotPublicGetKlines({"symbol": "NOPEUSDT", "interval": "60m"})
    with pytest.raises(ccxt.BadSymbol, match="contract not exist"):
        await client.contractPublicGetKlineSymbol({"symbol": "NOPE_USDT", "interval": "Min60"})
    with pytest.raises(ccxt.BadSymbol, match="contract not exist"):
        await client.contractPublicGetFundingRateSymbol({"symbol": "NOPE_USDT"})


# --------------------------------------------------------------------------- counting and CSV loading


@pytest.mark.integration
async def test_requests_are_recorded_in_order_and_counted_by_prefix(
    fake: FakeMexc, client: Any, clock: Clock
) -> None:
    """Every request is recorded (method, path, query, times) and count() counts by path prefix."""
    serve(fake, "BTCUSDT", "spot", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    serve(fake, "BTC_USDT", "swap", "4h", shared_ohlcv(SPOT_4H), now=clock.now)
    await client.load_markets()
    await client.fetch_ohlcv("BTC/USDT", "4h", limit=2)
    await client.fetch_ohlcv("BTC/USDT", "4h", limit=2)
    await client.fetch_ohlcv("BTC/USDT:USDT", "4h", limit=2)

    assert fake.count("/api/v3/klines") == 2
    assert fake.count("/api/v1/contract/") == 2  # detail + one kline
    assert fake.count("/api/") == 5
    assert all(r.method == "GET" for r in fake.requests)
    assert [r.query for r in fake.requests[-3:]] == [
        {"symbol": "BTCUSDT", "interval": "4h", "limit": "2"},
        {"symbol": "BTCUSDT", "interval": "4h", "limit": "2"},
        {"interval": "Hour4"},
    ]
    stamps = [r.monotonic for r in fake.requests]
    assert stamps == sorted(stamps)
    assert all(abs(r.wall_time - time.time()) < 60 for r in fake.requests)


@pytest.mark.unit
def test_csv_loader_reads_every_cell_exactly(tmp_path: Path) -> None:
    """load_ohlcv_csv equals float()/int() of each cell, for .csv.gz and plain .csv alike."""
    path = require_shared_data(SPOT_4H)
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    plain = tmp_path / "sample.csv"
    plain.write_text("\n".join(",".join(row) for row in table[:11]) + "\n", encoding="utf-8")

    loaded = load_ohlcv_csv(path)
    small = load_ohlcv_csv(plain)

    expected = [[int(row[0]), *map(float, row[1:])] for row in table[1:]]
    assert rows(loaded) == expected
    assert rows(small) == expected[:10]
    assert (loaded.ts.dtype, loaded.close.dtype) == (np.dtype(np.int64), np.dtype(np.float64))


@pytest.mark.unit
def test_csv_loader_rejects_a_wrong_header(tmp_path: Path) -> None:
    """A file whose header is not the shared OHLCV header is refused with the path in the message."""
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close,volume\n1,1,1,1,1,1\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"bad\.csv: header"):
        load_ohlcv_csv(bad)
