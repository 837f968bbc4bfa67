"""Userland traces: ``POST /v1/traces/userland`` (``traces.go``), OTLP spans an app exports.

The body is an OTLP ``ExportTraceServiceRequest``, protobuf or (``Content-Type`` with ``json``)
OTLP/JSON, at most 8 MiB. A span is kept for the run named by its ``sdk.run.id`` attribute when it
carries the ``inngest.traceref`` the engine handed the app in ``tracestate``; others are counted
as rejected in the answer's partial success. ``v1apis`` routes here on the first such request, so
an engine that is never sent traces never loads the OTLP protobuf modules.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from inngest_mw_dev.bodies import read_body

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine
    from inngest_mw_dev.store import Store

__all__ = ["MAX_TRACE_BODY", "accept_traces"]

MAX_TRACE_BODY: Final = 8 * 1024 * 1024  # MaxUserlandTraceBodySize
_HEX_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}")
_ATTR_RUN_ID: Final = "sdk.run.id"
_ATTR_TRACEREF: Final = "inngest.traceref"
_ATTR_STEP_ID: Final = "inngest.step.id"
_SPAN_KINDS: Final = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


def _status_bytes(message: str) -> bytes:
    """A ``google.rpc.Status`` with only ``message`` (field 2), encoded by hand."""
    text = message.encode()
    length, prefix = len(text), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        prefix.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x12" + bytes(prefix) + text


def _trace_error(status: int, message: str, is_json: bool) -> Response:
    if is_json:
        return JSONResponse(
            {"message": message, "error": message, "status": status}, status_code=status
        )
    return Response(_status_bytes(message), status_code=status, media_type="application/x-protobuf")


def _hex_ids_to_base64(node: object) -> None:
    """OTLP/JSON writes trace and span IDs in hex; protobuf's JSON reader expects base64."""
    if isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                if _HEX_ID.fullmatch(value):
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in pairs:
        out[kv.key] = _value(kv.value)
    return out


def _valid_traceref(raw: object) -> bool:
    if not isinstance(raw, str):
        return False
    try:
        ref = json.loads(unquote(raw))
    except ValueError:
        return False
    return isinstance(ref, dict) and isinstance(ref.get("tp"), str) and bool(ref["tp"])


_STATUS = {Status.STATUS_CODE_OK: "ok", Status.STATUS_CODE_ERROR: "error"}


async def accept_traces(engine: Engine, request: Request) -> Response:
    """``POST /v1/traces/userland``: keep the spans of this engine's runs, count the others."""
    is_json = "json" in request.headers.get("content-type", "")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_TRACE_BODY:
        return _trace_error(413, "Request body too large", is_json)
    raw = await read_body(request, MAX_TRACE_BODY)
    export = ExportTraceServiceRequest()
    try:
        if is_json:
            parsed = json.loads(raw)
            _hex_ids_to_base64(parsed)
            json_format.ParseDict(parsed, export)
        else:
            export.ParseFromString(raw)
    except (ValueError, DecodeError, json_format.ParseError) as exc:
        return _trace_error(400, f"Invalid payload: {exc}"[:300], is_json)
    rejected = await engine.db(_keep_all, engine.store, export)
    answer = ExportTraceServiceResponse()
    if rejected:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = (
            "spans need an inngest.traceref and the sdk.run.id of a run of this engine"
        )
    if is_json:
        return JSONResponse(json_format.MessageToDict(answer))
    return Response(answer.SerializeToString(), media_type="application/x-protobuf")


def _keep_all(store: Store, export: ExportTraceServiceRequest) -> int:
    """``accept_traces``' store thread job: save the spans of known runs; how many were not."""
    rejected = 0
    now = time.time()
    runs: dict[str, bool] = {}
    with store.tx():
        for resource_spans in export.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    if not _keep(store, runs, span, str(service), scope_spans.scope.name, now):
                        rejected += 1
    return rejected


def _keep(
    store: Store, runs: dict[str, bool], span: Span, service: str, scope: str, now: float
) -> bool:
    attributes = _attributes(span.attributes)
    run_id = attributes.get(_ATTR_RUN_ID)
    if not _valid_traceref(attributes.get(_ATTR_TRACEREF)) or not isinstance(run_id, str):
        return False
    if run_id not in runs:
        runs[run_id] = store.get_run(run_id) is not None
    if not runs[run_id] or len(span.span_id) != 8 or len(span.trace_id) != 16:
        return False
    user = {k: v for k, v in attributes.items() if not k.startswith(("inngest.", "sdk.", "sys."))}
    step = attributes.get(_ATTR_STEP_ID)
    store.write(
        "INSERT OR REPLACE INTO user_spans VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        run_id,
        span.span_id.hex(),
        span.trace_id.hex(),
        span.parent_span_id.hex() or None,
        span.name,
        _SPAN_KINDS.get(span.kind, "unspecified"),
        _STATUS.get(span.status.code, "unset"),
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        step if isinstance(step, str) else None,
        scope,
        service,
        json.dumps(user, separators=(",", ":"), default=str),
        now,
    )
    return True
