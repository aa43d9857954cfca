"""systemd notifications: the sd_notify client on a real datagram socket, and the CLI's READY / WATCHDOG."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import structlog

from common.sdnotify import SdNotify, watchdog_loop
from tests.fakes.mexc import FakeMexc, Fault
from tests.harness import (
    H4_MS,
    avoid_candle_boundary,
    cli_env,
    free_port,
    sample_4h,
    serve_until,
    sigterm_cli,
    start_cli,
    write_config,
)
from tests.test_e2e_psar import _window, bot_scan_last


@dataclass
class Datagram:
    """One notification as the fake systemd socket received it."""

    text: str
    at: float  # time.monotonic() on arrival


@dataclass
class FakeSystemd:
    """A bound AF_UNIX datagram socket standing in for systemd's notification socket."""

    sock: socket.socket
    address: str
    received: list[Datagram] = field(default_factory=list)

    def drain(self) -> list[Datagram]:
        """Read every datagram waiting on the socket (non-blocking); all received so far."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.received
            self.received.append(Datagram(data.decode(), time.monotonic()))

    async def listen(self) -> None:
        """Read datagrams as they arrive (every few ms) until cancelled, so arrival times are right."""
        while True:
            self.drain()
            await asyncio.sleep(0.005)

    def texts(self) -> list[str]:
        """The texts received so far."""
        return [d.text for d in self.drain()]


@contextlib.contextmanager
def fake_systemd(address: str, bind_to: str) -> Iterator[FakeSystemd]:
    """A datagram socket bound to ``bind_to`` (a path, or a NUL-led abstract name) for ``address``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(bind_to)
    sock.setblocking(False)
    try:
        yield FakeSystemd(sock, address)
    finally:
        sock.close()


@pytest.mark.unit
def test_without_notify_socket_every_call_is_a_no_op() -> None:
    """No NOTIFY_SOCKET: nothing is sent, and there is no watchdog even with WATCHDOG_USEC set."""
    notify = SdNotify.from_env({"WATCHDOG_USEC": "2000000"})

    assert notify.enabled is False
    assert [notify.ready(), notify.watchdog(), notify.stopping(), notify.status("x")] == [False] * 4
    assert notify.watchdog_interval_s() is None


@pytest.mark.integration
def test_each_notification_is_one_datagram_on_the_socket_path(tmp_path: Path) -> None:
    """READY=1 (once), WATCHDOG=1, STOPPING=1 and a one-line STATUS arrive in order on a path socket."""
    path = str(tmp_path / "notify.sock")
    with fake_systemd(path, path) as systemd:
        notify = SdNotify.from_env({"NOTIFY_SOCKET": path})
        sent = [
            notify.ready(),
            notify.ready(),
            notify.watchdog(),
            notify.status("running 15 bots\nsecond line"),
            notify.stopping(),
        ]
        notify.close()

        assert sent == [True, False, True, True, True]
        assert systemd.texts() == [
            "READY=1",
            "WATCHDOG=1",
            "STATUS=running 15 bots second line",
            "STOPPING=1",
        ]


@pytest.mark.integration
def test_an_at_sign_names_the_abstract_namespace() -> None:
    """NOTIFY_SOCKET=@name reaches the socket bound to NUL+name (no file on disk)."""
    name = f"signal-fleet-test-{os.getpid()}-{time.monotonic_ns()}"
    with fake_systemd(f"@{name}", f"\0{name}") as systemd:
        notify = SdNotify.from_env({"NOTIFY_SOCKET": f"@{name}"})
        assert notify.ready() is True
        notify.close()

        assert systemd.texts() == ["READY=1"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("1500000", "self", 1.5),
        ("1500000", "other", None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_the_watchdog_period_comes_from_watchdog_usec_for_this_pid(
    usec: str, pid: str | None, expected: float | None
) -> None:
    """WATCHDOG_USEC in seconds, only when WATCHDOG_PID is unset or ours; nonsense means no watchdog."""
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": usec}
    if pid is not None:
        env["WATCHDOG_PID"] = str(os.getpid() if pid == "self" else os.getpid() + 1)

    assert SdNotify.from_env(env).watchdog_interval_s() == expected


@pytest.mark.unit
def test_a_socket_that_is_gone_is_warned_about_once_and_never_raises(tmp_path: Path) -> None:
    """Sending to a missing socket returns False every time, with a single warning naming the socket."""
    missing = str(tmp_path / "gone.sock")
    notify = SdNotify(missing)
    with structlog.testing.capture_logs() as logs:
        results = [notify.ready(), notify.watchdog(), notify.watchdog()]
    notify.close()

    assert results == [False, False, False]
    assert [(entry["log_level"], entry["event"]) for entry in logs] == [
        ("warning", f"cannot notify systemd at {missing}: No such file or directory")
    ]


@pytest.mark.integration
async def test_the_watchdog_loop_pings_only_while_the_loop_is_alive(tmp_path: Path) -> None:
    """Three alive answers then dead ones: exactly three WATCHDOG=1 datagrams, one per half period."""
    path = str(tmp_path / "notify.sock")
    answers = iter([True, True, True, False, False, False])
    calls = 0

    def alive() -> bool:
        nonlocal calls
        calls += 1
        return next(answers, False)

    with fake_systemd(path, path) as systemd:
        notify = SdNotify(path, watchdog_usec=40_000)
        task = asyncio.create_task(watchdog_loop(notify, alive, notify.watchdog_interval_s() or 0))
        async with asyncio.timeout(5):
            while calls < 6:
                systemd.drain()  # read as they come, so each arrival time is right to a few ms
                await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notify.close()
        received = systemd.drain()

    assert [d.text for d in received] == ["WATCHDOG=1"] * 3
    # Half of the 40 ms period between pings (read within a few ms; the event loop only adds).
    gaps = [b.at - a.at for a, b in itertools.pairwise(received)]
    assert all(gap >= 0.015 for gap in gaps), gaps


# -- the CLI under a fake systemd -----------------------------------------------------------------


def _get(url: str) -> tuple[int, dict[str, object]]:
    """GET a health endpoint: (HTTP status, JSON body); 503 answers are read too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
async def stalling_mexc() -> AsyncIterator[tuple[FakeMexc, int]]:
    """BTC/USDT 4h without a setup on the newest candle; the first klines answer lacks that candle
    (so the runner looks again 5 s later) and every later klines request hangs for 30 s."""
    avoid_candle_boundary(H4_MS, margin_s=60)
    async with FakeMexc() as fake:
        fake.add_spot("BTCUSDT", "BTC", "USDT", price_tick="0.01")
        data = sample_4h()
        last = len(data.ts) - 2
        while bot_scan_last(_window(data, last)):
            last -= 1
        served = serve_until(fake, data, last)
        fake.inject(Fault.gap(int(served[-2])), path_contains="klines")
        fake.inject(Fault.hang(30), times=5, path_contains="klines")
        yield fake, int(served[-2])


@pytest.mark.integration
async def test_the_cli_is_ready_after_its_first_cycle_and_stops_pinging_when_a_fetch_hangs(
    stalling_mexc: tuple[FakeMexc, int], tmp_path: Path
) -> None:
    """READY=1 after the first cycle, WATCHDOG=1 every half period, none once a fetch hangs past the
    1 s watchdog period (and /health/live says 503), STOPPING=1 on SIGTERM, exit 0."""
    mexc, _ = stalling_mexc
    path = str(tmp_path / "notify.sock")
    port = free_port()
    write_config(
        tmp_path,
        {"chart": False},
        runner={"shutdown_timeout_s": 4},
        exchange={"candle_close_delay_s": 0, "timeout_ms": 60_000},
    )
    env = cli_env(tmp_path, mexc.base_url, None, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    with fake_systemd(path, path) as systemd:
        listening = asyncio.create_task(systemd.listen())
        process = await start_cli(["run", "psar_bot", "--health-port", str(port)], env, tmp_path)
        try:
            async with asyncio.timeout(30):
                while len([r for r in mexc.requests if r.path == "/api/v3/klines"]) < 2:
                    await asyncio.sleep(0.05)
            hang_at = [r for r in mexc.requests if r.path == "/api/v3/klines"][1].monotonic
            await asyncio.sleep(max(0.0, hang_at + 2.0 - time.monotonic()))
            live_status, live_body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/health/live")
            await asyncio.sleep(max(0.0, hang_at + 4.0 - time.monotonic()))
            received = list(systemd.drain())
            stderr, _ = await sigterm_cli(process, timeout=10)
        finally:
            listening.cancel()
            if process.returncode is None:
                process.kill()
                await process.wait()
        after_stop = systemd.drain()[len(received) :]

    assert process.returncode == 0, stderr
    texts = [d.text for d in received]
    ready_at = next(d.at for d in received if d.text == "READY=1")
    assert texts.count("READY=1") == 1
    assert texts[0] == "STATUS=starting: loading markets"
    assert "STATUS=running 1 bot(s)" in texts
    # Between the first cycle and the hang (about 5 s) the pings came every half second ...
    pings = [d.at for d in received if d.text == "WATCHDOG=1"]
    assert len([at for at in pings if ready_at < at < hang_at]) >= 6
    # ... and stopped within the watchdog period (1 s) plus one ping interval of the fetch hanging.
    assert [at - hang_at for at in pings if at > hang_at + 1.6] == []
    assert live_status == 503
    assert live_body["live"] is False
    assert live_body["status"] == "unhealthy"
    problems = live_body["problems"]
    assert isinstance(problems, list)
    assert len(problems) == 1
    assert str(problems[0]).startswith("loop stuck: the cycle in progress has made no progress for ")
    assert str(problems[0]).endswith(" s (limit 1 s)")
    assert [d.text for d in after_stop][:2] == ["STOPPING=1", "STATUS=stopping: delivering what is queued"]
