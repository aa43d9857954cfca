"""Retries (tenacity) and a small async circuit breaker, for every call that leaves the process.

Only :class:`~common.errors.TemporaryError` is retried (never :class:`~common.errors.CircuitOpen`:
the breaker said not to call); a permanent error (bad symbol, auth) goes straight to the caller. A
:class:`~common.errors.RateLimited` error waits at least the server's ``retry_after``. The last
error is re-raised unchanged. Each retry is logged at info, not warning: under an outage a fleet
retries many calls, and the warnings that matter are the breaker opening and the runner skipping
a series.

The breaker stops a fleet from hammering a service that is down: after ``failure_threshold``
consecutive temporary failures it opens and calls fail fast with ``CircuitOpen`` until
``reset_timeout_s`` has passed. Then it is half-open and admits ONE probe call at a time; calls
arriving while the probe is in flight wait for its outcome. The probe's success closes the breaker
(and the waiting calls go ahead); its temporary failure opens it again for a new
``reset_timeout_s`` (and the waiting calls get ``CircuitOpen``). A probe that ends in any other way
(a permanent error, a cancellation) decides nothing: the breaker stays half-open and the next
waiting call becomes the probe. Only outcomes of calls admitted since the last state change count,
so a slow call started before the breaker opened cannot close or re-open it behind the probe's
back. Each state change is logged exactly once, as a warning (operators want to see the outage
and the recovery), never per call.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from common.errors import CircuitOpen, RateLimited, TemporaryError
from common.logging_config import get_logger

T = TypeVar("T")
log = get_logger(__name__)


class _WaitRespectingRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's ``retry_after``.

    ``initial_s * 2**(attempt - 1)`` plus up to ``initial_s`` of jitter, capped at ``max_s``; built
    from ``wait_exponential`` and ``wait_random`` (``wait_exponential_jitter``'s ``initial`` is
    deprecated since tenacity 9.2 and its replacement does not exist in 9.0, which we still allow).
    """

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._max_s = max_s
        self._backoff = wait_exponential(multiplier=initial_s, max=max_s) + wait_random(0, initial_s)

    def __call__(self, state: RetryCallState) -> float:
        backoff = min(float(self._backoff(state)), self._max_s)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            return max(backoff, error.retry_after)
        return backoff


async def call_with_retry(
    operation: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    what: str,
    initial_backoff_s: float = 0.5,
    max_backoff_s: float = 20.0,
) -> T:
    """Await ``operation()``, retrying temporary errors up to ``attempts`` times in all.

    The last error is re-raised unchanged, so callers see our own exception types.
    """

    def _log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.info(
            "retrying",
            what=what,
            attempt=state.attempt_number,
            error=str(error),
            wait_s=round(state.upcoming_sleep, 2),
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception(lambda e: isinstance(e, TemporaryError) and not isinstance(e, CircuitOpen)),
        stop=stop_after_attempt(attempts),
        wait=_WaitRespectingRetryAfter(initial_backoff_s, max_backoff_s),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await operation()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover


class BreakerState(enum.StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-service circuit breaker; ``monotonic`` is injectable so tests control time."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._monotonic = monotonic
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._epoch = 0  # incremented on every state change; outcomes of older calls are ignored
        self._probe_done: asyncio.Event | None = None  # set while a half-open probe is in flight

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose timeout has passed reports half-open."""
        if self._state is BreakerState.OPEN and self._monotonic() - self._opened_at >= self.reset_timeout_s:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def _transition(self, new: BreakerState) -> None:
        if new is self._state:
            return
        # Every change is a warning: an operator wants to see both the outage and the recovery,
        # and there are only ever a few of them (never one per call).
        log.warning(
            "circuit breaker state changed",
            breaker=self.name,
            old=self._state.value,
            new=new.value,
            failures=self._failures,
        )
        self._state = new
        self._epoch += 1

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` through the breaker.

        Raises ``CircuitOpen`` without calling while open. While half-open, one call is the probe;
        calls arriving meanwhile wait for its outcome (so the first cycle after an outage still
        fetches every series once the probe succeeds) and fail fast if it reopens the breaker.
        """
        while True:
            state = self.state
            if state is BreakerState.OPEN:
                raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures; not calling")
            if state is BreakerState.HALF_OPEN and self._probe_done is not None:
                await self._probe_done.wait()
                continue
            break
        probe = state is BreakerState.HALF_OPEN
        if probe:
            self._probe_done = asyncio.Event()
        epoch = self._epoch
        try:
            result = await operation()
        except TemporaryError:
            if epoch == self._epoch:
                self._record_failure()
            raise
        finally:
            if probe and self._probe_done is not None:
                done, self._probe_done = self._probe_done, None
                done.set()
        if epoch == self._epoch:
            self._record_success()
        return result

    def _record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._monotonic()
            self._transition(BreakerState.OPEN)

    def _record_success(self) -> None:
        self._failures = 0
        self._transition(BreakerState.CLOSED)
