"""Every framework adapter refuses an oversized or unsigned body before holding it in memory.

The limit is the handler's (``CommHandler.max_body_bytes``), lowered here so the tests move little
data. A refusal that comes "before the body is read" is proven by a client that announces a large
``Content-Length`` and then sends nothing: an adapter that tried to read the body would never
answer, and the socket's timeout would fail the test.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from integrations.framework_servers import FRAMEWORKS
from support import call_body

import inngest_mw
from inngest_mw import CommHandler, ContextSync, TriggerEvent

LIMIT = 64 * 1024
KEY = "signkey-test-" + "5" * 64
PATH = "/api/inngest"


@pytest.fixture(autouse=True)
def small_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CommHandler, "max_body_bytes", LIMIT)


def echo(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="echo", trigger=TriggerEvent(event="limits/echo"))
    def echo_fn(ctx: ContextSync) -> int:
        return len(ctx.event.data["pad"])

    return [echo_fn]


def dev_client(framework: str) -> inngest_mw.Inngest:
    return inngest_mw.Inngest(app_id=f"limits-{framework}", is_production=False)


def padded_body(pad: int) -> bytes:
    event = {"name": "limits/echo", "data": {"pad": "x" * pad}, "id": "01E", "ts": 1}
    return json.dumps(call_body(event=event)).encode()


def raw_exchange(base: str, head: str) -> tuple[int, dict[str, Any]]:
    """Send only ``head`` (request line and headers, ``Connection: close``), read the answer."""
    url = urllib.parse.urlsplit(base)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as s:
        s.sendall(head.encode())
        data = b""
        while not _complete(data) and (chunk := s.recv(65536)):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.split(b"\r\n")
    if any(line.lower() == b"transfer-encoding: chunked" for line in header_lines):
        body = _dechunk(body)
    return int(status_line.split()[1]), json.loads(body)


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole response (some servers linger before closing)."""
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.partition(b":")[2])
        if line == b"transfer-encoding: chunked":
            return body.endswith(b"0\r\n\r\n")
    return False


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, data = out + data[:size], data[size + 2 :]


def _head(base: str, headers: dict[str, str]) -> str:
    host = urllib.parse.urlsplit(base).netloc
    lines = [f"POST {PATH}?fnId=limits-x-echo&stepId=step HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.fixture(params=list(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# Django's ASGI handler reads (and spools to a temporary file) the whole body before any view
# runs, so no adapter can answer before the body is sent; the limit still applies as it is read.
BUFFERED_BY_FRAMEWORK = {"django-asgi"}
# Django under WSGI reads no body at all without a Content-Length (it does not take chunked input).
NO_CHUNKED_INPUT = {"django-wsgi"}


def test_a_body_within_the_limit_is_served(framework: str) -> None:
    client = dev_client(framework)
    with FRAMEWORKS[framework](client, echo(client)) as base:
        response = httpx.post(
            f"{base}{PATH}?fnId=limits-{framework}-echo&stepId=step",
            content=padded_body(LIMIT // 4),  # the event is sent twice: as `event` and in `events`
            timeout=10,
        )
    assert (response.status_code, response.json()) == (200, LIMIT // 4)


def test_a_chunked_body_over_the_limit_is_a_413_naming_the_limit(framework: str) -> None:
    if framework in NO_CHUNKED_INPUT:
        pytest.skip("Django under WSGI ignores a body without Content-Length")
    client = dev_client(framework)
    body = padded_body(LIMIT * 2)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the adapter must count as it reads
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    with FRAMEWORKS[framework](client, echo(client)) as base:
        response = httpx.post(
            f"{base}{PATH}?fnId=limits-{framework}-echo&stepId=step", content=chunks(), timeout=10
        )
    assert response.status_code == 413
    assert response.json() == {
        "name": "BodyTooLargeError",
        "message": f"request body is larger than the limit of {LIMIT} bytes",
    }
    assert response.headers["x-inngest-no-retry"] == "true"


def test_a_content_length_over_the_limit_is_refused_before_reading(framework: str) -> None:
    if framework in BUFFERED_BY_FRAMEWORK:
        pytest.skip("Django's ASGI handler reads the whole body before the view runs")
    client = dev_client(framework)
    with FRAMEWORKS[framework](client, echo(client)) as base:
        status, body = raw_exchange(
            base,
            _head(base, {"Content-Length": str(50 * 1024 * 1024), "Connection": "close"}),
        )
    assert status == 413
    assert body["message"] == f"request body is larger than the limit of {LIMIT} bytes"


def test_an_unsigned_call_in_cloud_mode_is_refused_before_reading(framework: str) -> None:
    if framework in BUFFERED_BY_FRAMEWORK:
        pytest.skip("Django's ASGI handler reads the whole body before the view runs")
    client = inngest_mw.Inngest(app_id=f"limits-{framework}", signing_key=KEY)
    with FRAMEWORKS[framework](client, echo(client)) as base:
        status, body = raw_exchange(
            base, _head(base, {"Content-Length": str(LIMIT // 2), "Connection": "close"})
        )
    assert status == 401
    assert body["message"] == "Unauthorized"
    assert body["reason"] == "missing X-Inngest-Signature header"
