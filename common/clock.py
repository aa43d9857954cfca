"""Time, injected: strategies never read the clock; the runner, gate, tracker and event log ask one.

The wall clock serves live runs. The simulated clock serves replay and tests: sleeping on it moves
time forward at once, so a year of history runs as fast as the code can compute it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the fleet needs of time."""

    def now_ms(self) -> int:
        """Current Unix time in milliseconds (UTC)."""
        ...

    async def sleep_until(self, when_ms: int, stop: asyncio.Event) -> bool:
        """Wait until ``when_ms`` or until ``stop`` is set. Returns True when the time was reached."""
        ...


class WallClock:
    """The real time of this machine."""

    def now_ms(self) -> int:
        """Current Unix time in milliseconds."""
        return time.time_ns() // 1_000_000

    async def sleep_until(self, when_ms: int, stop: asyncio.Event) -> bool:
        """Sleep until ``when_ms`` (wall time), waking early and returning False if ``stop`` is set."""
        delay = (when_ms - self.now_ms()) / 1000.0
        if delay <= 0:
            return not stop.is_set()
        try:
            async with asyncio.timeout(delay):  # not wait_for: it can lose a cancellation on 3.11
                await stop.wait()
        except TimeoutError:
            return True
        return False


class SimulatedClock:
    """A clock that jumps: ``sleep_until`` sets the time and returns at once (replay, tests)."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._started_ms: int | None = None

    def now_ms(self) -> int:
        """The simulated time in milliseconds."""
        return self._now_ms

    @property
    def started_ms(self) -> int | None:
        """Where the clock was first moved to (a replay's first cycle), None until it has moved.

        A progress display polls the clock from its own task and may first look only after the
        replay has advanced; this tells it where the replay began.
        """
        return self._started_ms

    def set(self, when_ms: int) -> None:
        """Move the clock to ``when_ms``; it never runs backwards."""
        self._now_ms = max(self._now_ms, when_ms)
        if self._started_ms is None:
            self._started_ms = self._now_ms

    async def sleep_until(self, when_ms: int, stop: asyncio.Event) -> bool:
        """Jump to ``when_ms`` unless ``stop`` is set; yields to the loop so shutdown stays responsive."""
        await asyncio.sleep(0)
        if stop.is_set():
            return False
        self.set(when_ms)
        return True


def utc_text(ms: int) -> str:
    """``ms`` as 'YYYY-MM-DD HH:MM UTC', the way alerts and reports show times."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
