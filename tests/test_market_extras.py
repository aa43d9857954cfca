"""Tests of common.market.extras: funding, trades, order book top and 24 h tickers.

Readers run on the real shared files; parsers run on what the real ccxt client returns from the
fake MEXC server, so every unit (base or contracts) is the one ccxt really gives.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import AsyncIterator, Callable
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import numpy as np
import pytest

from common.errors import DataError
from common.market.extras import (
    BookTop,
    FundingRates,
    Ticker24h,
    Trades,
    book_from_ccxt,
    funding_from_ccxt,
    infer_funding_interval,
    parse_funding_interval,
    read_funding_file,
    read_trades_file,
    ticker_from_ccxt,
    trades_from_ccxt,
)
from common.market.mexc import override_api_host
from tests.fakes.csvdata import load_ohlcv_csv, require_shared_data
from tests.fakes.mexc import HOUR_MS, TIMEFRAME_MS, FakeMexc, MarketType, shift_to_now

FUNDING_FILE = "binance_usdm_funding/BTC_USDT-funding_rate.csv.gz"
TRADES_FILE = "trades/ETH_USDT-trades.csv.gz"
SPOT_15M = "binance_spot/BTC_USDT-15m.csv.gz"
PERP_15M = "binance_usdm_perp/BTC_USDT-15m.csv.gz"
BTC_CONTRACT = 0.0001
ETH_CONTRACT = 0.01
NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC: the fake's frozen "now"
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
H8 = 8 * HOUR_MS


def file_lines(relative: str) -> list[str]:
    """The data lines (header excluded) of a shared file, read independently of the code under test."""
    with gzip.open(require_shared_data(relative), "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    return [line for line in lines[1:] if line.strip()]


def write(path: Path, text: str) -> Path:
    """Write ``text`` to a .csv or (gzip-compressed) .csv.gz file."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def one_line_error(call: Callable[[], object]) -> str:
    """Run ``call``, which must raise DataError; return its message after checking it is one line."""
    with pytest.raises(DataError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- replay files


@pytest.mark.unit
def test_read_funding_file_reads_every_settlement_of_the_real_btc_file() -> None:
    """The BTC funding file gives one settlement per data line, first and last exactly as written, 8 h."""
    lines = file_lines(FUNDING_FILE)
    funding = read_funding_file(require_shared_data(FUNDING_FILE), "BTC/USDT:USDT")

    assert len(funding) == len(lines) == 7323
    first, last = lines[0].split(","), lines[-1].split(",")
    assert (int(funding.ts[0]), float(funding.rate[0])) == (int(first[0]), float(first[1]))
    assert (int(funding.ts[-1]), float(funding.rate[-1])) == (int(last[0]), float(last[1]))
    assert (funding.ts[-1], funding.rate[-1]) == (1778976000000, 4.037e-05)
    assert (funding.symbol, funding.interval_ms, funding.next_ts, funding.predicted_rate) == (
        "BTC/USDT:USDT",
        H8,
        None,
        None,
    )
    assert not funding.ts.flags.writeable
    assert not funding.rate.flags.writeable


@pytest.mark.unit
def test_read_trades_file_reads_every_trade_of_the_real_eth_file() -> None:
    """The ETH trades file gives one trade per data line with sides, first and last exactly as written."""
    lines = file_lines(TRADES_FILE)
    trades = read_trades_file(require_shared_data(TRADES_FILE), "ETH/USDT")

    assert len(trades) == len(lines) == 1000
    for index, line in ((0, lines[0]), (-1, lines[-1])):
        ts, _, side, price, amount, cost = line.split(",")
        assert int(trades.ts[index]) == int(ts)
        assert float(trades.price[index]) == float(price)
        assert float(trades.amount[index]) == float(amount)
        assert int(trades.side[index]) == {"buy": 1, "sell": -1}[side]
        assert float(trades.cost[index]) == pytest.approx(float(cost), rel=1e-15)
    assert trades.ts[0] == 1675329600138
    assert (trades.price[0], trades.amount[0], trades.side[0]) == (1666.8, 26.062, 1)
    assert int((trades.side == 1).sum()) == sum(1 for line in lines if line.split(",")[2] == "buy")
    assert not trades.cost.flags.writeable


@pytest.mark.unit
def test_read_trades_file_maps_empty_sides_to_unknown_and_accepts_plain_csv(tmp_path: Path) -> None:
    """A plain .csv with empty id and side columns reads with side 0; equal timestamps are allowed."""
    path = write(
        tmp_path / "BCH_EUR-trades.csv",
        "timestamp_ms,id,side,price,amount,cost\n"
        "1672620536000,,,90.07,1.1,99.077\n"
        "1672620536000,,,90.0,0.05,4.5\n"
        "1672621572000,7,SELL,89.9,0.16781327,15.086412973\n\n",
    )
    trades = read_trades_file(path, "BCH/EUR")

    assert trades.ts.tolist() == [1672620536000, 1672620536000, 1672621572000]
    assert trades.price.tolist() == [90.07, 90.0, 89.9]
    assert trades.amount.tolist() == [1.1, 0.05, 0.16781327]
    assert trades.side.tolist() == [0, 0, -1]


@pytest.mark.unit
def test_read_funding_file_keeps_millisecond_jitter_and_infers_the_interval(tmp_path: Path) -> None:
    """Jittered settlement times are kept as written; the interval is the median spacing, to the minute."""
    path = write(
        tmp_path / "SOL_USDT-funding_rate.csv",
        "timestamp_ms,funding_rate\n"
        f"{T0 + 1},0.0001\n{T0 + H8 - 16},-2.5e-05\n{T0 + 2 * H8 + 5},0.00012\n{T0 + 3 * H8},0.0\n",
    )
    funding = read_funding_file(path, "SOL/USDT:USDT")

    assert funding.ts.tolist() == [T0 + 1, T0 + H8 - 16, T0 + 2 * H8 + 5, T0 + 3 * H8]
    assert funding.rate.tolist() == [0.0001, -2.5e-05, 0.00012, 0.0]
    assert funding.interval_ms == H8


FUNDING_HEAD = "timestamp_ms,funding_rate\n"
TRADES_HEAD = "timestamp_ms,id,side,price,amount,cost\n"


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file, expected the header timestamp_ms,funding_rate"),
        ("time,rate\n1,0.1\n", "header is 'time,rate', expected timestamp_ms,funding_rate"),
        (FUNDING_HEAD, "no rows after the header"),
        (
            f"{FUNDING_HEAD}{T0},0.0001\n{T0 + H8},abc\n",
            f"line 3: not a whole-millisecond time and a number in '{T0 + H8},abc'",
        ),
        (
            f"{FUNDING_HEAD}{T0},0.0001\n{T0 + H8}\n",
            "line 3: 1 fields, expected 2 (timestamp_ms,funding_rate)",
        ),
        (
            f"{FUNDING_HEAD}{T0 + H8},0.0001\n{T0},0.0002\n",
            f"line 3: timestamp {T0} is not after the previous row's {T0 + H8} "
            "(rows must be strictly increasing)",
        ),
        (
            f"{FUNDING_HEAD}{T0},0.0001\n{T0},0.0001\n",
            f"line 3: timestamp {T0} is not after the previous row's {T0} (rows must be strictly increasing)",
        ),
        (
            f"{FUNDING_HEAD}{T0},0.0001\n{T0 + H8},nan\n",
            f"BTC/USDT:USDT funding: rate is not a finite number at 2024-01-01 08:00 UTC (ts={T0 + H8})",
        ),
    ],
    ids=["empty", "bad-header", "header-only", "malformed", "short-row", "unsorted", "duplicate", "nan"],
)
def test_bad_funding_files_raise_one_line_naming_the_file(
    tmp_path: Path, suffix: str, text: str, problem: str
) -> None:
    """Every broken funding file is one DataError line: the file's path, then what is wrong."""
    path = write(tmp_path / f"BTC_USDT-funding_rate{suffix}", text)
    assert one_line_error(lambda: read_funding_file(path, "BTC/USDT:USDT")) == f"{path}: {problem}"


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty file, expected the header timestamp_ms,id,side,price,amount,cost"),
        (
            "timestamp,price,amount\n1,2,3\n",
            "header is 'timestamp,price,amount', expected timestamp_ms,id,side,price,amount,cost",
        ),
        (TRADES_HEAD, "no rows after the header"),
        (
            f"{TRADES_HEAD}{T0},1,buy,100.5,x,201.0\n",
            f"line 2: not a whole-millisecond time and three numbers in '{T0},1,buy,100.5,x,201.0'",
        ),
        (
            f"{TRADES_HEAD}{T0},1,buy,100.5,2.0\n",
            "line 2: 5 fields, expected 6 (timestamp_ms,id,side,price,amount,cost)",
        ),
        (
            f"{TRADES_HEAD}{T0},1,hold,100.5,2.0,201.0\n",
            f"line 2: side 'hold' is not buy, sell or empty in '{T0},1,hold,100.5,2.0,201.0'",
        ),
        (
            f"{TRADES_HEAD}{T0 + 5},1,buy,100.5,2.0,201.0\n{T0},2,sell,100.0,1.0,100.0\n",
            f"line 3: timestamp {T0} is before the previous row's {T0 + 5} (rows must be in time order)",
        ),
        (
            f"{TRADES_HEAD}{T0},1,buy,100.5,201.0,2.0\n",
            f"line 2: cost 2.0 is not price x amount 20200.5 in '{T0},1,buy,100.5,201.0,2.0'",
        ),
        (
            f"{TRADES_HEAD}{T0},1,buy,100.5,-2.0,-201.0\n",
            "ETH/USDT trades: negative amount at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            f"{TRADES_HEAD}{T0},1,buy,0.0,2.0,0.0\n",
            "ETH/USDT trades: non-positive price at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
    ],
    ids=[
        "empty",
        "bad-header",
        "header-only",
        "malformed",
        "short-row",
        "bad-side",
        "unsorted",
        "cost-mismatch",
        "negative-amount",
        "zero-price",
    ],
)
def test_bad_trades_files_raise_one_line_naming_the_file(
    tmp_path: Path, suffix: str, text: str, problem: str
) -> None:
    """Every broken trades file is one DataError line: the file's path, then what is wrong."""
    path = write(tmp_path / f"ETH_USDT-trades{suffix}", text)
    assert one_line_error(lambda: read_trades_file(path, "ETH/USDT")) == f"{path}: {problem}"


@pytest.mark.unit
def test_a_corrupt_gzip_or_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    """A .csv.gz that is not gzip and a file that does not exist raise DataError naming the file."""
    corrupt = tmp_path / "BTC_USDT-funding_rate.csv.gz"
    corrupt.write_text(f"{FUNDING_HEAD}{T0},0.0001\n", encoding="utf-8")
    missing = tmp_path / "ETH_USDT-trades.csv"

    assert one_line_error(lambda: read_funding_file(corrupt, "BTC/USDT:USDT")).startswith(
        f"{corrupt}: cannot read: Not a gzipped file"
    )
    assert one_line_error(lambda: read_trades_file(missing, "ETH/USDT")).startswith(
        f"{missing}: cannot read: [Errno 2] No such file or directory"
    )


# --------------------------------------------------------------------------- the real ccxt client on the fake


class FrozenClock:
    """The fake server's "now", settable by a test."""

    def __init__(self, now: int) -> None:
        """Start at ``now`` (ms)."""
        self.now = now

    def __call__(self) -> int:
        """The current fake time in ms."""
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    """The fake's clock, frozen at NOW."""
    return FrozenClock(NOW)


@pytest.fixture
async def fake(clock: FrozenClock) -> AsyncIterator[FakeMexc]:
    """A running fake with BTC and ETH spot and USDT perpetuals registered."""
    async with FakeMexc(now_ms=clock) as server:
        server.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01", amount_step="0.000001")
        server.add_swap("BTC_USDT", "BTC", "USDT", price_unit=0.1, contract_size=BTC_CONTRACT)
        server.add_spot("ETHUSDT", "ETH", "USDT", price_tick="0.01", amount_step="0.0001")
        server.add_swap("ETH_USDT", "ETH", "USDT", price_unit=0.01, contract_size=ETH_CONTRACT)
        yield server


@pytest.fixture
async def exchange(fake: FakeMexc) -> AsyncIterator[Any]:
    """ccxt's real async mexc client pointed at the fake, markets loaded; closed after the test."""
    client = ccxt.mexc({"enableRateLimit": False})
    client.urls["api"] = override_api_host(client.urls["api"], fake.base_url)
    client.timeout_on_exit = 0  # plain HTTP on 127.0.0.1: nothing to wait for on close
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


def serve_15m(fake: FakeMexc, symbol_id: str, market: MarketType, relative: str) -> Any:
    """Serve a shared 15m file shifted so its last candle is forming at NOW; return the last 24 h."""
    candles = load_ohlcv_csv(require_shared_data(relative))
    shifted = candles.with_ts(shift_to_now(candles.ts, TIMEFRAME_MS["15m"], NOW))
    fake.add_candles(
        symbol_id,
        market,
        "15m",
        shifted.ts,
        shifted.open,
        shifted.high,
        shifted.low,
        shifted.close,
        shifted.volume,
    )
    return shifted.tail(96)  # the candles opening in (NOW - 24 h, NOW]: the fake's 24 h window


def best_prices(last: float, tick: str) -> tuple[float, float]:
    """The fake's best bid and ask: one tick either side of the last price floored to the tick."""
    step = Decimal(tick)
    floor = (Decimal(repr(last)) / step).to_integral_value(ROUND_FLOOR) * step
    return float(floor - step), float(floor + step)


@pytest.mark.integration
async def test_contract_sizes_come_from_the_markets_ccxt_loaded(exchange: Any) -> None:
    """ccxt reports the registered contract sizes for swaps and None for spot markets."""
    assert exchange.market("BTC/USDT:USDT")["contractSize"] == BTC_CONTRACT
    assert exchange.market("ETH/USDT:USDT")["contractSize"] == ETH_CONTRACT
    assert exchange.market("BTC/USDT")["contractSize"] is None


@pytest.mark.integration
async def test_funding_from_ccxt_equals_the_settlements_fed_to_the_fake(
    fake: FakeMexc, exchange: Any, clock: FrozenClock
) -> None:
    """History and current funding parse to the fed settlements, the next settlement and the 8 h interval."""
    source = read_funding_file(require_shared_data(FUNDING_FILE), "BTC/USDT:USDT")
    ts = shift_to_now(source.ts, H8, NOW)  # the last settlement happens exactly at now
    fake.add_funding("BTC_USDT", ts, source.rate)

    history = await exchange.fetch_funding_rate_history("BTC/USDT:USDT", limit=100)
    current = await exchange.fetch_funding_rate("BTC/USDT:USDT")
    funding = funding_from_ccxt("BTC/USDT:USDT", history, current)

    assert funding.ts.tolist() == ts[-100:].tolist()
    assert funding.rate.tolist() == source.rate[-100:].tolist()
    assert funding.interval_ms == H8
    assert funding.next_ts == int(ts[-1]) + H8
    # The fake publishes the last settled rate as the current one (see the report on the fake).
    assert funding.predicted_rate == float(source.rate[-1])
    assert funding.until(NOW) is funding
    assert funding.annualised_pct(0.0001) == 10.95


@pytest.mark.integration
async def test_trades_from_ccxt_equal_the_fed_trades_with_swap_contracts_back_in_base(
    fake: FakeMexc, exchange: Any
) -> None:
    """Spot trades parse exactly; swap deals (contracts on the wire) come back in ETH via contractSize."""
    source = read_trades_file(require_shared_data(TRADES_FILE), "ETH/USDT")
    lines = file_lines(TRADES_FILE)
    ids = [line.split(",")[1] for line in lines]
    sides = ["buy" if s == 1 else "sell" for s in source.side.tolist()]
    ts = source.ts + (NOW - int(source.ts[-1]) + 5_000)  # the last 5 s of trades lie in the future
    fake.add_trades("ETHUSDT", "spot", ts, ids, sides, source.price, source.amount)
    fake.add_trades("ETH_USDT", "swap", ts, None, sides, source.price, source.amount)
    visible = int(np.searchsorted(ts, NOW, side="right"))
    last50 = slice(visible - 50, visible)

    spot = trades_from_ccxt("ETH/USDT", await exchange.fetch_trades("ETH/USDT", limit=50))
    contract_size = exchange.market("ETH/USDT:USDT")["contractSize"]
    swap = trades_from_ccxt(
        "ETH/USDT:USDT",
        await exchange.fetch_trades("ETH/USDT:USDT", limit=50),
        contract_size=contract_size,
    )

    assert spot.ts.tolist() == ts[last50].tolist()
    assert spot.price.tolist() == source.price[last50].tolist()
    assert spot.amount.tolist() == source.amount[last50].tolist()
    assert spot.side.tolist() == source.side[last50].tolist()
    # Swap deals carry no id: ccxt orders trades of one millisecond by a made-up id, so compare sorted.
    got = sorted(
        zip(swap.ts.tolist(), swap.side.tolist(), swap.price.tolist(), swap.amount.tolist(), strict=True)
    )
    fed = sorted(
        zip(
            ts[last50].tolist(),
            source.side[last50].tolist(),
            source.price[last50].tolist(),
            source.amount[last50].tolist(),
            strict=True,
        )
    )
    assert [row[:3] for row in got] == [row[:3] for row in fed]
    assert [row[3] for row in got] == pytest.approx([row[3] for row in fed], rel=1e-12)
    assert swap.ts.max() <= NOW


@pytest.mark.integration
async def test_book_from_ccxt_brackets_the_last_price_with_swap_amounts_in_base(
    fake: FakeMexc, exchange: Any
) -> None:
    """Spot and swap books parse to the fake's levels; swap contracts x 0.0001 give base BTC amounts."""
    spot_day = serve_15m(fake, "BTCUSDT", "spot", SPOT_15M)
    swap_day = serve_15m(fake, "BTC_USDT", "swap", PERP_15M)

    spot = book_from_ccxt("BTC/USDT", await exchange.fetch_order_book("BTC/USDT", limit=5))
    swap = book_from_ccxt(
        "BTC/USDT:USDT",
        await exchange.fetch_order_book("BTC/USDT:USDT", limit=5),
        contract_size=exchange.market("BTC/USDT:USDT")["contractSize"],
        depth=3,
    )

    bid, ask = best_prices(float(spot_day.close[-1]), "0.01")
    tick = Decimal("0.01")
    assert spot.ts == NOW
    assert spot.bid_price.tolist() == [float(Decimal(repr(bid)) - k * tick) for k in range(5)]
    assert spot.ask_price.tolist() == [float(Decimal(repr(ask)) + k * tick) for k in range(5)]
    assert spot.bid_amount.tolist() == [float(Decimal("0.01") * (k + 1)) for k in range(5)]  # 0.0001 x 100
    assert spot.ask_amount.tolist() == spot.bid_amount.tolist()
    assert spot.spread_pct == (ask - bid) / ((ask + bid) / 2) * 100
    bid, ask = best_prices(float(swap_day.close[-1]), "0.1")
    unit = Decimal("0.1")
    assert swap.ts == NOW
    assert swap.bid_price.tolist() == [float(Decimal(repr(bid)) - k * unit) for k in range(3)]
    assert swap.ask_price.tolist() == [float(Decimal(repr(ask)) + k * unit) for k in range(3)]
    # 100, 200, 300 contracts of 0.0001 BTC on the wire.
    assert swap.bid_amount.tolist() == [0.01, 0.02, 0.03]
    assert swap.ask_amount.tolist() == [0.01, 0.02, 0.03]
    assert swap.bid_notional(1) == bid * 0.01


@pytest.mark.integration
async def test_ticker_from_ccxt_gives_last_quotes_and_base_volumes_for_spot_and_swap(
    fake: FakeMexc, exchange: Any
) -> None:
    """Tickers parse to the fake's 24 h statistics; the swap base volume is ccxt's contracts x size."""
    spot_day = serve_15m(fake, "BTCUSDT", "spot", SPOT_15M)
    swap_day = serve_15m(fake, "BTC_USDT", "swap", PERP_15M)

    spot = ticker_from_ccxt("BTC/USDT", await exchange.fetch_ticker("BTC/USDT"))
    swap = ticker_from_ccxt(
        "BTC/USDT:USDT",
        await exchange.fetch_ticker("BTC/USDT:USDT"),
        contract_size=exchange.market("BTC/USDT:USDT")["contractSize"],
    )

    for ticker, day, tick in ((spot, spot_day, "0.01"), (swap, swap_day, "0.1")):
        last, first = float(day.close[-1]), float(day.open[0])
        assert (ticker.ts, ticker.last) == (NOW, last)
        assert (ticker.bid, ticker.ask) == best_prices(last, tick)
        assert ticker.quote_volume == math.fsum((day.volume * day.close).tolist())
        assert ticker.change_pct == pytest.approx((last - first) / first * 100, rel=1e-12)
    assert spot.base_volume == math.fsum(spot_day.volume.tolist())
    # volume24 is in contracts; ccxt multiplies by contractSize in decimal, so the last digit may differ.
    assert swap.base_volume == pytest.approx(math.fsum(swap_day.volume.tolist()), rel=1e-12)


# --------------------------------------------------------------------------- parsers on hand-made structures


@pytest.mark.unit
def test_funding_from_ccxt_sorts_drops_repeats_and_infers_the_interval() -> None:
    """Overlapping pages are merged in time order; without a current rate the interval is the spacing."""
    symbol = "ENA/USDT:USDT"
    rows = [
        {"symbol": symbol, "timestamp": T0 + 2 * 4 * HOUR_MS, "fundingRate": 0.0003},
        {"symbol": symbol, "timestamp": T0, "fundingRate": 0.0001},
        {"symbol": symbol, "timestamp": T0 + 4 * HOUR_MS, "fundingRate": -0.0002},
        {"symbol": symbol, "timestamp": T0, "fundingRate": 0.0001},
    ]
    funding = funding_from_ccxt(symbol, rows, None)

    assert funding.ts.tolist() == [T0, T0 + 4 * HOUR_MS, T0 + 8 * HOUR_MS]
    assert funding.rate.tolist() == [0.0001, -0.0002, 0.0003]
    assert (funding.interval_ms, funding.next_ts, funding.predicted_rate) == (4 * HOUR_MS, None, None)
    assert funding.annualised_pct(0.0001) == 21.9


@pytest.mark.unit
@pytest.mark.parametrize(
    ("history", "current", "problem"),
    [
        (
            [{"timestamp": T0, "fundingRate": 0.0001}, {"timestamp": T0, "fundingRate": 0.0002}],
            None,
            "settlement 2024-01-01 00:00 UTC (ts=1704067200000) has two rates, 0.0001 and 0.0002",
        ),
        ([{"timestamp": None, "fundingRate": 0.0001}], None, "history row 0 timestamp is missing"),
        (
            [{"timestamp": T0, "fundingRate": "high"}],
            None,
            "history row 0 fundingRate is 'high', not a number",
        ),
        (
            [{"symbol": "ETH/USDT:USDT", "timestamp": T0, "fundingRate": 0.0}],
            None,
            "the data is for ETH/USDT:USDT",
        ),
        (
            [],
            {"interval": "eight hours", "fundingRate": 0.0},
            "funding interval 'eight hours' is not like '8h'",
        ),
        (
            [{"timestamp": T0, "fundingRate": 0.0001}],
            {"interval": "8h", "fundingRate": 0.0001, "fundingTimestamp": T0},
            "next settlement 2024-01-01 00:00 UTC (ts=1704067200000) is not after the last settled one",
        ),
    ],
    ids=["conflict", "no-time", "bad-rate", "other-symbol", "bad-interval", "next-not-after"],
)
def test_funding_from_ccxt_refuses_broken_structures(
    history: list[dict[str, Any]], current: dict[str, Any] | None, problem: str
) -> None:
    """A broken funding structure is one DataError line starting with where and the symbol."""
    message = one_line_error(lambda: funding_from_ccxt("BTC/USDT:USDT", history, current))
    assert message.startswith("MEXC: BTC/USDT:USDT funding: ")
    assert problem in message


@pytest.mark.unit
def test_trades_from_ccxt_orders_by_time_and_maps_sides() -> None:
    """Rows come out oldest first (ties keep their order); buy +1, sell -1, None 0; contracts x size."""
    rows: list[dict[str, Any]] = [
        {"timestamp": T0 + 2, "price": "101.5", "amount": "3", "side": "sell"},
        {"timestamp": T0, "price": 100.0, "amount": 1.0, "side": "buy"},
        {"timestamp": T0, "price": 100.5, "amount": 2.0, "side": None},
    ]
    trades = trades_from_ccxt("SOL/USDT:USDT", rows, contract_size=0.1, where="test")

    assert trades.ts.tolist() == [T0, T0, T0 + 2]
    assert trades.price.tolist() == [100.0, 100.5, 101.5]
    assert trades.amount.tolist() == [
        0.1,
        0.2,
        0.3,
    ]  # decimal products: 3 x 0.1 is 0.3, not 0.30000000000000004
    assert trades.side.tolist() == [1, 0, -1]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"timestamp": T0, "price": 1.0, "amount": 1.0, "side": "long"}, "trade 0 side is 'long'"),
        ({"timestamp": T0, "price": None, "amount": 1.0, "side": "buy"}, "trade 0 price is missing"),
        (
            {"timestamp": T0 + 0.5, "price": 1.0, "amount": 1.0, "side": "buy"},
            "trade 0 timestamp 1704067200000.5 is not a whole number of milliseconds",
        ),
        ({"timestamp": T0, "price": -1.0, "amount": 1.0, "side": "buy"}, "non-positive price at 2024-01-01"),
        ({"timestamp": T0, "price": 1.0, "amount": -1.0, "side": "buy"}, "negative amount at 2024-01-01"),
        ({"timestamp": T0, "price": 1.0, "amount": math.inf, "side": "buy"}, "amount is not a finite number"),
    ],
    ids=["side", "no-price", "fractional-ms", "negative-price", "negative-amount", "infinite-amount"],
)
def test_trades_from_ccxt_refuses_broken_rows(row: dict[str, Any], problem: str) -> None:
    """A broken trade row is one DataError line starting with where and the symbol."""
    message = one_line_error(lambda: trades_from_ccxt("BTC/USDT", [row]))
    assert message.startswith("MEXC: BTC/USDT trades: ")
    assert problem in message


@pytest.mark.unit
def test_book_from_ccxt_uses_received_time_when_the_book_has_none() -> None:
    """A book without a timestamp takes received_ms; without either it is refused."""
    book = {"bids": [[99.0, 1.0, 1]], "asks": [[101.0, 2.0, 1]], "timestamp": None}

    top = book_from_ccxt("BTC/USDT", book, received_ms=T0)
    assert (top.ts, top.best_bid, top.best_ask) == (T0, 99.0, 101.0)
    assert one_line_error(lambda: book_from_ccxt("BTC/USDT", book)) == (
        "MEXC: BTC/USDT order book: timestamp is missing"
    )


@pytest.mark.unit
def test_ticker_from_ccxt_refuses_a_swap_volume_that_is_not_in_base_units() -> None:
    """A baseVolume equal to the raw contract count (not x contractSize) is caught by the cross-check."""
    ticker = {
        "timestamp": T0,
        "last": 100.0,
        "bid": 99.9,
        "ask": 100.1,
        "baseVolume": 5000.0,
        "quoteVolume": 50_000.0,
        "percentage": 1.5,
        "info": {"volume24": 5000},
    }
    assert (
        ticker_from_ccxt("BTC/USDT:USDT", {**ticker, "baseVolume": 0.5}, contract_size=0.0001).base_volume
        == 0.5
    )
    assert one_line_error(lambda: ticker_from_ccxt("BTC/USDT:USDT", ticker, contract_size=0.0001)) == (
        "MEXC: BTC/USDT:USDT ticker: baseVolume 5000.0 is not volume24 5000.0 x contract size 0.0001 "
        "(has ccxt changed its unit?)"
    )


@pytest.mark.unit
def test_ticker_from_ccxt_accepts_missing_quotes_and_quote_volume() -> None:
    """No bid, ask or quote volume (MEXC may send null; ccxt drops zeros) gives None and no spread."""
    ticker = ticker_from_ccxt(
        "BTC/USDT",
        {"timestamp": T0, "last": None, "close": 100.0, "bid": None, "ask": None, "baseVolume": "1.5"},
    )
    assert ticker == Ticker24h("BTC/USDT", T0, 100.0, None, None, 1.5, None, None)
    assert ticker.spread_pct is None


# --------------------------------------------------------------------------- until()


def eight_hourly_funding() -> FundingRates:
    """Five 8 h settlements from T0, the next one announced with a predicted rate."""
    return FundingRates(
        symbol="BTC/USDT:USDT",
        ts=np.array([T0 + k * H8 for k in range(5)], dtype=np.int64),
        rate=np.array([0.0001, 0.0002, -0.0001, 0.0003, 0.00005]),
        interval_ms=H8,
        next_ts=T0 + 5 * H8,
        predicted_rate=0.0004,
    )


@pytest.mark.unit
def test_funding_until_keeps_settlements_up_to_now_and_projects_the_next_one() -> None:
    """until() keeps ts <= now, projects the next settlement on the schedule and drops the prediction."""
    funding = eight_hourly_funding()

    earlier = funding.until(T0 + 2 * H8 + 1)
    assert earlier.ts.tolist() == [T0, T0 + H8, T0 + 2 * H8]
    assert earlier.rate.tolist() == [0.0001, 0.0002, -0.0001]
    assert (earlier.next_ts, earlier.predicted_rate, earlier.interval_ms) == (T0 + 3 * H8, None, H8)
    exactly = funding.until(T0 + H8)  # a settlement at now has happened
    assert (exactly.ts.tolist(), exactly.next_ts) == ([T0, T0 + H8], T0 + 2 * H8)
    assert funding.until(T0 + 5 * H8 - 1) is funding  # nothing dropped, the announced one still ahead
    later = funding.until(T0 + 7 * H8 + 5)  # the announced settlement passed without data
    assert (len(later), later.next_ts, later.predicted_rate) == (5, T0 + 8 * H8, None)
    before = funding.until(T0 - 1)
    assert (len(before), before.next_ts, before.predicted_rate) == (0, None, None)


@pytest.mark.unit
def test_funding_until_infers_the_interval_of_the_past_from_the_settlements_kept() -> None:
    """A symbol that moved from 8 h to 4 h had 8 h back then; a replay file's next_ts is projected."""
    ts = [T0 + k * H8 for k in range(12)] + [T0 + 11 * H8 + k * 4 * HOUR_MS for k in range(1, 13)]
    times = np.array(ts, dtype=np.int64)
    funding = FundingRates("ENA/USDT:USDT", times, np.zeros(len(ts)), infer_funding_interval(times))

    assert funding.interval_ms == 4 * HOUR_MS
    past = funding.until(T0 + 5 * H8 + 3)
    assert (past.interval_ms, past.next_ts) == (H8, T0 + 6 * H8)
    assert funding.until(ts[-1] + 1).next_ts == ts[-1] + 4 * HOUR_MS


@pytest.mark.unit
def test_trades_until_has_nothing_after_now_and_limit_keeps_the_newest() -> None:
    """until(now) keeps trades at or before now; limit keeps the newest ones; limit 0 keeps none."""
    trades = Trades(
        symbol="ETH/USDT",
        ts=np.array([T0, T0 + 1, T0 + 1, T0 + 5, T0 + 9], dtype=np.int64),
        price=np.array([10.0, 11.0, 12.0, 13.0, 14.0]),
        amount=np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
        side=np.array([1, -1, 0, 1, -1], dtype=np.int8),
    )

    upto = trades.until(T0 + 5)
    assert upto.ts.tolist() == [T0, T0 + 1, T0 + 1, T0 + 5]
    assert upto.price.tolist() == [10.0, 11.0, 12.0, 13.0]
    newest = trades.until(T0 + 8, limit=2)
    assert (newest.ts.tolist(), newest.amount.tolist(), newest.side.tolist()) == (
        [T0 + 1, T0 + 5],
        [3.0, 4.0],
        [0, 1],
    )
    assert newest.cost.tolist() == [36.0, 52.0]
    assert len(trades.until(T0 - 1)) == 0
    assert len(trades.until(T0 + 9, limit=0)) == 0
    assert trades.until(T0 + 9, limit=10).ts.tolist() == trades.ts.tolist()


# --------------------------------------------------------------------------- validation of each type


@pytest.mark.unit
def test_types_freeze_their_own_arrays_not_the_callers() -> None:
    """The stored arrays are read-only; the arrays a caller passed stay writeable."""
    ts = np.array([T0, T0 + 1], dtype=np.int64)
    price = np.array([1.0, 2.0])
    trades = Trades("ETH/USDT", ts, price, np.array([1.0, 1.0]), np.array([1, 1], dtype=np.int8))

    assert ts.flags.writeable
    assert price.flags.writeable
    assert not trades.ts.flags.writeable
    assert not trades.price.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        trades.price[0] = 5.0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: FundingRates("X", np.array([T0 + 1, T0]), np.array([0.0, 0.0])),
            "X funding: timestamps not strictly increasing at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: FundingRates("X", np.array([T0, T0]), np.array([0.0, 0.0])),
            "X funding: timestamps not strictly increasing at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: FundingRates("X", np.array([T0]), np.array([math.inf])),
            "X funding: rate is not a finite number at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: FundingRates("X", np.array([T0]), np.array([0.0, 0.0])),
            "X funding: 2 rates for 1 timestamps",
        ),
        (
            lambda: FundingRates("X", np.array([T0]), np.array([0.0]), interval_ms=0),
            "X funding: interval must be positive, got 0 ms",
        ),
        (
            lambda: FundingRates("X", np.array([T0]), np.array([0.0]), predicted_rate=math.nan),
            "X funding: predicted rate is not a finite number (nan)",
        ),
        (
            lambda: Trades("X", np.array([T0 + 1, T0]), np.ones(2), np.ones(2), np.zeros(2, dtype=np.int8)),
            "X trades: timestamps decreasing at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: Trades("X", np.array([T0]), np.array([math.nan]), np.ones(1), np.zeros(1, dtype=np.int8)),
            "X trades: price is not a finite number at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: Trades("X", np.array([T0]), np.ones(1), np.ones(1), np.array([2], dtype=np.int8)),
            "X trades: side must be +1, -1 or 0, not 2 at 2024-01-01 00:00 UTC (ts=1704067200000)",
        ),
        (
            lambda: Trades("X", np.array([T0]), np.ones(2), np.ones(1), np.zeros(1, dtype=np.int8)),
            "X trades: price has 2 values for 1 timestamps",
        ),
        (
            lambda: BookTop("X", T0, np.array([101.0]), np.ones(1), np.array([100.0]), np.ones(1)),
            "X order book (ts=1704067200000): crossed book, best bid 101.0 >= best ask 100.0",
        ),
        (
            lambda: BookTop("X", T0, np.array([100.0]), np.ones(1), np.array([100.0]), np.ones(1)),
            "X order book (ts=1704067200000): crossed book, best bid 100.0 >= best ask 100.0",
        ),
        (
            lambda: BookTop("X", T0, np.array([99.0, 99.5]), np.ones(2), np.array([100.0]), np.ones(1)),
            "X order book (ts=1704067200000): bid prices not strictly decreasing at level 2",
        ),
        (
            lambda: BookTop("X", T0, np.array([99.0]), np.ones(1), np.array([100.0, 100.0]), np.ones(2)),
            "X order book (ts=1704067200000): ask prices not strictly increasing at level 2",
        ),
        (
            lambda: BookTop("X", T0, np.array([99.0]), np.array([-1.0]), np.empty(0), np.empty(0)),
            "X order book (ts=1704067200000): negative bid amount at level 1",
        ),
        (
            lambda: BookTop("X", T0, np.array([0.0]), np.ones(1), np.empty(0), np.empty(0)),
            "X order book (ts=1704067200000): non-positive bid price at level 1",
        ),
        (
            lambda: BookTop("X", T0, np.empty(0), np.empty(0), np.array([math.nan]), np.ones(1)),
            "X order book (ts=1704067200000): ask price is not a finite number at level 1",
        ),
        (
            lambda: Ticker24h("X", T0, 100.0, 100.5, 100.5, 1.0, 1.0, 0.0),
            "X ticker (ts=1704067200000): crossed quote, bid 100.5 >= ask 100.5",
        ),
        (
            lambda: Ticker24h("X", T0, 0.0, None, None, 1.0, 1.0, 0.0),
            "X ticker (ts=1704067200000): last price must be positive, got 0.0",
        ),
        (
            lambda: Ticker24h("X", T0, 100.0, None, None, -1.0, 1.0, 0.0),
            "X ticker (ts=1704067200000): negative base volume -1.0",
        ),
        (
            lambda: Ticker24h("X", T0, 100.0, None, None, 1.0, math.inf, 0.0),
            "X ticker (ts=1704067200000): quote volume is not a finite number (inf)",
        ),
    ],
    ids=[
        "funding-unsorted",
        "funding-duplicate",
        "funding-inf",
        "funding-lengths",
        "funding-interval",
        "funding-predicted-nan",
        "trades-unsorted",
        "trades-nan-price",
        "trades-side",
        "trades-lengths",
        "book-crossed",
        "book-locked",
        "book-bids-order",
        "book-asks-duplicate",
        "book-negative-amount",
        "book-zero-price",
        "book-nan-price",
        "ticker-crossed",
        "ticker-zero-last",
        "ticker-negative-volume",
        "ticker-inf-quote-volume",
    ],
)
def test_each_type_refuses_invalid_values_with_one_line(make: Callable[[], object], message: str) -> None:
    """Every invalid FundingRates, Trades, BookTop and Ticker24h raises exactly this one-line DataError."""
    assert one_line_error(make) == message


@pytest.mark.unit
def test_book_spread_and_notionals() -> None:
    """spread_pct is relative to the mid price; notionals sum price x amount over the best levels."""
    book = BookTop(
        "X", T0, np.array([100.0, 99.0]), np.array([1.0, 2.0]), np.array([101.0, 102.0]), np.array([0.5, 1.0])
    )
    one_sided = BookTop("X", T0, np.array([100.0]), np.array([1.0]), np.empty(0), np.empty(0))

    assert book.spread_pct == 1.0 / 100.5 * 100.0
    assert (book.bid_notional(1), book.bid_notional(), book.ask_notional(2), book.ask_notional(0)) == (
        100.0,
        298.0,
        152.5,
        0.0,
    )
    assert (one_sided.spread_pct, one_sided.best_ask, one_sided.ask_notional()) == (None, None, 0.0)
    assert Ticker24h("X", T0, 100.0, 99.0, 101.0, 1.0, 100.0, -2.5).spread_pct == 2.0 / 100.0 * 100.0


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"), [("8h", 8 * HOUR_MS), ("4h", 4 * HOUR_MS), ("30m", 1_800_000), ("1d", 86_400_000)]
)
def test_parse_funding_interval_reads_ccxt_interval_text(text: str, expected: int) -> None:
    """ccxt's interval text ('8h' from MEXC's collectCycle) converts to milliseconds."""
    assert parse_funding_interval(text) == expected
