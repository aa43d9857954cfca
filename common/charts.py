"""The chart image attached to each alert: candles, the trade's levels, the signal bar, pattern points.

Why it is built this way:

- Rendering a chart takes tens of milliseconds of pure CPU, far too long for the event loop that
  also schedules scans and delivers messages. The notifier runs :func:`render_chart` off the loop
  (``asyncio.to_thread``, or a worker process: :class:`ChartSpec` is plain picklable data and
  :class:`ChartGeometry` too), so a chart never delays a scan or another message.
- Only matplotlib's object-oriented API with the Agg canvas is used: each call builds its own
  ``Figure`` and ``FigureCanvasAgg`` and drops them when done. ``pyplot`` is never imported: it keeps
  a global registry of open figures and a current figure / axes (not thread-safe, and a leak when a
  figure is never closed), and it may select an interactive backend. ``matplotlib.use`` is never
  called either: the canvas is chosen explicitly, so the process-wide backend does not matter.
- Thread safety: every style is passed explicitly (rcParams are only read, never written), math
  text parsing is off for every text (its parser is shared), and matplotlib's font cache is keyed by
  thread. matplotlib does not promise thread safety beyond that, and its drawing holds the GIL, so
  threads would not draw in parallel anyway; drawing and encoding are therefore serialised by one
  module lock, which costs no throughput and rules out the races matplotlib documents.
- The PNG is written to a private temporary file (0600) beside the target and moved into place with
  ``os.replace``: a half-written image never exists under the final name.
- Every failure, bad input or an error inside matplotlib or the file system, is one
  :class:`~common.errors.DataError` line: a chart is an extra, and the caller sends the text alone.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
from matplotlib.transforms import offset_copy

from common.errors import DataError
from common.prices import format_price
from common.types import Candles, Direction, FloatArray, IntArray, KeyPoint, Signal

WIDTH_PX = 1000
HEIGHT_PX = 600
DPI = 100

#: The plot area inside the image, in pixels from the left and top edges (fixed, so the layout does
#: not depend on the text and every chart of a channel lines up).
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 78, 852, 46, 552

#: Dark theme close to the exchanges' own: readable on a phone, levels stand out.
BACKGROUND = "#131722"
TEXT = "#d1d4dc"
GRID = "#2a2e39"
CANDLE_UP = "#26a69a"
CANDLE_DOWN = "#ef5350"
CANDLE_PLACEHOLDER = "#787b86"
SIGNAL_MARK = "#ffd54f"
KEY_POINT = "#e040fb"
LEVEL_COLORS: Mapping[str, str] = {
    "entry": "#448aff",
    "sl": "#ff1744",
    "tp1": "#69f0ae",
    "tp2": "#00e676",
    "tp3": "#00c853",
}

#: Candles drawn to the right of the signal bar's slot stay empty: room for the trade to play out.
_RIGHT_PAD_BARS = 6
_Y_PAD = 0.03
_BODY_WIDTH = 0.7
_LEVEL_LINE_PT = 1.5
_LABEL_GAP_PX = 19.0
_TIME_LABELS = 6
_MAX_WIDENING = 3

_TAG_NAMES = {"entry": "Entry", "sl": "SL"}

#: Serialises every matplotlib drawing and encoding of the process (alert charts, equity curves).
draw_lock = threading.Lock()


@dataclass(frozen=True)
class ChartSpec:
    """Everything the renderer needs, as plain picklable data (it may run in a thread or a process).

    ``candles`` are the closed candles to draw, oldest first (the caller slices them); ``tps`` are
    the one to three take-profits; ``key_points`` are a pattern's pivots (X A B C D ...);
    ``signal_bar_ts`` is the open time of the candle the signal fired on; ``tick_size`` sets the
    decimals of the price labels, as in the text card.
    """

    title: str
    candles: Candles
    entry: float
    sl: float
    tps: tuple[float, ...]
    direction: Direction
    key_points: tuple[KeyPoint, ...] = ()
    signal_bar_ts: int | None = None
    tick_size: float | None = None


@dataclass(frozen=True)
class ChartGeometry:
    """Where things ended up in the saved PNG, in pixels (column 0 = left, row 0 = top).

    ``level_rows`` maps "entry", "sl", "tp1".. to the row of that level's horizontal line and
    ``level_colors`` to its RGB colour. ``plot_box`` is (left, top, right, bottom) of the plot area,
    ``price_range`` the (low, high) prices of its bottom and top edges. ``key_points`` holds
    (label, column, row) of each key point drawn (points outside the candles are left out), and
    ``signal_bar_col`` the column of the signal bar's mark (None when there is none).
    """

    width_px: int
    height_px: int
    level_rows: Mapping[str, int]
    level_colors: Mapping[str, tuple[int, int, int]]
    plot_box: tuple[int, int, int, int]
    price_range: tuple[float, float]
    key_points: tuple[tuple[str, int, int], ...] = ()
    key_point_color: tuple[int, int, int] = (0, 0, 0)
    signal_bar_col: int | None = None


def chart_spec(
    signal: Signal, candles: Candles, *, bars: int = 100, tick_size: float | None = None
) -> ChartSpec:
    """The spec of ``signal``'s chart: the last ``bars`` candles of ``candles`` up to the signal's bar.

    Candles after the signal's bar are never shown (the alert describes the market as it was). When
    the signal's key points start earlier, the window widens to include the first of them, up to
    three times ``bars``. Raises :class:`DataError` when the signal's bar is not among the candles.
    """
    if bars < 1:
        raise DataError(f"chart of signal {signal.id}: bars must be at least 1, got {bars}")
    index = int(np.searchsorted(candles.ts, signal.bar_ts))
    if index >= len(candles) or int(candles.ts[index]) != signal.bar_ts:
        raise DataError(
            f"chart of signal {signal.id}: its bar {signal.bar_ts} is not among the "
            f"{len(candles)} {candles.symbol} {candles.timeframe} candles given"
        )
    start = max(0, index + 1 - bars)
    if signal.key_points:
        first = int(np.searchsorted(candles.ts, min(point.ts for point in signal.key_points), "right")) - 1
        start = min(start, max(0, first - 2, index + 1 - _MAX_WIDENING * bars))
    levels = signal.levels
    return ChartSpec(
        title=f"{signal.direction.value} {signal.symbol} · {signal.timeframe} · {signal.bot}",
        candles=candles.slice(start, index + 1),
        entry=levels.entry,
        sl=levels.sl,
        tps=levels.tps,
        direction=signal.direction,
        key_points=signal.key_points,
        signal_bar_ts=signal.bar_ts,
        tick_size=tick_size,
    )


def render_chart(spec: ChartSpec, path: Path) -> ChartGeometry:
    """Draw ``spec`` to a PNG at ``path`` (mode 0600; its folder must exist) and return the geometry.

    The image is written to a temporary file in the same folder and moved over ``path``, so a
    half-written PNG never exists under that name. Safe to call from several threads at once. Any
    failure (empty candles, a NaN, a folder that does not exist) is one :class:`DataError` line.
    """
    try:
        _validate(spec)
        with draw_lock:
            figure, geometry = _draw(spec)
            save_png(figure, path)
    except DataError:
        raise
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"chart {spec.title!r}: cannot render: {type(exc).__name__}: {detail}") from exc
    return geometry


def _validate(spec: ChartSpec) -> None:
    """Refuse what cannot be drawn faithfully: no candles, non-finite or non-positive prices, no TP."""
    candles, where = spec.candles, f"chart {spec.title!r}"
    if len(candles) == 0:
        raise DataError(f"{where}: no candles to draw")
    for name in ("open", "high", "low", "close"):
        if not bool(np.all(np.isfinite(getattr(candles, name)))):
            raise DataError(f"{where}: candles.{name} has a NaN or infinite value")
    if not bool(np.all(candles.high >= candles.low)):
        raise DataError(f"{where}: a candle's high is below its low")
    if not 1 <= len(spec.tps) <= 3:
        raise DataError(f"{where}: one to three take-profits are needed, got {len(spec.tps)}")
    for name, value in _levels(spec):
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{where}: level {name} must be a positive finite price, got {value!r}")
    for point in spec.key_points:
        if not (math.isfinite(point.price) and point.price > 0):
            raise DataError(f"{where}: key point {point.label!r} has price {point.price!r}")


def _levels(spec: ChartSpec) -> list[tuple[str, float]]:
    """The named horizontal levels: entry, sl, tp1..tp3."""
    return [("entry", spec.entry), ("sl", spec.sl)] + [
        (f"tp{number}", tp) for number, tp in enumerate(spec.tps, start=1)
    ]


def _bar_index(ts: IntArray, when: int, period_ms: int) -> int | None:
    """Index of the candle whose period contains ``when``, or None when it lies outside the candles."""
    index = int(np.searchsorted(ts, when, "right")) - 1
    if index < 0 or when >= int(ts[index]) + period_ms:
        return None
    return index


def _rgb(color: str) -> tuple[int, int, int]:
    """A matplotlib colour as 0-255 integers."""
    red, green, blue = to_rgb(color)
    return round(red * 255), round(green * 255), round(blue * 255)


def _draw(spec: ChartSpec) -> tuple[Figure, ChartGeometry]:
    """Build the figure and compute where each element lands in the image."""
    candles = spec.candles
    count = len(candles)
    x = np.arange(count, dtype=np.float64)
    levels = _levels(spec)
    key_points = [
        (index, point)
        for point in sorted(spec.key_points, key=lambda point: point.ts)
        if (index := _bar_index(candles.ts, point.ts, candles.period_ms)) is not None
    ]

    prices = [float(candles.low.min()), float(candles.high.max())]
    prices += [value for _, value in levels] + [point.price for _, point in key_points]
    low, high = min(prices), max(prices)
    pad = (high - low) * _Y_PAD if high > low else high * _Y_PAD
    y_range = (low - pad, high + pad)

    plot_box = (_PLOT_LEFT, _PLOT_TOP, _PLOT_RIGHT, _PLOT_BOTTOM)
    figure, ax = dark_axes(WIDTH_PX, HEIGHT_PX, plot_box, spec.title)
    plot_h = _PLOT_BOTTOM - _PLOT_TOP
    ax.set_xlim(-1.0, count - 1 + _RIGHT_PAD_BARS)
    ax.set_ylim(*y_range)
    _style_axes(ax, spec)
    _draw_candles(ax, candles, x, (y_range[1] - y_range[0]) / plot_h)

    signal_col: int | None = None
    signal_index = (
        None if spec.signal_bar_ts is None else _bar_index(candles.ts, spec.signal_bar_ts, candles.period_ms)
    )
    if signal_index is not None:
        _draw_signal_mark(ax, spec, signal_index, beside_label=any(i == signal_index for i, _ in key_points))
        signal_col = int(ax.transData.transform((signal_index, y_range[0]))[0])

    key_pixels = _draw_key_points(ax, candles, key_points, HEIGHT_PX)
    level_rows = _draw_levels(ax, spec, levels, HEIGHT_PX)

    geometry = ChartGeometry(
        width_px=WIDTH_PX,
        height_px=HEIGHT_PX,
        level_rows=level_rows,
        level_colors={name: _rgb(LEVEL_COLORS[name]) for name, _ in levels},
        plot_box=plot_box,
        price_range=y_range,
        key_points=key_pixels,
        key_point_color=_rgb(KEY_POINT),
        signal_bar_col=signal_col,
    )
    return figure, geometry


def dark_axes(
    width_px: int, height_px: int, plot_box: tuple[int, int, int, int], title: str
) -> tuple[Figure, Axes]:
    """A figure of ``width_px`` x ``height_px`` on its own Agg canvas with one axes on ``plot_box``
    (left, top, right, bottom, in pixels), in the dark theme, ``title`` at its top left.

    Shared by the alert charts and the backtest's equity curves, so both look alike.
    """
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)
    left, top, right, bottom = plot_box
    ax = figure.add_axes(
        (left / width_px, 1 - bottom / height_px, (right - left) / width_px, (bottom - top) / height_px)
    )
    ax.set_facecolor(BACKGROUND)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_color(GRID)
    ax.tick_params(colors=TEXT, labelsize=10, length=3)
    ax.grid(True, color=GRID, linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.set_title(title, color=TEXT, fontsize=14, fontweight="bold", loc="left", parse_math=False)
    return figure, ax


def _style_axes(ax: Axes, spec: ChartSpec) -> None:
    """Price ticks (the card's format) and a few UTC time labels."""
    candles = spec.candles
    ax.yaxis.set_major_locator(MaxNLocator(nbins=8))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format_price(value, spec.tick_size)))

    count = len(candles)
    positions = np.unique(np.linspace(0, count - 1, num=min(_TIME_LABELS, count)).round().astype(int))
    fmt = "%Y-%m-%d" if candles.period_ms >= 86_400_000 else "%m-%d %H:%M"
    labels = [datetime.fromtimestamp(int(candles.ts[i]) / 1000, tz=UTC).strftime(fmt) for i in positions]
    ax.xaxis.set_major_locator(FixedLocator([float(i) for i in positions]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, pos: labels[pos] if pos < len(labels) else ""))
    ax.set_xlabel("UTC (candle open)", color=TEXT, fontsize=9)


def _draw_candles(ax: Axes, candles: Candles, x: FloatArray, min_body: float) -> None:
    """Wicks as one vlines collection, bodies as one collection of rectangles (up green, down red,
    placeholders grey).

    The bodies are one ``PolyCollection`` built with numpy rather than ``Axes.bar``, which makes a
    separate Rectangle artist per candle and took a third of the render time. A body is at least
    ``min_body`` (a pixel) tall, so a doji or a flat placeholder still shows.
    """
    up = candles.close >= candles.open
    colors = np.where(up, CANDLE_UP, CANDLE_DOWN).astype(object)
    colors[candles.placeholder] = CANDLE_PLACEHOLDER
    color_list = colors.tolist()
    ax.vlines(x, candles.low, candles.high, colors=color_list, linewidth=1.0, zorder=2)
    bottom = np.minimum(candles.open, candles.close)
    top = bottom + np.maximum(np.abs(candles.close - candles.open), min_body)
    left, right = x - _BODY_WIDTH / 2, x + _BODY_WIDTH / 2
    corners = np.stack([left, bottom, left, top, right, top, right, bottom], axis=1).reshape(-1, 4, 2)
    bodies = PolyCollection(list(corners), facecolors=color_list, edgecolors="none", linewidths=0, zorder=2)
    ax.add_collection(bodies, autolim=False)


def _draw_signal_mark(ax: Axes, spec: ChartSpec, index: int, *, beside_label: bool) -> None:
    """A dotted vertical line through the signal bar and a triangle pointing the trade's way.

    The triangle sits under the bar's low (LONG) or over its high (SHORT), a fixed distance in
    pixels away, further when a key point's label is on that bar.
    """
    candles = spec.candles
    ax.axvline(index, color=SIGNAL_MARK, linewidth=1.0, linestyle=(0, (1, 3)), zorder=1)
    distance = 44.0 if beside_label else 15.0
    long = spec.direction is Direction.LONG
    shifted = offset_copy(ax.transData, y=-distance if long else distance, units="dots")
    ax.plot(
        [index],
        [candles.low[index] if long else candles.high[index]],
        marker="^" if long else "v",
        markersize=11,
        color=SIGNAL_MARK,
        transform=shifted,
        zorder=4,
    )


def _draw_key_points(
    ax: Axes, candles: Candles, key_points: Sequence[tuple[int, KeyPoint]], height: int
) -> tuple[tuple[str, int, int], ...]:
    """Markers with their labels, joined by a thin line in time order; returns their pixel positions."""
    if not key_points:
        return ()
    xs = [float(index) for index, _ in key_points]
    ys = [point.price for _, point in key_points]
    ax.plot(xs, ys, color=KEY_POINT, linewidth=1.2, zorder=4)
    ax.plot(xs, ys, linestyle="none", marker="o", markersize=7, color=KEY_POINT, zorder=4)
    pixels = []
    for (index, point), (col, row_up) in zip(
        key_points, ax.transData.transform(np.column_stack((xs, ys))), strict=True
    ):
        # A point at or above its candle's middle is a high: label above it; a low gets it below.
        above = point.price >= (candles.high[index] + candles.low[index]) / 2
        ax.annotate(
            point.label,
            (index, point.price),
            xytext=(0, 9 if above else -9),
            textcoords="offset points",
            ha="center",
            va="bottom" if above else "top",
            color=KEY_POINT,
            fontsize=11,
            fontweight="bold",
            zorder=6,
            parse_math=False,
        )
        pixels.append((point.label, int(col), int(height - row_up)))
    return tuple(pixels)


def _draw_levels(
    ax: Axes, spec: ChartSpec, levels: Sequence[tuple[str, float]], height: int
) -> dict[str, int]:
    """Full-width solid lines on top of the candles, each with a price tag in the right margin.

    Tags of levels closer than a tag's height are pushed apart (keeping their order) so all stay
    readable; the lines themselves are never moved.
    """
    rows: dict[str, int] = {}
    display_y: list[float] = []
    for name, price in levels:
        ax.axhline(price, color=LEVEL_COLORS[name], linewidth=_LEVEL_LINE_PT, zorder=5)
        y_up = float(ax.transData.transform((0.0, price))[1])
        display_y.append(y_up)
        rows[name] = math.floor(height - y_up)

    tag_y = _spread(display_y, _LABEL_GAP_PX, height - _LABEL_GAP_PX / 2)
    for (name, price), y_up, placed in zip(levels, display_y, tag_y, strict=True):
        ax.annotate(
            f"{_TAG_NAMES.get(name, name.upper())} {format_price(price, spec.tick_size)}",
            (1.0, price),
            xycoords=("axes fraction", "data"),
            xytext=(4, placed - y_up),
            textcoords="offset pixels",
            ha="left",
            va="center",
            color=BACKGROUND,
            fontsize=10,
            fontweight="bold",
            annotation_clip=False,
            parse_math=False,
            bbox={"boxstyle": "square,pad=0.2", "facecolor": LEVEL_COLORS[name], "edgecolor": "none"},
            zorder=6,
        )
    return rows


def _spread(values: Sequence[float], gap: float, top: float) -> list[float]:
    """``values`` moved as little as this simple pass can so that any two are ``gap`` apart, order kept.

    Sorted ascending, each value is pushed up to clear the one below it; then, from the top down,
    any value above ``top`` (the image's upper edge less a margin) is pushed back under it.
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    placed = [values[i] for i in order]
    for k in range(1, len(placed)):
        placed[k] = max(placed[k], placed[k - 1] + gap)
    limit = top
    for k in range(len(placed) - 1, -1, -1):
        placed[k] = min(placed[k], limit)
        limit = placed[k] - gap
    result = [0.0] * len(values)
    for value, i in zip(placed, order, strict=True):
        result[i] = value
    return result


def save_png(figure: Figure, path: Path) -> None:
    """Encode ``figure`` as a PNG into a 0600 temporary file beside ``path``, then move it over ``path``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            figure.savefig(handle, format="png", dpi=DPI, facecolor=BACKGROUND)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
