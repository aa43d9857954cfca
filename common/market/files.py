"""Where replay files are: names in the ``../shared/market-data`` convention."""

from __future__ import annotations

from pathlib import Path


def file_stem(symbol: str) -> str:
    """'BTC/USDT' and 'BTC/USDT:USDT' -> 'BTC_USDT', the stem of their replay files."""
    return symbol.split(":", 1)[0].replace("/", "_")


def find_named(directory: Path, name: str) -> Path | None:
    """``directory/name.csv.gz`` (preferred) or ``directory/name.csv``, whichever exists, or None."""
    for suffix in (".csv.gz", ".csv"):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None
