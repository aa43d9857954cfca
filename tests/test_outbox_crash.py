"""The outbox under SIGKILL: a killed sender loses no alert and repeats at most the one in flight."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.events import read_events
from common.runner import signal_id
from common.store import GateRules, GateVerdict, Store
from common.types import Direction, Levels, Signal
from tests.fakes.mexc import FakeMexc
from tests.fakes.telegram import FakeTelegram, Received
from tests.harness import (
    H4_MS,
    TOKEN,
    avoid_candle_boundary,
    cli_env,
    sample_4h,
    serve_until,
    start_cli,
    write_config,
)
from tests.test_e2e_psar import _window, bot_scan_last

RUNS = 20
ALERTS_PER_RUN = 6
#: A private chat: no per-minute limit, so only the per-chat spacing paces the alerts.
CHAT_ID = 777000111
#: The configured per-chat spacing; the limiter adds MARGIN_MS // 5 (50 ms) to it.
INTERVAL_S = 0.05
SPACING_S = INTERVAL_S + 0.05
BAR_TS = 1_700_006_400_000  # a 4h candle's open; each alert has a symbol of its own
WAIT_S = 30.0
#: Where each kill aims. before: a random time after the start, before the run's first send;
#: during: a random time after the run's first send, while its alerts go out; in_flight: the moment
#: the fake records the run's n-th alert (n random), before the sender hears the answer (the worst
#: moment: sent but not marked); after: a random time after all of the run's alerts went out.
#: Stratified so that every moment is hit whatever the machine's speed.
TARGETS = {"before": 4, "during": 8, "in_flight": 4, "after": 4}


def _alert_text(raw: str | None) -> str:
    """The queued text of a delivered alert (a late alert has a note line in front of it)."""
    return (raw or "").split("\n", 1)[-1]


@dataclass
class _Cli:
    """A CLI subprocess whose output is drained in the background (a full pipe would block it)."""

    process: asyncio.subprocess.Process
    started: float
    output: list[bytes] = field(default_factory=list)
    drains: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, env: dict[str, str], cwd: Path) -> _Cli:
        """Start ``python -m bots run psar_bot`` (looping) and drain its stdout and stderr."""
        process = await start_cli(["run", "psar_bot", "--log-level", "WARNING"], env, cwd)
        cli = cls(process, time.monotonic())
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            cli.drains.append(asyncio.create_task(cli._drain(stream)))
        return cli

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.output.append(chunk)

    async def finish(self) -> int:
        """Wait for the exit and the end of its output; the exit status."""
        async with asyncio.timeout(WAIT_S):
            returncode = await self.process.wait()
            await asyncio.gather(*self.drains)
        return returncode

    def text(self) -> str:
        """What the process wrote (stdout and stderr interleaved by chunk)."""
        return b"".join(self.output).decode(errors="replace")


@dataclass
class _KillSwitch:
    """SIGKILLs the CLI from inside the fake as it records the n-th alert of a run (before answering)."""

    pid: int | None = None
    texts: frozenset[str] = frozenset()
    remaining: int = 0
    fired: asyncio.Event = field(default_factory=asyncio.Event)

    def arm(self, pid: int, texts: list[str], nth: int) -> None:
        """Kill ``pid`` when the ``nth`` of ``texts`` is delivered."""
        self.pid, self.texts, self.remaining = pid, frozenset(texts), nth
        self.fired.clear()

    def on_record(self, entry: Received, list_name: str) -> None:
        """FakeTelegram's hook: called for every request, before the answer leaves."""
        if self.pid is None or list_name != "received" or not entry.ok:
            return
        if _alert_text(entry.text) not in self.texts:
            return
        self.remaining -= 1
        if self.remaining == 0:
            os.kill(self.pid, signal.SIGKILL)
            self.pid = None
            self.fired.set()


@dataclass(frozen=True)
class _Tally:
    """The fake's successful sends mapped to outbox rows."""

    counts: dict[int, int]  # outbox id -> number of deliveries
    first_order: list[int]  # outbox ids in the order of their first delivery
    repeats: list[tuple[int, int]]  # (outbox id sent again, outbox id first-delivered just before)

    def twice(self) -> list[int]:
        """Outbox ids delivered exactly twice."""
        return sorted(outbox_id for outbox_id, count in self.counts.items() if count == 2)


def _tally(telegram: FakeTelegram, rows: list[dict[str, object]]) -> _Tally:
    by_text = {str(row["text"]): int(str(row["id"])) for row in rows}
    counts = dict.fromkeys(by_text.values(), 0)
    first_order: list[int] = []
    repeats: list[tuple[int, int]] = []
    for message in telegram.messages(CHAT_ID):
        outbox_id = by_text.get(_alert_text(message.text))
        assert outbox_id is not None, f"a message the store never queued was delivered: {message.text!r}"
        if counts[outbox_id]:
            repeats.append((outbox_id, first_order[-1]))
        else:
            first_order.append(outbox_id)
        counts[outbox_id] += 1
    return _Tally(counts, first_order, repeats)


def _queue_alerts(state_dir: Path, first: int, count: int) -> list[str]:
    """Queue ``count`` new alerts of psar_bot through the gate, as the runner does; their texts."""
    store = Store(state_dir)
    texts = []
    try:
        for n in range(first, first + count):
            symbol = f"ALERT{n}/USDT"
            now_ms = int(time.time() * 1000)
            alert = Signal(
                id=signal_id("psar_bot", symbol, "4h", BAR_TS, Direction.LONG.value),
                bot="psar_bot",
                symbol=symbol,
                timeframe="4h",
                direction=Direction.LONG,
                levels=Levels(Direction.LONG, entry=100.0, sl=98.0, tps=(104.0, 106.0)),
                reason="crash test",
                bar_ts=BAR_TS,
                created_ms=now_ms,
            )
            text = f"Crash test alert #{n:03d} on {symbol}"
            rules = GateRules(cooldown_ms=0, max_open_signals=10_000)
            assert store.admit_signal(alert, rules, now_ms, text) is GateVerdict.ACCEPTED
            texts.append(text)
    finally:
        store.close()
    return texts


def _outbox_rows(state_dir: Path) -> list[dict[str, object]]:
    """The outbox, read without the Store (no schema writes while a CLI may be running)."""
    db = sqlite3.connect(state_dir / "signals.sqlite3", timeout=30.0)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT id, text, status FROM outbox ORDER BY id")]
    finally:
        db.close()


def _events(log_dir: Path, name: str) -> list[dict[str, object]]:
    return [event for event in read_events(log_dir / "events") if event.get("event") == name]


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT_S):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {WAIT_S:g} s waiting until {what}") from None


@dataclass
class _Crashes:
    """The scenario: a fleet directory, the fakes, and what each kill hit."""

    tmp_path: Path
    telegram: FakeTelegram
    switch: _KillSwitch
    env: dict[str, str]
    rng: random.Random
    running: list[_Cli] = field(default_factory=list)
    kills: list[tuple[str, int]] = field(default_factory=list)  # (target, run's alerts sent at the kill)
    first_send_s: list[float] = field(default_factory=list)  # CLI start -> the run's first send
    stopping: asyncio.Task[int] | None = None  # the previous restart, exiting after SIGTERM

    @property
    def state_dir(self) -> Path:
        return self.tmp_path / "state"

    @property
    def log_dir(self) -> Path:
        return self.tmp_path / "logs"

    def sent_of(self, texts: list[str]) -> int:
        """How many of ``texts`` the fake has delivered (repeats included)."""
        wanted = set(texts)
        return sum(1 for m in self.telegram.messages(CHAT_ID) if _alert_text(m.text) in wanted)

    async def kill_once(self, run: int, target: str, texts: list[str]) -> None:
        """Start the CLI and SIGKILL it at a random moment of kind ``target``."""
        sent_before = len(self.telegram.messages(CHAT_ID))
        cli = await _Cli.start(self.env, self.tmp_path)
        self.running.append(cli)
        if target == "in_flight":
            self.switch.arm(cli.process.pid, texts, self.rng.randint(1, len(texts)))
            await _until(self.switch.fired.is_set, f"run {run}'s kill in flight")
        elif target == "before":
            await asyncio.sleep(self.rng.uniform(0.0, 0.9 * min(self.first_send_s)))
        else:
            await _until(
                lambda: len(self.telegram.messages(CHAT_ID)) > sent_before, f"run {run}'s first send"
            )
            self.first_send_s.append(time.monotonic() - cli.started)
            if target == "during":
                await asyncio.sleep(self.rng.uniform(0.0, 0.9 * (len(texts) - 1) * SPACING_S))
            else:
                await _until(lambda: self.sent_of(texts) >= len(texts), f"run {run}'s alerts all sent")
                await asyncio.sleep(self.rng.uniform(0.0, 0.4))
        if cli.process.returncode is None:
            cli.process.kill()
        assert await cli.finish() == -signal.SIGKILL, cli.text()
        self.running.remove(cli)
        self.kills.append((target, self.sent_of(texts)))
        if self.stopping is not None:
            assert await self.stopping == 0, "the previous restart did not exit 0 after SIGTERM"
            self.stopping = None

    def everything_delivered(self) -> bool:
        rows = _outbox_rows(self.state_dir)
        return (
            all(row["status"] == "sent" for row in rows)
            and min(_tally(self.telegram, rows).counts.values()) > 0
        )

    def undelivered(self) -> str:
        """The outbox ids never delivered and those not marked sent (for a failure message)."""
        rows = _outbox_rows(self.state_dir)
        lost = [outbox_id for outbox_id, count in _tally(self.telegram, rows).counts.items() if not count]
        unmarked = [row["id"] for row in rows if row["status"] != "sent"]
        return f"never delivered (lost): {lost}; not marked sent: {unmarked}"

    async def restart_and_stop(self, run: int) -> None:
        """Restart; once every queued alert is delivered and marked sent, SIGTERM it.

        The exit status is collected in the background once SHUTDOWN_COMPLETE is written: the
        interpreter's teardown (about half a second) overlaps the next run.
        """
        status_before = len(_events(self.log_dir, "STATUS"))
        done_before = len(_events(self.log_dir, "SHUTDOWN_COMPLETE"))
        cli = await _Cli.start(self.env, self.tmp_path)
        self.running.append(cli)
        try:
            await _until(
                lambda: len(_events(self.log_dir, "STATUS")) > status_before and self.everything_delivered(),
                f"run {run}'s restart delivered every queued alert",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self.undelivered()}") from None
        cli.process.send_signal(signal.SIGTERM)
        await _until(
            lambda: (
                len(_events(self.log_dir, "SHUTDOWN_COMPLETE")) > done_before
                or cli.process.returncode is not None
            ),
            f"run {run}'s restart wrote SHUTDOWN_COMPLETE",
        )
        assert cli.process.returncode in (None, 0), cli.text()
        assert _events(self.log_dir, "SHUTDOWN_COMPLETE")[-1]["pending_messages"] == 0

        async def exit_status() -> int:
            status = await cli.finish()
            self.running.remove(cli)
            return status

        self.stopping = asyncio.create_task(exit_status())

    def check(self, where: str, sent_before_run: int, rows_before_run: int) -> _Tally:
        """Every alert queued so far delivered once or twice, in queue order, all rows marked sent."""
        rows = _outbox_rows(self.state_dir)
        tally = _tally(self.telegram, rows)
        assert [row["id"] for row in rows if row["status"] != "sent"] == [], where
        assert min(tally.counts.values()) >= 1, f"{where}: lost alerts: {tally}"
        assert max(tally.counts.values()) <= 2, f"{where}: an alert delivered three times: {tally}"
        assert tally.first_order == sorted(tally.counts), f"{where}: out of queue order: {tally}"
        # A repeat is the message in flight when the process died: the last one first-delivered.
        assert all(again == last for again, last in tally.repeats), f"{where}: {tally.repeats}"
        sent_in_run = len(self.telegram.messages(CHAT_ID)) - sent_before_run
        queued_in_run = len(rows) - rows_before_run
        assert sent_in_run - queued_in_run <= 1, f"{where}: {sent_in_run} sends of {queued_in_run}, one kill"
        return tally


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigkill_at_random_moments_loses_no_alert_and_repeats_at_most_one(tmp_path: Path) -> None:
    """20 SIGKILLs before, during and after delivery: every alert arrives once or twice, in order."""
    rng = random.Random(1234)
    targets = [target for target, count in TARGETS.items() for _ in range(count)]
    rng.shuffle(targets)
    targets.remove("during")
    targets.insert(0, "during")  # the first run measures how long a start takes
    avoid_candle_boundary(H4_MS)
    write_config(tmp_path, {"chart": False}, telegram={"per_chat_interval_s": INTERVAL_S})
    switch = _KillSwitch()
    crashes: _Crashes | None = None
    try:
        async with (
            FakeMexc() as mexc,
            FakeTelegram(tokens=[TOKEN], chats=[CHAT_ID], on_record=switch.on_record) as telegram,
        ):
            mexc.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
            data = sample_4h()
            last = len(data.ts) - 2
            while bot_scan_last(_window(data, last)):  # the newest closed candle must carry no setup
                last -= 1
            serve_until(mexc, data, last)
            env = cli_env(tmp_path, mexc.base_url, telegram.url, TELEGRAM_CHAT_ID=str(CHAT_ID))
            crashes = _Crashes(tmp_path, telegram, switch, env, rng)
            for run, target in enumerate(targets):
                rows_before_run = len(_outbox_rows(crashes.state_dir)) if run else 0
                texts = _queue_alerts(crashes.state_dir, run * ALERTS_PER_RUN + 1, ALERTS_PER_RUN)
                sent_before_run = len(telegram.messages(CHAT_ID))
                await crashes.kill_once(run, target, texts)
                await crashes.restart_and_stop(run)
                crashes.check(f"run {run} ({target})", sent_before_run, rows_before_run)
            assert crashes.stopping is not None
            assert await crashes.stopping == 0, "the last restart did not exit 0 after SIGTERM"
    finally:
        for cli in crashes.running if crashes is not None else []:
            if cli.process.returncode is None:
                cli.process.kill()
            await cli.process.wait()
            for drain in cli.drains:
                drain.cancel()

    assert crashes is not None
    rows = _outbox_rows(crashes.state_dir)
    tally = _tally(telegram, rows)
    kills = crashes.kills
    hit = {
        "before any send": sum(1 for _, sent in kills if sent == 0),
        "mid-delivery": sum(1 for _, sent in kills if 0 < sent < ALERTS_PER_RUN),
        "after all were sent": sum(1 for _, sent in kills if sent >= ALERTS_PER_RUN),
    }
    summary = (
        f"{len(rows)} alerts, {len(kills)} kills {hit}, delivered twice: {len(tally.twice())} "
        f"{tally.twice()}, start to first send {min(crashes.first_send_s):.2f}"
        f"..{max(crashes.first_send_s):.2f} s"
    )
    assert len(kills) == RUNS, summary
    assert len(rows) >= RUNS * ALERTS_PER_RUN, summary  # more if the CLI found a signal of its own
    assert all(row["status"] == "sent" for row in rows), summary
    assert min(tally.counts.values()) >= 1, f"lost alerts; {summary}"
    assert max(tally.counts.values()) <= 2, f"alerts delivered three times; {summary}"
    assert tally.first_order == sorted(tally.counts), f"first deliveries out of queue order; {summary}"
    assert len(tally.twice()) == len(tally.repeats) <= len(kills), summary
    # The kills between Telegram's answer and the mark came back as exactly one repeat each.
    assert len(tally.repeats) >= 1, f"no kill landed between a send and its mark; {summary}"
    assert hit["before any send"] >= 2, summary
    assert hit["mid-delivery"] >= 5, summary
    assert hit["after all were sent"] >= 2, summary
