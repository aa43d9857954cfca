"""Tests of volume_profile: the distribution, POC / value area / HVN rules and the analysis."""

from __future__ import annotations

import gzip
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.types import Candles, Direction, Levels, Setup
from tp_sl_calculator import RejectReason, RiskSettings, atr, calculate_levels
from volume_profile import Bias, VolumeProfile, analyze_volume_profile, calculate_volume_profile

pytestmark = pytest.mark.unit

MARKET_DATA = Path(__file__).resolve().parents[2] / "shared" / "market-data"
needs_market_data = pytest.mark.skipif(
    not MARKET_DATA.is_dir(), reason=f"real market data not found at {MARKET_DATA} (see its README)"
)
REAL_SERIES = (
    "binance_spot/BTC_USDT-5m.csv.gz",
    "binance_spot/DOGE_USDT-15m.csv.gz",
    "binance_usdm_perp/ETH_USDT-1h.csv.gz",
    "binance_usdm_perp/XRP_USDT-15m.csv.gz",
)


@cache
def load_candles(relative: str) -> Candles:
    """Candles of one gzip CSV of the shared market data (timestamp_ms,open,high,low,close,volume)."""
    with gzip.open(MARKET_DATA / relative, "rt") as handle:
        raw = np.loadtxt(handle, delimiter=",", skiprows=1, dtype=np.float64)
    symbol, timeframe = Path(relative).name.removesuffix(".csv.gz").split("-")
    return Candles(
        symbol=symbol.replace("_", "/"),
        timeframe=timeframe,
        ts=raw[:, 0].astype(np.int64),
        open=raw[:, 1],
        high=raw[:, 2],
        low=raw[:, 3],
        close=raw[:, 4],
        volume=raw[:, 5],
    )


def make_candles(
    low: list[float],
    high: list[float],
    volume: list[float],
    *,
    open_: list[float] | None = None,
    close: list[float] | None = None,
) -> Candles:
    """Candles from lists (open defaults to low, close to high)."""
    count = len(low)
    return Candles(
        symbol="TEST/USDT",
        timeframe="1h",
        ts=np.arange(count, dtype=np.int64) * 3_600_000,
        open=np.array(open_ if open_ is not None else low, dtype=np.float64),
        high=np.array(high, dtype=np.float64),
        low=np.array(low, dtype=np.float64),
        close=np.array(close if close is not None else high, dtype=np.float64),
        volume=np.array(volume, dtype=np.float64),
    )


def reference_profile(
    candles: Candles, rows: int, value_area_pct: float
) -> tuple[list[float], int, tuple[int, int]]:
    """Row volumes, POC and value-area rows by the plain loops the module's docstring describes."""
    edges = np.linspace(float(candles.low.min()), float(candles.high.max()), rows + 1).tolist()
    row_volume = [0.0] * rows
    for low, high, volume in zip(
        candles.low.tolist(), candles.high.tolist(), candles.volume.tolist(), strict=True
    ):
        if high == low:  # all of it in the row holding the price; rows are [lower, upper), top row closed
            for row in range(rows):
                if edges[row] <= low < edges[row + 1] or (row == rows - 1 and low == edges[rows]):
                    row_volume[row] += volume
                    break
            continue
        for row in range(rows):
            overlap = min(high, edges[row + 1]) - max(low, edges[row])
            if overlap > 0:
                row_volume[row] += volume * overlap / (high - low)
    poc = 0
    for row in range(rows):
        if row_volume[row] > row_volume[poc]:  # strictly greater: the lowest row keeps a tie
            poc = row
    target = sum(candles.volume.tolist()) * value_area_pct / 100.0
    lowest = highest = poc
    accumulated = row_volume[poc]
    while accumulated < target * (1 - 1e-12) and (lowest > 0 or highest < rows - 1):
        below = row_volume[lowest - 1] if lowest > 0 else -1.0
        above = row_volume[highest + 1] if highest < rows - 1 else -1.0
        if below >= above:  # tie: the row below
            lowest -= 1
            accumulated += below
        else:
            highest += 1
            accumulated += above
    return row_volume, poc, (lowest, highest)


# --------------------------------------------------------------------------------------------------
# Hand-worked example
# --------------------------------------------------------------------------------------------------


def test_hand_worked_profile_of_three_candles_in_twelve_rows() -> None:
    """Every row, the POC (a three-way tie), VAL, VAH and HVNs of a profile computed by hand."""
    # Range 100..112 in 12 rows of 1.0: row i spans [100 + i, 101 + i].
    #   c0 [100, 106] volume 600 -> 100 in each of rows 0-5
    #   c1 [103, 109] volume 600 -> 100 in each of rows 3-8
    #   c2 [107.5, 112] volume 90 -> 20 per 1.0 of price: row 7 gets 0.5 x 20 = 10, rows 8-11 get 20
    # rows: 100 100 100 200 200 200 100 110 120 20 20 20   (total 1290)
    # POC: rows 3, 4, 5 tie at 200 -> the lowest, row 3; its midpoint 103.5.
    # Value area, target 70 % x 1290 = 903, starting at row 3 (200):
    #   below 2 (100) vs above 4 (200) -> 4: 400;  2 (100) vs 5 (200) -> 5: 600
    #   2 (100) vs 6 (100) tie -> below, 2: 700;   1 (100) vs 6 (100) tie -> 1: 800
    #   0 (100) vs 6 (100) tie -> 0: 900 < 903;    nothing below -> 6: 1000 >= 903
    # Value area rows 0..6: VAL = 100 (lower edge of row 0), VAH = 107 (upper edge of row 6).
    # HVN: mean row volume 1290 / 12 = 107.5; > 1.5 x 107.5 = 161.25 -> rows 3, 4, 5.
    candles = make_candles(low=[100.0, 103.0, 107.5], high=[106.0, 109.0, 112.0], volume=[600.0, 600.0, 90.0])
    profile = calculate_volume_profile(candles, rows=12)
    assert profile.edges.tolist() == [100.0 + i for i in range(13)]
    assert profile.row_volume.tolist() == [100, 100, 100, 200, 200, 200, 100, 110, 120, 20, 20, 20]
    assert (profile.poc_index, profile.poc_price) == (3, 103.5)
    assert (profile.val, profile.vah, profile.value_area_rows) == (100.0, 107.0, (0, 6))
    assert profile.hvn_indices == (3, 4, 5)
    assert (profile.total_volume, profile.value_area_pct, profile.n_rows, profile.row_height) == (
        1290.0,
        70.0,
        12,
        1.0,
    )


def test_flat_candles_go_to_the_row_holding_their_price() -> None:
    """A high == low candle on an inner edge lands in the row above it; one at the top edge in the top row."""
    # c0 [100, 112] volume 12 -> 1 per row; c1 flat at 104 (edge of rows 3 and 4) -> row 4 gets 10;
    # c2 flat at 112 (the top edge) -> row 11 gets 5.
    candles = make_candles(low=[100.0, 104.0, 112.0], high=[112.0, 104.0, 112.0], volume=[12.0, 10.0, 5.0])
    profile = calculate_volume_profile(candles, rows=12)
    assert profile.row_volume.tolist() == [1, 1, 1, 1, 11, 1, 1, 1, 1, 1, 1, 6]
    assert (profile.poc_index, profile.poc_price) == (4, 104.5)


def test_zero_range_collapses_onto_one_price() -> None:
    """Every candle at one single price: all edges are that price and row 0 holds all the volume."""
    candles = make_candles(low=[50.0, 50.0, 50.0], high=[50.0, 50.0, 50.0], volume=[1.0, 2.0, 3.0])
    profile = calculate_volume_profile(candles, rows=4)
    assert profile.edges.tolist() == [50.0] * 5
    assert profile.row_volume.tolist() == [6.0, 0.0, 0.0, 0.0]
    assert (profile.poc_index, profile.poc_price, profile.val, profile.vah) == (0, 50.0, 50.0, 50.0)
    assert (profile.hvn_indices, profile.row_height) == ((0,), 0.0)


def test_full_value_area_stops_at_the_last_row_with_volume() -> None:
    """value_area_pct=100 covers the traded rows, not the empty rows that only a zero-volume candle spans."""
    # c0 [100, 104] volume 40 -> rows 0-3 get 10; c1 [100, 112] has no volume; rows 4-11 stay empty.
    candles = make_candles(low=[100.0, 100.0], high=[104.0, 112.0], volume=[40.0, 0.0])
    profile = calculate_volume_profile(candles, rows=12, value_area_pct=100.0)
    assert (profile.val, profile.vah, profile.value_area_rows) == (100.0, 104.0, (0, 3))


def test_one_row_holds_everything() -> None:
    """rows=1: one row spanning the whole range, which is POC and value area; no HVN above its own mean."""
    candles = make_candles(low=[10.0, 11.0], high=[12.0, 14.0], volume=[3.0, 4.0])
    profile = calculate_volume_profile(candles, rows=1)
    assert profile.row_volume.tolist() == [7.0]
    assert (profile.poc_price, profile.val, profile.vah, profile.hvn_indices) == (12.0, 10.0, 14.0, ())


def test_profile_arrays_are_read_only() -> None:
    """A profile shared between bots cannot be altered through its arrays."""
    profile = calculate_volume_profile(make_candles(low=[1.0], high=[2.0], volume=[1.0]), rows=2)
    with pytest.raises(ValueError, match="read-only"):
        profile.row_volume[0] = 5.0


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------


@needs_market_data
@pytest.mark.parametrize("relative", REAL_SERIES)
def test_row_volume_adds_up_to_candle_volume_on_real_series(relative: str) -> None:
    """The rows of a whole real series (flat candles, placeholders, crashes) hold all its volume."""
    candles = load_candles(relative)
    profile = calculate_volume_profile(candles, rows=24)
    total = float(candles.volume.sum())
    assert profile.total_volume == total
    assert abs(float(profile.row_volume.sum()) - total) <= 1e-9 * total


@needs_market_data
def test_profile_equals_the_reference_loop_on_random_real_windows() -> None:
    """On 50 seeded random windows of real data the vectorised profile equals the plain loops."""
    rng = np.random.default_rng(20240601)
    for _ in range(50):
        candles = load_candles(REAL_SERIES[int(rng.integers(len(REAL_SERIES)))])
        size = int(rng.integers(20, 400))
        start = int(rng.integers(0, len(candles) - size))
        window = candles.slice(start, start + size)
        rows = int(rng.integers(5, 49))
        value_area_pct = float(rng.choice([50.0, 68.27, 70.0, 80.0, 100.0]))
        profile = calculate_volume_profile(window, rows=rows, value_area_pct=value_area_pct)
        row_volume, poc, value_area_rows = reference_profile(window, rows, value_area_pct)
        where = f"{window.symbol} {window.timeframe} [{start}:{start + size}] rows={rows} va={value_area_pct}"
        np.testing.assert_allclose(profile.row_volume, row_volume, rtol=1e-9, atol=0, err_msg=where)
        assert (profile.poc_index, profile.value_area_rows) == (poc, value_area_rows), where
        assert profile.val == profile.edges[value_area_rows[0]]
        assert profile.vah == profile.edges[value_area_rows[1] + 1]


@settings(max_examples=200, deadline=None)
@given(
    volumes=st.lists(st.integers(0, 4), min_size=1, max_size=30).filter(any),
    value_area_pct=st.sampled_from([1.0, 50.0, 70.0, 99.0, 100.0]),
)
def test_value_area_equals_the_greedy_loop_with_ties(volumes: list[int], value_area_pct: float) -> None:
    """Small whole-number row volumes (ties everywhere, exact sums) give the loop's POC and value area."""
    # Row i spans [1 + i, 2 + i]; a flat candle at its midpoint puts exactly volumes[i] in it. Two
    # zero-volume flat candles at 1 and 1 + rows pin the range, so the edges are whole numbers.
    rows = len(volumes)
    prices = [1.0, *(1.5 + i for i in range(rows)), 1.0 + rows]
    candles = make_candles(prices, prices, [0.0, *map(float, volumes), 0.0])
    profile = calculate_volume_profile(candles, rows=rows, value_area_pct=value_area_pct)
    row_volume, poc, value_area_rows = reference_profile(candles, rows, value_area_pct)
    assert profile.row_volume.tolist() == row_volume == list(map(float, volumes))
    assert (profile.poc_index, profile.value_area_rows) == (poc, value_area_rows)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


def _with(**changes: list[float]) -> Candles:
    """Two sane candles with some columns replaced."""
    columns = {"low": [10.0, 11.0], "high": [12.0, 13.0], "volume": [1.0, 2.0], **changes}
    return make_candles(columns["low"], columns["high"], columns["volume"])


@pytest.mark.parametrize(
    ("candles", "message"),
    [
        (make_candles([], [], []), "TEST/USDT 1h: no candles to build a volume profile from"),
        (_with(high=[12.0, math.nan]), r"TEST/USDT 1h: candles\.high has NaN or infinite values"),
        (_with(volume=[1.0, math.inf]), r"TEST/USDT 1h: candles\.volume has NaN or infinite values"),
        (_with(low=[0.0, 11.0]), r"TEST/USDT 1h: candles\.low has zero or negative prices"),
        (_with(low=[-1.0, 11.0]), r"TEST/USDT 1h: candles\.low has zero or negative prices"),
        (_with(high=[12.0, 10.0]), "TEST/USDT 1h: candle 1 has high 10.0 below low 11.0"),
        (_with(volume=[1.0, -2.0]), r"TEST/USDT 1h: candles\.volume has negative values"),
        (_with(volume=[0.0, 0.0]), "TEST/USDT 1h: the candles have no volume, so there is no profile"),
    ],
)
def test_bad_candles_raise_one_clear_error(candles: Candles, message: str) -> None:
    """Empty, NaN, non-positive, inverted or volume-less candles raise ValueError saying which."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        calculate_volume_profile(candles)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows must be an integer >= 1, got 0"),
        ({"rows": True}, "rows must be an integer >= 1, got True"),
        ({"value_area_pct": 0.0}, r"value_area_pct is a percent in \(0, 100\], got 0.0"),
        ({"value_area_pct": 101.0}, r"value_area_pct is a percent in \(0, 100\], got 101.0"),
        ({"value_area_pct": math.nan}, r"value_area_pct is a percent in \(0, 100\], got nan"),
        ({"hvn_factor": 0.0}, "hvn_factor must be a positive finite number, got 0.0"),
    ],
)
def test_bad_parameters_raise_one_clear_error(kwargs: dict[str, float], message: str) -> None:
    """rows < 1, a value-area percent outside (0, 100] or a non-positive HVN factor raise ValueError."""
    with pytest.raises(ValueError, match=f"^{message}$"):
        calculate_volume_profile(_with(), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------------


def capitulation(mirror: bool = False) -> Candles:
    """25 heavy candles ranging around 110, 14 light ones falling to 96, then a bullish engulfing candle.

    ``mirror`` reflects every price through 110 (p -> 220 - p): the same story upside down, so a
    bearish engulfing candle after a rally above value.
    """
    opens, highs, lows, closes, volumes = [], [], [], [], []
    for index in range(25):
        opens.append(110.0)
        closes.append(110.5 if index % 2 else 109.5)
        highs.append(111.0)
        lows.append(109.0)
        volumes.append(1000.0)
    price = 110.0
    for _ in range(14):
        opens.append(price)
        closes.append(price - 1.0)
        highs.append(price + 0.2)
        lows.append(price - 1.2)
        volumes.append(100.0)
        price -= 1.0
    # The last falling candle opened at 97 and closed at 96; this one opens below 96 and closes above 97.
    opens.append(95.8)
    closes.append(97.3)
    highs.append(97.5)
    lows.append(95.6)
    volumes.append(300.0)
    if mirror:
        opens, closes = [220.0 - p for p in opens], [220.0 - p for p in closes]
        highs, lows = [220.0 - p for p in lows], [220.0 - p for p in highs]
    return make_candles(lows, highs, volumes, open_=opens, close=closes)


def test_analysis_reads_capitulation_below_value_as_long() -> None:
    """Close below VAL, RSI under 30 and a bullish engulfing make LONG with score 3 and default levels."""
    # Range 95.6..111 in 24 rows of 15.4 / 24 = 0.641667. Rows 21-23 (109.075..111) lie inside the heavy
    # 109..111 range and hold about 3 x 8,000 of the 26,700 total, over the 70 % target of 18,690; the
    # row below (108.43..109.075) holds ~1,000. So VAL = 95.6 + 21 x 0.641667 = 109.075, VAH = 111.
    candles = capitulation()
    analysis = analyze_volume_profile(candles)
    assert (analysis.profile.value_area_rows, analysis.profile.vah) == ((21, 23), 111.0)
    assert analysis.profile.val == pytest.approx(109.075, abs=1e-12)
    assert (analysis.bias, analysis.direction, analysis.score) == (Bias.LONG, Direction.LONG, 3)
    assert analysis.factors == (
        "+1 close 97.3 below VAL 109.075",
        "+1 RSI(14) 25.2 below 30",
        "+1 bullish pattern CDLENGULFING",
    )
    assert dict(analysis.patterns) == {"CDLENGULFING": 100}
    expected_setup = Setup(
        direction=Direction.LONG,
        bar_ts=int(candles.ts[-1]),
        entry=97.3,
        reason="volume profile",
        atr=float(atr(candles, 14)[-1]),
        swing=(95.6, 111.0),
    )
    assert analysis.levels == calculate_levels(expected_setup, RiskSettings())
    assert (analysis.rejection, analysis.rejection_message) == (None, None)


def test_analysis_reads_the_mirror_image_as_short() -> None:
    """The same story reflected (a rally above value, RSI over 70, bearish engulfing) is SHORT, score -3."""
    # RSI of the mirrored closes is 100 minus the original's. ATR is unchanged by the reflection:
    # 1.6331296728; stop = 122.7 + 1.5 x ATR = 125.1497 -> up to 125.15, risk 2.45;
    # TPs = 122.7 - (1.5, 2.5, 4.0) x 2.45 = 119.025, 116.575, 112.9 -> up (toward entry):
    # 119.03, 116.58, 112.9.
    analysis = analyze_volume_profile(capitulation(mirror=True), tick_size=0.01)
    assert (analysis.bias, analysis.score) == (Bias.SHORT, -3)
    long_rsi = analyze_volume_profile(capitulation()).rsi
    assert long_rsi is not None
    assert analysis.rsi == pytest.approx(100.0 - long_rsi, rel=1e-12)
    assert analysis.factors == (
        "-1 close 122.7 above VAH 110.925",
        "-1 RSI(14) 74.8 above 70",
        "-1 bearish pattern CDLENGULFING",
    )
    assert analysis.levels == Levels(Direction.SHORT, 122.7, 125.15, (119.03, 116.58, 112.9))


def test_analysis_inside_value_is_neutral() -> None:
    """The 25 candles ranging inside value give no factor: NEUTRAL, score 0, no levels, no rejection."""
    analysis = analyze_volume_profile(capitulation().head(25))
    assert (analysis.bias, analysis.direction, analysis.score, analysis.factors) == (
        Bias.NEUTRAL,
        None,
        0,
        (),
    )
    assert (analysis.levels, analysis.rejection) == (None, None)


def test_analysis_reports_a_rejection_instead_of_levels() -> None:
    """With min_rr 10 the LONG reading stays, its levels are None and the reason is RR_TOO_LOW."""
    analysis = analyze_volume_profile(capitulation(), risk=RiskSettings(min_rr=10.0))
    assert (analysis.bias, analysis.levels, analysis.rejection) == (Bias.LONG, None, RejectReason.RR_TOO_LOW)
    assert analysis.rejection_message == "TP1 risk:reward 1.5 is below the minimum 10"


def test_analysis_uses_the_profile_it_is_given() -> None:
    """A precomputed profile (here with 6 rows) is the one analysed, not recomputed with the default 24."""
    candles = capitulation()
    profile = calculate_volume_profile(candles, rows=6)
    analysis = analyze_volume_profile(candles, profile=profile)
    assert analysis.profile is profile
    assert isinstance(analysis.profile, VolumeProfile)


def test_analysis_rejects_a_nan_close() -> None:
    """A NaN close (the profile itself does not read closes) still raises one clear ValueError."""
    candles = capitulation()
    close = candles.close.copy()
    close[-1] = math.nan
    broken = make_candles(
        candles.low.tolist(),
        candles.high.tolist(),
        candles.volume.tolist(),
        open_=candles.open.tolist(),
        close=close.tolist(),
    )
    with pytest.raises(ValueError, match=r"^TEST/USDT 1h: candles\.close has NaN or infinite values$"):
        analyze_volume_profile(broken)
