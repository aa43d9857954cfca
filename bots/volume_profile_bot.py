"""volume_profile_bot: the close crossing a level of the volume profile between the last two swing pivots.

Rule (on each closed candle t):

* Swing pivots of ``pivot_lookback`` bars each side (:func:`common.pivots.swing_pivots`: a bar whose
  high is the highest, or whose low is the lowest, of the ``2 x pivot_lookback + 1`` bars around it).
  A pivot is known only once the ``pivot_lookback`` bars after it have closed, so bar t uses the
  pivots confirmed at or before t: no look-ahead.
* The **profile**: :func:`volume_profile.calculate_volume_profile` with ``profile_rows`` rows and a
  ``value_area_pct`` % value area over the candles from the earlier to the later of the last two
  pivots known at t (both pivot bars included). It gives the POC (the midpoint of the row with the
  most volume), VAH and VAL. The profile changes only when a new pivot is confirmed, so it is computed
  once per pivot pair, not per bar.
* A **cross**: the close crosses a level L (POC, VAH or VAL) of the profile in force at t.
  Up: ``close[t-1] <= L < close[t]`` -> LONG; down: ``close[t-1] >= L > close[t]`` -> SHORT. A bar's
  closes move one way only, so all the levels it crosses point the same way: one setup naming them.
* **Volume**: with ``require_high_volume`` (default true) only on a high-volume bar, ``volume[t] >
  volume_factor x SMA(volume, volume_sma_period)[t]`` (TA-Lib SMA, bar t included). The ratio is in
  the context either way.
* Entry is the close of t. Risk = max(``risk_va_fraction`` x (VAH - VAL), ``min_risk_pct`` % of entry);
  the stop is entry - risk (LONG) or entry + risk (SHORT). The targets come from ``tp_sl_calculator``
  with the risk block ``{"sl_method": "structure", "tp_method": "r", "tp_multiples": [1.2, 1.8],
  "min_rr": 1.1}``: TP1 at 1.2 R, TP2 at 1.8 R.

Each setup's ``context``: ``poc``, ``vah``, ``val`` (10 significant digits), ``crossed`` (the levels in
the order the price met them, e.g. ``"POC,VAH"``), ``volume_ratio`` (volume / SMA, 3 decimals),
``pivot_1`` / ``pivot_2`` (the older and newer pivot's price) with ``pivot_1_kind`` / ``pivot_2_kind``
(``"high"`` / ``"low"``), ``profile_bars`` and ``risk``. Its ``key_points``: the two pivots ("pivot
high" / "pivot low" at their bars), then the POC, VAH and VAL at the signal bar.

Parameters (``bots.volume_profile_bot.params``), with defaults: pivot_lookback 20, profile_rows 25,
value_area_pct 70, require_high_volume true, volume_sma_period 89, volume_factor 1.618,
risk_va_fraction 0.5, min_risk_pct 0.2, lookback 400 (bars of history per scan; at least the SMA
period and 2 x pivot_lookback + 2). Every input depends on a bounded window only (a pivot on
2 x pivot_lookback + 1 bars, the SMA on its period, the profile on the bars between two pivots), so a
scan of the last ``lookback`` bars gives the setups of a scan of all history as long as the older
pivot of the pair in force and the ``pivot_lookback`` bars before it fit in the window: on years of
BTC, ETH and DOGE data from 5m to 4h that pivot was at most 262 bars back (282 with its left side),
and last-400-bar scans matched full scans on every bar tried.

Never a signal: on a placeholder bar, while fewer than two pivots are known, where the volume SMA is
not defined yet (its first ``volume_sma_period - 1`` bars) or is zero, or where the profile has no
volume (only placeholder candles between the pivots). A LONG whose stop would be at or below zero
(a profile far taller than the price) is dropped too: no stop, no setup.

Where it differs from the rule as stated:

* Ties of equal highs or lows are settled in :mod:`common.pivots` (the first bar of a flat top is the
  pivot), the rule did not say.
* The cross compares both closes with the levels in force at t: when a new pivot moves the profile,
  a close that moved through a NEW level counts, one that merely finds itself on the other side of a
  level it never crossed (the level jumped, the price did not) does not. A close exactly on the level
  the bar before counts as below (up-cross) or above (down-cross), as Pine's ``ta.crossover`` does,
  so a close that stalls on a level and then leaves it is not missed.
* The volume SMA must be defined even with ``require_high_volume`` off: the ratio is part of every
  setup's context, and "never fire where an input is NaN".
* ``require_high_volume`` defaults to true: without it the closes cross one of the three levels on
  7 to 13 % of the bars of real 15m, 1h and 4h series (above the fleet's 5 % ceiling: a level cross
  alone is noise), with it on 1.4 to 3 %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import talib
from pydantic import Field, model_validator

from bots.base import DataNeeds, MarketData, StrategyParams
from common.pivots import HIGH, BoolArray, Pivots, known_counts, swing_pivots
from common.prices import format_price
from common.types import Candles, Direction, FloatArray, KeyPoint, Setup
from volume_profile import calculate_volume_profile

#: The profile's levels, in the order the columns of the level matrix hold them (ascending price
#: for a normal profile: an up-cross names them in this order, a down-cross in reverse).
LEVELS = ("VAL", "POC", "VAH")


class VolumeProfileParams(StrategyParams):
    """volume_profile_bot's parameters (see the module docstring)."""

    pivot_lookback: int = Field(20, ge=1, le=200)
    profile_rows: int = Field(25, ge=2, le=200)
    value_area_pct: float = Field(70.0, gt=0, le=100)
    require_high_volume: bool = True
    volume_sma_period: int = Field(89, ge=2, le=1_000)
    volume_factor: float = Field(1.618, gt=0, le=100)
    risk_va_fraction: float = Field(0.5, gt=0, le=10)
    min_risk_pct: float = Field(0.2, gt=0, le=50)
    lookback: int = Field(400, ge=50, le=10_000)

    @model_validator(mode="after")
    def _lookback_covers_the_indicators(self) -> VolumeProfileParams:
        needed = max(self.volume_sma_period, 2 * self.pivot_lookback + 2)
        if self.lookback < needed:
            raise ValueError(
                f"lookback {self.lookback} is too short: the volume SMA and two confirmed pivots need "
                f"at least {needed} bars"
            )
        return self


def pair_levels(c: Candles, pivots: Pivots, pairs: Sequence[int], params: VolumeProfileParams) -> FloatArray:
    """Row k: (VAL, POC, VAH) of the profile from pivot k - 1's bar to pivot k's, for each k of ``pairs``.

    The other rows, and profiles without volume (only placeholder candles between the pivots), are NaN.
    """
    levels = np.full((len(pivots), len(LEVELS)), np.nan)
    for k in pairs:
        window = c.slice(int(pivots.index[k - 1]), int(pivots.index[k]) + 1)
        if float(window.volume.sum()) <= 0:
            continue
        profile = calculate_volume_profile(
            window, rows=params.profile_rows, value_area_pct=params.value_area_pct
        )
        levels[k] = (profile.val, profile.poc_price, profile.vah)
    return levels


def _sig(value: float) -> float:
    """A derived price (profile edge, risk) to 10 significant digits, without float noise."""
    return float(f"{value:.10g}")


def _pivot_point(c: Candles, pivots: Pivots, k: int) -> KeyPoint:
    label = "pivot high" if int(pivots.kind[k]) == HIGH else "pivot low"
    return KeyPoint(ts=int(c.ts[int(pivots.index[k])]), price=float(pivots.price[k]), label=label)


def _named_prices(names: Sequence[str], prices: Sequence[float]) -> str:
    """'POC 101.50', 'POC 101.50 and VAH 103.00', 'VAL 99.00, POC 101.50 and VAH 103.00'."""
    parts = [f"{name} {format_price(price)}" for name, price in zip(names, prices, strict=True)]
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


def _setup(
    c: Candles,
    i: int,
    direction: Direction,
    levels: FloatArray,
    crossed: BoolArray,
    pivot_points: tuple[KeyPoint, KeyPoint],
    profile_bars: int,
    ratio: float,
    params: VolumeProfileParams,
) -> Setup | None:
    """The setup of bar ``i``, whose close crossed the ``crossed`` ones of ``levels`` (VAL, POC, VAH).

    None when the stop would not be a positive price.
    """
    val, poc, vah = (float(level) for level in levels)
    entry = float(c.close[i])
    risk = max(params.risk_va_fraction * (vah - val), entry * params.min_risk_pct / 100.0)
    stop = entry - direction.sign * risk
    if stop <= 0:
        return None
    # Named in the order the price met them: upwards for a LONG, downwards for a SHORT.
    order = [j for j in range(len(LEVELS)) if bool(crossed[j])]
    if direction is Direction.SHORT:
        order.reverse()
    names = [LEVELS[j] for j in order]
    crossed_text = _named_prices(names, [float(levels[j]) for j in order])
    side = "above" if direction is Direction.LONG else "below"
    first, second = pivot_points
    bar_ts = int(c.ts[i])
    return Setup(
        direction=direction,
        bar_ts=bar_ts,
        entry=entry,
        stop=stop,
        reason=(
            f"Close {format_price(entry)} crossed {side} {crossed_text} on {ratio:.2f}x average volume; "
            f"profile {first.label} {format_price(first.price)} -> "
            f"{second.label} {format_price(second.price)}"
        ),
        context={
            "poc": _sig(poc),
            "vah": _sig(vah),
            "val": _sig(val),
            "crossed": ",".join(names),
            "volume_ratio": round(ratio, 3),
            "pivot_1": first.price,
            "pivot_1_kind": first.label.removeprefix("pivot "),
            "pivot_2": second.price,
            "pivot_2_kind": second.label.removeprefix("pivot "),
            "profile_bars": profile_bars,
            "risk": _sig(risk),
        },
        key_points=(
            first,
            second,
            KeyPoint(ts=bar_ts, price=_sig(poc), label="POC"),
            KeyPoint(ts=bar_ts, price=_sig(vah), label="VAH"),
            KeyPoint(ts=bar_ts, price=_sig(val), label="VAL"),
        ),
    )


class VolumeProfileBot:
    """Close crossing the POC, VAH or VAL of the profile between the last two swing pivots."""

    name = "volume_profile_bot"
    params_model = VolumeProfileParams

    def needs(self, params: VolumeProfileParams, timeframe: str) -> DataNeeds:
        """``lookback`` bars of the bot's timeframe: the last pivot pair and the volume SMA fit in it."""
        return DataNeeds(lookback=params.lookback)

    def scan(self, data: MarketData, params: VolumeProfileParams) -> Sequence[Setup]:
        """Every qualifying level cross in ``data.candles``, oldest first."""
        c = data.candles
        n = len(c)
        if n < max(params.volume_sma_period, 2 * params.pivot_lookback + 2):
            return []  # the volume SMA or a second pivot is undefined on every bar
        pivots = swing_pivots(c.high, c.low, params.pivot_lookback)
        # At bar t the last two known pivots are latest[t] - 1 and latest[t] (pivots are in confirmation
        # order); the profile between them is computed once per pair, for the pairs some bar uses.
        latest = known_counts(pivots, np.arange(n)) - 1
        has_pair = latest >= 1
        profiles = pair_levels(c, pivots, np.unique(latest[has_pair]).tolist(), params)
        levels = np.full((n, len(LEVELS)), np.nan)
        levels[has_pair] = profiles[latest[has_pair]]

        sma = talib.SMA(c.volume, timeperiod=params.volume_sma_period)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sma > 0, c.volume / sma, np.nan)
        # Both closes against the levels in force at t (NaN levels compare False: no cross).
        previous = np.r_[np.nan, c.close[:-1]][:, None]
        close = c.close[:, None]
        up = (previous <= levels) & (close > levels)
        down = (previous >= levels) & (close < levels)
        fires = (up.any(axis=1) | down.any(axis=1)) & np.isfinite(ratio) & ~c.placeholder
        if params.require_high_volume:
            fires &= ratio > params.volume_factor

        setups = []
        for i in np.flatnonzero(fires):
            long = bool(up[i].any())
            k = int(latest[i])
            setup = _setup(
                c,
                int(i),
                Direction.LONG if long else Direction.SHORT,
                levels[i],
                up[i] if long else down[i],
                (_pivot_point(c, pivots, k - 1), _pivot_point(c, pivots, k)),
                int(pivots.index[k] - pivots.index[k - 1]) + 1,
                float(ratio[i]),
                params,
            )
            if setup is not None:
                setups.append(setup)
        return setups
