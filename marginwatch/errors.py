"""Errors that end a command, each with the exit code the CLI documents."""

from __future__ import annotations


class MarginwatchError(Exception):
    """Base class: a failure reported as one line with a documented exit code."""

    exit_code = 1


class InputError(MarginwatchError):
    """Bad configuration, arguments, source file or SQL (exit 2)."""

    exit_code = 2


class UsageError(InputError):
    """A command asked for something that cannot be done, e.g. a date that is not a session (exit 2).

    Unlike a failure of the data or the machinery, it is not announced to the alert channels.
    """


class ConfigError(InputError):
    """The loan-book configuration is invalid (exit 2)."""


class DataQualityError(MarginwatchError):
    """A blocking data-quality expectation failed (exit 3); `summary` is what the run published."""

    exit_code = 3

    def __init__(self, message: str, summary: object = None) -> None:
        super().__init__(message)
        self.summary = summary


class SourceUnavailable(MarginwatchError):
    """A market-data source could not deliver bars for a symbol (exit 4).

    `transient` marks failures worth retrying (timeouts, rate limits, server errors).
    """

    exit_code = 4

    def __init__(self, symbol: str, cause: str, *, transient: bool = False) -> None:
        super().__init__(f"source unavailable for {symbol}: {cause}")
        self.symbol = symbol
        self.cause = cause
        self.transient = transient


class WarehouseBusy(MarginwatchError):
    """Another run holds the warehouse beyond the wait limit (exit 5)."""

    exit_code = 5


class WarehouseError(MarginwatchError):
    """The warehouse file cannot be used: newer schema, corrupt or unreadable (exit 6)."""

    exit_code = 6


class DeliveryPending(MarginwatchError):
    """Alerts were recorded but a channel did not acknowledge them; they stay pending (exit 7)."""

    exit_code = 7
