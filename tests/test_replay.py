"""Tests of common.market.replay: closed candles on a simulated clock, aggregation, file errors."""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from common.clock import SimulatedClock
from common.errors import DataError
from common.market import MarketInfo, SeriesKey, SourceProblem
from common.market.replay import ReplaySource, aggregate, read_ohlcv_file
from common.types import Candles
from tests.fakes.csvdata import load_ohlcv_csv, require_shared_data

pytestmark = pytest.mark.unit

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC (a Monday)
MIN = 60_000
HOUR = 3_600_000
DAY = 24 * HOUR
HEADER = "timestamp_ms,open,high,low,close,volume\n"

# Nine 15m candles from 00:00 to 02:00: two complete hours and one lone candle of the third hour.
#            open   high   low   close  volume
ROWS_15M = [
    (100.0, 102.0, 99.0, 101.0, 10.0),  # 00:00
    (101.0, 103.0, 100.0, 102.0, 11.0),  # 00:15
    (102.0, 105.0, 101.0, 104.0, 12.0),  # 00:30
    (104.0, 104.5, 98.0, 99.0, 13.0),  # 00:45
    (99.0, 100.0, 97.0, 98.0, 14.0),  # 01:00
    (98.0, 99.0, 96.5, 97.0, 15.0),  # 01:15
    (97.0, 101.0, 96.0, 100.0, 16.0),  # 01:30
    (100.0, 100.5, 99.0, 99.5, 17.0),  # 01:45
    (99.5, 110.0, 99.0, 109.0, 18.0),  # 02:00
]


def csv_text(rows: Sequence[tuple[float, ...]], start: int = T0, step: int = 15 * MIN) -> str:
    """The file text of ``rows`` with open times start, start + step, ..."""
    lines = [f"{start + i * step},{','.join(repr(v) for v in row)}\n" for i, row in enumerate(rows)]
    return HEADER + "".join(lines)


def write(directory: Path, name: str, text: str) -> Path:
    """Write a .csv or .csv.gz file in ``directory``."""
    path = directory / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


async def opened(directory: Path, *keys: SeriesKey, now: int = 0) -> tuple[ReplaySource, SimulatedClock]:
    """A replay source over ``directory`` with ``keys`` loaded (failing the test on any problem)."""
    clock = SimulatedClock(now)
    source = ReplaySource(directory, clock)
    assert await source.open(list(keys)) == []
    return source, clock


BTC_15M = SeriesKey("BTC/USDT", "15m")
BTC_1H = SeriesKey("BTC/USDT", "1h")


async def test_closed_candles_are_those_closed_at_the_simulated_time(tmp_path: Path) -> None:
    """At simulated time t the source serves exactly the candles whose close time is <= t."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    source, clock = await opened(tmp_path, BTC_15M)
    assert len(await source.closed_candles("BTC/USDT", "15m", 100)) == 0  # clock at 0
    clock.set(T0 + 45 * MIN - 1)  # the 00:30 candle is still forming
    got = await source.closed_candles("BTC/USDT", "15m", 100)
    assert got.ts.tolist() == [T0, T0 + 15 * MIN]
    clock.set(T0 + 45 * MIN)  # ... and now it has closed
    got = await source.closed_candles("BTC/USDT", "15m", 100)
    assert got.ts.tolist() == [T0, T0 + 15 * MIN, T0 + 30 * MIN]
    assert got.close.tolist() == [101.0, 102.0, 104.0]
    clock.set(T0 + 45 * MIN + 1)  # the 00:45 candle has started: still not shown
    assert len(await source.closed_candles("BTC/USDT", "15m", 100)) == 3
    newest_two = await source.closed_candles("BTC/USDT", "15m", 2)
    assert newest_two.ts.tolist() == [T0 + 15 * MIN, T0 + 30 * MIN]
    clock.set(T0 + 10 * HOUR)
    assert len(await source.closed_candles("BTC/USDT", "15m", 100)) == 9


async def test_aggregation_15m_to_1h_by_hand_and_incomplete_hour_dropped(tmp_path: Path) -> None:
    """1h from 15m: open first, high max, low min, close last, volume sum; the lone 02:00 candle dropped."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    source, clock = await opened(tmp_path, BTC_1H)
    clock.set(T0 + 10 * HOUR)
    hourly = await source.closed_candles("BTC/USDT", "1h", 100)
    assert hourly.timeframe == "1h"
    assert hourly.ts.tolist() == [T0, T0 + HOUR]
    assert hourly.open.tolist() == [100.0, 99.0]
    assert hourly.high.tolist() == [105.0, 101.0]
    assert hourly.low.tolist() == [98.0, 96.0]
    assert hourly.close.tolist() == [99.0, 99.5]
    assert hourly.volume.tolist() == [46.0, 62.0]  # 10+11+12+13, 14+15+16+17
    # The first hour is served once it has closed, not before.
    clock_early = SimulatedClock(T0 + HOUR - 1)
    early = ReplaySource(tmp_path, clock_early)
    await early.open([BTC_1H])
    assert len(await early.closed_candles("BTC/USDT", "1h", 100)) == 0
    clock_early.set(T0 + HOUR)
    assert (await early.closed_candles("BTC/USDT", "1h", 100)).close.tolist() == [99.0]


def test_aggregation_drops_an_incomplete_first_group() -> None:
    """15m data starting at 00:30 has no full 00:00 hour: the first 1h candle is 01:00, not a partial one."""
    rows = np.array(ROWS_15M[2:], dtype=np.float64)
    candles = Candles(
        symbol="BTC/USDT",
        timeframe="15m",
        ts=T0 + 30 * MIN + np.arange(len(rows), dtype=np.int64) * 15 * MIN,
        open=rows[:, 0],
        high=rows[:, 1],
        low=rows[:, 2],
        close=rows[:, 3],
        volume=rows[:, 4],
    )
    hourly = aggregate(candles, "1h")
    assert hourly.ts.tolist() == [T0 + HOUR]
    assert (hourly.open[0], hourly.high[0], hourly.low[0], hourly.close[0], hourly.volume[0]) == (
        99.0,
        101.0,
        96.0,
        99.5,
        62.0,
    )


def test_weekly_aggregation_uses_monday_weeks() -> None:
    """1w from 1d groups Monday..Sunday (as exchanges do), not the Unix epoch's Thursday weeks."""
    days = 15  # Mon 2024-01-01 .. Mon 2024-01-15
    close = 100.0 + np.arange(days, dtype=np.float64)
    candles = Candles(
        symbol="BTC/USDT",
        timeframe="1d",
        ts=T0 + np.arange(days, dtype=np.int64) * DAY,
        open=close - 0.5,
        high=close + 1.0,
        low=close - 1.0,
        close=close,
        volume=np.ones(days),
    )
    weekly = aggregate(candles, "1w")
    assert weekly.ts.tolist() == [T0, T0 + 7 * DAY]  # Mondays 2024-01-01 and 2024-01-08
    assert weekly.open.tolist() == [99.5, 106.5]
    assert weekly.close.tolist() == [106.0, 113.0]
    assert weekly.high.tolist() == [107.0, 114.0]
    assert weekly.low.tolist() == [99.0, 106.0]
    assert weekly.volume.tolist() == [7.0, 7.0]


def test_aggregation_refuses_a_timeframe_that_does_not_divide() -> None:
    """A timeframe that is not a multiple of the source is refused, so is data too short for one candle."""
    candles = read_candles_15m()
    with pytest.raises(DataError, match=f"^{re.escape('cannot build 20m candles from 15m candles')}$"):
        aggregate(candles, "20m")
    with pytest.raises(
        DataError, match=f"^{re.escape('BTC/USDT: not one complete 4h candle in the 15m data')}$"
    ):
        aggregate(candles, "4h")


def read_candles_15m() -> Candles:
    """ROWS_15M as Candles."""
    rows = np.array(ROWS_15M, dtype=np.float64)
    return Candles(
        symbol="BTC/USDT",
        timeframe="15m",
        ts=T0 + np.arange(len(rows), dtype=np.int64) * 15 * MIN,
        open=rows[:, 0],
        high=rows[:, 1],
        low=rows[:, 2],
        close=rows[:, 3],
        volume=rows[:, 4],
    )


async def test_csv_gz_is_preferred_over_csv(tmp_path: Path) -> None:
    """With both BTC_USDT-15m.csv and .csv.gz present, the .csv.gz is read."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    gz_rows = [(o, h, lo, c, v + 1000.0) for o, h, lo, c, v in ROWS_15M]
    write(tmp_path, "BTC_USDT-15m.csv.gz", csv_text(gz_rows))
    source, clock = await opened(tmp_path, BTC_15M)
    clock.set(T0 + 10 * HOUR)
    candles = await source.closed_candles("BTC/USDT", "15m", 100)
    assert candles.volume.tolist() == [1010.0 + i for i in range(9)]


async def test_perpetual_symbol_reads_the_same_file_name_and_is_a_swap(tmp_path: Path) -> None:
    """BTC/USDT:USDT reads BTC_USDT-15m.csv; market info says swap with no tick; spot says spot."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    source, clock = await opened(tmp_path, SeriesKey("BTC/USDT:USDT", "15m"))
    clock.set(T0 + HOUR)
    assert (await source.closed_candles("BTC/USDT:USDT", "15m", 100)).close.tolist() == [
        101.0,
        102.0,
        104.0,
        99.0,
    ]
    assert source.market("BTC/USDT:USDT") == MarketInfo(symbol="BTC/USDT:USDT", kind="swap", tick_size=None)
    assert source.market("BTC/USDT") == MarketInfo(symbol="BTC/USDT", kind="spot", tick_size=None)


async def test_missing_file_is_a_problem_naming_the_pattern(tmp_path: Path) -> None:
    """A series without any file is reported (not raised) with the file pattern looked for."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    source = ReplaySource(tmp_path, SimulatedClock(0))
    problems = await source.open([BTC_15M, SeriesKey("ETH/USDT", "1h")])
    assert problems == [
        SourceProblem(
            "ETH/USDT",
            f"no replay file for ETH/USDT 1h in {tmp_path} "
            "(looked for ETH_USDT-1h.csv[.gz] or a finer timeframe)",
            timeframe="1h",
        )
    ]
    # A finer file exists but a 5m series cannot come from 15m: same problem line.
    problems = await source.open([SeriesKey("BTC/USDT", "5m")])
    assert problems == [
        SourceProblem(
            "BTC/USDT",
            f"no replay file for BTC/USDT 5m in {tmp_path} "
            "(looked for BTC_USDT-5m.csv[.gz] or a finer timeframe)",
            timeframe="5m",
        )
    ]


async def test_missing_directory_is_a_problem_for_every_symbol(tmp_path: Path) -> None:
    """A replay directory that does not exist is reported for each symbol."""
    missing = tmp_path / "nope"
    problems = await ReplaySource(missing).open([BTC_15M, SeriesKey("ETH/USDT", "15m")])
    assert problems == [
        SourceProblem("BTC/USDT", f"replay directory {missing} does not exist"),
        SourceProblem("ETH/USDT", f"replay directory {missing} does not exist"),
    ]


ROW0 = f"{T0},100.0,102.0,99.0,101.0,10.0\n"
TS1 = T0 + 15 * MIN


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (ROW0 + f"{TS1},100,abc,99,100.5,10\n", "malformed row: could not convert string 'abc' to float64"),
        (ROW0 + f"{TS1},100,101\n", "malformed row: invalid column index 3 at row 2 with 3 columns"),
        (
            ROW0 + f"{TS1},100,101,99,nan,10\n",
            f"BTC/USDT 15m: close is not a finite number at candle 2024-01-01 00:15 UTC (ts={TS1})",
        ),
        (
            ROW0 + f"{TS1},100,101,99,102,10\n",
            f"BTC/USDT 15m: high/low do not contain open/close at candle 2024-01-01 00:15 UTC (ts={TS1})",
        ),
        (
            ROW0 + f"{TS1},100,101,99.5,99,10\n",
            f"BTC/USDT 15m: high/low do not contain open/close at candle 2024-01-01 00:15 UTC (ts={TS1})",
        ),
        (
            f"{TS1},100,101,99,100,10\n" + ROW0,
            f"BTC/USDT 15m: timestamps not strictly increasing at candle 2024-01-01 00:00 UTC (ts={T0})",
        ),
        (
            ROW0 + f"{TS1},100,101,99,100,-1\n",
            f"BTC/USDT 15m: negative volume at candle 2024-01-01 00:15 UTC (ts={TS1})",
        ),
        (
            ROW0 + f"{TS1 + 1000},100,101,99,100,1\n",
            f"BTC/USDT 15m: candle at 2024-01-01 00:15 UTC (ts={TS1 + 1000}) is not aligned to the 15m grid",
        ),
    ],
    ids=[
        "text",
        "short-row",
        "nan",
        "high-below-close",
        "low-above-close",
        "unsorted",
        "neg-volume",
        "misaligned",
    ],
)
async def test_bad_file_gives_a_data_error_naming_the_file(tmp_path: Path, body: str, problem: str) -> None:
    """Each broken file raises DataError '<file>: <what>' and the source reports the same line."""
    path = write(tmp_path, "BTC_USDT-15m.csv", HEADER + body)
    with pytest.raises(DataError) as caught:
        read_ohlcv_file(path, "BTC/USDT", "15m")
    message = str(caught.value)
    assert message.startswith(f"{path}: {problem}")
    assert "\n" not in message
    problems = await ReplaySource(tmp_path).open([BTC_15M])
    assert problems == [SourceProblem("BTC/USDT", message, timeframe="15m")]


def test_bad_header_and_empty_file(tmp_path: Path) -> None:
    """A wrong header and a header-only file are DataErrors naming the file."""
    wrong = write(tmp_path, "A_USDT-15m.csv", "ts,o,h,l,c,v\n" + ROW0)
    with pytest.raises(DataError) as caught:
        read_ohlcv_file(wrong, "A/USDT", "15m")
    assert str(caught.value) == (
        f"{wrong}: header is 'ts,o,h,l,c,v', expected timestamp_ms,open,high,low,close,volume"
    )
    empty = write(tmp_path, "B_USDT-15m.csv", HEADER)
    with pytest.warns(UserWarning, match="input contained no data"), pytest.raises(DataError) as caught:
        read_ohlcv_file(empty, "B/USDT", "15m")
    assert str(caught.value) == f"{empty}: no candles"
    corrupt = tmp_path / "C_USDT-15m.csv.gz"
    corrupt.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=f"^{re.escape(str(corrupt))}: cannot read: "):
        read_ohlcv_file(corrupt, "C/USDT", "15m")


async def test_start_end_and_finished(tmp_path: Path) -> None:
    """start_ms is when every series has its warm-up closed; finished once the last candle has closed."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    source, clock = await opened(tmp_path, BTC_15M, BTC_1H)
    assert source.start_ms({BTC_15M: 3}) == T0 + 45 * MIN
    assert source.start_ms({BTC_15M: 3, BTC_1H: 2}) == T0 + 2 * HOUR
    assert source.start_ms({BTC_15M: 500}) == T0 + 2 * HOUR + 15 * MIN  # more than exists: the last close
    assert source.start_ms({SeriesKey("ETH/USDT", "1h"): 5}) is None
    assert source.start_ms({}) is None
    assert source.end_ms() == T0 + 2 * HOUR + 15 * MIN  # the 02:00 15m candle closes last
    clock.set(T0 + 2 * HOUR + 15 * MIN - 1)
    assert source.finished() is False
    clock.set(T0 + 2 * HOUR + 15 * MIN)
    assert source.finished() is True
    await source.close()


async def test_an_end_cuts_every_series_and_finishes_the_replay_there(tmp_path: Path) -> None:
    """With until_ms at 01:20, no candle closing later is served, the replay ends at 01:15, and the
    clock remembers where it first moved; an end before every close is a problem naming the series."""
    write(tmp_path, "BTC_USDT-15m.csv", csv_text(ROWS_15M))
    clock = SimulatedClock(0)
    source = ReplaySource(tmp_path, clock, until_ms=T0 + 80 * MIN)
    before = clock.started_ms
    assert before is None
    assert await source.open([BTC_15M, BTC_1H]) == []
    assert source.end_ms() == T0 + 75 * MIN  # the 01:00 15m candle (the 1h series ends with 00:00)
    clock.set(T0 + 10 * HOUR)
    assert (await source.closed_candles("BTC/USDT", "15m", 100)).ts.tolist() == [
        T0 + i * 15 * MIN for i in range(5)
    ]
    assert (await source.closed_candles("BTC/USDT", "1h", 100)).ts.tolist() == [T0]
    assert source.finished() is True
    assert clock.started_ms == T0 + 10 * HOUR
    clock.set(T0 + 11 * HOUR)
    assert clock.started_ms == T0 + 10 * HOUR
    # Closes in [00:30, 01:00]: 15m candles of 00:15, 00:30, 00:45 and the 1h candle of 00:00.
    assert source.candles_between(T0 + 30 * MIN, T0 + HOUR) == 4
    early = ReplaySource(tmp_path, SimulatedClock(0), until_ms=T0 + 10 * MIN)
    assert await early.open([BTC_15M]) == [
        SourceProblem(
            "BTC/USDT",
            "no BTC/USDT 15m candle closes by 2024-01-01 00:10 UTC in the replay files",
            timeframe="15m",
        )
    ]


async def test_real_btc_15m_aggregated_to_4h_equals_the_real_4h_file(tmp_path: Path) -> None:
    """Aggregating Binance BTC/USDT 15m to 4h reproduces Binance's own 4h file, row for row."""
    fifteen = require_shared_data("binance_spot", "BTC_USDT-15m.csv.gz")
    four = require_shared_data("binance_spot", "BTC_USDT-4h.csv.gz")
    (tmp_path / fifteen.name).symlink_to(fifteen)  # only the 15m file: the source must aggregate
    key = SeriesKey("BTC/USDT", "4h")
    source, clock = await opened(tmp_path, key)
    clock.set(2**62)
    built = await source.closed_candles("BTC/USDT", "4h", 10**6)
    real = load_ohlcv_csv(four)
    common, mine, theirs = np.intersect1d(built.ts, real.ts, return_indices=True)
    # Both cover 2024-01-01 00:00 .. 2024-09-06 00:00 (the 15m file ends inside the 04:00 candle).
    assert built.ts.tolist() == real.ts.tolist()
    assert len(common) == 1_495
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(built, name)[mine], getattr(real, name)[theirs]), name
    np.testing.assert_allclose(built.volume[mine], real.volume[theirs], rtol=1e-9, atol=0)
