"""Every error inngest-mw raises: a class per cause, each with a stable ``code`` and a message that
says what to do. User-facing control-flow errors (``NonRetriableError``, ``RetryAfterError``,
``StepError``) are part of the public API."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "Error",
    "EventDataInvalidError",
    "EventValidationError",
    "FunctionConfigInvalidError",
    "MiddlewareError",
    "NonRetriableError",
    "RegistrationError",
    "RetryAfterError",
    "SendEventsError",
    "SendSignalError",
    "SignalNotFoundError",
    "SignatureError",
    "SigningKeyMissingError",
    "StepError",
    "is_final",
    "is_last_attempt",
    "is_retriable",
]


class Error(Exception):
    """Base of all inngest-mw errors."""

    code = "unknown"
    retriable = True

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class ConfigError(Error):
    """The client was configured in a way that cannot work (e.g. cloud mode without a signing key)."""

    code = "config_invalid"
    retriable = False


class FunctionConfigInvalidError(ConfigError):
    """A ``create_function`` option is invalid; the message starts with the option's name."""

    code = "function_config_invalid"


class SigningKeyMissingError(ConfigError):
    code = "signing_key_unspecified"


class SignatureError(Error):
    """An inbound request's ``X-Inngest-Signature`` is missing, malformed, stale or wrong."""

    code = "sig_verification_failed"
    retriable = False


class RegistrationError(Error):
    code = "registration_failed"


class MiddlewareError(Error):
    """A transform or wrap hook raised; the message names the middleware and the hook."""

    code = "middleware_error"


class SendEventsError(Error):
    """Sending events failed; ``ids`` holds the IDs of any events the server accepted."""

    code = "send_event_failed"

    def __init__(self, message: str, ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.ids = list(ids)


class NonRetriableError(Error):
    """Raise from a function or step to fail without further retries."""

    code = "non_retriable_error"
    retriable = False

    def __init__(self, message: str = "", *, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet


class RetryAfterError(Error):
    """Raise to be retried no earlier than ``retry_after`` (ms as int, a timedelta, or a datetime)."""

    code = "retry_after_error"

    def __init__(
        self,
        message: str,
        retry_after: int | _dt.timedelta | _dt.datetime,
        *,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        if isinstance(retry_after, int):
            retry_after = _dt.timedelta(milliseconds=retry_after)
        if isinstance(retry_after, _dt.timedelta):
            retry_after = _dt.datetime.now(_dt.UTC) + retry_after
        if retry_after.tzinfo is None:
            retry_after = retry_after.replace(tzinfo=_dt.UTC)
        self.retry_after: _dt.datetime = retry_after
        self.quiet = quiet

    def header_value(self) -> str:
        """Seconds from now, as the server reads a short ``Retry-After`` (at least 1)."""
        delta = (self.retry_after - _dt.datetime.now(_dt.UTC)).total_seconds()
        return str(max(1, round(delta)))


class StepError(Error):
    """A step failed for good; raised where user code called the step, carrying the original error."""

    code = "step_errored"
    retriable = False

    def __init__(self, message: str, name: str = "Error", stack: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.stack = stack


class EventDataInvalidError(SendEventsError):
    """An event refused before it was sent: its data does not match its ``EventModel``."""

    code = "event_data_invalid"
    retriable = False  # the same data fails the same way on every attempt


class EventValidationError(NonRetriableError):
    """An event a function received (its trigger, or what ``wait_for_event`` got) does not match
    its ``EventModel``."""

    code = "event_validation_failed"


class SignalNotFoundError(Error):
    """``send_signal``: no run is waiting for that signal (it may have timed out or resumed)."""

    code = "signal_not_found"


class SendSignalError(Error):
    """``send_signal`` failed: the API refused the signal or could not be reached."""

    code = "send_signal_failed"


def is_retriable(exc: BaseException) -> bool:
    """Whether the server may retry after ``exc``: any exception but an ``Error`` that says no.

    The one rule for steps, the function body, the handler's status code and the testing toolkit.
    """
    return not isinstance(exc, Error) or exc.retriable


def is_last_attempt(attempt: int, max_attempts: int | None) -> bool:
    """Whether ``attempt`` (0-based) is the last the server makes; unknown counts as not last."""
    return max_attempts is not None and attempt + 1 >= max_attempts


def is_final(exc: BaseException, attempt: int, max_attempts: int | None) -> bool:
    """Whether failing with ``exc`` on ``attempt`` ends the step or run for good."""
    return not is_retriable(exc) or is_last_attempt(attempt, max_attempts)
