"""A call's outcome as a response: 200 with the output, 206 with step opcodes, or the error.

The status of an error follows the one finality rule (``errors.is_retriable``): an error the
server must not retry is a 400 with ``X-Inngest-No-Retry: true``, any other a 500.
"""

from __future__ import annotations

import logging

from inngest_mw._const import MAX_STEP_OUTPUT_BYTES, Header
from inngest_mw.comm import CommResponse, dumps, respond
from inngest_mw.errors import NonRetriableError, RetryAfterError, StepError, is_retriable
from inngest_mw.execution import CallResult
from inngest_mw.wire import Op, Opcode, serialize_error

__all__ = ["call_response", "error_response"]

_log = logging.getLogger("inngest_mw")
# Globals: an enum member lookup costs about 100 ns in 3.11.
_STEP_FAILED, _STEP_ERROR = Opcode.STEP_FAILED, Opcode.STEP_ERROR


def call_response(result: CallResult, key: str | None) -> CommResponse:
    if result.step_not_found is not None:
        return respond(
            500,
            {
                "error": f"could not find step {result.step_not_found!r} to run; the function "
                "may have changed since this run started",
                "requestedStep": result.step_not_found,
                "foundSteps": result.found_steps,
            },
            {Header.NO_RETRY: "false"},
            sign_with=key,
        )
    if result.ops:
        try:
            raw = dumps([op.to_wire() for op in result.ops])
        except (TypeError, ValueError) as exc:
            return error_response(
                NonRetriableError(f"step output is not JSON-serializable: {exc}"), key
            )
        if len(raw) > MAX_STEP_OUTPUT_BYTES:
            _fail_oversized(result.ops)
            raw = dumps([op.to_wire() for op in result.ops])
        # The retry header matters only to a step error (the server retries unless it says
        # "true"), and must say "false" beside a Retry-After; the official SDKs leave it off
        # otherwise, and so do we (the client of every call reads one header less).
        headers = None
        for op in result.ops:
            if op.op == _STEP_FAILED:
                headers = {Header.NO_RETRY: "true"}
                break
            if op.op == _STEP_ERROR:
                headers = {Header.NO_RETRY: "false"}
        if result.retry_after:
            headers = headers or {Header.NO_RETRY: "false"}
            headers[Header.RETRY_AFTER] = result.retry_after
        return respond(206, None, headers, sign_with=key, raw=raw)
    if result.error is not None:
        return error_response(result.error, key)
    try:
        raw = dumps(result.output)
    except (TypeError, ValueError) as exc:
        return error_response(
            NonRetriableError(f"function output is not JSON-serializable: {exc}"), key
        )
    return respond(200, None, sign_with=key, raw=raw)


def error_response(exc: BaseException, key: str | None) -> CommResponse:
    headers = {Header.NO_RETRY: "false"}
    status = 500
    if not is_retriable(exc):
        status = 400
        headers[Header.NO_RETRY] = "true"
    if isinstance(exc, RetryAfterError):
        headers[Header.RETRY_AFTER] = exc.header_value()
    quiet = getattr(exc, "quiet", False)
    if not quiet and not isinstance(exc, StepError):
        # A retriable failure is routine (the server retries); only a final one is an error.
        level = logging.WARNING if status == 500 else logging.ERROR
        _log.log(level, "inngest-mw: function failed: %s: %s", type(exc).__name__, exc)
    return respond(status, serialize_error(exc), headers, sign_with=key)


def _fail_oversized(ops: list[Op]) -> None:
    """Turn each step whose output is over the protocol's 4 MiB limit into a final failure.

    Measured only when the whole body is over the limit, so outputs are serialized once normally.
    """
    for op in ops:
        if not op.has_data:
            continue
        size = len(dumps(op.data))
        if size > MAX_STEP_OUTPUT_BYTES:
            error = NonRetriableError(
                f"step {op.user_id!r} output is {size} bytes; the limit is {MAX_STEP_OUTPUT_BYTES} "
                "(store large data elsewhere and return a reference)"
            )
            op.fail(serialize_error(error))
