"""One call request to an app and the classification of its response.

Builds the JCS-canonical, optionally signed body; sends it; turns whatever comes back (including
garbage) into a ``Completed``, ``OpsResponse`` or ``CallFailed`` without ever raising.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from inngest_mw._const import Header
from inngest_mw.hooktrace import SeenTrace, decode
from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw.signature import sign
from inngest_mw_dev.appclient import AppResponse, ProtocolError
from inngest_mw_dev.canonical import canonical_text
from inngest_mw_dev.limits import MAX_JSON_DEPTH, MAX_REQUEST_BODY, nested_too_deeply
from inngest_mw_dev.timing import parse_retry_after
from inngest_mw_dev.tracectx import trace_headers

__all__ = [
    "MAX_REQUEST_BODY",
    "CallFailed",
    "CallOutcome",
    "Completed",
    "Op",
    "OpsResponse",
    "Transport",
    "build_body",
    "call_app",
    "call_url",
    "classify",
    "first_event_json",
    "splice_body",
]

_ERROR_TEXT_LIMIT = 2_000


@dataclass(frozen=True, slots=True)
class Op:
    """One generator opcode from a 206 response."""

    id: str
    op: str
    name: str
    display_name: str
    opts: dict[str, Any]
    data: Any
    error: Any
    metadata: Any = None  # metadata updates made in the step (``inngest_mw_dev.v1apis``)

    @property
    def label(self) -> str:
        """The user-facing step name (``displayName``, else userland id, else ``name``)."""
        return self.display_name or self.name or self.id


@dataclass(frozen=True, slots=True)
class Completed:
    output: Any
    hooks: SeenTrace | None = None


@dataclass(frozen=True, slots=True)
class OpsResponse:
    ops: list[Op]
    no_retry: bool
    retry_at: float | None
    hooks: SeenTrace | None = None


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A failed attempt; ``retriable`` is False only when the app said ``X-Inngest-No-Retry``."""

    error: dict[str, Any]
    retriable: bool
    retry_at: float | None
    reason: str
    hooks: SeenTrace | None = None
    """What the app's middleware did in this request, when it said (``inngest_mw.hooktrace``)."""


CallOutcome = Completed | OpsResponse | CallFailed


def build_body(
    *,
    events: list[dict[str, Any]],
    steps: dict[str, Any],
    stack: list[str],
    fn_uuid: str,
    run_id: str,
    step_id: str,
    attempt: int,
    max_attempts: int,
    disable_immediate_execution: bool,
) -> bytes:
    """The canonical call body from decoded state (see ``splice_body``)."""
    events_json = canonical_text(events)
    return splice_body(
        events_json=events_json,
        first_event_json=first_event_json(events_json, events),
        steps_json=[(step, canonical_text(steps[step])) for step in stack],
        fn_uuid=fn_uuid,
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        max_attempts=max_attempts,
        disable_immediate_execution=disable_immediate_execution,
    )


def first_event_json(events_json: str, events: list[dict[str, Any]]) -> str:
    """The text of ``events[0]`` within ``events_json``: sliced out when it is the only one."""
    if len(events) == 1 and events_json.startswith("[{") and events_json.endswith("}]"):
        return events_json[1:-1]
    return canonical_text(events[0]) if events else "{}"


def _utf16(key: str) -> bytes:
    """JCS orders object keys by their UTF-16 code units."""
    return key.encode("utf-16-be", "surrogatepass")


def splice_body(
    *,
    events_json: str,
    first_event_json: str,
    steps_json: list[tuple[str, str]],
    fn_uuid: str,
    run_id: str,
    step_id: str,
    attempt: int,
    max_attempts: int,
    disable_immediate_execution: bool,
    qi_id: str | None = None,
) -> bytes:
    """The call body, spliced from state already encoded as canonical JSON text.

    ``steps_json`` is ``(hash, memo JSON)`` in completion order (the stack). Events and memos are
    encoded once, when stored, not on every call; only ``ctx`` is encoded here. When the body
    would exceed 4 MiB, events and steps are left for the SDK to fetch (``use_api``).
    ``qi_id`` names this dispatch, for a request that may checkpoint (the engine refuses a
    checkpoint from a dispatch it has given up on).
    """
    quoted = [_string(step) for step, _ in steps_json]
    # ``ctx`` by hand, its keys in JCS order: every value is a string, an integer or a boolean.
    immediate = "true" if disable_immediate_execution else "false"
    qi = "" if qi_id is None else f'"qi_id":{_string(qi_id)},'
    head = (
        f'{{"ctx":{{"attempt":{int(attempt)},"disable_immediate_execution":{immediate},"env":"",'
        f'"fn_id":{_string(fn_uuid)},"max_attempts":{int(max_attempts)},{qi}'
        f'"run_id":{_string(run_id)},"stack":{{"current":{len(quoted)},'
        f'"stack":[{",".join(quoted)}]}},"step_id":{_string(step_id)},"use_api":'
    )
    # ``steps`` in JCS key order: UTF-16 code units, which for ASCII keys (step IDs are hashes)
    # is the order of the strings themselves.
    if all(step.isascii() for step, _ in steps_json):
        order = sorted(range(len(quoted)), key=lambda i: steps_json[i][0])
    else:
        order = sorted(range(len(quoted)), key=lambda i: _utf16(steps_json[i][0]))
    steps = ",".join([f"{quoted[i]}:{steps_json[i][1]}" for i in order])
    body = (
        f'{head}false}},"event":{first_event_json},"events":{events_json},"steps":{{{steps}}},'
        '"use_api":false,"version":2}'
    ).encode()
    if len(body) <= MAX_REQUEST_BODY:
        return body
    return (
        f'{head}true}},"event":{first_event_json},"events":[],"steps":{{}},'
        '"use_api":true,"version":2}'
    ).encode()


_string: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string literal, UTF-8 unescaped, exactly as JCS writes it."""


@functools.lru_cache(maxsize=4096)
def _target(app_url: str, fn_id: str, step_id: str) -> str:
    """``call_url``, built once per step rather than on every call."""
    return call_url(app_url, fn_id, step_id)


def call_url(app_url: str, fn_id: str, step_id: str) -> str:
    """The app URL with ``fnId``/``stepId`` set (any other query parameters are kept)."""
    parts = urlsplit(app_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("fnId", "stepId")]
    query += [("fnId", fn_id), ("stepId", step_id)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class Transport(Protocol):
    """How a call reaches an app: ``AppClient`` (HTTP) or the connect gateway."""

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> AppResponse: ...


async def call_app(
    client: Transport,
    *,
    app_url: str,
    fn_id: str,
    step_id: str,
    run_id: str,
    body: bytes,
    signing_key: str | None,
    server_kind: str,
    timeout: float,
    now: float | None = None,
) -> CallOutcome:
    """POST one call request and classify the response; network errors become retriable."""
    headers = {
        "Content-Type": "application/json",
        "X-Inngest-Server-Kind": server_kind,
        "X-Run-ID": run_id,
        "X-Inngest-Step-ID": step_id,
        "x-inngest-req-version": "2",
        Header.MW_TRACE: "1",
        **trace_headers(run_id, fn_id),
    }
    if signing_key:
        headers["X-Inngest-Signature"] = sign(body, signing_key)
    try:
        response = await client.post(_target(app_url, fn_id, step_id), body, headers, timeout)
    except TimeoutError:
        message = f"request timed out after {timeout:g}s"
        return _failed("NetworkError", message, message)
    except (OSError, ProtocolError, ValueError) as exc:
        reason = f"connection error ({type(exc).__name__})"
        return _failed("NetworkError", f"{type(exc).__name__}: {exc}", reason)
    outcome = classify(
        response.status, response.headers, response.content, time.time() if now is None else now
    )
    seen = decode(response.headers.get(Header.MW_TRACE))
    return outcome if seen is None else dataclasses.replace(outcome, hooks=seen)


def _failed(
    name: str, message: str, reason: str, *, retriable: bool = True, retry_at: float | None = None
) -> CallFailed:
    return CallFailed({"name": name, "message": message}, retriable, retry_at, reason)


def classify(status: int, headers: dict[str, str], content: bytes, now: float) -> CallOutcome:
    """Turn a raw response into an outcome (``headers`` keys lower-cased)."""
    if status == 201:
        return _unwrap_stream(headers, content, now)
    if "x-inngest-sdk" not in headers:
        return _failed(
            "FatalUpstreamError",
            f"The response did not come from an Inngest SDK (HTTP {status}, no X-Inngest-Sdk)",
            f"HTTP {status} without X-Inngest-Sdk header",
        )
    no_retry = headers.get("x-inngest-no-retry", "").strip().lower() == "true"
    retry_at = parse_retry_after(headers.get("retry-after"), now)
    try:
        payload = _parse(content) if content.strip() else None
    except JSONBodyError as exc:
        if 200 <= status < 300:
            if exc.reason == _TOO_DEEP:
                message = f"response body is nested too deeply (JSON may nest at most {MAX_JSON_DEPTH} levels)"
                return _failed("InvalidResponseError", message, "JSON body nested too deeply")
            return _failed("InvalidResponseError", "response body is not JSON", "invalid JSON body")
        payload = content.decode("utf-8", "replace")[:_ERROR_TEXT_LIMIT]
    if status == 200:
        return Completed(payload)
    if status == 206:
        return parse_ops(payload, no_retry, retry_at)
    error = _error_object(payload, status)
    return CallFailed(error, not no_retry, retry_at, f"HTTP {status}: {error['message']}")


def _unwrap_stream(headers: dict[str, str], content: bytes, now: float) -> CallOutcome:
    """A 201 carries ``{"status", "body", "headers"}``: process the inner response."""
    try:
        wrapper = _parse(content)
    except JSONBodyError:
        wrapper = None
    if not isinstance(wrapper, dict) or not isinstance(wrapper.get("status"), int):
        return _failed("InvalidResponseError", "malformed streamed response", "bad 201 wrapper")
    inner_headers = dict(headers)
    if isinstance(wrapper.get("headers"), dict):
        inner_headers.update({str(k).lower(): str(v) for k, v in wrapper["headers"].items()})
    body = wrapper.get("body")
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if wrapper["status"] == 201:
        return _failed("InvalidResponseError", "nested streamed response", "bad 201 wrapper")
    return classify(wrapper["status"], inner_headers, raw, now)


_TOO_DEEP = "nested too deeply"


def _parse(content: bytes) -> Any:
    """An app's answer as JSON: the decoder's own depth failure and the engine's depth limit both
    raise ``JSONBodyError`` (a deeper output could not be stored and replayed safely)."""
    payload = parse_json(content)
    if nested_too_deeply(payload, content):
        raise JSONBodyError(_TOO_DEEP)
    return payload


def _error_object(payload: object, status: int) -> dict[str, Any]:
    if isinstance(payload, dict) and ("message" in payload or "name" in payload):
        error = dict(payload)
        error.setdefault("name", "Error")
        error["message"] = str(error.get("message", ""))
        return error
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return {"name": "Error", "message": f"HTTP {status}: {text[:_ERROR_TEXT_LIMIT]}"}


def parse_ops(payload: object, no_retry: bool, retry_at: float | None) -> CallOutcome:
    if isinstance(payload, dict):
        payload = [payload]
    if payload is None:
        payload = []
    if not isinstance(payload, list):
        return _failed("InvalidResponseError", "206 body must be a list of ops", "invalid ops")
    ops: list[Op] = []
    for index, raw in enumerate(payload):
        if not isinstance(raw, dict) or not isinstance(raw.get("op"), str):
            return _failed("InvalidResponseError", f"op #{index} has no 'op' string", "invalid ops")
        userland = raw.get("userland")
        user_id = userland.get("id") if isinstance(userland, dict) else None
        opts = raw.get("opts")
        ops.append(
            Op(
                id=str(raw.get("id") or ""),
                op=raw["op"],
                name=str(raw.get("name") or ""),
                display_name=str(raw.get("displayName") or user_id or ""),
                opts=opts if isinstance(opts, dict) else {},
                data=raw.get("data"),
                error=raw.get("error"),
                metadata=raw.get("metadata"),
            )
        )
    return OpsResponse(ops, no_retry, retry_at)
