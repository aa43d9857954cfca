"""Replay and live give a strategy the same candles: both sources over one real CSV, bar by bar.

The live source is the real ccxt client against the fake MEXC server, which serves the very file
the replay source reads. At every candle close both are asked for the same window and must answer
with identical arrays, including the real zero-volume placeholders the file has and a hole that
the test cuts into it (filled the same way by both, and shown by neither before a later candle
proves it is a hole).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from common.clock import SimulatedClock
from common.config import ExchangeSettings
from common.market import SeriesKey
from common.market.mexc import MexcSource
from common.market.replay import ReplaySource
from common.ratelimit import RequestBudget
from common.types import Candles
from tests.fakes.csvdata import load_ohlcv_csv, require_shared_data
from tests.fakes.mexc import FakeMexc

pytestmark = pytest.mark.integration

SERIES = "binance_usdm_perp/DOGE_USDT-5m.csv.gz"
PERIOD = 300_000
LOOKBACK = 200
#: Bars compared after the warm-up: the window holds the outage's three zero-volume rows and the cut hole.
BARS = 400


def columns(candles: Candles) -> dict[str, list[float] | list[int] | list[bool]]:
    """Every array of ``candles`` as lists, for an exact comparison with a readable diff."""
    return {
        name: getattr(candles, name).tolist()
        for name in ("ts", "open", "high", "low", "close", "volume", "placeholder")
    }


def cut_window(directory: Path) -> tuple[Path, int, int]:
    """Write part of the real DOGE 5m file around its first zero-volume row, minus one candle.

    Returns the file, the open time of the removed candle and the index of the zero-volume row.
    """
    source = require_shared_data(SERIES)
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    volumes = np.array([float(row.rsplit(",", 1)[1]) for row in rows])
    zero = int(np.flatnonzero(volumes == 0)[0])
    window = rows[zero - LOOKBACK - 100 : zero + BARS - 100]
    hole_index = LOOKBACK + 150  # well after the warm-up, while the zero-volume row is in view
    hole_ts = int(window[hole_index].split(",", 1)[0])
    del window[hole_index]
    path = directory / "DOGE_USDT-5m.csv"
    path.write_text("\n".join([header, *window]) + "\n", encoding="utf-8")
    return path, hole_ts, LOOKBACK + 100


async def test_replay_serves_what_live_would_have_served_at_every_close(tmp_path: Path) -> None:
    """At each of 400 closes, replay and live (ccxt via the fake, same file) give identical candles."""
    path, hole_ts, _ = cut_window(tmp_path)
    arrays = load_ohlcv_csv(path)
    live_clock = SimulatedClock(0)
    replay_clock = SimulatedClock(0)
    fake = FakeMexc(now_ms=live_clock.now_ms)
    fake.add_spot("DOGEUSDT", "DOGE", "USDT", price_tick="0.00001")
    fake.add_candles(
        "DOGEUSDT", "spot", "5m", arrays.ts, arrays.open, arrays.high, arrays.low, arrays.close, arrays.volume
    )
    key = SeriesKey("DOGE/USDT", "5m")
    replay = ReplaySource(tmp_path, replay_clock)
    assert await replay.open([key]) == []
    start = replay.start_ms({key: LOOKBACK})
    assert start is not None
    async with fake:
        live = MexcSource(
            ExchangeSettings(timeout_ms=2000),
            live_clock,
            base_url=fake.base_url,
            budget=RequestBudget("test", 1000.0),  # the parity, not the pacing, is under test
        )
        try:
            assert await live.open([key]) == []
            placeholders_seen = hole_filled_seen = 0
            for bar in range(BARS - 1):
                now = start + bar * PERIOD + 3_000  # a few seconds after the close, as the runner wakes
                live_clock.set(now)
                replay_clock.set(now)
                got_live = await live.closed_candles(key.symbol, key.timeframe, LOOKBACK)
                got_replay = await replay.closed_candles(key.symbol, key.timeframe, LOOKBACK)
                assert columns(got_live) == columns(got_replay), f"bar {bar} at {now}"
                placeholders_seen += bool(got_live.placeholder.any())
                hole_filled_seen += bool(hole_ts in got_live.ts.tolist())
        finally:
            await live.close()
    # The comparison covered the interesting parts, not only clean stretches.
    assert placeholders_seen > 100
    assert hole_filled_seen > 100
