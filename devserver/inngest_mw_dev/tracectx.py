"""The trace context the engine hands an app with each call request: ``tracestate`` carrying
``inngest@traceref`` (and ``inngest@fn``), which an app's userland span exporter copies onto its
spans (``POST /v1/traces/userland``). The server also sends its own ``traceparent``; the engine
keeps no traces of its own, so it sends none, and an app's trace of a run continues the trace its
sender put in the event (see the OTel middleware) as before. The traceref holds the parent an
app needs (``tp``: one trace per run)."""

from __future__ import annotations

import functools
import hashlib
import json
from urllib.parse import quote

from inngest_mw_dev.ids import deterministic_uuid

__all__ = ["trace_headers"]


def trace_headers(run_id: str, fn_id: str) -> dict[str, str]:
    """The ``tracestate`` header for a call request of a run (see the module)."""
    return {"tracestate": _tracestate(run_id, fn_id)}


@functools.lru_cache(maxsize=4096)
def _tracestate(run_id: str, fn_id: str) -> str:
    """Made once per run: every call request of the run carries the same one."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()
    traceparent = f"00-{digest[:32]}-{digest[32:48]}-01"
    ref = json.dumps({"tp": traceparent, "ts": ""}, separators=(",", ":"))
    return f"inngest@traceref={quote(ref, safe='')},inngest@fn={deterministic_uuid(fn_id)}"
