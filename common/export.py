"""Export of every signal with its outcome as JSON lines or CSV, and an atomic private file write.

One record per signal, oldest first (created time, then id), with these fields in this order:
id, bot, timestamp (created, ISO UTC), symbol, direction, entry, sl, tp1, tp2, tp3, confidence
(the context's "confidence", else its "score", else empty), context (a JSON string), status,
exit_reason, exit_price, exit_time (ISO UTC), pnl_pct, r_multiple, result (WIN / LOSS / FLAT /
OPEN, from the R multiple), then the outcome's detail: time_in_trade_s (alert to final exit),
mfe_pct and mae_pct (excursions, percent of entry), funding_pct (perpetuals; empty when unknown)
and exits (the fills as "REASON fraction@price" joined by " | "). A missing value is null in JSON
lines and an empty cell in CSV.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from common.store import StoredSignal
from common.types import ContextValue

ExportFormat = Literal["jsonl", "csv"]

#: The exported fields, in order (the CSV header).
FIELDS = (
    "id",
    "bot",
    "timestamp",
    "symbol",
    "direction",
    "entry",
    "sl",
    "tp1",
    "tp2",
    "tp3",
    "confidence",
    "context",
    "status",
    "exit_reason",
    "exit_price",
    "exit_time",
    "pnl_pct",
    "r_multiple",
    "result",
    "time_in_trade_s",
    "mfe_pct",
    "mae_pct",
    "funding_pct",
    "exits",
)

Record = dict[str, ContextValue | None]


def iso_utc(ms: int) -> str:
    """``ms`` (epoch milliseconds) as ISO 8601 UTC with milliseconds, e.g. 2024-01-01T01:00:00.000Z."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def result_of(stored: StoredSignal) -> str:
    """OPEN while the signal is open; else WIN (R > 0), LOSS (R < 0) or FLAT (R = 0 or unknown)."""
    if stored.status != "CLOSED":
        return "OPEN"
    r = stored.r_multiple if stored.r_multiple is not None else stored.pnl_pct
    if r is None or r == 0:
        return "FLAT"
    return "WIN" if r > 0 else "LOSS"


def signal_record(stored: StoredSignal) -> Record:
    """One signal and its outcome as an ordered record of ``FIELDS`` (None where there is no value)."""
    sig = stored.signal
    tps: list[float | None] = [*sig.levels.tps, None, None, None][:3]
    context = sig.context
    confidence = context.get("confidence", context.get("score"))
    return {
        "id": sig.id,
        "bot": sig.bot,
        "timestamp": iso_utc(sig.created_ms),
        "symbol": sig.symbol,
        "direction": sig.direction.value,
        "entry": sig.levels.entry,
        "sl": sig.levels.sl,
        "tp1": tps[0],
        "tp2": tps[1],
        "tp3": tps[2],
        "confidence": confidence,
        "context": json.dumps(dict(context), sort_keys=True),
        "status": stored.status,
        "exit_reason": stored.exit_reason,
        "exit_price": stored.exit_price,
        "exit_time": None if stored.exit_ms is None else iso_utc(stored.exit_ms),
        "pnl_pct": stored.pnl_pct,
        "r_multiple": stored.r_multiple,
        "result": result_of(stored),
        "time_in_trade_s": None if stored.duration_ms is None else stored.duration_ms // 1000,
        "mfe_pct": stored.mfe_pct,
        "mae_pct": stored.mae_pct,
        "funding_pct": stored.funding_pct,
        "exits": " | ".join(f"{f.reason} {f.fraction:g}@{f.price:g}" for f in stored.fills) or None,
    }


def export_signals(signals: Sequence[StoredSignal], fmt: ExportFormat, since_ms: int | None = None) -> str:
    """Every signal (created at or after ``since_ms`` when given) with its outcome, oldest first.

    ``jsonl``: one JSON object per line, missing values as null. ``csv``: a header row then one row
    per signal, missing values as empty cells, "\\n" line ends.
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {fmt!r}: expected jsonl or csv")
    chosen = sorted(
        (s for s in signals if since_ms is None or s.signal.created_ms >= since_ms),
        key=lambda s: (s.signal.created_ms, s.signal.id),
    )
    records = [signal_record(s) for s in chosen]
    if fmt == "jsonl":
        return "".join(json.dumps(record) + "\n" for record in records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for record in records:
        writer.writerow(["" if record[name] is None else record[name] for name in FIELDS])
    return buffer.getvalue()


def write_atomically(text: str, path: Path) -> None:
    """Write ``text`` (UTF-8) to ``path`` all at once: a private (0600) temporary file in the same
    directory, flushed to disk, then renamed over ``path``. Readers see the old file or the new one,
    never a partial one; the temporary file is removed if anything fails."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o600)  # mkstemp already does; kept explicit against a changed umask policy
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
