"""The protocol's size and count limits, and the errors a run or step fails with when over them.

The values are the Inngest server's defaults (``pkg/consts``). Apps built with any SDK may send
anything, so the engine checks them itself rather than trusting the SDK to have done so.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_OPS",
    "MAX_REQUEST_BODY",
    "MAX_STATE_BYTES",
    "MAX_STEPS",
    "MAX_STEP_OUTPUT_BYTES",
    "json_bytes",
    "overflow_error",
    "state_error",
    "step_limit_error",
    "step_output_error",
]

MAX_EVENT_BYTES = 512 * 1024  # DefaultMaxEventSize
MAX_EVENTS = 5_000  # events per ingest request
MAX_REQUEST_BODY = 4 * 1024 * 1024  # MaxSDKRequestBodySize: above it, the SDK fetches state
MAX_OPS = 1_000  # ops in one response (DefaultMaxStepLimit)
MAX_STEPS = 1_000  # distinct steps in one run (DefaultMaxStepLimit)
MAX_STEP_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_STATE_BYTES = 32 * 1024 * 1024  # events plus every step's memo


def json_bytes(value: object) -> int:
    """Size of ``value`` as compact UTF-8 JSON, the form an SDK sends it in."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def overflow_error(ops: int) -> dict[str, Any]:
    return {
        "name": "Error",
        "message": f"function overflowed: {ops} ops in one response (max {MAX_OPS})",
    }


def step_limit_error(steps: int) -> dict[str, Any]:
    return {
        "name": "Error",
        "message": f"function exceeded the {MAX_STEPS:,}-step limit (it reached {steps} steps)",
    }


def step_output_error(label: str, data: object, size: int | None = None) -> dict[str, Any] | None:
    """The step error for a ``StepRun`` whose output is over 4 MiB, else None.

    ``size`` is the output's encoded size when the caller has encoded it already.
    """
    size = json_bytes(data) if size is None else size
    if size <= MAX_STEP_OUTPUT_BYTES:
        return None
    return {
        "name": "StepOutputTooLargeError",
        "message": (
            f"step {label!r} output is {size} bytes; the limit is {MAX_STEP_OUTPUT_BYTES} bytes"
            " (store large data elsewhere and return a reference)"
        ),
    }


def state_error(size: int) -> dict[str, Any]:
    return {
        "name": "StateTooLargeError",
        "message": f"run state reached {size} bytes; the limit is {MAX_STATE_BYTES} bytes (32 MiB)",
    }
