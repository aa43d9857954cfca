"""Tests of common.equity: the cumulative R curve of a bot's closed signals and its PNG."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from common.equity import EquityCurve, equity_curve, r_range, render_equity
from common.errors import DataError
from tests.test_stats import HOUR, T0, closed, make_signal, still_open

pytestmark = pytest.mark.unit

START, END = T0, T0 + 100 * HOUR


def test_curve_steps_at_each_exit_in_exit_order_and_ignores_open_signals() -> None:
    """0 R at the start, the running sum at each exit (exit time, then id), flat to the end."""
    signals = [
        closed(make_signal("psar_bot", "BTC/USDT", 1), 2.5, "TP2", T0 + 30 * HOUR),
        closed(make_signal("psar_bot", "ETH/USDT", 2), -1.0, "SL", T0 + 10 * HOUR),
        still_open(make_signal("psar_bot", "BTC/USDT", 3)),
        closed(make_signal("psar_bot", "BTC/USDT", 4), -0.5, "TIMEOUT", T0 + 30 * HOUR),
    ]
    curve = equity_curve(signals, START, END)
    assert curve == EquityCurve(
        times_ms=(START, T0 + 10 * HOUR, T0 + 30 * HOUR, T0 + 30 * HOUR, END),
        r=(0.0, -1.0, 1.5, 1.0, 1.0),
        trades=3,
    )
    assert curve.final_r == 1.0
    assert r_range(curve) == pytest.approx((-1.0 - 0.125, 1.5 + 0.125))


def test_no_trade_is_a_flat_line_with_a_unit_range() -> None:
    """Without a closed signal the curve is 0 R from start to end and the plot spans -1..1 R."""
    curve = equity_curve([still_open(make_signal("most_bot", "BTC/USDT", 1))], START, END)
    assert curve == EquityCurve(times_ms=(START, END), r=(0.0, 0.0), trades=0)
    assert r_range(curve) == (-1.0, 1.0)


def test_png_is_private_and_the_final_marker_sits_at_the_final_r(tmp_path: Path) -> None:
    """The file is 0600; the final-R marker's centre row matches the geometry's mapping of the final R."""
    signals = [
        closed(make_signal("psar_bot", "BTC/USDT", n), r, "TP1" if r > 0 else "SL", T0 + (10 + n) * HOUR)
        for n, r in enumerate((1.5, -1.0, -1.0, 2.0, -1.0, 3.0))
    ]
    curve = equity_curve(signals, START, END)
    path = tmp_path / "equity.png"
    geometry = render_equity(curve, "psar_bot", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    image = np.round(imread(path)[..., :3] * 255)
    assert image.shape == (geometry.height_px, geometry.width_px, 3)
    _, top, right, bottom = geometry.plot_box
    wanted = np.round(np.array(to_rgb(geometry.final_mark_color)) * 255)
    band = np.all(np.abs(image[:, right - 7 : right + 8] - wanted) <= 12, axis=-1)
    rows, _ = np.nonzero(band)
    low, high = geometry.r_range
    assert geometry.final_r == 3.5
    assert abs(rows.mean() - (top + (high - 3.5) / (high - low) * (bottom - top))) <= 1.5


def test_non_finite_r_or_missing_folder_is_one_data_error(tmp_path: Path) -> None:
    """A NaN in the curve, or a folder that does not exist, is a DataError naming the curve."""
    with pytest.raises(DataError, match="an R value is NaN"):
        render_equity(EquityCurve((START, END), (0.0, float("nan")), 1), "bad", tmp_path / "x.png")
    with pytest.raises(DataError, match="equity curve 'psar_bot': cannot render"):
        render_equity(EquityCurve((START, END), (0.0, 0.0), 0), "psar_bot", tmp_path / "no" / "x.png")
