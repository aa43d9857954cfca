"""`python -m bots backtest` on real bundled history: the report's files, curves, bounds and arguments."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from bots.cli import main
from common.export import iso_utc
from tests.harness import REPO, SAMPLE, CliRun, offline_env, run_bots

pytestmark = pytest.mark.integration

FROM, TO = "2024-03-01", "2024-03-22"
FROM_MS, TO_MS = 1_709_251_200_000, 1_711_065_600_000  # 2024-03-01 and 2024-03-22, 00:00 UTC
BOTS = ("psar_bot", "most_bot")
REPORT_FILES = {
    "signals.sqlite3",
    "stats.txt",
    "stats.json",
    "signals.csv",
    "backtest.json",
    "equity_psar_bot.png",
    "equity_most_bot.png",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Largest difference per RGB channel (0-255) for a pixel to count as a given colour.
TOLERANCE = 12
#: One drawn state of the progress bar.
PROGRESS = re.compile(r"backtest: +\d+%\|")


@dataclass(frozen=True)
class Backtest:
    """A finished backtest run: what the CLI printed and where its report is."""

    run: CliRun
    report: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def backtest(tmp_path_factory: pytest.TempPathFactory) -> Backtest:
    """psar_bot and most_bot on BTC, ETH and SOL 1h (built from the bundled 15m files), three weeks."""
    tmp_path = tmp_path_factory.mktemp("backtest")
    env = offline_env(tmp_path, REPO / "global_config.json")
    report = tmp_path / "reports" / "march"
    args = ["backtest", *BOTS, "--data", str(SAMPLE), "--from", FROM, "--to", TO, "--report", str(report)]
    return Backtest(run_bots(args, env), report, env)


def stderr_lines(run: CliRun) -> list[str]:
    """What the run wrote to stderr, one entry per line or per redrawn state of the progress bar."""
    return [part for part in re.split(r"[\r\n]", run.stderr) if part.strip()]


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an exported CSV file."""
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def png_chunks(path: Path) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk of a PNG file, checking the signature and every chunk's CRC."""
    content = path.read_bytes()
    assert content[:8] == PNG_SIGNATURE
    chunks, offset = [], 8
    while offset < len(content):
        (length,) = struct.unpack(">I", content[offset : offset + 4])
        kind = content[offset + 4 : offset + 8]
        data = content[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", content[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) == crc, f"{path.name}: bad CRC in chunk {kind!r}"
        chunks.append((kind, data))
        offset += 12 + length
    return chunks


def rgb_pixels(path: Path) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The PNG's pixels as 0-255 integers, shape (rows, columns, 3)."""
    return np.asarray(np.round(imread(path)[..., :3] * 255), dtype=np.int64)


def colour_mask(
    image: np.ndarray[Any, np.dtype[np.int64]], colour: str
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Pixels within TOLERANCE of the matplotlib ``colour`` on every channel."""
    wanted = np.round(np.array(to_rgb(colour)) * 255)
    mask: np.ndarray[Any, np.dtype[np.bool_]] = np.all(np.abs(image - wanted) <= TOLERANCE, axis=-1)
    return mask


def test_the_report_has_every_file_private_and_the_table_is_printed(backtest: Backtest) -> None:
    """Exit 0; the report folder (0700) holds the store, stats, CSV, JSON and one PNG per bot, all 0600."""
    assert backtest.run.returncode == 0, backtest.run.stderr
    report = backtest.report
    names = {p.name for p in report.iterdir() if p.is_file()}
    assert names == REPORT_FILES
    for folder in (report, report / "events"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in [*report.iterdir(), *(report / "events").iterdir()]:
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    table = (report / "stats.txt").read_text(encoding="utf-8")
    assert table.splitlines()[0].split()[:3] == ["key", "signals", "win%"]
    assert {line.split()[0] for line in table.splitlines()[2:]} == set(BOTS)
    candles = json.loads((report / "backtest.json").read_text(encoding="utf-8"))["candles"]
    span = "2024-03-01 00:00 UTC to 2024-03-22 00:00 UTC"
    assert backtest.run.stdout == f"{table}\nreport: {report} ({span}, {candles:,} candles)\n"


def test_csv_has_one_row_per_stored_signal_and_stats_read_the_report(backtest: Backtest) -> None:
    """signals.csv has exactly the store's signals; `stats`/`export --store` give stats.json and the CSV."""
    report = backtest.report
    rows = csv_rows(report / "signals.csv")
    with sqlite3.connect(report / "signals.sqlite3") as db:
        stored = db.execute("SELECT id, bot, status FROM signals").fetchall()
    assert sorted((r["id"], r["bot"], r["status"]) for r in rows) == sorted(stored)
    assert len(rows) >= 20  # a real window: both bots fire
    assert {r["bot"] for r in rows} == set(BOTS)
    exported = run_bots(["export", "--format", "csv", "--store", str(report)], backtest.env)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == (report / "signals.csv").read_text(encoding="utf-8")
    stats = run_bots(["stats", "--json", "--store", str(report)], backtest.env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout) == json.loads((report / "stats.json").read_text(encoding="utf-8"))


def test_from_and_to_bound_every_signal(backtest: Backtest) -> None:
    """Every signal is created within [--from, --to] and closed by --to; the report says so."""
    rows = csv_rows(backtest.report / "signals.csv")
    for row in rows:
        assert iso_utc(FROM_MS) <= row["timestamp"] <= iso_utc(TO_MS), row
        if row["exit_time"]:
            assert row["exit_time"] <= iso_utc(TO_MS), row
    facts = json.loads((backtest.report / "backtest.json").read_text(encoding="utf-8"))
    assert (facts["start"], facts["end"]) == (iso_utc(FROM_MS), iso_utc(TO_MS))
    # 21 days of 1h candles closing in [start, end] for 3 symbols: 3 x (21 x 24 + 1).
    assert facts["candles"] == 3 * (21 * 24 + 1)
    assert facts["cycles"] == 21 * 24 + 1
    assert facts["bots"] == {
        bot: {"timeframe": "1h", "symbols": ["BTC/USDT", "ETH/USDT", "SOL/USDT"]} for bot in BOTS
    }


def test_progress_bar_reaches_100_percent_at_the_end_time(backtest: Backtest) -> None:
    """The last state of the tqdm bar on stderr reads 100 % at the simulated end, 2024-03-22 00:00."""
    states = stderr_lines(backtest.run)
    assert states[0].startswith("backtest:   0%|")
    assert states[-1].startswith("backtest: 100%|")
    assert states[-1].endswith(", 2024-03-22 00:00 UTC]")
    assert all(PROGRESS.match(state) for state in states)  # nothing else was printed


@pytest.mark.parametrize("bot", BOTS)
def test_equity_png_is_valid_and_its_curve_ends_at_the_bots_total_r(backtest: Backtest, bot: str) -> None:
    """The PNG's chunks and CRCs are sound, and the final-R marker sits on the row of the CSV's total R."""
    report = backtest.report
    path = report / f"equity_{bot}.png"
    chunks = png_chunks(path)
    assert chunks[0][0] == b"IHDR"
    assert chunks[-1] == (b"IEND", b"")
    width, height = struct.unpack(">II", chunks[0][1][:8])
    total = sum(
        float(row["r_multiple"])
        for row in csv_rows(report / "signals.csv")
        if row["bot"] == bot and row["status"] == "CLOSED"
    )
    stats = json.loads((report / "stats.json").read_text(encoding="utf-8"))
    assert stats[bot]["total_r"] == pytest.approx(round(total, 4), abs=1e-4)
    curve = json.loads((report / "backtest.json").read_text(encoding="utf-8"))["equity"][bot]
    assert (width, height) == (curve["width_px"], curve["height_px"])
    assert curve["final_r"] == pytest.approx(total, abs=1e-9)
    left, top, right, bottom = curve["plot_box"]
    low, high = curve["r_range"]
    assert low < min(0.0, total)
    assert high > max(0.0, total)
    image = rgb_pixels(path)
    # The marker alone in a band around the plot's right edge (its label starts further right).
    band = colour_mask(image[:, right - 7 : right + 8], curve["final_mark_color"])
    rows, _ = np.nonzero(band)
    assert rows.size > 40
    expected_row = top + (high - total) / (high - low) * (bottom - top)
    assert abs(float(rows.mean()) - expected_row) <= 1.5
    # And the curve is drawn inside the plot.
    assert colour_mask(image[top:bottom, left:right], curve["line_color"]).sum() > 500


def test_symbols_and_timeframe_overrides_and_a_symbol_without_data(tmp_path: Path) -> None:
    """--symbols replaces every bot's list (swaps stay swaps), a symbol without files is one line and
    skipped, and a bot that cannot use --timeframe is one line and skipped."""
    env = offline_env(tmp_path, REPO / "global_config.json")
    report = tmp_path / "report"
    args = ["backtest", "psar_bot", "orb_bot", "funding_bot", "--data", str(SAMPLE), "--timeframe", "4h"]
    args += [
        "--from",
        FROM,
        "--to",
        "2024-04-15",
        "--symbols",
        "BTC/USDT",
        "DOGE/USDT",
        "--report",
        str(report),
    ]
    run = run_bots(args, env)
    assert run.returncode == 0, run.stderr
    assert [line for line in stderr_lines(run) if not PROGRESS.match(line)] == [
        f"backtest: no candle file for DOGE/USDT in {SAMPLE} (DOGE_USDT-*.csv[.gz]); skipped",
        f"backtest: orb_bot skipped: it cannot run on 4h ({REPO / 'global_config.json'}: bots.orb_bot: "
        "timeframe 4h does not divide the opening range stage(s) [60] minutes; use 5m or a timeframe that "
        "divides every stage and session start)",
    ]
    facts = json.loads((report / "backtest.json").read_text(encoding="utf-8"))
    assert facts["bots"] == {
        "psar_bot": {"timeframe": "4h", "symbols": ["BTC/USDT"]},
        "funding_bot": {"timeframe": "4h", "symbols": ["BTC/USDT:USDT"]},
    }
    assert set(facts["equity"]) == {"psar_bot", "funding_bot"}
    rows = csv_rows(report / "signals.csv")
    assert rows, "psar_bot fires on BTC 4h over six weeks"
    assert {(r["bot"], r["symbol"]) for r in rows} <= {
        ("psar_bot", "BTC/USDT"),
        ("funding_bot", "BTC/USDT:USDT"),
    }
    with sqlite3.connect(report / "signals.sqlite3") as db:
        assert {tf for (tf,) in db.execute("SELECT DISTINCT timeframe FROM signals")} == {"4h"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "DATA"], "error: backtest: name a bot (see `python -m bots list`) or use --all"),
        (["psar_bot", "--all", "--data", "DATA"], "error: backtest: give bot names or --all, not both"),
        (["nobody_bot", "--data", "DATA"], "error: backtest: unknown bot 'nobody_bot' (known: "),
        (["psar_bot"], "python -m bots backtest: error: the following arguments are required: --data"),
        (
            ["psar_bot", "--data", "nowhere"],
            "python -m bots backtest: error: argument --data: 'nowhere' is not a folder",
        ),
        (
            ["psar_bot", "--data", "DATA", "--from", "2024-03-10", "--to", "2024-03-01"],
            "error: backtest: --from must be before --to",
        ),
        (
            ["psar_bot", "--data", "DATA", "--from", "March"],
            "python -m bots backtest: error: argument --from: 'March' is not an ISO time such as 2024-08-01",
        ),
        (
            ["psar_bot", "--data", "DATA", "--timeframe", "7m"],
            "python -m bots backtest: error: argument --timeframe: invalid choice: '7m'",
        ),
        (
            ["psar_bot", "--data", "DATA", "--symbols", "BTCUSDT"],
            "python -m bots backtest: error: argument --symbols: 'BTCUSDT' is not a symbol like BTC/USDT",
        ),
        (
            ["psar_bot", "--data", "DATA", "--symbols", "NOPE/USDT"],
            f"backtest: no candle file for NOPE/USDT in {SAMPLE} (NOPE_USDT-*.csv[.gz]); skipped\n"
            "backtest: psar_bot skipped: none of its symbols has data\n"
            "error: backtest: no bot left to run\n",
        ),
        (["psar_bot", "--data", "DATA", "--report", "USED"], "error: backtest: --report USED already holds"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each bad invocation prints one line (its start given here; a run left without bots, a line per
    skipped bot or symbol first) to stderr, writes nothing and exits 2."""
    used = tmp_path / "used"
    used.mkdir()
    (used / "signals.sqlite3").write_bytes(b"")
    for key in [k for k in os.environ if k.startswith(("TELEGRAM_", "MEXC_", "BOTS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("BOTS_CONFIG", str(REPO / "global_config.json"))
    monkeypatch.chdir(tmp_path)
    argv = [{"DATA": str(SAMPLE), "USED": str(used)}.get(arg, arg) for arg in args]
    message = message.replace("USED", str(used))
    umask = os.umask(0o022)
    os.umask(umask)
    status: object
    try:
        try:
            status = main(["backtest", *argv])
        except SystemExit as exit_:
            status = exit_.code  # argparse
    finally:
        os.umask(umask)  # main() sets 077 for the process
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    if message.endswith("\n"):
        assert captured.err == message
    else:
        assert captured.err.startswith(message), captured.err
        assert captured.err.count("\n") == 1
        assert captured.err.endswith("\n")
    assert not (tmp_path / "backtests").exists()
