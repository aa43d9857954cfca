"""The hooks the loop, the exchange source and the notifier call as they work, for metrics and health.

The runner, ``MexcSource`` and the notifiers take one :class:`Observer` (default: one that does
nothing) and call it at a few points: a cycle starts or ends, a strategy raises, an exchange request
is answered (or fails), an outbox message is delivered or given up. ``common.metrics`` counts these;
``common.health`` turns them into liveness. Nothing here is global: each run builds its own
observers and passes them in, so tests can build as many as they like side by side.
"""

from __future__ import annotations


class Observer:
    """Every hook, each a no-op; subclasses override the ones they care about."""

    def cycle_started(self) -> None:
        """A cycle of the loop begins."""

    def cycle_finished(self, *, seconds: float, due: int, fetched: int, completed: bool) -> None:
        """A cycle ended after ``seconds``: ``due`` series were due, ``fetched`` of them arrived.

        ``completed`` is False when the cycle was cut short (cancelled at shutdown, or it raised).
        """

    def scan_failed(self, bot: str, symbol: str, error: BaseException) -> None:
        """A strategy's scan raised; the bot runs again next cycle."""

    def request_done(self, endpoint: str, seconds: float, error: str | None, *, probe: bool = False) -> None:
        """One HTTP request to the exchange was answered (``error`` None) or failed (its kind).

        ``probe`` marks the health check's own request (not the loop's work).
        """

    def alert_sent(self, bot: str, kind: str) -> None:
        """An outbox message (``kind`` signal, result or update) was delivered and marked sent."""

    def alert_failed(self, bot: str, kind: str) -> None:
        """An outbox message was refused for good and marked failed."""


class Observers(Observer):
    """Several observers behind one: each hook is passed to all of them, in order."""

    def __init__(self, *observers: Observer) -> None:
        self._observers = observers

    def cycle_started(self) -> None:
        """Pass on ``cycle_started``."""
        for observer in self._observers:
            observer.cycle_started()

    def cycle_finished(self, *, seconds: float, due: int, fetched: int, completed: bool) -> None:
        """Pass on ``cycle_finished``."""
        for observer in self._observers:
            observer.cycle_finished(seconds=seconds, due=due, fetched=fetched, completed=completed)

    def scan_failed(self, bot: str, symbol: str, error: BaseException) -> None:
        """Pass on ``scan_failed``."""
        for observer in self._observers:
            observer.scan_failed(bot, symbol, error)

    def request_done(self, endpoint: str, seconds: float, error: str | None, *, probe: bool = False) -> None:
        """Pass on ``request_done``."""
        for observer in self._observers:
            observer.request_done(endpoint, seconds, error, probe=probe)

    def alert_sent(self, bot: str, kind: str) -> None:
        """Pass on ``alert_sent``."""
        for observer in self._observers:
            observer.alert_sent(bot, kind)

    def alert_failed(self, bot: str, kind: str) -> None:
        """Pass on ``alert_failed``."""
        for observer in self._observers:
            observer.alert_failed(bot, kind)


#: The observer used when none is given: it ignores everything.
NO_OBSERVER = Observer()
