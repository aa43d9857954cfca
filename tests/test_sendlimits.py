"""Tests of common.sendlimits: Telegram's limits reserved in the shared database, across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.sendlimits import MARGIN_MS, SendLimiter, SendRules, is_group_or_channel, token_key
from common.store import Store

pytestmark = pytest.mark.unit

BOT = token_key("123:secret")
GROUP = "-1001234567890"
PRIVATE = "777000111"


class WallClock:
    """A settable wall clock in milliseconds."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def limiter(tmp_path: Path, clock: WallClock, **rules: int) -> SendLimiter:
    """A limiter on a fresh store database with ``rules`` over Telegram's defaults."""
    Store(tmp_path / "state").close()
    return SendLimiter(tmp_path / "state" / "signals.sqlite3", SendRules(**rules), wall_ms=clock)


def send_all(limit: SendLimiter, clock: WallClock, chat: str, count: int) -> list[int]:
    """Reserve ``count`` sends as fast as allowed (jumping the clock); the times they were taken."""
    taken: list[int] = []
    while len(taken) < count:
        wait = limit.reserve(BOT, chat)
        if wait:
            clock.now += wait
            continue
        taken.append(clock.now)
    return taken


def test_names_and_chat_kinds() -> None:
    """A token is named by a 12-hex-digit hash that does not contain it; groups, channels and users differ."""
    assert len(BOT) == 12
    assert "secret" not in BOT
    assert token_key("123:secret") == BOT != token_key("124:secret")
    assert (is_group_or_channel(GROUP), is_group_or_channel("@news"), is_group_or_channel(PRIVATE)) == (
        True,
        True,
        False,
    )


def test_one_per_second_per_chat_with_a_small_margin(tmp_path: Path) -> None:
    """Sends to one chat are at least 1 s (+ a fifth of the margin) apart; another chat is not held up."""
    clock = WallClock()
    limit = limiter(tmp_path, clock)
    start = clock.now
    assert send_all(limit, clock, PRIVATE, 3) == [start, start + 1_050, start + 2_100]
    assert limit.reserve(BOT, "888") == 0  # a different chat goes at once


def test_twenty_per_minute_in_a_group_but_not_in_a_private_chat(tmp_path: Path) -> None:
    """The 21st message to a group waits until the first leaves the minute (+ margin); private chats not."""
    clock = WallClock()
    limit = limiter(tmp_path, clock, per_chat_interval_ms=100)
    start = clock.now
    times = send_all(limit, clock, GROUP, 41)
    assert times[19] == start + 19 * 150
    assert times[20] == times[0] + 60_000 + MARGIN_MS
    assert times[40] == times[20] + 60_000 + MARGIN_MS
    for first in range(len(times)):
        in_window = [t for t in times if times[first] <= t < times[first] + 60_000 + MARGIN_MS]
        assert len(in_window) <= 20
    clock.now = start
    private_limit = limiter(tmp_path / "p", clock, per_chat_interval_ms=100)
    assert send_all(private_limit, clock, PRIVATE, 41)[-1] == start + 40 * 150


def test_thirty_per_second_per_bot_across_chats(tmp_path: Path) -> None:
    """The 31st send of one token within a second waits, whatever the chat."""
    clock = WallClock()
    limit = limiter(tmp_path, clock)
    start = clock.now
    for index in range(30):
        assert limit.reserve(BOT, str(1000 + index)) == 0
    assert limit.reserve(BOT, "2000") == 1_000 + MARGIN_MS
    assert limit.reserve(token_key("other"), "2000") == 0  # another token has its own budget
    clock.now = start + 1_000 + MARGIN_MS
    assert limit.reserve(BOT, "2000") == 0


def test_retry_after_pauses_the_chat_then_the_bot_when_a_second_chat_is_told(tmp_path: Path) -> None:
    """One chat's 429 pauses that chat only; a second chat's 429 within 10 s pauses every chat of a token."""
    clock = WallClock()
    limit = limiter(tmp_path, clock)
    assert limit.pause(BOT, GROUP, 5) is False
    assert limit.reserve(BOT, GROUP) == 5_000 + MARGIN_MS
    assert limit.reserve(BOT, PRIVATE) == 0
    clock.now += 2_000
    assert limit.pause(BOT, PRIVATE, 3) is True
    assert limit.reserve(BOT, "999") == 3_000 + MARGIN_MS
    clock.now += 3_000 + MARGIN_MS
    assert limit.reserve(BOT, "999") == 0


def test_two_processes_share_the_limits(tmp_path: Path) -> None:
    """Two limiters on one database (two processes) keep one chat's spacing and see each other's pauses."""
    clock = WallClock()
    first = limiter(tmp_path, clock)
    second = SendLimiter(tmp_path / "state" / "signals.sqlite3", SendRules(), wall_ms=clock)
    assert first.reserve(BOT, GROUP) == 0
    assert second.reserve(BOT, GROUP) == 1_050
    first.pause(BOT, GROUP, 7)
    clock.now += 2_000
    assert second.reserve(BOT, GROUP) == 5_000 + MARGIN_MS
    first.close()
    second.close()


def test_a_slow_request_is_spaced_from_its_answer_not_from_its_reservation(tmp_path: Path) -> None:
    """A request answered 3 s after its reservation: the next slot is measured from the answer."""
    clock = WallClock()
    limit = limiter(tmp_path, clock)
    start = clock.now
    assert limit.reserve(BOT, GROUP) == 0
    clock.now = start + 3_000  # the answer comes (Telegram saw the request somewhere in between)
    limit.finished(BOT, GROUP)
    assert limit.reserve(BOT, GROUP) == 1_050
    limit.finished(BOT, "nothing in flight")  # a chat with nothing reserved: no effect
