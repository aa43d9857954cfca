"""Replay source: history files in the ``../shared/market-data`` format, on a simulated clock.

File names are ``BASE_QUOTE-TIMEFRAME.csv`` or ``.csv.gz`` with the header
``timestamp_ms,open,high,low,close,volume`` (open times in ms, UTC). A perpetual symbol
``BTC/USDT:USDT`` reads the same ``BTC_USDT-...`` name: the folder decides the venue.

When the exact timeframe has no file, the coarsest file whose timeframe divides it is aggregated
(15m rather than 5m for 1h: fewer rows to read, and a short 5m file does not shorten the 1h
series), dropping an incomplete first or last group (weeks start on Monday). At any
simulated time the source serves exactly the candles whose close time has passed, as the live
source does. An optional end (``until_ms``, a backtest's ``--to``) cuts every series at load: no
candle closing later is ever served, and the replay is finished at the last one that closes by then.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from common.clock import SimulatedClock, utc_text
from common.errors import DataError
from common.logging_config import get_logger
from common.market import ExtrasNeed, MarketInfo, SeriesKey, SourceProblem, SymbolExtras
from common.market.extras import (
    FundingRates,
    Ticker24h,
    Trades,
    read_funding_file,
    read_trades_file,
)
from common.market.files import file_stem, find_named
from common.market.series import fill_gaps
from common.market.validate import build_candles
from common.types import Candles, IntArray, timeframe_ms, timeframe_offset_ms

log = get_logger(__name__)

DAY_MS = 86_400_000

#: Timeframes that a replay file may exist in, finest first (used to aggregate a missing one).
FILE_TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "4h", "8h", "1d")


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
    offset = timeframe_offset_ms(timeframe)
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
    """Serves history files as if live, on a :class:`SimulatedClock` the runner advances.

    ``directories`` are searched in order for each file, so candles, funding and trades may live in
    separate folders (as in ``../shared/market-data``). There is no order book in history files:
    ``extras`` gives None for it, and for trades when a symbol has no trade file (a missing funding
    file is a problem at ``open``: a funding strategy has nothing else to go on). The 24 h ticker is
    computed from the finest loaded series.
    """

    def __init__(
        self,
        directories: Path | Sequence[Path],
        clock: SimulatedClock | None = None,
        *,
        until_ms: int | None = None,
    ) -> None:
        self.directories = [directories] if isinstance(directories, Path) else list(directories)
        self.clock = clock or SimulatedClock(0)
        # The end of the replay: candles closing after it are dropped when the files are loaded.
        self.until_ms = until_ms
        self._series: dict[SeriesKey, Candles] = {}
        self._close_times: dict[SeriesKey, IntArray] = {}
        self._real_end: dict[SeriesKey, IntArray] = {}
        self._funding: dict[str, FundingRates] = {}
        self._no_funding: set[str] = set()
        self._trades: dict[str, Trades] = {}

    @property
    def directory(self) -> Path:
        """The first directory (where candle files usually are)."""
        return self.directories[0]

    async def open(
        self, series: list[SeriesKey], extras: Mapping[str, ExtrasNeed] | None = None
    ) -> list[SourceProblem]:
        """Load every series and extras file; a one-line problem for each that cannot be served."""
        absent = [d for d in self.directories if not d.is_dir()]
        if absent:
            text = f"replay directory {absent[0]} does not exist"
            return [SourceProblem(symbol, text) for symbol in dict.fromkeys(key.symbol for key in series)]
        problems: list[SourceProblem] = []
        for key in series:
            try:
                candles, filled = fill_gaps(self._load(key))
                candles = self._cut(key, candles)
            except DataError as exc:
                problems.append(SourceProblem(key.symbol, str(exc), timeframe=key.timeframe))
                continue
            if filled.size:
                # The live source fills the same holes the same way: both serve identical series.
                log.info(
                    "replay data has missing candles; filled with placeholders",
                    symbol=key.symbol,
                    timeframe=key.timeframe,
                    count=int(filled.size),
                )
            self._series[key] = candles
            self._close_times[key] = candles.ts + candles.period_ms
            # For each row, one past the newest REAL candle at or before it: a filled hole at the
            # end of the served window is not shown, since live the hole is only known (and
            # filled) once a later candle has arrived.
            real = ~np.isin(candles.ts, filled)
            self._real_end[key] = np.maximum.accumulate(np.where(real, np.arange(len(candles)) + 1, 0))
        for symbol, need in (extras or {}).items():
            try:
                self._load_extras(symbol, need)
            except DataError as exc:
                problems.append(SourceProblem(symbol, str(exc), extras=True))
        return problems

    def _cut(self, key: SeriesKey, candles: Candles) -> Candles:
        """``candles`` without those closing after ``until_ms``; DataError when none is left."""
        if self.until_ms is None:
            return candles
        keep = int(np.searchsorted(candles.ts + candles.period_ms, self.until_ms, side="right"))
        if keep == 0:
            until = utc_text(self.until_ms)
            raise DataError(f"no {key.symbol} {key.timeframe} candle closes by {until} in the replay files")
        return candles.slice(0, keep)

    def candles_between(self, start_ms: int, end_ms: int) -> int:
        """How many candles of the loaded series close in [``start_ms``, ``end_ms``]: the candles a
        replay over that span hands to its bots (a backtest reports its speed per candle)."""
        return sum(
            int(np.searchsorted(times, end_ms, side="right") - np.searchsorted(times, start_ms, side="left"))
            for times in self._close_times.values()
        )

    def _first(self, name: str) -> Path | None:
        """The first ``name.csv.gz`` / ``name.csv`` in the directories, in order."""
        for directory in self.directories:
            found = find_named(directory, name)
            if found is not None:
                return found
        return None

    def _load_extras(self, symbol: str, need: ExtrasNeed) -> None:
        if need.funding:
            self._funding[symbol] = read_funding_file(self._require(symbol, "funding_rate"), symbol)
        if need.trades:
            # Trade files are rare in history: without one the bot runs on its candle evidence
            # (it gets ``trades=None``, as with the order book, which no history has).
            path = self._first(f"{file_stem(symbol)}-trades")
            if path is None:
                log.info("no trades file for the replay; the bots see no trades", symbol=symbol)
            else:
                self._trades[symbol] = read_trades_file(path, symbol)

    def _require(self, symbol: str, kind: str) -> Path:
        path = self._first(f"{file_stem(symbol)}-{kind}")
        if path is None:
            where = ", ".join(str(d) for d in self.directories)
            raise DataError(
                f"no {kind} file for {symbol} in {where} (looked for {file_stem(symbol)}-{kind}.csv[.gz])"
            )
        return path

    def _load(self, key: SeriesKey) -> Candles:
        stem = file_stem(key.symbol)
        exact = self._first(f"{stem}-{key.timeframe}")
        if exact is not None:
            return read_ohlcv_file(exact, key.symbol, key.timeframe)
        target = timeframe_ms(key.timeframe)
        for finer in reversed(FILE_TIMEFRAMES):
            if timeframe_ms(finer) < target and target % timeframe_ms(finer) == 0:
                path = self._first(f"{stem}-{finer}")
                if path is not None:
                    return aggregate(read_ohlcv_file(path, key.symbol, finer), key.timeframe)
        where = ", ".join(str(d) for d in self.directories)
        raise DataError(
            f"no replay file for {key.symbol} {key.timeframe} in {where} "
            f"(looked for {file_stem(key.symbol)}-{key.timeframe}.csv[.gz] or a finer timeframe)"
        )

    async def funding_since(self, symbol: str, since_ms: int) -> FundingRates | None:
        """Settlements up to the simulated now from the symbol's funding file, if the folders have one.

        Loaded on first use: a replay of a perpetual without a funding file tracks its signals
        without funding (the P&L says funding unknown) instead of refusing the symbol.
        """
        if ":" not in symbol:
            return None
        if symbol not in self._funding and symbol not in self._no_funding:
            path = self._first(f"{file_stem(symbol)}-funding_rate")
            if path is None:
                self._no_funding.add(symbol)
                log.info("no funding file for the replay; P&L without funding", symbol=symbol)
            else:
                self._funding[symbol] = read_funding_file(path, symbol)
        rates = self._funding.get(symbol)
        return None if rates is None else rates.until(self.clock.now_ms())

    def breakers(self) -> Mapping[str, str]:
        """Files have no circuit breakers."""
        return {}

    def market(self, symbol: str) -> MarketInfo:
        """Replay files carry no tick size; prices are shown unrounded."""
        return MarketInfo(symbol=symbol, kind="swap" if ":" in symbol else "spot", tick_size=None)

    async def closed_candles(self, symbol: str, timeframe: str, limit: int) -> Candles:
        """The newest ``limit`` candles whose close time is at or before the simulated now."""
        key = SeriesKey(symbol, timeframe)
        candles = self._series[key]
        end = int(np.searchsorted(self._close_times[key], self.clock.now_ms(), side="right"))
        if end:
            end = int(self._real_end[key][end - 1])
        return candles.slice(max(0, end - limit), end)

    async def extras(self, symbol: str, need: ExtrasNeed) -> SymbolExtras:
        """Funding settlements and trades up to the simulated now; a ticker from the candles; no book."""
        now = self.clock.now_ms()
        funding = self._funding[symbol].until(now).last(need.funding) if need.funding else None
        tape = self._trades.get(symbol)
        trades = tape.until(now, need.trades) if need.trades and tape is not None else None
        ticker = self._ticker(symbol, now) if need.ticker else None
        return SymbolExtras(funding=funding, trades=trades, book=None, ticker=ticker)

    def _ticker(self, symbol: str, now: int) -> Ticker24h | None:
        """24 h statistics from the finest loaded series of ``symbol``: the candles closed in the last day."""
        keys = sorted(
            (k for k in self._series if k.symbol == symbol), key=lambda k: timeframe_ms(k.timeframe)
        )
        if not keys or timeframe_ms(keys[0].timeframe) > DAY_MS:
            return None
        key = keys[0]
        close_times = self._close_times[key]
        end = int(np.searchsorted(close_times, now, side="right"))
        start = int(np.searchsorted(close_times, now - DAY_MS, side="right"))
        if end == 0 or start >= end:
            return None
        day = self._series[key].slice(start, end)
        first_open, last = float(day.open[0]), float(day.close[-1])
        return Ticker24h(
            symbol=symbol,
            ts=now,
            last=last,
            bid=None,
            ask=None,
            base_volume=float(day.volume.sum()),
            quote_volume=float((day.volume * (day.high + day.low + day.close) / 3).sum()),
            change_pct=(last / first_open - 1) * 100,
        )

    def start_ms(self, warmup_bars: dict[SeriesKey, int]) -> int | None:
        """The first time at which every loaded series has its warm-up bars closed.

        A series shorter than its warm-up is reported: the replay then starts at its last candle and
        would otherwise end at once without a word.
        """
        starts = []
        for key, bars in warmup_bars.items():
            if key not in self._series:
                continue
            have = len(self._series[key])
            if have < bars:
                log.warning(
                    "replay series shorter than its warm-up; the replay starts at its end",
                    symbol=key.symbol,
                    timeframe=key.timeframe,
                    candles=have,
                    warmup=bars,
                )
            starts.append(int(self._close_times[key][min(bars, have) - 1]))
        return max(starts) if starts else None

    def end_ms(self) -> int:
        """Close time of the newest candle of any series."""
        return max((int(times[-1]) for times in self._close_times.values()), default=0)

    def finished(self) -> bool:
        """True once the clock has passed the last candle of every series."""
        return self.clock.now_ms() >= self.end_ms()

    async def close(self) -> None:
        """Nothing to release."""
