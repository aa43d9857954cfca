"""Tests of common.resilience: which errors call_with_retry retries, and the circuit breaker's states.

The breaker runs on an injected monotonic clock; the retry tests use backoffs of a millisecond, and
one test waits a real 0.2 s ``retry_after``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from common.errors import CircuitOpen, ExchangeError, RateLimited, TemporaryError
from common.resilience import BreakerState, CircuitBreaker, call_with_retry

pytestmark = pytest.mark.unit

FAST = {"initial_backoff_s": 0.001, "max_backoff_s": 0.001}


class Clock:
    """A settable monotonic clock for the breaker."""

    def __init__(self) -> None:
        """Start at 1000 s."""
        self.now = 1000.0

    def __call__(self) -> float:
        """The current fake time in seconds."""
        return self.now


class Script:
    """An operation that raises the given errors in turn, then returns "ok"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        """Raise ``errors`` one per call, in order; after them, succeed."""
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        """One call: the next scripted error, or "ok"."""
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """The breaker's state, read through a call (so that mypy does not narrow it between reads)."""
    return breaker.state


def state_changes(logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, object, object]]:
    """(level, old, new) of each breaker state-change record."""
    return [
        (str(entry["log_level"]), entry["old"], entry["new"])
        for entry in logs
        if entry["event"] == "circuit breaker state changed"
    ]


# --------------------------------------------------------------------------- call_with_retry


async def test_retries_temporary_errors_up_to_attempts_and_reraises_the_last_one_unchanged() -> None:
    """Three temporary failures with attempts=3: three calls, and the third error itself is raised."""
    errors = [TemporaryError("first"), TemporaryError("second"), TemporaryError("third")]
    operation = Script(*errors)

    with pytest.raises(TemporaryError) as caught:
        await call_with_retry(operation, attempts=3, what="fetch", **FAST)

    assert caught.value is errors[2]
    assert operation.calls == 3


async def test_returns_the_result_once_a_retry_succeeds() -> None:
    """Two temporary failures, then success: the result comes back after three calls."""
    operation = Script(TemporaryError("a"), RateLimited("b"))

    result = await call_with_retry(operation, attempts=5, what="fetch", **FAST)

    assert (result, operation.calls) == ("ok", 3)


@pytest.mark.parametrize(
    "error",
    [ExchangeError("bad symbol"), CircuitOpen("breaker open"), ValueError("a bug")],
    ids=["permanent", "circuit-open", "not-ours"],
)
async def test_does_not_retry_permanent_errors_circuit_open_or_foreign_errors(error: Exception) -> None:
    """ExchangeError, CircuitOpen and non-fleet errors reach the caller after one call, unchanged."""
    operation = Script(error)

    with capture_logs() as logs, pytest.raises(type(error)) as caught:
        await call_with_retry(operation, attempts=5, what="fetch", **FAST)

    assert caught.value is error
    assert operation.calls == 1
    assert logs == []


async def test_waits_at_least_retry_after_and_logs_each_retry_at_info() -> None:
    """RateLimited(retry_after=0.2) with a 1 ms backoff waits 0.2 s; the retry line is info, not warning."""
    operation = Script(RateLimited("429 too many requests", retry_after=0.2))

    with capture_logs() as logs:
        started = time.monotonic()
        result = await call_with_retry(operation, attempts=2, what="fetch_ohlcv BTC/USDT 1h", **FAST)
        elapsed = time.monotonic() - started

    assert (result, operation.calls) == ("ok", 2)
    assert elapsed >= 0.2
    assert logs == [
        {
            "event": "retrying",
            "log_level": "info",
            "what": "fetch_ohlcv BTC/USDT 1h",
            "attempt": 1,
            "error": "429 too many requests",
            "wait_s": 0.2,
        }
    ]


async def test_backoff_wins_over_a_shorter_retry_after() -> None:
    """A retry_after below the backoff does not shorten it: the logged wait is the 50 ms backoff."""
    operation = Script(
        RateLimited("slow down", retry_after=0.001), RateLimited("slow down", retry_after=None)
    )

    with capture_logs() as logs:
        await call_with_retry(operation, attempts=3, what="fetch", initial_backoff_s=0.05, max_backoff_s=0.05)

    assert [(entry["attempt"], entry["wait_s"]) for entry in logs] == [(1, 0.05), (2, 0.05)]


async def test_retries_stop_when_the_breaker_opens() -> None:
    """Through a breaker with threshold 2, five attempts make two calls, then CircuitOpen ends the retries."""
    breaker = CircuitBreaker("mexc-spot", failure_threshold=2, monotonic=Clock())
    operation = Script(*(TemporaryError(f"down {i}") for i in range(5)))

    with pytest.raises(CircuitOpen, match=r"^mexc-spot: circuit open after 2 failures; not calling$"):
        await call_with_retry(lambda: breaker.call(operation), attempts=5, what="fetch", **FAST)

    assert operation.calls == 2
    assert state_of(breaker) is BreakerState.OPEN


# --------------------------------------------------------------------------- CircuitBreaker


async def fail(breaker: CircuitBreaker, times: int) -> None:
    """Make ``times`` calls through ``breaker`` that fail with a temporary error."""
    for i in range(times):
        with pytest.raises(TemporaryError):
            await breaker.call(Script(TemporaryError(f"down {i}")))


async def test_opens_after_failure_threshold_consecutive_failures_with_one_warning() -> None:
    """Two failures keep it closed; the third opens it, logged once as a warning with the count."""
    breaker = CircuitBreaker("mexc-spot", failure_threshold=3, monotonic=Clock())

    with capture_logs() as logs:
        await fail(breaker, 2)
        assert state_of(breaker) is BreakerState.CLOSED
        await fail(breaker, 1)
        assert state_of(breaker) is BreakerState.OPEN

    assert logs == [
        {
            "event": "circuit breaker state changed",
            "log_level": "warning",
            "breaker": "mexc-spot",
            "old": "closed",
            "new": "open",
            "failures": 3,
        }
    ]


async def test_a_success_resets_the_consecutive_failure_count() -> None:
    """Fail, fail, succeed, fail, fail with threshold 3 never opens the breaker."""
    breaker = CircuitBreaker("mexc-spot", failure_threshold=3, monotonic=Clock())

    with capture_logs() as logs:
        await fail(breaker, 2)
        assert await breaker.call(Script()) == "ok"
        await fail(breaker, 2)

    assert state_of(breaker) is BreakerState.CLOSED
    assert logs == []


async def test_permanent_errors_do_not_count_as_failures() -> None:
    """ExchangeError passes through a closed breaker without moving it towards open."""
    breaker = CircuitBreaker("mexc-spot", failure_threshold=1, monotonic=Clock())

    for _ in range(3):
        with pytest.raises(ExchangeError):
            await breaker.call(Script(ExchangeError("bad symbol")))

    assert state_of(breaker) is BreakerState.CLOSED


async def test_fails_fast_while_open_without_calling_until_the_reset_timeout() -> None:
    """Open, calls raise CircuitOpen and never run; at exactly reset_timeout_s it turns half-open."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-swap", failure_threshold=2, reset_timeout_s=30.0, monotonic=clock)
    await fail(breaker, 2)
    operation = Script()

    with capture_logs() as logs:
        for offset in (0.0, 10.0, 29.999):
            clock.now = 1000.0 + offset
            with pytest.raises(CircuitOpen, match=r"^mexc-swap: circuit open after 2 failures; not calling$"):
                await breaker.call(operation)
        assert operation.calls == 0
        clock.now = 1030.0
        assert state_of(breaker) is BreakerState.HALF_OPEN

    assert state_changes(logs) == [("warning", "open", "half_open")]


async def open_then_half_open(clock: Clock, breaker: CircuitBreaker) -> None:
    """Trip ``breaker`` (threshold failures) and move ``clock`` past its reset timeout."""
    await fail(breaker, breaker.failure_threshold)
    clock.now += breaker.reset_timeout_s
    assert state_of(breaker) is BreakerState.HALF_OPEN


class Gate:
    """An operation that waits until the test opens the gate, then returns or raises."""

    def __init__(self, error: BaseException | None = None) -> None:
        """Raise ``error`` when released (return "probe" when it is None)."""
        self.error = error
        self.started = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self) -> str:
        """Signal that the call started, wait for the release, then finish."""
        self.started.set()
        await self.released.wait()
        if self.error is not None:
            raise self.error
        return "probe"


async def start_probe(breaker: CircuitBreaker, gate: Gate) -> asyncio.Task[str]:
    """Start a call through ``breaker`` that is in flight until ``gate`` is released."""
    task = asyncio.create_task(breaker.call(gate))
    await gate.started.wait()
    return task


async def test_half_open_admits_exactly_one_probe_and_the_others_wait_for_its_success() -> None:
    """Calls arriving during the probe wait uncalled; its success closes the breaker, then they run."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-spot", failure_threshold=2, reset_timeout_s=30.0, monotonic=clock)

    with capture_logs() as logs:
        await open_then_half_open(clock, breaker)
        gate = Gate()
        probe = await start_probe(breaker, gate)
        others = Script()
        waiting = [asyncio.create_task(breaker.call(others)) for _ in range(4)]
        await asyncio.sleep(0)
        assert others.calls == 0
        assert not any(task.done() for task in waiting)
        assert state_of(breaker) is BreakerState.HALF_OPEN

        gate.released.set()
        assert await probe == "probe"
        assert await asyncio.gather(*waiting) == ["ok"] * 4
        assert others.calls == 4
        assert state_of(breaker) is BreakerState.CLOSED

    assert state_changes(logs) == [
        ("warning", "closed", "open"),
        ("warning", "open", "half_open"),
        ("warning", "half_open", "closed"),
    ]


async def test_calls_waiting_on_a_failing_probe_fail_fast_uncalled() -> None:
    """When the probe fails, the calls that waited for it get CircuitOpen without being made."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-spot", failure_threshold=2, reset_timeout_s=30.0, monotonic=clock)
    await open_then_half_open(clock, breaker)
    gate = Gate(TemporaryError("still down"))
    probe = await start_probe(breaker, gate)
    others = Script()
    waiting = [asyncio.create_task(breaker.call(others)) for _ in range(3)]
    await asyncio.sleep(0)

    gate.released.set()
    with pytest.raises(TemporaryError, match=r"^still down$"):
        await probe
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [str(r) for r in results] == ["mexc-spot: circuit open after 3 failures; not calling"] * 3
    assert all(isinstance(r, CircuitOpen) for r in results)
    assert others.calls == 0


async def test_probe_failure_reopens_for_a_new_reset_timeout() -> None:
    """A failed probe opens the breaker again; it stays open for reset_timeout_s from the probe's failure."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-spot", failure_threshold=2, reset_timeout_s=30.0, monotonic=clock)

    with capture_logs() as logs:
        await open_then_half_open(clock, breaker)  # half-open at 1030
        clock.now = 1045.0
        with pytest.raises(TemporaryError, match=r"^still down$"):
            await breaker.call(Script(TemporaryError("still down")))
        assert state_of(breaker) is BreakerState.OPEN
        clock.now = 1074.999
        with pytest.raises(CircuitOpen, match=r"^mexc-spot: circuit open after 3 failures; not calling$"):
            await breaker.call(Script())
        clock.now = 1075.0
        assert state_of(breaker) is BreakerState.HALF_OPEN

    assert state_changes(logs) == [
        ("warning", "closed", "open"),
        ("warning", "open", "half_open"),
        ("warning", "half_open", "open"),
        ("warning", "open", "half_open"),
    ]


async def test_a_probe_that_decides_nothing_frees_the_slot_for_the_next_probe() -> None:
    """A probe ending in a permanent error or a cancellation leaves the breaker half-open for a new probe."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-spot", failure_threshold=1, monotonic=clock)
    await open_then_half_open(clock, breaker)

    with capture_logs() as logs:
        with pytest.raises(ExchangeError):
            await breaker.call(Script(ExchangeError("bad symbol")))
        assert state_of(breaker) is BreakerState.HALF_OPEN

        probe = await start_probe(breaker, Gate())
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert state_of(breaker) is BreakerState.HALF_OPEN

        assert await breaker.call(Script()) == "ok"

    assert state_changes(logs) == [("warning", "half_open", "closed")]


async def test_calls_admitted_before_a_state_change_do_not_decide_the_new_state() -> None:
    """A slow call started while closed cannot close an open breaker nor reopen it behind the probe."""
    clock = Clock()
    breaker = CircuitBreaker("mexc-spot", failure_threshold=2, reset_timeout_s=30.0, monotonic=clock)
    slow_success = Gate()
    slow_failure = Gate(TemporaryError("late failure"))

    with capture_logs() as logs:
        straggler_ok = await start_probe(breaker, slow_success)  # admitted while closed
        straggler_bad = await start_probe(breaker, slow_failure)
        await fail(breaker, 2)
        assert state_of(breaker) is BreakerState.OPEN

        slow_success.released.set()
        assert await straggler_ok == "probe"
        assert state_of(breaker) is BreakerState.OPEN  # the stale success did not close it

        clock.now += 30.0
        probe_gate = Gate()
        probe = await start_probe(breaker, probe_gate)
        slow_failure.released.set()
        with pytest.raises(TemporaryError, match=r"^late failure$"):
            await straggler_bad
        assert state_of(breaker) is BreakerState.HALF_OPEN  # the stale failure did not reopen it

        probe_gate.released.set()
        assert await probe == "probe"
        assert state_of(breaker) is BreakerState.CLOSED

    assert state_changes(logs) == [
        ("warning", "closed", "open"),
        ("warning", "open", "half_open"),
        ("warning", "half_open", "closed"),
    ]


async def test_state_is_reported_without_extra_log_lines() -> None:
    """Reading ``state`` repeatedly logs the half-open change once, not once per read."""
    clock = Clock()
    breaker = CircuitBreaker("markets", failure_threshold=1, reset_timeout_s=5.0, monotonic=clock)
    await fail(breaker, 1)
    clock.now += 5.0

    with capture_logs() as logs:
        states = [breaker.state for _ in range(5)]

    assert states == [BreakerState.HALF_OPEN] * 5
    assert state_changes(logs) == [("warning", "open", "half_open")]
