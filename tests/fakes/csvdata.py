"""Readers for the shared real market history (``../shared/market-data/``) used by the fakes and tests.

The files are CSV or gzip-compressed CSV with one header line. Values are read with numpy's
correctly rounded float parser, so every number equals ``float(text)`` of the file's cell: tests
can assert exact equality between what a fake served and what the file holds.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

# tests/fakes/csvdata.py -> parents[2] is the repository root; the shared folder is its sibling.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "market-data"

OHLCV_HEADER = ("timestamp_ms", "open", "high", "low", "close", "volume")
FUNDING_HEADER = ("timestamp_ms", "funding_rate")
TRADES_HEADER = ("timestamp_ms", "id", "side", "price", "amount", "cost")


@dataclass(frozen=True, eq=False)
class OhlcvArrays:
    """Candles as parallel numpy arrays; ``ts`` is each candle's OPEN time in Unix ms (UTC)."""

    ts: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]

    def __len__(self) -> int:
        """Number of candles."""
        return int(self.ts.shape[0])

    def tail(self, n: int) -> OhlcvArrays:
        """The last ``n`` candles (all of them when ``n`` exceeds the length)."""
        return self.slice(max(len(self) - n, 0), len(self))

    def slice(self, start: int, stop: int) -> OhlcvArrays:
        """Rows ``start:stop`` as a new (view-backed) ``OhlcvArrays``."""
        return OhlcvArrays(
            ts=self.ts[start:stop],
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            close=self.close[start:stop],
            volume=self.volume[start:stop],
        )

    def with_ts(self, ts: NDArray[np.int64]) -> OhlcvArrays:
        """Same prices and volumes under new timestamps (e.g. from ``shift_to_now``)."""
        if ts.shape != self.ts.shape:
            raise ValueError(f"need {self.ts.shape[0]} timestamps, got {ts.shape[0]}")
        return OhlcvArrays(ts, self.open, self.high, self.low, self.close, self.volume)


@dataclass(frozen=True, eq=False)
class FundingArrays:
    """Funding settlements: settlement time in Unix ms and the rate as a fraction per interval."""

    ts: NDArray[np.int64]
    rate: NDArray[np.float64]

    def __len__(self) -> int:
        """Number of settlements."""
        return int(self.ts.shape[0])


@dataclass(frozen=True, eq=False)
class TradesArrays:
    """Public trades: time (ms), exchange id, taker side ("buy"/"sell"), price, base amount, quote cost."""

    ts: NDArray[np.int64]
    id: NDArray[np.str_]
    side: NDArray[np.str_]
    price: NDArray[np.float64]
    amount: NDArray[np.float64]
    cost: NDArray[np.float64]

    def __len__(self) -> int:
        """Number of trades."""
        return int(self.ts.shape[0])


def _read_lines(path: Path, header: tuple[str, ...]) -> list[str]:
    """Data lines of a .csv or .csv.gz file after checking its header names the expected columns."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        text = handle.read()
    lines = text.splitlines()
    if not lines:
        raise ValueError(f"{path}: empty file, expected header {','.join(header)}")
    found = tuple(cell.strip() for cell in lines[0].split(","))
    if found != header:
        raise ValueError(f"{path}: header {','.join(found)!r}, expected {','.join(header)!r}")
    # Blank trailing lines are harmless; anything else malformed should fail loudly in numpy.
    return [line for line in lines[1:] if line.strip()]


def _column_int(lines: list[str], col: int) -> NDArray[np.int64]:
    # Parse integers as integers: going through float64 would be exact for ms timestamps today,
    # but ids and far-future values should not depend on that.
    if not lines:
        return np.empty(0, dtype=np.int64)
    return np.loadtxt(lines, delimiter=",", usecols=(col,), dtype=np.int64, ndmin=1)


def _columns_float(lines: list[str], cols: tuple[int, ...]) -> NDArray[np.float64]:
    if not lines:
        return np.empty((0, len(cols)), dtype=np.float64)
    return np.loadtxt(lines, delimiter=",", usecols=cols, dtype=np.float64, ndmin=2)


def _column_str(lines: list[str], col: int) -> NDArray[np.str_]:
    if not lines:
        return np.empty(0, dtype=np.str_)
    return np.loadtxt(lines, delimiter=",", usecols=(col,), dtype=np.str_, ndmin=1)


def load_ohlcv_csv(path: str | Path) -> OhlcvArrays:
    """Read ``timestamp_ms,open,high,low,close,volume`` (.csv or .csv.gz) into numpy arrays."""
    lines = _read_lines(Path(path), OHLCV_HEADER)
    values = _columns_float(lines, (1, 2, 3, 4, 5))
    return OhlcvArrays(
        ts=_column_int(lines, 0),
        open=np.ascontiguousarray(values[:, 0]),
        high=np.ascontiguousarray(values[:, 1]),
        low=np.ascontiguousarray(values[:, 2]),
        close=np.ascontiguousarray(values[:, 3]),
        volume=np.ascontiguousarray(values[:, 4]),
    )


def load_funding_csv(path: str | Path) -> FundingArrays:
    """Read ``timestamp_ms,funding_rate`` (.csv or .csv.gz) into numpy arrays."""
    lines = _read_lines(Path(path), FUNDING_HEADER)
    return FundingArrays(
        ts=_column_int(lines, 0), rate=np.ascontiguousarray(_columns_float(lines, (1,))[:, 0])
    )


def load_trades_csv(path: str | Path) -> TradesArrays:
    """Read ``timestamp_ms,id,side,price,amount,cost`` (.csv or .csv.gz) into numpy arrays."""
    lines = _read_lines(Path(path), TRADES_HEADER)
    values = _columns_float(lines, (3, 4, 5))
    return TradesArrays(
        ts=_column_int(lines, 0),
        id=_column_str(lines, 1),
        side=_column_str(lines, 2),
        price=np.ascontiguousarray(values[:, 0]),
        amount=np.ascontiguousarray(values[:, 1]),
        cost=np.ascontiguousarray(values[:, 2]),
    )


def require_shared_data(*relative: str) -> Path:
    """Return the shared data folder (or a file in it), skipping the calling test when it is absent.

    The shared history lives beside the repository, not in it; CI provides it, a fresh clone may not.
    """
    target = SHARED_DATA.joinpath(*relative)
    if not target.exists():
        pytest.skip(
            f"shared market data not found at {target} (expected ../shared/market-data beside the repo)"
        )
    return target
