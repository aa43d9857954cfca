"""Tests of common.charts: the alert's chart image, checked pixel by pixel on real BTC/USDT 4h history."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from matplotlib.image import imread

from common.charts import (
    LEVEL_COLORS,
    SIGNAL_MARK,
    ChartGeometry,
    ChartSpec,
    chart_spec,
    render_chart,
)
from common.errors import DataError
from common.market.replay import read_ohlcv_file
from common.types import Candles, Direction, KeyPoint, Levels, Signal
from tests.fakes.csvdata import require_shared_data

pytestmark = pytest.mark.unit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BTC_4H = ("binance_spot", "BTC_USDT-4h.csv.gz")
#: Bars of the real series the signals fire on (the file has 1495 candles).
LONG_BAR, SHORT_BAR = 1200, 900
#: Largest difference per RGB channel (0-255) for a pixel to count as a given colour.
TOLERANCE = 12
#: A level line must cover at least this share of the plot width in one unbroken run of its colour.
LONG_RUN = 0.4

RGBImage = npt.NDArray[np.int64]


@pytest.fixture(scope="module")
def btc_4h() -> Candles:
    """The real BTC/USDT 4h history from the shared market data (skipped when it is absent)."""
    return read_ohlcv_file(require_shared_data(*BTC_4H), "BTC/USDT", "4h")


def make_signal(
    candles: Candles, bar: int, direction: Direction, key_points: tuple[KeyPoint, ...] = ()
) -> Signal:
    """A signal at ``bar``'s close: stop 2 % away, targets at 1.5R, 2.5R and 4R."""
    entry = float(candles.close[bar])
    sign = direction.sign
    risk = entry * 0.02
    levels = Levels(
        direction, entry, entry - sign * risk, tuple(entry + sign * r * risk for r in (1.5, 2.5, 4.0))
    )
    return Signal(
        id=f"test{bar}{direction.value.lower()}",
        bot="psar_bot",
        symbol=candles.symbol,
        timeframe=candles.timeframe,
        direction=direction,
        levels=levels,
        reason="test signal",
        bar_ts=int(candles.ts[bar]),
        created_ms=candles.close_time(bar),
        key_points=key_points,
    )


def pattern_points(candles: Candles, bar: int) -> tuple[KeyPoint, ...]:
    """X A B C D pivots 60, 45, 30, 15 and 0 bars before ``bar``, on lows and highs alternately."""
    points = []
    for number, (back, label) in enumerate(zip((60, 45, 30, 15, 0), "XABCD", strict=True)):
        index = bar - back
        price = candles.high[index] if number % 2 else candles.low[index]
        points.append(KeyPoint(int(candles.ts[index]), float(price), label))
    return tuple(points)


def load_rgb(path: Path) -> RGBImage:
    """The PNG's pixels as 0-255 integers, shape (rows, columns, 3)."""
    pixels = imread(path)
    return np.asarray(np.round(pixels[..., :3] * 255), dtype=np.int64)


def colour_mask(image: RGBImage, colour: tuple[int, int, int]) -> npt.NDArray[np.bool_]:
    """Pixels within TOLERANCE of ``colour`` on every channel."""
    mask: npt.NDArray[np.bool_] = np.all(np.abs(image - np.array(colour)) <= TOLERANCE, axis=-1)
    return mask


def longest_runs(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Length of the longest run of True in each row of a 2-D mask."""
    runs = np.zeros(mask.shape[0], dtype=np.int64)
    current = np.zeros(mask.shape[0], dtype=np.int64)
    for column in range(mask.shape[1]):
        current = np.where(mask[:, column], current + 1, 0)
        runs = np.maximum(runs, current)
    return runs


def plot_runs(
    image: RGBImage, geometry: ChartGeometry, colour: tuple[int, int, int]
) -> npt.NDArray[np.int64]:
    """Longest run of ``colour`` in each image row, counted inside the plot area's columns only."""
    left, _, right, _ = geometry.plot_box
    return longest_runs(colour_mask(image[:, left:right], colour))


@dataclass(frozen=True)
class Rendered:
    """One rendered chart: its spec, where it was saved and the geometry the renderer returned."""

    spec: ChartSpec
    path: Path
    geometry: ChartGeometry


@pytest.fixture(scope="module", params=[Direction.LONG, Direction.SHORT], ids=["long", "short"])
def rendered(
    request: pytest.FixtureRequest, btc_4h: Candles, tmp_path_factory: pytest.TempPathFactory
) -> Rendered:
    """A LONG (bar 1200) or SHORT (bar 900) signal's chart on real BTC/USDT 4h candles, tick 0.01."""
    direction: Direction = request.param
    bar = LONG_BAR if direction is Direction.LONG else SHORT_BAR
    spec = chart_spec(make_signal(btc_4h, bar, direction), btc_4h, tick_size=0.01)
    path = tmp_path_factory.mktemp(direction.value.lower()) / "chart.png"
    return Rendered(spec, path, render_chart(spec, path))


def test_file_is_a_private_png_of_the_reported_size(rendered: Rendered) -> None:
    """The file is a PNG under 1 MB, mode 0600, 1000x600 as the geometry says, and no temp file is left."""
    data = rendered.path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) < 1_000_000
    assert stat.S_IMODE(rendered.path.stat().st_mode) == 0o600
    assert (rendered.geometry.width_px, rendered.geometry.height_px) == (1000, 600)
    assert load_rgb(rendered.path).shape == (600, 1000, 3)
    assert sorted(p.name for p in rendered.path.parent.iterdir()) == ["chart.png"]


def test_level_colours_are_blue_red_and_green(rendered: Rendered) -> None:
    """Entry is blue, SL red, TP1..TP3 three different greens, as documented in LEVEL_COLORS."""
    colours = rendered.geometry.level_colors
    assert set(colours) == {"entry", "sl", "tp1", "tp2", "tp3"}
    assert colours == {
        "entry": (0x44, 0x8A, 0xFF),
        "sl": (0xFF, 0x17, 0x44),
        "tp1": (0x69, 0xF0, 0xAE),
        "tp2": (0x00, 0xE6, 0x76),
        "tp3": (0x00, 0xC8, 0x53),
    }
    assert set(LEVEL_COLORS) == set(colours)


def test_each_level_line_is_drawn_on_its_row_and_nowhere_else(rendered: Rendered) -> None:
    """On each level's row (±1 px) its colour runs unbroken over > 40 % of the plot; 3 px off, < 5 %."""
    image, geometry = load_rgb(rendered.path), rendered.geometry
    left, top, right, bottom = geometry.plot_box
    needed = LONG_RUN * (right - left)
    for name, row in geometry.level_rows.items():
        runs = plot_runs(image, geometry, geometry.level_colors[name])
        assert runs[row - 1 : row + 2].max() > needed, name
        # Every other row of the plot, 3 px or more from the line, has no such run of this colour.
        away = np.ones(runs.shape[0], dtype=bool)
        away[: top + 1] = away[bottom - 1 :] = False
        away[row - 2 : row + 3] = False
        assert runs[away].max() < 0.05 * (right - left), name


def test_rows_follow_prices(rendered: Rendered) -> None:
    """Higher price -> smaller row, entry between SL and the TPs, every level and candle inside the plot."""
    spec, geometry = rendered.spec, rendered.geometry
    rows = geometry.level_rows
    prices = {"entry": spec.entry, "sl": spec.sl} | {f"tp{i}": tp for i, tp in enumerate(spec.tps, start=1)}
    by_price = sorted(prices, key=lambda name: prices[name])
    assert [rows[name] for name in by_price] == sorted((rows[name] for name in by_price), reverse=True)
    assert len(set(rows.values())) == 5
    assert min(rows["sl"], rows["tp1"]) < rows["entry"] < max(rows["sl"], rows["tp1"])
    if spec.direction is Direction.LONG:
        assert rows["tp3"] < rows["tp2"] < rows["tp1"] < rows["entry"] < rows["sl"]
    else:
        assert rows["sl"] < rows["entry"] < rows["tp1"] < rows["tp2"] < rows["tp3"]
    # The rows are the linear price axis of the plot area (within a pixel) ...
    _, top, _, bottom = geometry.plot_box
    low, high = geometry.price_range
    for name, price in prices.items():
        assert abs(rows[name] - (top + (high - price) / (high - low) * (bottom - top))) <= 1.0, name
    # ... whose range holds every level and candle with 3 % of the span to spare on each side.
    lowest = min(float(spec.candles.low.min()), *prices.values())
    highest = max(float(spec.candles.high.max()), *prices.values())
    pad = (highest - lowest) * 0.03
    assert geometry.price_range == pytest.approx((lowest - pad, highest + pad), rel=1e-12)


def test_signal_bar_is_marked(rendered: Rendered) -> None:
    """The signal's bar (the last candle) carries the yellow mark; the rest of the plot does not."""
    image, geometry = load_rgb(rendered.path), rendered.geometry
    col = geometry.signal_bar_col
    assert col is not None
    left, top, right, bottom = geometry.plot_box
    # The last of 100 candles on an axis from -1 to 105: 100/106 of the way across.
    assert abs(col - (left + 100 / 106 * (right - left))) <= 1
    mask = colour_mask(image[top:bottom, left:right], (0xFF, 0xD5, 0x4F))
    near = mask[:, col - left - 8 : col - left + 9].sum()
    assert near >= 60  # the triangle (about 10 px a side) plus the dotted line
    assert mask.sum() == near
    assert SIGNAL_MARK == "#ffd54f"


def test_candles_are_coloured_by_direction_and_placeholders_grey(btc_4h: Candles, tmp_path: Path) -> None:
    """Up candles are teal, down candles red, a gap-filling placeholder grey, each at its bar's column."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h, bars=40)
    real = spec.candles
    flat = real.close.copy()
    hole = 20  # candle 20 becomes a flat zero-volume placeholder at the previous close
    flat[hole] = real.close[hole - 1]
    volume = real.volume.copy()
    volume[hole] = 0.0

    def with_hole(column: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        copy = column.copy()
        copy[hole] = flat[hole]
        return copy

    candles = Candles(
        "BTC/USDT",
        "4h",
        real.ts,
        with_hole(real.open),
        with_hole(real.high),
        with_hole(real.low),
        flat,
        volume,
    )
    assert candles.placeholder.nonzero()[0].tolist() == [hole]
    geometry = render_chart(replace(spec, candles=candles), tmp_path / "chart.png")
    image = load_rgb(tmp_path / "chart.png")
    left, top, right, bottom = geometry.plot_box
    colours = {"up": (0x26, 0xA6, 0x9A), "down": (0xEF, 0x53, 0x50), "grey": (0x78, 0x7B, 0x86)}
    masks = {name: colour_mask(image[top:bottom, left:right], colour) for name, colour in colours.items()}

    def kind(index: int) -> str:
        if index == hole:
            return "grey"
        return "up" if candles.close[index] >= candles.open[index] else "down"

    for index in range(len(candles)):
        # 40 candles on an axis from -1 to 45: bar i is (i + 1) / 46 of the way across.
        col = round((index + 1) / 46 * (right - left))
        band = slice(col - 1, col + 2)
        assert masks[kind(index)][:, band].any(), index
        for other in set(colours) - {kind(index)}:
            assert not masks[other][:, band].any(), (index, other)
    # The grey is exactly one flat body: one pixel row at the price, 0.7 of a bar's width.
    rows, cols = masks["grey"].nonzero()
    low, high = geometry.price_range
    assert rows.min() == rows.max()
    assert abs(rows[0] - (high - flat[hole]) / (high - low) * (bottom - top)) <= 1.0
    assert abs((cols.max() - cols.min() + 1) - 0.7 * (right - left) / 46) <= 1.0


def test_chart_spec_takes_the_last_bars_up_to_the_signal(btc_4h: Candles) -> None:
    """chart_spec keeps the `bars` candles ending at the signal's bar, none after it, and the levels."""
    signal = make_signal(btc_4h, SHORT_BAR, Direction.SHORT)
    spec = chart_spec(signal, btc_4h, bars=50, tick_size=0.5)
    assert np.array_equal(spec.candles.ts, btc_4h.ts[SHORT_BAR - 49 : SHORT_BAR + 1])
    assert np.array_equal(spec.candles.close, btc_4h.close[SHORT_BAR - 49 : SHORT_BAR + 1])
    assert spec.title == "SHORT BTC/USDT · 4h · psar_bot"
    assert (spec.entry, spec.sl, spec.tps) == (signal.levels.entry, signal.levels.sl, signal.levels.tps)
    assert (spec.direction, spec.signal_bar_ts, spec.tick_size) == (Direction.SHORT, signal.bar_ts, 0.5)
    # Near the start of the history there are fewer candles to show.
    early = chart_spec(make_signal(btc_4h, 10, Direction.LONG), btc_4h)
    assert np.array_equal(early.candles.ts, btc_4h.ts[:11])


def test_chart_spec_widens_to_the_first_key_point(btc_4h: Candles) -> None:
    """A pattern starting before the window widens it to 2 bars before its first point, at most 3 x bars."""
    points = pattern_points(btc_4h, LONG_BAR)  # X is 60 bars back
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG, points), btc_4h, bars=40)
    assert np.array_equal(spec.candles.ts, btc_4h.ts[LONG_BAR - 62 : LONG_BAR + 1])
    assert spec.key_points == points
    capped = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG, points), btc_4h, bars=10)
    assert np.array_equal(capped.candles.ts, btc_4h.ts[LONG_BAR - 29 : LONG_BAR + 1])


def test_chart_spec_refuses_a_bar_not_in_the_candles(btc_4h: Candles) -> None:
    """A signal whose bar is not among the candles is one DataError line, not an IndexError."""
    signal = make_signal(btc_4h, LONG_BAR, Direction.LONG)
    with pytest.raises(DataError) as caught:
        chart_spec(signal, btc_4h.head(LONG_BAR))
    assert str(caught.value) == (
        f"chart of signal {signal.id}: its bar {signal.bar_ts} is not among "
        "the 1200 BTC/USDT 4h candles given"
    )


def test_key_points_are_drawn_and_joined(btc_4h: Candles, tmp_path: Path) -> None:
    """Each key point has a marker of its colour at its reported pixel; a line joins each pair in order."""
    points = pattern_points(btc_4h, LONG_BAR)
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG, points), btc_4h)
    geometry = render_chart(spec, tmp_path / "pattern.png")
    image = load_rgb(tmp_path / "pattern.png")
    mask = colour_mask(image, geometry.key_point_color)
    assert geometry.key_point_color == (0xE0, 0x40, 0xFB)
    assert [label for label, _, _ in geometry.key_points] == ["X", "A", "B", "C", "D"]
    left, top, right, bottom = geometry.plot_box
    low, high = geometry.price_range
    for (label, col, row), point in zip(geometry.key_points, points, strict=True):
        assert left < col < right, label
        assert top < row < bottom, label
        assert abs(row - (top + (high - point.price) / (high - low) * (bottom - top))) <= 1.0, label
        # A marker 7 pt (about 10 px) across: most of the 5x5 square around its centre is its colour.
        assert mask[row - 2 : row + 3, col - 2 : col + 3].sum() >= 20, label
    for (_, col_a, row_a), (_, col_b, row_b) in zip(
        geometry.key_points, geometry.key_points[1:], strict=False
    ):
        mid_col, mid_row = (col_a + col_b) // 2, (row_a + row_b) // 2
        assert mask[mid_row - 3 : mid_row + 4, mid_col - 1 : mid_col + 2].any(), (col_a, col_b)
    # Without key points that colour appears nowhere.
    plain = render_chart(replace(spec, key_points=()), tmp_path / "plain.png")
    assert plain.key_points == ()
    assert not colour_mask(load_rgb(tmp_path / "plain.png"), geometry.key_point_color).any()


def test_key_points_outside_the_candles_are_left_out(btc_4h: Candles, tmp_path: Path) -> None:
    """A key point older than the first candle drawn is not reported (nor drawn at a wrong place)."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h, bars=30)
    old = KeyPoint(int(btc_4h.ts[LONG_BAR - 50]), float(btc_4h.low[LONG_BAR - 50]), "X")
    inside = KeyPoint(int(btc_4h.ts[LONG_BAR - 5]), float(btc_4h.high[LONG_BAR - 5]), "A")
    geometry = render_chart(replace(spec, key_points=(old, inside)), tmp_path / "chart.png")
    assert [label for label, _, _ in geometry.key_points] == ["A"]


def test_empty_candles_are_one_data_error_line(btc_4h: Candles, tmp_path: Path) -> None:
    """No candles: DataError with one line naming the chart, and no file (temporary or final) is written."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h)
    with pytest.raises(DataError) as caught:
        render_chart(replace(spec, candles=btc_4h.head(0)), tmp_path / "chart.png")
    assert str(caught.value) == "chart 'LONG BTC/USDT · 4h · psar_bot': no candles to draw"
    assert list(tmp_path.iterdir()) == []


def test_nan_prices_are_one_data_error_line(btc_4h: Candles, tmp_path: Path) -> None:
    """A NaN close or a NaN level is a one-line DataError, never a matplotlib traceback."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h)
    close = spec.candles.close.copy()
    close[3] = np.nan
    broken = Candles(
        "BTC/USDT", "4h", spec.candles.ts, spec.candles.open, spec.candles.high, spec.candles.low, close,
        spec.candles.volume,
    )  # fmt: skip
    with pytest.raises(DataError) as caught:
        render_chart(replace(spec, candles=broken), tmp_path / "chart.png")
    assert (
        str(caught.value)
        == "chart 'LONG BTC/USDT · 4h · psar_bot': candles.close has a NaN or infinite value"
    )
    with pytest.raises(DataError) as caught:
        render_chart(replace(spec, sl=float("nan")), tmp_path / "chart.png")
    assert (
        str(caught.value)
        == "chart 'LONG BTC/USDT · 4h · psar_bot': level sl must be a positive finite price, got nan"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_one_data_error_line(btc_4h: Candles, tmp_path: Path) -> None:
    """A folder that does not exist: one DataError line naming the chart and the OS error."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h)
    with pytest.raises(DataError) as caught:
        render_chart(spec, tmp_path / "absent" / "chart.png")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("chart 'LONG BTC/USDT · 4h · psar_bot': cannot render: FileNotFoundError: ")


def test_rendering_replaces_an_existing_file(btc_4h: Candles, tmp_path: Path) -> None:
    """A second chart under the same name replaces the first whole, leaving no temporary file."""
    target = tmp_path / "chart.png"
    target.write_bytes(b"old")
    render_chart(chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG), btc_4h), target)
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["chart.png"]


def test_spec_survives_pickling(btc_4h: Candles, tmp_path: Path) -> None:
    """A spec sent to a worker process (pickled) draws the very same PNG bytes."""
    spec = chart_spec(make_signal(btc_4h, LONG_BAR, Direction.LONG, pattern_points(btc_4h, LONG_BAR)), btc_4h)
    render_chart(spec, tmp_path / "direct.png")
    render_chart(pickle.loads(pickle.dumps(spec)), tmp_path / "pickled.png")
    assert (tmp_path / "direct.png").read_bytes() == (tmp_path / "pickled.png").read_bytes()


async def test_four_charts_at_once_in_threads(btc_4h: Candles, tmp_path: Path) -> None:
    """Four charts rendered concurrently with asyncio.to_thread are four distinct, valid PNGs, identical to
    the same charts rendered one after the other."""
    specs = [
        chart_spec(make_signal(btc_4h, bar, direction), btc_4h, tick_size=0.01)
        for bar, direction in (
            (LONG_BAR, Direction.LONG),
            (SHORT_BAR, Direction.SHORT),
            (700, Direction.LONG),
            (500, Direction.SHORT),
        )
    ]
    paths = [tmp_path / f"chart{i}.png" for i in range(4)]
    geometries = await asyncio.gather(
        *(asyncio.to_thread(render_chart, spec, path) for spec, path in zip(specs, paths, strict=True))
    )
    together = [path.read_bytes() for path in paths]
    assert all(data[:8] == PNG_SIGNATURE for data in together)
    assert len({hashlib.sha256(data).hexdigest() for data in together}) == 4
    assert all(load_rgb(path).shape == (600, 1000, 3) for path in paths)
    for spec, path, geometry, data in zip(specs, paths, geometries, together, strict=True):
        assert render_chart(spec, path) == geometry
        assert path.read_bytes() == data
