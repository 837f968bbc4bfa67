"""The trace context the engine hands an app with each call request: ``tracestate`` carrying
``inngest@traceref`` (and ``inngest@fn``), which an app's userland span exporter copies onto its
spans (``POST /v1/traces/userland``). The server also sends its own ``traceparent``; the engine
keeps no traces of its own, so it sends none, and an app's trace of a run continues the trace its
sender put in the event (see the OTel middleware) as before. The traceref holds the parent an
app needs (``tp``: one trace per run)."""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from inngest_mw_dev.ids import deterministic_uuid

__all__ = ["trace_headers", "tracestate"]


def trace_headers(run_id: str, fn_id: str) -> dict[str, str]:
    """The ``tracestate`` header for a call request of a run (see the module)."""
    return {"tracestate": tracestate(run_id, fn_id)}


# ``{"tp":"<traceparent>","ts":""}`` percent-encoded, around the traceparent (whose hex digits and
# dashes need no encoding): the same text as quote(json.dumps(ref)), without either call.
_REF_OPEN = quote('{"tp":"', safe="")
_REF_CLOSE = quote('","ts":""}', safe="")


def tracestate(run_id: str, fn_id: str) -> str:
    """The same for every call request of a run, and cheap enough to make each time (a cache
    would hold one string per running run)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    traceparent = f"00-{digest[:32]}-{digest[32:48]}-01"
    return (
        f"inngest@traceref={_REF_OPEN}{traceparent}{_REF_CLOSE},"
        f"inngest@fn={deterministic_uuid(fn_id)}"
    )
