"""What the server reads to tie an app's spans to a run, from the trace context it sent with the
call request (``traceparent`` and the ``inngest@...`` entries of ``tracestate``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import unquote

from opentelemetry.util.types import AttributeValue

__all__ = ["run_attributes"]


def run_attributes(headers: Mapping[str, str], run_id: str) -> dict[str, AttributeValue] | None:
    """What every exported span of this request carries; None when the server sent no trace
    context (then nothing is exported: the server could not place the spans)."""
    out: dict[str, AttributeValue] = {"sdk.run.id": run_id}
    for entry in headers.get("tracestate", "").split(","):
        key, _, value = entry.strip().partition("=")
        if key == "inngest@traceref" and value:
            out["inngest.traceref"] = value
        elif key == "inngest@fn" and value:
            out["sys.function.id"] = value
        elif key == "inngest@app" and value:
            out["sdk.app.id"] = out["sys.app.id"] = value
    # The server sends a traceparent; a server that keeps no traces (the embedded engine) only
    # the traceref, whose "tp" is the parent the spans belong under.
    traceparent = headers.get("traceparent") or _traceref_parent(out.get("inngest.traceref"))
    if not traceparent:
        return None
    out["inngest.traceparent"] = traceparent
    return out


def _traceref_parent(traceref: AttributeValue | None) -> str | None:
    if not isinstance(traceref, str):
        return None
    try:
        ref = json.loads(unquote(traceref))
    except ValueError:
        return None
    parent = ref.get("tp") if isinstance(ref, dict) else None
    return parent if isinstance(parent, str) and parent else None
