"""The protocol's size and count limits, and the errors a run or step fails with when over them.

The values are the Inngest server's defaults (``pkg/consts/consts.go`` in ``inngest/inngest``).
Apps built with any SDK may send anything, so the engine checks them itself rather than trusting
the SDK to have done so.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_INGEST_BODY",
    "MAX_JSON_DEPTH",
    "MAX_OPS",
    "MAX_REGISTER_BODY",
    "MAX_REQUEST_BODY",
    "MAX_STATE_BYTES",
    "MAX_STEPS",
    "MAX_STEP_OUTPUT_BYTES",
    "json_bytes",
    "nested_too_deeply",
    "overflow_error",
    "state_error",
    "step_limit_error",
    "step_output_error",
]

MAX_EVENT_BYTES = 512 * 1024  # DefaultMaxEventSize
MAX_EVENTS = 5_000  # MaxEvents: events per ingest request (pkg/eventstream/eventstream.go)
# A whole ingest request: AbsoluteMaxEventSize, the body limit the server's event API puts on a
# send (pkg/api/v2/service.go, "Request body cannot exceed N bytes") and Inngest's largest
# request size. The ``/e/{key}`` handler (pkg/api/api.go) reads events one by one as they stream
# in; this engine parses the body whole, so it caps the body instead.
MAX_INGEST_BODY = 3 * 1024 * 1024
# ``/fn/register``: the server's handler sets no limit of its own; MaxSDKResponseBodySize is the
# most it reads from an SDK anywhere.
MAX_REGISTER_BODY = 8 * 1024 * 1024
# Go's decoder (the server's) nests 10,000 levels; Python's recursion limit allows under 1,000,
# and a body is also walked by the canonical encoder, expressions and the SDK's own parser, each
# with frames to spare. 100 levels is what Ruby's JSON parser allows by default.
MAX_JSON_DEPTH = 100
MAX_REQUEST_BODY = 4 * 1024 * 1024  # MaxSDKRequestBodySize: above it, the SDK fetches state
MAX_OPS = 1_000  # ops in one response (DefaultMaxStepLimit)
MAX_STEPS = 1_000  # distinct steps in one run (DefaultMaxStepLimit)
MAX_STEP_OUTPUT_BYTES = 4 * 1024 * 1024
MAX_STATE_BYTES = 32 * 1024 * 1024  # events plus every step's memo


def json_bytes(value: object) -> int:
    """Size of ``value`` as compact UTF-8 JSON, the form an SDK sends it in."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def nested_too_deeply(value: object, raw: bytes | None = None) -> bool:
    """True when ``value`` nests objects and arrays more than ``MAX_JSON_DEPTH`` levels deep.

    ``raw`` is the text ``value`` was parsed from: with at most ``MAX_JSON_DEPTH`` brackets in
    it (most bodies), no walk is needed. The walk goes level by level, so it cannot recurse.
    """
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            return True
        # One comprehension per level, exact type checks: parsed JSON has no subclasses.
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return False


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
