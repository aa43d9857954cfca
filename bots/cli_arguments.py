"""Argument types for the command line: each turns one text into a value or a one-line error.

argparse prints the ``ArgumentTypeError`` message after the option's name, so an error reads
``--price: '-5': a price must be a number above 0`` and nothing else.
"""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from pathlib import Path

from common.config import SymbolEntry


def utc_ms(text: str) -> int:
    """An ISO time (a date alone is midnight; no zone means UTC) as Unix milliseconds, for argparse."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time such as 2024-08-01 or 2024-08-01T12:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def positive_price(text: str) -> float:
    """A price for argparse: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a price must be a number above 0")
    return value


def positive(text: str) -> float:
    """A positive number, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def count(text: str) -> int:
    """A whole number >= 0, for argparse."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def http_url(text: str) -> str:
    """An http:// or https:// URL, for argparse."""
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} must start with http:// or https://")
    return text


def port(text: str) -> int:
    """A TCP port 0..65535 (0: off), for argparse."""
    if not text.isdigit() or int(text) > 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0 turns it off)")
    return int(text)


def folders(text: str) -> list[Path]:
    """``DIR[,DIR...]`` as existing folders, for argparse."""
    folders = [Path(part) for part in text.split(",") if part]
    if not folders:
        raise argparse.ArgumentTypeError(f"{text!r} names no folder")
    for folder in folders:
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"{str(folder)!r} is not a folder")
    return folders


def symbol(text: str) -> str:
    """A ccxt unified symbol (BTC/USDT or BTC/USDT:USDT), for argparse."""
    try:
        return SymbolEntry(symbol=text).symbol
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a symbol like BTC/USDT or BTC/USDT:USDT") from None
