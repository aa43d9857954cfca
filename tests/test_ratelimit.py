"""Tests of common.ratelimit.RequestBudget: even spacing, FIFO, slow-down, recovery, ccxt's interface.

Time is a fake monotonic clock whose ``sleep`` advances it at once, so the grant times are exact;
one short test uses the real clock and ``asyncio.sleep``, and one installs the budget as the real
ccxt mexc client's throttler against the fake MEXC server.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt
import pytest
from structlog.testing import capture_logs

from common.ratelimit import RequestBudget
from tests.fakes.mexc import FakeMexc


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it (or a test sets ``now``)."""

    def __init__(self, start: float = 0.0) -> None:
        """Start at ``start`` seconds with no sleeps recorded."""
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` at once, then yield to the loop once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class GatedClock:
    """A fake clock whose sleeps block until the test releases them (to cancel a caller mid-wait)."""

    def __init__(self) -> None:
        """Start at 0 with no sleeper."""
        self.now = 0.0
        self.sleepers: list[asyncio.Future[None]] = []

    def monotonic(self) -> float:
        """The current fake time in seconds."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Block until released, then advance the clock by ``seconds``."""
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append(gate)
        try:
            await gate
        finally:
            self.sleepers.remove(gate)
        self.now += seconds

    def _waiting(self) -> list[asyncio.Future[None]]:
        return [gate for gate in self.sleepers if not gate.done()]

    async def wait_for_sleeper(self) -> None:
        """Yield to the loop until a caller sleeps (a cancelled sleeper does not count)."""
        for _ in range(100):
            if self._waiting():
                return
            await asyncio.sleep(0)
        raise AssertionError("nobody went to sleep")

    def release(self) -> None:
        """Wake the one sleeper."""
        (gate,) = self._waiting()
        gate.set_result(None)


def budget_on(clock: FakeClock | GatedClock, rate: float, **kwargs: Any) -> RequestBudget:
    """A budget named "mexc" driven by ``clock``."""
    return RequestBudget("mexc", rate, monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)


def nanos(seconds: list[float]) -> list[int]:
    """Times in whole nanoseconds, so that exact comparisons do not depend on float rounding."""
    return [round(t * 1e9) for t in seconds]


def max_in_one_second(grants: list[float]) -> int:
    """The most grants any half-open 1 s window holds, in exact arithmetic (the fullest starts at a grant)."""
    exact = [Fraction(t) for t in grants]
    return max(sum(1 for t in exact if start <= t < start + 1) for start in exact)


def min_gap(grants: list[float]) -> float:
    """The smallest difference between consecutive grant times."""
    return min(b - a for a, b in itertools.pairwise(grants))


async def acquire_all(budget: RequestBudget, clock: FakeClock, count: int) -> list[tuple[int, float]]:
    """Start ``count`` callers at once; return (caller index, grant time) in grant order."""
    grants: list[tuple[int, float]] = []

    async def caller(index: int) -> None:
        await budget.acquire()
        grants.append((index, clock.now))

    await asyncio.gather(*(caller(i) for i in range(count)))
    return grants


async def test_twenty_concurrent_callers_are_granted_exactly_one_fifth_second_apart() -> None:
    """20 callers at once at 5/s: the first goes at once, then one grant every 0.2 s, in arrival order."""
    clock = FakeClock()
    budget = budget_on(clock, 5)

    grants = await acquire_all(budget, clock, 20)

    assert [index for index, _ in grants] == list(range(20))
    times = [t for _, t in grants]
    assert nanos(times) == [i * 200_000_000 for i in range(20)]
    assert min_gap(times) >= 0.2  # exactly, in float arithmetic
    assert len(clock.sleeps) == 19
    assert max_in_one_second(times) == 5


async def test_no_one_second_window_holds_more_than_the_rate_with_bursts_idle_spells_and_retries() -> None:
    """Bursts, an idle spell and callers that acquire again (retries) never put 6 grants in 1 s at 5/s."""
    clock = FakeClock()
    budget = budget_on(clock, 5)
    grants: list[float] = []

    async def caller(tries: int) -> None:
        for _ in range(tries):
            await budget.acquire()
            grants.append(clock.now)

    await asyncio.gather(*(caller(tries) for tries in (1, 3, 2, 1, 3, 1, 2)))  # 13 grants
    assert nanos(grants) == [i * 200_000_000 for i in range(13)]
    clock.now = 2.7  # 0.3 s after the last grant (2.4): the next one may go at once
    await asyncio.gather(*(caller(2) for _ in range(4)))  # 8 more
    assert nanos(grants[13:]) == [2_700_000_000 + i * 200_000_000 for i in range(8)]

    assert len(grants) == 21
    assert max_in_one_second(grants) == 5
    assert min_gap(grants) >= 0.2


async def test_callers_are_served_in_arrival_order_and_a_retry_joins_the_back_of_the_queue() -> None:
    """A caller that acquires again (a retry) is served after the callers already waiting."""
    clock = FakeClock()
    budget = budget_on(clock, 10)
    order: list[str] = []

    async def caller(name: str, tries: int) -> None:
        for _ in range(tries):
            await budget.acquire()
            order.append(name)
            await asyncio.sleep(0)  # the retry's backoff: the others reach the queue meanwhile

    await asyncio.gather(caller("a", 2), caller("b", 1), caller("c", 2), caller("d", 1))

    assert order == ["a", "b", "c", "d", "a", "c"]
    assert nanos([clock.now]) == [500_000_000]


async def test_first_acquire_after_an_idle_spell_is_immediate() -> None:
    """After idling past 1/rate the next acquire does not sleep; one that comes early sleeps the rest."""
    clock = FakeClock(start=100.0)
    budget = budget_on(clock, 5)

    await budget.acquire()
    clock.now = 150.0
    await budget.acquire()
    assert clock.sleeps == []
    assert clock.now == 150.0

    clock.now = 150.125
    await budget.acquire()
    assert nanos(clock.sleeps) == [75_000_000]
    assert nanos([clock.now]) == [150_200_000_000]


async def test_a_lone_first_acquire_never_waits() -> None:
    """A new budget grants its first request at once, even at a slow rate."""
    clock = FakeClock(start=7.0)
    budget = budget_on(clock, 0.5)

    await budget.acquire()

    assert (clock.sleeps, clock.now) == ([], 7.0)


async def test_call_interface_ignores_ccxt_cost_and_keeps_a_settable_loop() -> None:
    """``await budget(cost)`` takes one slot whatever the cost; ``loop`` is a plain attribute."""
    clock = FakeClock()
    budget = budget_on(clock, 5)
    budget.loop = asyncio.get_running_loop()
    grants: list[float] = []

    for cost in (100, None, 0.001, "weird"):
        await budget(cost)
        grants.append(clock.now)
    await budget()
    grants.append(clock.now)

    assert nanos(grants) == [i * 200_000_000 for i in range(5)]
    assert budget.loop is asyncio.get_running_loop()


async def test_slow_down_halves_once_per_second_and_logs_one_warning_per_change() -> None:
    """A burst of 429s halves the rate once; later bursts halve again down to the floor (rate / 8)."""
    clock = FakeClock()
    budget = budget_on(clock, 8)

    with capture_logs() as logs:
        for _ in range(6):  # six requests in flight got the same 429 wave
            budget.slow_down()
        assert budget.rate_per_s == 4.0
        clock.now = 0.999
        budget.slow_down()
        assert budget.rate_per_s == 4.0
        clock.now = 1.0
        budget.slow_down()
        budget.slow_down()
        assert budget.rate_per_s == 2.0
        clock.now = 2.5
        budget.slow_down()
        assert budget.rate_per_s == 1.0
        clock.now = 4.0
        budget.slow_down()  # at the floor: no change, no log
        clock.now = 6.0
        budget.slow_down()
        assert budget.rate_per_s == 1.0

    assert logs == [
        {"event": "request budget slowed", "budget": "mexc", "rate_per_s": rate, "log_level": "warning"}
        for rate in (4.0, 2.0, 1.0)
    ]


async def test_slow_down_respects_an_explicit_floor() -> None:
    """With min_rate_per_s=3 a rate of 10 halves to 5, then stops at 3 instead of 2.5."""
    clock = FakeClock()
    budget = budget_on(clock, 10, min_rate_per_s=3)

    rates = []
    for second in range(4):
        clock.now = float(second)
        budget.slow_down()
        rates.append(budget.rate_per_s)

    assert rates == [5.0, 3.0, 3.0, 3.0]


async def test_a_slowed_budget_spaces_grants_by_the_new_rate() -> None:
    """After one slow_down from 5/s, callers are granted 0.4 s apart."""
    clock = FakeClock()
    budget = budget_on(clock, 5)
    budget.slow_down()

    grants = await acquire_all(budget, clock, 4)

    assert nanos([t for _, t in grants]) == [0, 400_000_000, 800_000_000, 1_200_000_000]
    assert min_gap([t for _, t in grants]) >= 0.4


async def test_slow_down_while_a_caller_waits_pushes_its_grant_to_the_new_spacing() -> None:
    """A 429 arriving while a caller sleeps for its 0.2 s slot makes it wait until 0.4 s."""
    clock = FakeClock()
    budget: RequestBudget

    async def sleep_then_429(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            budget.slow_down()

    budget = RequestBudget("mexc", 5, monotonic=clock.monotonic, sleep=sleep_then_429)
    grants = await acquire_all(budget, clock, 2)

    assert nanos([t for _, t in grants]) == [0, 400_000_000]
    assert nanos(clock.sleeps) == [200_000_000, 200_000_000]


async def test_rate_recovers_one_doubling_per_calm_period_up_to_the_configured_rate() -> None:
    """Slowed to 1/s at t=2, the rate doubles at t=62, t=122 and t=182 (each logged once), then stays 8."""
    clock = FakeClock()
    budget = budget_on(clock, 8, recover_after_s=60)
    for second in (0.0, 1.0, 2.0):
        clock.now = second
        budget.slow_down()
    assert budget.rate_per_s == 1.0

    rates: list[float] = []
    with capture_logs() as logs:
        for now in (61.9, 62.0, 121.9, 122.0, 182.0, 500.0):
            clock.now = now
            await budget.acquire()
            rates.append(budget.rate_per_s)

    assert rates == [1.0, 2.0, 2.0, 4.0, 8.0, 8.0]
    assert logs == [
        {"event": "request budget recovering", "budget": "mexc", "rate_per_s": rate, "log_level": "info"}
        for rate in (2.0, 4.0, 8.0)
    ]


async def test_recovery_after_a_long_idle_spell_applies_every_due_step_and_a_new_429_restarts_the_wait() -> (
    None
):
    """Idle 200 s after slowing to 1/s: three steps at once (2, 4, 8); a 429 then needs 60 s calm again."""
    clock = FakeClock()
    budget = budget_on(clock, 8, recover_after_s=60)
    for second in (0.0, 1.0, 2.0):
        clock.now = second
        budget.slow_down()

    with capture_logs() as logs:
        clock.now = 202.0
        await budget.acquire()
    assert [entry["rate_per_s"] for entry in logs] == [2.0, 4.0, 8.0]
    assert budget.rate_per_s == 8.0

    budget.slow_down()
    clock.now = 202.5
    budget.slow_down()  # debounced, but it still proves we are too fast: the calm spell restarts
    assert budget.rate_per_s == 4.0
    clock.now = 262.4
    await budget.acquire()
    assert budget.rate_per_s == 4.0
    clock.now = 262.5
    await budget.acquire()
    assert budget.rate_per_s == 8.0


@pytest.mark.parametrize("cancel_first", ["holder", "queued"])
async def test_cancelled_callers_do_not_block_the_others(cancel_first: str) -> None:
    """Cancelling the caller asleep on its slot and one queued behind it lets the next one take the slot."""
    clock = GatedClock()
    budget = budget_on(clock, 5)
    await budget.acquire()  # t=0, immediate
    granted: list[tuple[str, float]] = []

    async def caller(name: str) -> None:
        await budget.acquire()
        granted.append((name, clock.now))

    holder = asyncio.create_task(caller("holder"))
    await clock.wait_for_sleeper()
    queued = asyncio.create_task(caller("queued"))
    survivor = asyncio.create_task(caller("survivor"))
    await asyncio.sleep(0)
    for task in (holder, queued) if cancel_first == "holder" else (queued, holder):
        task.cancel()

    await clock.wait_for_sleeper()  # the survivor now holds the lock and sleeps for the 0.2 s slot
    clock.release()
    await survivor
    late = asyncio.create_task(caller("late"))
    await clock.wait_for_sleeper()
    clock.release()
    await late

    assert holder.cancelled()
    assert queued.cancelled()
    assert granted == [("survivor", 0.2), ("late", 0.4)]


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"rate_per_s": 0}, "rate_per_s"),
        ({"rate_per_s": -1}, "rate_per_s"),
        ({"rate_per_s": float("nan")}, "rate_per_s"),
        ({"rate_per_s": float("inf")}, "rate_per_s"),
        ({"rate_per_s": 10, "min_rate_per_s": 0}, "min_rate_per_s"),
        ({"rate_per_s": 10, "min_rate_per_s": 10.5}, "min_rate_per_s"),
        ({"rate_per_s": 10, "min_rate_per_s": float("nan")}, "min_rate_per_s"),
        ({"rate_per_s": 10, "recover_after_s": 0}, "recover_after_s"),
        ({"rate_per_s": 10, "recover_after_s": -5}, "recover_after_s"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_argument(
    kwargs: dict[str, Any], argument: str
) -> None:
    """Each bad argument is refused with a ValueError whose message starts with its name."""
    with pytest.raises(ValueError, match=f"^{argument} must be"):
        RequestBudget("mexc", **kwargs)


def test_the_floor_may_equal_the_rate() -> None:
    """min_rate_per_s == rate_per_s is valid and makes slow_down a no-op."""
    budget = RequestBudget("mexc", 4, min_rate_per_s=4)

    budget.slow_down()

    assert (budget.rate_per_s, budget.min_rate_per_s) == (4.0, 4.0)


async def test_real_clock_spacing_at_twenty_per_second() -> None:
    """With time.monotonic and asyncio.sleep, 10 concurrent callers at 20/s are granted >= 50 ms apart."""
    budget = RequestBudget("mexc", 20)
    grants: list[float] = []

    async def caller() -> None:
        await budget.acquire()
        grants.append(time.monotonic())

    await asyncio.gather(*(caller() for _ in range(10)))

    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert len(gaps) == 9
    assert min(gaps) >= 0.05 - 0.002


def _point_at(urls: Any, base_url: str) -> Any:
    """ccxt's ``urls['api']`` tree with every host replaced by ``base_url``, paths kept."""
    if isinstance(urls, dict):
        return {key: _point_at(value, base_url) for key, value in urls.items()}
    if isinstance(urls, str) and urls.startswith(("http://", "https://")):
        return base_url.rstrip("/") + urlsplit(urls).path
    return urls


class CountingBudget(RequestBudget):
    """A budget that records the cost ccxt hands it with each request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Same arguments as RequestBudget."""
        super().__init__(*args, **kwargs)
        self.costs: list[object] = []

    async def __call__(self, cost: object = None) -> None:
        """Record ``cost``, then take one slot."""
        self.costs.append(cost)
        await super().__call__(cost)


@pytest.mark.integration
async def test_ccxt_mexc_awaits_the_budget_once_per_request_and_sets_its_loop() -> None:
    """Installed as ccxt's throttler, the budget gates every request (contract/detail's cost 100 included)."""
    clock = FakeClock()
    budget = CountingBudget("mexc", 20, monotonic=clock.monotonic, sleep=clock.sleep)
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT")
        fake.add_swap("BTC_USDT", "BTC", "USDT")
        exchange = ccxt.mexc({"enableRateLimit": True, "timeout": 3000})
        exchange.urls["api"] = _point_at(exchange.urls["api"], fake.base_url)
        exchange.timeout_on_exit = 0
        exchange.throttler = budget
        try:
            for _ in range(2):
                await exchange.load_markets(reload=True)
        finally:
            await exchange.close()

    assert (
        sorted(r.path for r in fake.requests)
        == ["/api/v1/contract/detail"] * 2 + ["/api/v3/exchangeInfo"] * 2
    )
    assert len(budget.costs) == 4
    assert 100 in budget.costs
    assert nanos(clock.sleeps) == [50_000_000] * 3
    assert nanos([clock.now]) == [150_000_000]
    assert budget.loop is asyncio.get_running_loop()
