"""``python -m bench [NAME ...]``: run every ``bench/bench_*.py`` module, print a table, save JSON.

Each module exposes ``run() -> list[tuple[str, float, str]]`` (metric, value, unit). The rows of all
modules are printed as one aligned table (module, metric, value, unit) and written to
``bench/results/latest.json`` (directory 0700, file 0600, replaced atomically). Give module names
(``levels`` or ``bench_levels``) to run only those. A module that raises is reported on stderr, the
others still run, and the exit status is 1.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import sys
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
LATEST = RESULTS_DIR / "latest.json"

Row = tuple[str, str, float, str]


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_*``) in this package, sorted."""
    return sorted(
        info.name for info in pkgutil.iter_modules([str(BENCH_DIR)]) if info.name.startswith("bench_")
    )


def _selected(available: list[str], wanted: Sequence[str]) -> list[str]:
    if not wanted:
        return available
    chosen = []
    for name in wanted:
        module = name if name.startswith("bench_") else f"bench_{name}"
        if module not in available:
            raise SystemExit(f"bench: no module {module} (have: {', '.join(available)})")
        chosen.append(module)
    return chosen


def run_module(name: str) -> list[Row]:
    """Import ``bench.<name>`` and call its ``run()``; check the rows' shape."""
    module: Any = importlib.import_module(f"bench.{name}")
    rows = module.run()
    checked: list[Row] = []
    for metric, value, unit in rows:
        if not isinstance(metric, str) or not isinstance(unit, str):
            raise TypeError(f"{name}.run() must return (str, float, str) rows, got {(metric, value, unit)!r}")
        checked.append((name.removeprefix("bench_"), metric, float(value), unit))
    return checked


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table with a header."""
    header = ("module", "metric", "value", "unit")
    cells = [(module, metric, f"{value:,.3f}", unit) for module, metric, value, unit in rows]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]
    lines = []
    for line in [header, *cells]:
        lines.append(
            f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]:>{widths[2]}}  {line[3]:<{widths[3]}}"
        )
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def write_results(rows: Sequence[Row], failed: Sequence[str]) -> Path:
    """Write ``bench/results/latest.json`` (0600 in a 0700 directory), atomically."""
    RESULTS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    RESULTS_DIR.chmod(0o700)
    document = {
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "failed_modules": list(failed),
        "results": [
            {"module": module, "metric": metric, "value": value, "unit": unit}
            for module, metric, value, unit in rows
        ],
    }
    temporary = LATEST.with_suffix(".json.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, LATEST)
    return LATEST


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmark modules; 0 when all ran, 1 when one raised."""
    names = _selected(discover(), sys.argv[1:] if argv is None else argv)
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(run_module(name))
        except Exception:
            failed.append(name)
            print(f"bench: {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
    print(format_table(rows))
    path = write_results(rows, failed)
    print(f"\nwritten to {path}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
