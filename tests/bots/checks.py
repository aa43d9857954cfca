"""Checks every strategy's tests share: real series, no look-ahead at random cut points, firing rate.

DESIGN.md asks of every strategy that its result for bar t depends only on bars <= t, checked by
running it on the first t bars and on all bars; and issue 6 that on a whole real series it fires at
least once and on less than 5 % of bars.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

from common.types import Candles, Setup
from tests.fakes.csvdata import load_ohlcv_csv, require_shared_data

#: What a test scans with: a series in, every setup out (the strategy's scan with fixed params).
Scan = Callable[[Candles], Sequence[Setup]]


@cache
def real(relative: str, rows: int | None = None, *, last: bool = False) -> Candles:
    """A ``../shared/market-data`` file as Candles: all rows, its first ``rows``, or (``last``) its last."""
    path = require_shared_data(*relative.split("/"))
    data = load_ohlcv_csv(path)
    if rows is not None:
        data = data.slice(len(data) - rows, len(data)) if last else data.slice(0, rows)
    name = path.name.removesuffix(".csv.gz")
    symbol, timeframe = name.split("-")
    return Candles(
        symbol=symbol.replace("_", "/"),
        timeframe=timeframe,
        ts=data.ts.copy(),
        open=data.open.copy(),
        high=data.high.copy(),
        low=data.low.copy(),
        close=data.close.copy(),
        volume=data.volume.copy(),
    )


def assert_no_look_ahead(
    scan: Scan,
    series: Candles,
    *,
    cuts: int = 50,
    seed: int = 20240101,
    first_cut: int = 40,
    min_nonempty: int = 10,
) -> None:
    """Scanning the first t bars gives exactly the full scan's setups up to bar t-1, at ``cuts`` cut points.

    Half the cut points land right after a bar where the full scan fired (so setups are compared,
    not only empty lists), half at random; every partial scan must equal the full scan's prefix.
    """
    everything = list(scan(series))
    index_of = {int(ts): i for i, ts in enumerate(series.ts)}
    fired = sorted({index_of[s.bar_ts] + 1 for s in everything if index_of[s.bar_ts] + 1 >= first_cut})
    assert len(fired) >= min_nonempty, f"only {len(fired)} bars with setups: pick a longer series"
    rng = np.random.default_rng(seed)
    on_signals = rng.choice(fired, size=min(cuts // 2, len(fired)), replace=False).tolist()
    at_random = rng.choice(np.arange(first_cut, len(series) + 1), size=cuts - len(on_signals), replace=False)
    compared_nonempty = 0
    for t in (*on_signals, *at_random.tolist()):
        last_ts = int(series.ts[t - 1])
        partial = list(scan(series.head(t)))
        expected = [s for s in everything if s.bar_ts <= last_ts]
        assert partial == expected, f"cut at bar {t}: the scan of the first {t} bars differs"
        compared_nonempty += any(s.bar_ts == last_ts for s in expected)
    assert compared_nonempty >= min(min_nonempty, len(on_signals))


def assert_fires_rarely(setups: Sequence[Setup], series: Candles, *, at_most: float = 0.05) -> None:
    """At least one setup, on fewer than ``at_most`` of the bars, each on a bar of the series."""
    bars = {int(s.bar_ts) for s in setups}
    assert bars <= set(series.ts.tolist())
    assert 1 <= len(bars) < at_most * len(series), f"{len(bars)} bars with setups out of {len(series)}"


def with_placeholders(series: Candles, *bars: int) -> Candles:
    """``series`` with the bars at ``bars`` flagged as exchange placeholder candles."""
    flags = np.zeros(len(series), dtype=np.bool_)
    flags[list(bars)] = True
    return Candles(
        symbol=series.symbol,
        timeframe=series.timeframe,
        ts=series.ts,
        open=series.open,
        high=series.high,
        low=series.low,
        close=series.close,
        volume=series.volume,
        placeholder=flags,
    )
