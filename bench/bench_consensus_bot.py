"""Benchmarks of consensus_bot's scan over a 50,000-candle real series with the fleet's own signals.

``run()`` returns (metric, value, unit) rows for ``python -m bench``. Timings are the best of several
runs with ``time.perf_counter``. The candles are the last 50,000 of
``../shared/market-data/binance_usdm_perp/BTC_USDT-1h.csv.gz`` when that file is there, otherwise the
bundled ``data/sample/BTC_USDT-15m.csv.gz`` (about 24,000 candles); the label says which and how many.

The peers are what the fleet's candle-only strategies (psar, most, mtf, candlestick, strat, volume,
fib_swing, fib_reversal, orb, volume_profile; default parameters, each bot's risk block from
global_config.json) emit on the same series, each signal created at its bar's close as in a replay;
generating them is not timed. Two scans are timed: one call over every bar (a backtest), and the
runner's per-cycle call (the last ``lookback`` candles with the peers ``needs`` asks for).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from bench.timing import best_of, load_series
from bots.base import MarketData, Strategy
from bots.candlestick_bot import CandlestickBot
from bots.consensus_bot import ConsensusBot, ConsensusParams
from bots.fib_reversal_bot import FibReversalBot
from bots.fib_swing_bot import FibSwingBot
from bots.most_bot import MostBot
from bots.mtf_bot import MtfBot
from bots.orb_bot import OrbBot
from bots.psar_bot import PsarBot
from bots.strat_bot import StratBot
from bots.volume_bot import VolumeBot
from bots.volume_profile_bot import VolumeProfileBot
from common.market.replay import aggregate
from common.runner import signal_id
from common.types import Candles, Signal
from tp_sl_calculator import LevelsRejected, RiskSettings, calculate_levels

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "global_config.json"
PEER_BOTS: tuple[Strategy[Any], ...] = (
    PsarBot(),
    MostBot(),
    MtfBot(),
    CandlestickBot(),
    StratBot(),
    VolumeBot(),
    FibSwingBot(),
    FibReversalBot(),
    OrbBot(),
    VolumeProfileBot(),
)


def peer_signals(series: Candles) -> tuple[Signal, ...]:
    """The peers' signals on ``series`` with levels by their risk blocks, created at their bar's close."""
    config = json.loads(CONFIG.read_text())
    global_risk = RiskSettings.model_validate(config.get("risk", {}))
    signals: list[Signal] = []
    for bot in PEER_BOTS:
        params = bot.params_model.model_validate({})
        try:
            needs = bot.needs(params, series.timeframe)
        except ValueError:
            continue  # its parameters do not fit this timeframe
        others = {tf: aggregate(series, tf) for tf in needs.extra_timeframes}
        risk = global_risk.merged(config.get("bots", {}).get(bot.name, {}).get("risk", {}))
        for setup in bot.scan(MarketData(candles=series, other_timeframes=others), params):
            try:
                levels = calculate_levels(setup, risk)
            except LevelsRejected:
                continue
            signals.append(
                Signal(
                    id=signal_id(
                        bot.name, series.symbol, series.timeframe, setup.bar_ts, setup.direction.value
                    ),
                    bot=bot.name,
                    symbol=series.symbol,
                    timeframe=series.timeframe,
                    direction=setup.direction,
                    levels=levels,
                    reason=setup.reason,
                    bar_ts=setup.bar_ts,
                    created_ms=setup.bar_ts + series.period_ms,
                )
            )
    return tuple(sorted(signals, key=lambda s: s.created_ms))


def run() -> list[tuple[str, float, str]]:
    """consensus_bot scan time over every bar and per runner cycle; setups and peers counted."""
    candles, origin = load_series()
    peers = peer_signals(candles)
    bot = ConsensusBot()
    params = ConsensusParams.model_validate({})
    data = MarketData(candles=candles, peer_signals=peers)
    setups = bot.scan(data, params)
    updates = sum(bool(s.context["update"]) for s in setups)
    scan_s = best_of(partial(bot.scan, data, params), repeats=5)

    needs = bot.needs(params, candles.timeframe)
    now = candles.close_time(-1)
    recent = tuple(s for s in peers if now - needs.peer_signals_ms < s.created_ms <= now)
    cycle = MarketData(
        candles=candles.tail(needs.lookback), peer_signals=recent, keep_from=needs.lookback - 1
    )
    cycle_s = best_of(partial(bot.scan, cycle, params), repeats=200)
    return [
        (
            f"consensus_bot scan, one call over {len(candles):,} candles ({origin}) and {len(peers):,} peer "
            f"signals, {len(setups):,} setups ({updates:,} updates)",
            scan_s * 1e3,
            "ms",
        ),
        (
            f"consensus_bot scan, one runner cycle ({needs.lookback} candles, {len(recent)} peer signals)",
            cycle_s * 1e6,
            "us",
        ),
    ]


if __name__ == "__main__":
    for name, value, unit in run():
        print(f"{name:120s} {value:12.3f} {unit}")
