"""Benchmarks of liquidation_bot's scan: a whole 50,000-candle history, and one live cycle with a tape.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``.

* The candles-only scan runs once over a whole 50,000-candle series (every bar, as a backtest would):
  the last 50,000 of ``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is
  there, otherwise the bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles; the label
  says how many were used). Only evidence B (flush candles) can fire there.
* The live cycle is what the runner hands the scan each close: the newest ``lookback`` (300) candles of
  the same series, a 500-trade tape and a 20-level order book. The tape is the real ETH/USDT trades of
  ``../shared/market-data/trades/ETH_USDT-trades.csv.gz`` (its last 500), moved in time so that they
  fall in the newest candle's window (their notionals and sides unchanged); the book is a 20-level
  book around the last close. Skipped (no row) when the trades file is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.timing import best_of, load_series
from bots.base import MarketData
from bots.liquidation_bot import LiquidationBot, LiquidationParams
from common.market.extras import BookTop, Trades, read_trades_file
from common.types import Candles

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "market-data"
SHARED_TRADES = SHARED / "trades" / "ETH_USDT-trades.csv.gz"
TAPE = 500


def live_tape(candles: Candles) -> Trades:
    """The real ETH/USDT tape's last 500 trades, shifted into the newest candle's window."""
    real = read_trades_file(SHARED_TRADES, "ETH/USDT")
    last = real.until(int(real.ts[-1]), TAPE)
    shift = int(candles.ts[-1]) + 1_000 - int(last.ts[0])
    span = int(last.ts[-1] - last.ts[0])
    if span >= candles.period_ms - 1_000:
        raise RuntimeError("the tape is longer than one candle")
    return Trades(
        symbol=candles.symbol, ts=last.ts + shift, price=last.price, amount=last.amount, side=last.side
    )


def live_book(candles: Candles, levels: int) -> BookTop:
    """``levels`` levels a side, 0.01 % apart, around the last close; 1 to ``levels`` base units a level."""
    mid = float(candles.close[-1])
    steps = np.arange(1, levels + 1, dtype=np.float64)
    return BookTop(
        symbol=candles.symbol,
        ts=candles.close_time(-1) + 3_000,
        bid_price=mid * (1 - 1e-4 * steps),
        bid_amount=steps,
        ask_price=mid * (1 + 1e-4 * steps),
        ask_amount=steps[::-1].copy(),
    )


def run() -> list[tuple[str, float, str]]:
    """Scan time over up to 50,000 candles; one live cycle with a 500-trade tape and a 20-level book."""
    candles, origin = load_series()
    bot = LiquidationBot()
    params = LiquidationParams.model_validate({})
    data = MarketData(candles=candles)
    setups = len(bot.scan(data, params))
    scan_s = best_of(lambda: bot.scan(data, params), repeats=5)
    rows = [
        (
            f"liquidation_bot scan, one call over {len(candles):,} candles ({origin}), candles only, "
            f"{setups:,} setups ({setups / len(candles) * 100:.2f} % of bars)",
            scan_s * 1e3,
            "ms",
        )
    ]
    if SHARED_TRADES.is_file():
        window = candles.tail(params.lookback)
        live = MarketData(
            candles=window,
            keep_from=len(window) - 1,
            trades=live_tape(window),
            book=live_book(window, params.book_levels),
        )
        live_setups = len(bot.scan(live, params))
        cycle_s = best_of(lambda: bot.scan(live, params), repeats=50)
        rows.append(
            (
                f"liquidation_bot scan, one live cycle: {params.lookback} candles + {TAPE} real trades "
                f"+ {params.book_levels}-level book, {live_setups} setups",
                cycle_s * 1e6,
                "us",
            )
        )
    return rows


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:110s} {value:12.3f} {unit}")
