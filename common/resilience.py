"""Retries (tenacity) and a small async circuit breaker, for every call that leaves the process.

Only :class:`~common.errors.TemporaryError` is retried; a permanent error (bad symbol, auth) goes
straight to the caller. A :class:`~common.errors.RateLimited` error waits at least the server's
``retry_after``. The breaker stops a fleet from hammering a service that is down: after
``failure_threshold`` consecutive temporary failures it opens, calls fail fast with
:class:`~common.errors.CircuitOpen` until ``reset_timeout_s`` has passed, then one probe call
(half-open) decides whether it closes again. State changes are logged once each, never per call.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from common.errors import CircuitOpen, RateLimited, TemporaryError
from common.logging_config import get_logger

T = TypeVar("T")
log = get_logger(__name__)


class _WaitRespectingRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's ``retry_after``."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self._backoff = wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)

    def __call__(self, state: RetryCallState) -> float:
        backoff = float(self._backoff(state))
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
        log.warning(
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

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose timeout has passed reports half-open."""
        if self._state is BreakerState.OPEN and self._monotonic() - self._opened_at >= self.reset_timeout_s:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    def _transition(self, new: BreakerState) -> None:
        if new is self._state:
            return
        log_method = log.warning if new is BreakerState.OPEN else log.info
        log_method(
            "circuit breaker state changed",
            breaker=self.name,
            old=self._state.value,
            new=new.value,
            failures=self._failures,
        )
        self._state = new

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` through the breaker; raise ``CircuitOpen`` without calling when open."""
        if self.state is BreakerState.OPEN:
            raise CircuitOpen(f"{self.name}: circuit open after {self._failures} failures; not calling")
        try:
            result = await operation()
        except TemporaryError:
            self._record_failure()
            raise
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
