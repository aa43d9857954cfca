"""A bot's equity curve in a backtest: its cumulative R over its closed signals, drawn as a PNG.

The curve starts at 0 R when the backtest starts, steps at each exit (exit-time order, then signal
id: the order of ``common.stats``, so the curve's drawdown is the table's) and runs flat to the end
of the backtest. It is drawn like the alert charts (``common.charts``): matplotlib's object-oriented
API on an Agg canvas, the same dark theme, a fixed plot area in pixels, every drawing under the
process's one matplotlib lock, and the PNG written to a private temporary file that is moved into
place. A marker at the end shows the final R; :class:`EquityGeometry` says where things landed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from common.charts import TEXT, dark_axes, draw_lock, save_png
from common.errors import DataError
from common.stats import closed_signals
from common.store import StoredSignal

WIDTH_PX = 1000
HEIGHT_PX = 500
#: The plot area inside the image, in pixels from the left and top edges (fixed, as in the charts).
_PLOT_LEFT, _PLOT_RIGHT, _PLOT_TOP, _PLOT_BOTTOM = 70, 900, 46, 452
#: Share of the R range added above and below the curve.
_Y_PAD = 0.05
LINE_COLOR = "#448aff"
_DAY_MS = 86_400_000
FINAL_MARK = "#ffd54f"


@dataclass(frozen=True)
class EquityCurve:
    """Cumulative R over time: ``r[i]`` holds from ``times_ms[i]`` until the next time.

    The first point is the backtest's start at 0 R, then one point per closed trade (its exit time
    and the sum of R so far), and the last point is the backtest's end at the final R.
    """

    times_ms: tuple[int, ...]
    r: tuple[float, ...]
    trades: int

    @property
    def final_r(self) -> float:
        """The cumulative R at the end: the bot's total R."""
        return self.r[-1]


@dataclass(frozen=True)
class EquityGeometry:
    """Where the curve landed in the PNG, in pixels (column 0 = left, row 0 = top).

    ``plot_box`` is (left, top, right, bottom) of the plot area and ``r_range`` the (low, high) R of
    its bottom and top edges; the final-R marker is centred on the plot's right edge at the row of
    ``final_r``.
    """

    width_px: int
    height_px: int
    plot_box: tuple[int, int, int, int]
    r_range: tuple[float, float]
    final_r: float
    line_color: str = LINE_COLOR
    final_mark_color: str = FINAL_MARK


def equity_curve(signals: Sequence[StoredSignal], start_ms: int, end_ms: int) -> EquityCurve:
    """The curve of the CLOSED signals among ``signals`` (one bot's) from ``start_ms`` to ``end_ms``."""
    closed = closed_signals(signals)
    times, values, total = [start_ms], [0.0], 0.0
    for stored in closed:
        total += stored.r_multiple if stored.r_multiple is not None else 0.0
        times.append(stored.exit_ms if stored.exit_ms is not None else start_ms)
        values.append(total)
    times.append(max(end_ms, times[-1]))
    values.append(total)
    return EquityCurve(times_ms=tuple(times), r=tuple(values), trades=len(closed))


def r_range(curve: EquityCurve) -> tuple[float, float]:
    """The R shown from the bottom to the top of the plot: the curve and 0, padded by 5 %."""
    low, high = min(0.0, *curve.r), max(0.0, *curve.r)
    pad = (high - low) * _Y_PAD if high > low else 1.0
    return low - pad, high + pad


def render_equity(curve: EquityCurve, title: str, path: Path) -> EquityGeometry:
    """Draw ``curve`` with ``title`` to a PNG at ``path`` (0600; its folder must exist).

    Any failure (a non-finite R, a folder that does not exist) is one :class:`DataError` line.
    """
    if not bool(np.all(np.isfinite(curve.r))):
        raise DataError(f"equity curve {title!r}: an R value is NaN or infinite")
    try:
        with draw_lock:
            figure, geometry = _draw(curve, title)
            save_png(figure, path)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(f"equity curve {title!r}: cannot render: {type(exc).__name__}: {detail}") from exc
    return geometry


def _draw(curve: EquityCurve, title: str) -> tuple[Figure, EquityGeometry]:
    """Build the figure: a step line of the cumulative R, the zero line, the final-R marker."""
    # Days since the epoch on the x axis, labelled as UTC dates (the charts' own tick handling).
    x = np.asarray(curve.times_ms, dtype=np.float64) / _DAY_MS
    low, high = r_range(curve)
    plot_box = (_PLOT_LEFT, _PLOT_TOP, _PLOT_RIGHT, _PLOT_BOTTOM)
    figure, ax = dark_axes(WIDTH_PX, HEIGHT_PX, plot_box, title)
    # A backtest shorter than a minute (or none at all) still gets an axis to draw on.
    right = x[-1] if x[-1] > x[0] else x[0] + 1.0
    ax.set_xlim(x[0], right)
    ax.set_ylim(low, high)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
    pattern = "%Y-%m-%d" if right - x[0] >= 3 else "%m-%d %H:%M"
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda day, _: datetime.fromtimestamp(day * 86_400, tz=UTC).strftime(pattern))
    )
    ax.set_ylabel("cumulative R", color=TEXT, fontsize=10)
    ax.axhline(0.0, color=TEXT, linewidth=0.8, alpha=0.5, zorder=1)
    ax.step(x, curve.r, where="post", color=LINE_COLOR, linewidth=1.8, zorder=3)
    ax.plot([right], [curve.final_r], marker="o", markersize=9, color=FINAL_MARK, clip_on=False, zorder=5)
    ax.annotate(
        f"{curve.final_r:+.2f} R",
        (right, curve.final_r),
        xytext=(12, -4),
        textcoords="offset points",
        color=FINAL_MARK,
        fontsize=11,
        annotation_clip=False,
        parse_math=False,
    )
    geometry = EquityGeometry(
        width_px=WIDTH_PX,
        height_px=HEIGHT_PX,
        plot_box=plot_box,
        r_range=(low, high),
        final_r=curve.final_r,
    )
    return figure, geometry
