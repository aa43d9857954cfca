"""Replay source: history files in the ``../shared/market-data`` format, on a simulated clock.

File names are ``BASE_QUOTE-TIMEFRAME.csv`` or ``.csv.gz`` with the header
``timestamp_ms,open,high,low,close,volume`` (open times in ms, UTC). A perpetual symbol
``BTC/USDT:USDT`` reads the same ``BTC_USDT-...`` name: the folder decides the venue.

When the exact timeframe has no file, the finest file whose timeframe divides it is aggregated
(e.g. 15m -> 1h), dropping an incomplete first or last group (weeks start on Monday). At any
simulated time the source serves exactly the candles whose close time has passed, as the live
source does.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from common.clock import SimulatedClock
from common.errors import DataError
from common.market import MarketInfo, SeriesKey
from common.market.validate import build_candles
from common.types import Candles, IntArray, timeframe_ms

#: Timeframes that a replay file may exist in, finest first (used to aggregate a missing one).
_FILE_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d")


def file_stem(symbol: str) -> str:
    """'BTC/USDT' and 'BTC/USDT:USDT' -> 'BTC_USDT', the stem of their replay files."""
    return symbol.split(":", 1)[0].replace("/", "_")


def find_file(directory: Path, symbol: str, timeframe: str) -> Path | None:
    """The replay file of a series, ``.csv.gz`` preferred over ``.csv``, or None."""
    for suffix in (".csv.gz", ".csv"):
        candidate = directory / f"{file_stem(symbol)}-{timeframe}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_ohlcv_file(path: Path, symbol: str, timeframe: str) -> Candles:
    """Read and validate one OHLCV file; raise ``DataError`` naming the file and what is wrong."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            header = handle.readline().strip()
            if header.split(",")[:6] != ["timestamp_ms", "open", "high", "low", "close", "volume"]:
                raise DataError(
                    f"{path}: header is {header!r}, expected timestamp_ms,open,high,low,close,volume"
                )
            table = np.loadtxt(handle, delimiter=",", usecols=range(6), ndmin=2, dtype=np.float64)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise DataError(f"{path}: malformed row: {str(exc).splitlines()[0]}") from None
    if table.shape[0] == 0:
        raise DataError(f"{path}: no candles")
    ts = table[:, 0].astype(np.int64)
    return build_candles(
        symbol,
        timeframe,
        ts,
        table[:, 1].copy(),
        table[:, 2].copy(),
        table[:, 3].copy(),
        table[:, 4].copy(),
        table[:, 5].copy(),
        where=str(path),
    )


def aggregate(candles: Candles, timeframe: str) -> Candles:
    """Aggregate ``candles`` into the coarser ``timeframe``; an incomplete first or last group is dropped."""
    source_ms, target_ms = candles.period_ms, timeframe_ms(timeframe)
    if target_ms % source_ms:
        raise DataError(f"cannot build {timeframe} candles from {candles.timeframe} candles")
    # Weeks start on Monday 00:00 UTC (1970-01-05), as on exchanges, not on the epoch's Thursday.
    offset = 4 * 86_400_000 if timeframe == "1w" else 0
    groups = candles.ts - (candles.ts - offset) % target_ms
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    counts = np.diff(np.r_[starts, len(candles)])
    ends = starts + counts - 1
    # A first group that starts mid-period (data beginning at 00:30 for 1h) and a last one that is
    # still forming are incomplete: neither is a candle the exchange would show.
    if counts.size and counts[-1] < target_ms // source_ms:
        starts, ends, counts = starts[:-1], ends[:-1], counts[:-1]
    if counts.size and counts[0] < target_ms // source_ms:
        starts, ends = starts[1:], ends[1:]
    if starts.size == 0:
        raise DataError(
            f"{candles.symbol}: not one complete {timeframe} candle in the {candles.timeframe} data"
        )
    bounds = np.r_[starts, ends[-1] + 1]
    return Candles(
        symbol=candles.symbol,
        timeframe=timeframe,
        ts=groups[starts],
        open=candles.open[starts],
        high=np.maximum.reduceat(candles.high[: bounds[-1]], starts),
        low=np.minimum.reduceat(candles.low[: bounds[-1]], starts),
        close=candles.close[ends],
        volume=np.add.reduceat(candles.volume[: bounds[-1]], starts),
    )


class ReplaySource:
    """Serves history files as if live, on a :class:`SimulatedClock` the runner advances."""

    def __init__(self, directory: Path, clock: SimulatedClock | None = None) -> None:
        self.directory = directory
        self.clock = clock or SimulatedClock(0)
        self._series: dict[SeriesKey, Candles] = {}
        self._close_times: dict[SeriesKey, IntArray] = {}

    async def open(self, series: list[SeriesKey]) -> dict[str, str]:
        """Load every series; return {symbol: problem} for those without usable files."""
        if not self.directory.is_dir():
            return {key.symbol: f"replay directory {self.directory} does not exist" for key in series}
        problems: dict[str, str] = {}
        for key in series:
            try:
                candles = self._load(key)
            except DataError as exc:
                problems[key.symbol] = str(exc)
                continue
            self._series[key] = candles
            self._close_times[key] = candles.ts + candles.period_ms
        return problems

    def _load(self, key: SeriesKey) -> Candles:
        exact = find_file(self.directory, key.symbol, key.timeframe)
        if exact is not None:
            return read_ohlcv_file(exact, key.symbol, key.timeframe)
        target = timeframe_ms(key.timeframe)
        for finer in _FILE_TIMEFRAMES:
            if timeframe_ms(finer) < target and target % timeframe_ms(finer) == 0:
                path = find_file(self.directory, key.symbol, finer)
                if path is not None:
                    return aggregate(read_ohlcv_file(path, key.symbol, finer), key.timeframe)
        raise DataError(
            f"no replay file for {key.symbol} {key.timeframe} in {self.directory} "
            f"(looked for {file_stem(key.symbol)}-{key.timeframe}.csv[.gz] or a finer timeframe)"
        )

    def market(self, symbol: str) -> MarketInfo:
        """Replay files carry no tick size; prices are shown unrounded."""
        return MarketInfo(symbol=symbol, kind="swap" if ":" in symbol else "spot", tick_size=None)

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` candles whose close time is at or before the simulated now."""
        key = SeriesKey(symbol, timeframe)
        candles = self._series[key]
        end = int(np.searchsorted(self._close_times[key], self.clock.now_ms(), side="right"))
        return candles.slice(max(0, end - limit), end)

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """The first time at which every loaded series has its warm-up bars closed."""
        starts = [
            int(self._close_times[key][min(bars, len(self._series[key])) - 1])
            for key, bars in warmup_bars.items()
            if key in self._series
        ]
        return max(starts) if starts else None

    def end_ms(self) -> int:
        """Close time of the newest candle of any series."""
        return max((int(times[-1]) for times in self._close_times.values()), default=0)

    def finished(self) -> bool:
        """True once the clock has passed the last candle of every series."""
        return self.clock.now_ms() >= self.end_ms()

    async def close(self) -> None:
        """Nothing to release."""
