"""One exception tree for the fleet.

ccxt and Telegram errors are translated into these where they enter (``raise ... from e``), so the
rest of the code never imports a client library to know whether to retry: only
:class:`TemporaryError` (and its child :class:`RateLimited`) is retried.
"""

from __future__ import annotations


class FleetError(Exception):
    """Base of every error the fleet raises on purpose; its message is one line meant for a person."""


class ConfigError(FleetError):
    """global_config.json or the environment is invalid. The process exits with status 2."""


class ExchangeError(FleetError):
    """The exchange refused or failed a request in a way retrying will not fix (bad symbol, auth)."""


class TemporaryError(ExchangeError):
    """A failure that may pass: network error, timeout, 5xx, malformed body. Retried with backoff."""


class RateLimited(TemporaryError):
    """The exchange said slow down (HTTP 429 or MEXC's 'too frequent'). ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpen(TemporaryError):
    """The circuit breaker of a service is open: the call was not attempted."""


class DataError(FleetError):
    """Candles or other market data failed validation (NaN, unsorted, broken OHLC, missing files)."""


class NotifyError(FleetError):
    """Telegram refused a message or a chat in a way that retrying the same request will not fix."""


class StrategyError(FleetError):
    """A strategy raised while scanning; the runner logs it and the bot continues next cycle."""
