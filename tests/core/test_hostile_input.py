"""Hostile requests get a 4xx with a reason, never a 5xx: signature headers and deep JSON."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from support import call_body

import inngest_mw
from inngest_mw import CommHandler, CommRequest, ContextSync, TriggerEvent

KEY = "signkey-test-" + "ab" * 32
client = inngest_mw.Inngest(app_id="h", is_production=True, signing_key=KEY)


@client.create_function(fn_id="f", trigger=TriggerEvent(event="t/h"))
def f(ctx: ContextSync) -> str:
    return "ok"


handler = CommHandler(client, [f])
dev_client = inngest_mw.Inngest(app_id="h", is_production=False)
dev_handler = CommHandler(
    dev_client,
    [dev_client.create_function(fn_id="f", trigger=TriggerEvent(event="t/h"))(f.handler)],
)
URL = "http://127.0.0.1/api/inngest?fnId=h-f&stepId=step"
BODY = json.dumps(call_body()).encode()


def post(h: CommHandler, body: bytes, headers: dict[str, str]) -> inngest_mw.CommResponse:
    return h.handle_sync(CommRequest("POST", URL, headers, body))


def test_signature_headers_that_break_parsing_are_refused_with_401() -> None:
    now = int(time.time())
    for header in (
        f"t={'9' * 400}&s={'a' * 64}",
        f"t=²{now}&s={'a' * 64}",
        f"t={now}&s={'é' * 64}",
        f"t={now}&s=",
        "garbage",
    ):
        response = post(handler, BODY, {"x-inngest-signature": header})
        assert response.status == 401, header
        assert response.json()["message"] == "Unauthorized"
        assert (
            "X-Inngest-Signature" in response.json()["reason"]
            or "signature" in response.json()["reason"]
        )


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=200))
def test_any_signature_header_is_a_4xx(header: str) -> None:
    assert 400 <= post(handler, BODY, {"x-inngest-signature": header}).status < 500


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_as_signature_header_are_a_4xx_before_and_after_the_body(raw: bytes) -> None:
    header = raw.decode("latin-1")  # how ASGI servers hand over header bytes
    early = handler.refuse_early("POST", {"x-inngest-signature": header})
    assert early is None or early.status == 401
    assert 400 <= post(handler, BODY, {"x-inngest-signature": header}).status < 500


def test_a_body_nested_too_deeply_is_a_400_that_is_not_retried() -> None:
    deep = b'{"event": {"name": "t/h", "data": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}}"
    response = post(dev_handler, deep, {})
    assert response.status == 400
    assert response.headers["x-inngest-no-retry"] == "true"
    assert response.json()["message"] == "call body is nested too deeply"


@settings(max_examples=50, deadline=None)
@given(depth=st.integers(1, 5000))
def test_any_nesting_depth_in_event_data_is_never_a_5xx(depth: int) -> None:
    body = call_body(event={"name": "t/h", "data": {"x": "[" * 0}})
    raw = json.dumps(body).encode().replace(b'"x": ""', b'"x": ' + b"[" * depth + b"]" * depth)
    response = post(dev_handler, raw, {})
    assert response.status < 500, response.body[:200]
