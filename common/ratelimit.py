"""A per-process request budget for the MEXC REST client: evenly spaced requests, FIFO, no bursts.

Why. MEXC publishes about 20 requests per second and 300 weight per 10 seconds per IP address.
ccxt's own throttler (``enableRateLimit``) charges each endpoint its documented cost, and the
contract ``detail`` endpoint (loaded with the markets) costs 100: after it, ccxt stalls the next
request for about 5 seconds, whatever that request is. The fleet does not need that precision; it
needs never to be the reason for a 429. So we budget *requests* per process instead of ccxt's
per-endpoint weights: :class:`RequestBudget` grants at most ``rate_per_s`` requests a second
(the fleet's default is 10/s, half of what MEXC publishes, which leaves room for a second process
on the same IP), evenly spaced, in arrival order.

How. A token bucket of capacity one: two grants are always at least ``1 / rate`` seconds apart, so
no half-open one-second window ever holds more than ``rate_per_s`` grants, whether the callers come
one by one, all at once, or as retries (a retry simply acquires again). Callers queue behind an
:class:`asyncio.Lock` (FIFO) and the holder sleeps until its slot; a cancelled caller leaves the
queue without taking a slot. The first request after an idle spell goes at once.

The instance doubles as ccxt's throttler (``exchange.throttler = budget``): ccxt awaits
``throttler(cost)`` before every request and sets ``throttler.loop`` when it opens. The cost is
ignored on purpose.

When the exchange still says slow down (HTTP 429, "too frequent"), :meth:`RequestBudget.slow_down`
halves the rate, never below a floor (default a eighth of the configured rate). Several requests in
flight usually receive the same wave of 429s, so further calls within one second of a change are
ignored: one warning per change, not one per request. After ``recover_after_s`` seconds without a
``slow_down`` the rate doubles back, one step per ``recover_after_s``, up to the configured rate
(checked lazily when a request acquires; there is no background task). Each step is logged at info.

The lock binds to the event loop that first waits on it: use one budget per process and loop.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from common.logging_config import get_logger

__all__ = ["SLOW_DOWN_DEBOUNCE_S", "RequestBudget"]

SLOW_DOWN_DEBOUNCE_S: Final = 1.0
"""After a ``slow_down`` took effect, further calls within this many seconds are ignored."""

log = get_logger(__name__)


class RequestBudget:
    """At most `rate_per_s` requests per second, evenly spaced; callers queue in arrival order."""

    def __init__(
        self,
        name: str,
        rate_per_s: float,
        *,
        min_rate_per_s: float | None = None,
        recover_after_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Budget ``rate_per_s`` requests a second, slowed to no less than ``min_rate_per_s``.

        ``min_rate_per_s`` defaults to ``rate_per_s / 8``. ``monotonic`` and ``sleep`` are
        injectable so tests control time. Raises ``ValueError`` naming the bad argument.
        """
        if not _positive_finite(rate_per_s):
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        floor = rate_per_s / 8 if min_rate_per_s is None else min_rate_per_s
        if not _positive_finite(floor) or floor > rate_per_s:
            raise ValueError(
                f"min_rate_per_s must be a positive number no greater than rate_per_s ({rate_per_s!r}), "
                f"got {min_rate_per_s!r}"
            )
        if not _positive_finite(recover_after_s):
            raise ValueError(f"recover_after_s must be a positive finite number, got {recover_after_s!r}")
        self.name = name
        self.configured_rate_per_s = float(rate_per_s)
        self.min_rate_per_s = float(floor)
        self.recover_after_s = float(recover_after_s)
        self.loop: Any = None  # ccxt sets ``throttler.loop`` in Exchange.open(); not used here
        self._monotonic = monotonic
        self._sleep = sleep
        self._rate = float(rate_per_s)
        self._lock = asyncio.Lock()
        self._last_grant: float | None = None
        self._last_change: float | None = None  # when a slow_down last took effect (debounce)
        self._calm_since = 0.0  # start of the current spell without slow_down (recovery)

    @property
    def rate_per_s(self) -> float:
        """The current rate: the configured one, or lower after ``slow_down``."""
        return self._rate

    async def acquire(self) -> None:
        """Wait for this caller's slot: FIFO, at least ``1 / rate_per_s`` after the previous grant."""
        async with self._lock:
            while True:
                now = self._monotonic()
                self._recover(now)
                if self._last_grant is None:
                    break
                due = self._due(self._last_grant)
                if now >= due:
                    break
                # Re-checked after the sleep: the rate may have changed meanwhile, and the event
                # loop may wake a timer slightly early.
                await self._sleep(due - now)
            self._last_grant = now

    async def __call__(self, cost: object = None) -> None:
        """ccxt's throttler interface (``await throttler(cost)``); the cost is ignored on purpose."""
        await self.acquire()

    def slow_down(self) -> None:
        """Halve the rate (not below the floor) after a 429; ignored within 1 s of the last change."""
        now = self._monotonic()
        self._calm_since = now
        if self._last_change is not None and now - self._last_change < SLOW_DOWN_DEBOUNCE_S:
            return
        slower = max(self._rate / 2, self.min_rate_per_s)
        if slower == self._rate:
            return  # already at the floor: nothing changes, nothing to log
        self._rate = slower
        self._last_change = now
        log.warning("request budget slowed", budget=self.name, rate_per_s=self._rate)

    def _due(self, last_grant: float) -> float:
        """The earliest time of the next grant: ``last_grant + 1 / rate``, rounded up if need be.

        ``last_grant + interval`` may round down by one unit in the last place; the next float up is
        taken then, so that ``grant - last_grant >= interval`` holds exactly in float arithmetic.
        """
        interval = 1.0 / self._rate
        due = last_grant + interval
        while due - last_grant < interval:
            due = math.nextafter(due, math.inf)
        return due

    def _recover(self, now: float) -> None:
        """Double the rate once per full ``recover_after_s`` without ``slow_down``, up to the configured."""
        while self._rate < self.configured_rate_per_s and now - self._calm_since >= self.recover_after_s:
            self._calm_since += self.recover_after_s
            self._rate = min(self._rate * 2, self.configured_rate_per_s)
            log.info("request budget recovering", budget=self.name, rate_per_s=self._rate)


def _positive_finite(value: float) -> bool:
    """True for a finite number above zero."""
    return math.isfinite(value) and value > 0
