"""Tests of common.types: self-validating Levels and Candles, Direction words, timeframe arithmetic."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from common.runner import next_close_ms
from common.types import Candles, Direction, Levels, Setup, Signal, timeframe_ms

pytestmark = pytest.mark.unit


def _ms(when: str) -> int:
    """Unix ms of an ISO time ('2024-01-01T00:00'), read as UTC."""
    return int(datetime.fromisoformat(when).replace(tzinfo=UTC).timestamp()) * 1000


T0 = _ms("2024-01-01T00:00")  # a Monday
HOUR = 3_600_000


def exactly(message: str) -> str:
    """A ``match=`` pattern accepting exactly ``message``."""
    return f"^{re.escape(message)}$"


def starting(message: str) -> str:
    """A ``match=`` pattern accepting messages that start with ``message``."""
    return f"^{re.escape(message)}"


def _candles(count: int = 5, **overrides: object) -> Candles:
    """``count`` hourly candles from T0 with simple distinct values; keyword arguments replace fields."""
    base = np.arange(count, dtype=np.float64)
    fields: dict[str, object] = {
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "ts": T0 + np.arange(count, dtype=np.int64) * HOUR,
        "open": 100.0 + base,
        "high": 102.0 + base,
        "low": 99.0 + base,
        "close": 101.0 + base,
        "volume": 10.0 + base,
    }
    fields.update(overrides)
    return Candles(**fields)  # type: ignore[arg-type]


# -- Levels ---------------------------------------------------------------------------------------


def test_levels_valid_long_and_short_compute_risk_and_rr() -> None:
    """A valid LONG and SHORT construct, with risk, R:R and % distance computed by hand."""
    long = Levels(Direction.LONG, entry=100.0, sl=98.0, tps=(104.0, 106.0, 110.0))
    assert long.risk == 2.0
    assert [long.risk_reward(i) for i in range(3)] == [2.0, 3.0, 5.0]
    assert long.pct_from_entry(98.0) == -2.0
    short = Levels(Direction.SHORT, entry=200.0, sl=204.0, tps=(194.0,))
    assert short.risk == 4.0
    assert short.risk_reward(0) == 1.5
    assert short.pct_from_entry(194.0) == -3.0


@pytest.mark.parametrize(
    ("direction", "sl", "message"),
    [
        (Direction.LONG, 101.0, "LONG stop 101.0 is not on the loss side of entry 100.0"),
        (Direction.LONG, 100.0, "LONG stop 100.0 is not on the loss side of entry 100.0"),
        (Direction.SHORT, 99.0, "SHORT stop 99.0 is not on the loss side of entry 100.0"),
    ],
)
def test_levels_reject_stop_on_the_wrong_side(direction: Direction, sl: float, message: str) -> None:
    """A stop at or beyond entry on the profit side cannot be constructed."""
    tp = 105.0 if direction is Direction.LONG else 95.0
    with pytest.raises(ValueError, match=exactly(message)):
        Levels(direction, entry=100.0, sl=sl, tps=(tp,))


@pytest.mark.parametrize(
    ("direction", "sl", "tps", "message"),
    [
        (Direction.LONG, 98.0, (95.0,), "LONG TP1 95.0 is not beyond 100.0"),
        (Direction.LONG, 98.0, (104.0, 103.0), "LONG TP2 103.0 is not beyond 104.0"),
        (Direction.LONG, 98.0, (104.0, 106.0, 106.0), "LONG TP3 106.0 is not beyond 106.0"),
        (Direction.SHORT, 102.0, (96.0, 97.0), "SHORT TP2 97.0 is not beyond 96.0"),
    ],
)
def test_levels_reject_targets_out_of_order(
    direction: Direction, sl: float, tps: tuple[float, ...], message: str
) -> None:
    """Targets on the loss side, or not strictly further than the previous one, are refused."""
    with pytest.raises(ValueError, match=exactly(message)):
        Levels(direction, entry=100.0, sl=sl, tps=tps)


@pytest.mark.parametrize(
    ("entry", "sl", "tps"),
    [
        (math.nan, 98.0, (104.0,)),
        (100.0, math.nan, (104.0,)),
        (100.0, 98.0, (104.0, math.nan)),
        (100.0, 98.0, (math.inf,)),
        (100.0, -1.0, (104.0,)),
    ],
)
def test_levels_reject_nan_infinite_and_negative_prices(
    entry: float, sl: float, tps: tuple[float, ...]
) -> None:
    """NaN, infinity or a non-positive price anywhere in the levels is refused."""
    prices = (entry, sl, *tps)
    with pytest.raises(ValueError, match=exactly(f"levels must be positive finite prices, got {prices}")):
        Levels(Direction.LONG, entry=entry, sl=sl, tps=tps)


@pytest.mark.parametrize("tps", [(), (101.0, 102.0, 103.0, 104.0)])
def test_levels_need_one_to_three_targets(tps: tuple[float, ...]) -> None:
    """Zero or four take-profits are refused."""
    with pytest.raises(ValueError, match=exactly(f"levels need one to three take-profits, got {len(tps)}")):
        Levels(Direction.LONG, entry=100.0, sl=98.0, tps=tps)


def test_signal_rejects_levels_of_the_other_direction() -> None:
    """A SHORT signal cannot carry LONG levels."""
    levels = Levels(Direction.LONG, entry=100.0, sl=98.0, tps=(104.0,))
    with pytest.raises(ValueError, match=exactly("signal abc: levels are LONG, signal is SHORT")):
        Signal(
            id="abc",
            bot="psar_bot",
            symbol="BTC/USDT",
            timeframe="1h",
            direction=Direction.SHORT,
            levels=levels,
            reason="r",
            bar_ts=T0,
            created_ms=T0 + HOUR,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"entry": 0.0}, "setup entry must be a positive finite price, got 0.0"),
        ({"atr": math.nan}, "setup atr must be a positive finite number, got nan"),
        ({"stop": -1.0}, "setup stop must be a positive finite price, got -1.0"),
        ({"swing": (5.0, 4.0)}, "setup swing must be (low, high) with 0 < low < high, got (5.0, 4.0)"),
        ({"reason": "  "}, "setup reason must not be empty"),
    ],
)
def test_setup_rejects_invalid_values(kwargs: dict[str, object], message: str) -> None:
    """A Setup with non-positive entry, NaN atr, negative stop, inverted swing or blank reason is refused."""
    fields: dict[str, object] = {"direction": Direction.LONG, "bar_ts": T0, "entry": 100.0, "reason": "r"}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=exactly(message)):
        Setup(**fields)  # type: ignore[arg-type]


# -- Candles --------------------------------------------------------------------------------------


def test_candles_reject_unsorted_and_repeated_timestamps() -> None:
    """Timestamps that go backwards or repeat are refused."""
    ts = np.array([T0, T0 + 2 * HOUR, T0 + HOUR], dtype=np.int64)
    with pytest.raises(
        ValueError, match=exactly("BTC/USDT 1h: candle timestamps are not strictly increasing")
    ):
        _candles(3, ts=ts)
    repeated = np.array([T0, T0, T0 + HOUR], dtype=np.int64)
    with pytest.raises(
        ValueError, match=exactly("BTC/USDT 1h: candle timestamps are not strictly increasing")
    ):
        _candles(3, ts=repeated)


def test_candles_reject_mismatched_lengths() -> None:
    """A column with a different number of values than ts is refused, naming the column."""
    with pytest.raises(ValueError, match=exactly("candles.close has 4 values, ts has 5")):
        _candles(5, close=np.ones(4))


def test_candles_reject_two_dimensional_columns() -> None:
    """A 2-D column is refused with its shape."""
    with pytest.raises(ValueError, match=exactly("candles.volume must be one-dimensional, got shape (1, 5)")):
        _candles(5, volume=np.ones((1, 5)))


@pytest.mark.parametrize("timeframe", ["2x", "1M", "0m", "h", ""])
def test_candles_reject_unknown_timeframe(timeframe: str) -> None:
    """An unknown or calendar timeframe is refused when candles are built."""
    with pytest.raises(ValueError, match=starting(f"unsupported timeframe {timeframe!r}")):
        _candles(3, timeframe=timeframe)


def test_candle_arrays_are_read_only() -> None:
    """Every column of a Candles object refuses writes (one series is shared by many bots)."""
    candles = _candles(3)
    for name in ("ts", "open", "high", "low", "close", "volume", "placeholder"):
        column = getattr(candles, name)
        assert column.flags.writeable is False, name
        with pytest.raises(ValueError, match="read-only"):
            column[0] = 1


def test_candles_from_lists_convert_dtypes_and_derive_placeholder() -> None:
    """Plain lists become int64 / float64 arrays; flat zero-volume candles are marked as placeholders."""
    candles = Candles(
        symbol="BTC/USDT",
        timeframe="1h",
        ts=[T0, T0 + HOUR, T0 + 2 * HOUR],  # type: ignore[arg-type]
        open=[100, 101, 102],  # type: ignore[arg-type]
        high=[101, 101, 103],  # type: ignore[arg-type]
        low=[99, 101, 101],  # type: ignore[arg-type]
        close=[100, 101, 102],  # type: ignore[arg-type]
        volume=[5, 0, 0],  # type: ignore[arg-type]
    )
    assert candles.ts.dtype == np.int64
    assert candles.close.dtype == np.float64
    # Row 1 is flat (high == low) with zero volume; row 2 has zero volume but a range.
    assert candles.placeholder.tolist() == [False, True, False]
    assert len(candles) == 3
    assert candles.period_ms == HOUR
    assert candles.close_time() == T0 + 3 * HOUR
    assert candles.close_time(0) == T0 + HOUR


def test_head_tail_slice_share_memory_and_keep_placeholder() -> None:
    """head/tail/slice are views of the same memory and carry the given placeholder flags along."""
    flags = np.array([False, True, False, True, False])
    candles = _candles(5, placeholder=flags)
    head, tail, middle = candles.head(2), candles.tail(3), candles.slice(1, 4)
    assert head.ts.tolist() == [T0, T0 + HOUR]
    assert tail.ts.tolist() == [T0 + 2 * HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    assert middle.close.tolist() == [102.0, 103.0, 104.0]
    assert head.placeholder.tolist() == [False, True]
    assert tail.placeholder.tolist() == [False, True, False]
    assert middle.placeholder.tolist() == [True, False, True]
    for part in (head, tail, middle):
        for name in ("ts", "open", "high", "low", "close", "volume", "placeholder"):
            assert np.shares_memory(getattr(part, name), getattr(candles, name)), name
        assert part.symbol == "BTC/USDT"
        assert part.timeframe == "1h"
    assert len(candles.tail(10)) == 5
    assert len(candles.head(0)) == 0


# -- Direction and time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("long", Direction.LONG),
        (" BUY ", Direction.LONG),
        ("Bullish", Direction.LONG),
        ("bull", Direction.LONG),
        ("up", Direction.LONG),
        ("LONG", Direction.LONG),
        ("short", Direction.SHORT),
        ("Sell", Direction.SHORT),
        ("bearish", Direction.SHORT),
        ("bear", Direction.SHORT),
        ("down\n", Direction.SHORT),
    ],
)
def test_direction_parse_words(word: str, expected: Direction) -> None:
    """The usual words for each side, in any case and with surrounding spaces, parse to the side."""
    assert Direction.parse(word) is expected


@pytest.mark.parametrize("word", ["neutral", "", "longish", "flat"])
def test_direction_parse_rejects_other_words(word: str) -> None:
    """Anything else (including 'neutral') is an error that quotes the input."""
    with pytest.raises(
        ValueError, match=exactly(f"unknown direction {word!r}: use long/buy/bullish or short/sell/bearish")
    ):
        Direction.parse(word)


def test_direction_sign() -> None:
    """LONG is +1, SHORT is -1."""
    assert (Direction.LONG.sign, Direction.SHORT.sign) == (1, -1)


@pytest.mark.parametrize(
    ("timeframe", "ms"),
    [
        ("1m", 60_000),
        ("5m", 300_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("4h", 14_400_000),
        ("1d", 86_400_000),
        ("1w", 604_800_000),
    ],
)
def test_timeframe_ms(timeframe: str, ms: int) -> None:
    """Each fixed-length timeframe has its length in milliseconds."""
    assert timeframe_ms(timeframe) == ms


@pytest.mark.parametrize(
    ("timeframe", "message"),
    [
        ("1M", "unsupported timeframe '1M'"),
        ("1y", "unsupported timeframe '1y'"),
        ("-1m", "unsupported timeframe '-1m'"),
        ("m", "unsupported timeframe 'm'"),
        ("0h", "unsupported timeframe '0h': the count must be positive"),
    ],
)
def test_timeframe_ms_rejects(timeframe: str, message: str) -> None:
    """Calendar months, unknown units, signs and a zero count are refused."""
    with pytest.raises(ValueError, match=starting(message)):
        timeframe_ms(timeframe)


@pytest.mark.parametrize(
    ("now", "timeframe", "expected"),
    [
        ("2024-01-01T00:00", "1h", "2024-01-01T01:00"),  # on a close: the next one, strictly after
        ("2024-01-01T00:59:59", "1h", "2024-01-01T01:00"),
        ("2024-01-01T13:10", "4h", "2024-01-01T16:00"),
        ("2024-01-01T13:10", "15m", "2024-01-01T13:15"),
        ("2024-01-01T13:10", "1d", "2024-01-02T00:00"),
        ("2024-01-01T00:00", "1w", "2024-01-08T00:00"),  # weeks close on Monday 00:00 UTC
        ("2024-01-04T12:00", "1w", "2024-01-08T00:00"),  # a Thursday: not the epoch's Thursday grid
    ],
)
def test_next_close_ms(now: str, timeframe: str, expected: str) -> None:
    """The next candle close strictly after now, on the exchange's grid (Monday weeks)."""
    assert next_close_ms(_ms(now), timeframe) == _ms(expected)


def test_next_close_ms_one_millisecond_before_a_close() -> None:
    """One millisecond before a close, that close is next."""
    assert next_close_ms(T0 + HOUR - 1, "1h") == T0 + HOUR
