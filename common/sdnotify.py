"""A small sd_notify client: tell systemd the service is ready, alive, stopping, and how it is doing.

The protocol (sd_notify(3)) is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named
by ``$NOTIFY_SOCKET``; a leading ``@`` names a socket in the abstract namespace (its first byte is
NUL on the wire). Without ``$NOTIFY_SOCKET`` (not started by systemd, or not ``Type=notify``) every
call is a no-op. ``$WATCHDOG_USEC`` is the unit's ``WatchdogSec`` in microseconds; it applies to
this process only when ``$WATCHDOG_PID`` is unset or names this process.

What the fleet sends: ``READY=1`` once the first cycle has fetched its candles (so ``systemctl
start`` returns when the bots really work), ``WATCHDOG=1`` from :func:`watchdog_loop` at half the
watchdog period while the loop is alive, ``STOPPING=1`` when shutdown begins, and ``STATUS=`` lines
that ``systemctl status`` shows. A failing send is logged once and never stops the fleet.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from common.logging_config import get_logger

log = get_logger(__name__)


class SdNotify:
    """Sends notifications to systemd's socket; does nothing when there is none."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        """``address``: the value of ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace)."""
        self._address = address or None
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._warned = False
        self._ready_sent = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SdNotify:
        """The client the environment asks for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``)."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "").strip()
        pid = env.get("WATCHDOG_PID", "").strip()
        if raw.isdigit() and int(raw) > 0 and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(env.get("NOTIFY_SOCKET", "").strip() or None, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """systemd's watchdog period for this process in seconds, or None when there is no watchdog."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def ready(self) -> bool:
        """``READY=1`` (once; later calls do nothing). True when sent."""
        if self._ready_sent:
            return False
        self._ready_sent = self.notify("READY=1")
        return self._ready_sent

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive. True when sent."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown has begun. True when sent."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """``STATUS=text`` (one line), shown by ``systemctl status``. True when sent."""
        return self.notify("STATUS=" + " ".join(text.split()))

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False (and one warning per process) when it cannot be sent."""
        if self._address is None:
            return False
        target = self._address
        if target.startswith("@"):
            target = "\0" + target[1:]
        elif not target.startswith("/"):
            self._warn(f"NOTIFY_SOCKET {self._address!r} is not a socket path; systemd is not notified")
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full receive queue: a lost ping is retried anyway.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            self._warn(f"cannot notify systemd at {self._address}: {exc.strerror or exc}")
            return False
        return True

    def _warn(self, text: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(text)

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


async def watchdog_loop(notify: SdNotify, alive: Callable[[], bool], interval_s: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval_s / 2`` while ``alive()``; runs until cancelled.

    While the loop is stuck ``alive()`` is False and the pings stop, so systemd kills the process
    after its ``WatchdogSec`` and restarts it. An event loop blocked outright stops the pings too,
    since this task runs on it.
    """
    period = interval_s / 2
    while True:
        if alive():
            notify.watchdog()
        await asyncio.sleep(period)
