"""Ingest limits at the edge: body size (declared and streamed), event size, reserved names.

The values are the Inngest server's (``inngest_mw_dev.limits``). Oversized bodies are refused
before they are buffered: a declared ``Content-Length`` before any byte of the body is sent, a
chunked body as soon as it passes the limit, without waiting for its end.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest
from inngest_mw_dev import EngineThread
from inngest_mw_dev.limits import MAX_EVENT_BYTES, MAX_INGEST_BODY

BODY_LIMIT = "the limit is 3,145,728 bytes (3 MiB)"


def _raw_exchange(url: str, head: bytes, body_parts: list[bytes]) -> tuple[int, dict[str, object]]:
    """Send a request by hand (so nothing buffers or completes it for us); read one response."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=15) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        header_text, _, rest = received.partition(b"\r\n\r\n")
        lines = header_text.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        while len(rest) < length:
            rest += sock.recv(65536)
    return status, json.loads(rest[:length])


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(
    engine: EngineThread,
) -> None:
    head = (
        b"POST /e/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50331648\r\n\r\n"
    )
    status, body = _raw_exchange(engine.url, head, [])  # 48 MiB promised, none sent
    assert status == 413
    assert body == {
        "ids": [],
        "status": 413,
        "error": f"request body is too large (50,331,648 bytes): {BODY_LIMIT}",
    }


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/e/key", BODY_LIMIT),
        ("/v1/events", BODY_LIMIT),
        ("/fn/register", "the limit is 8,388,608 bytes (8 MiB)"),
        ("/v1/functions/fn/invoke", BODY_LIMIT),
    ],
)
def test_every_json_route_refuses_a_declared_body_over_its_limit(
    engine: EngineThread, path: str, limit: str
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 9000000\r\n\r\n"
    ).encode()
    status, body = _raw_exchange(engine.url, head, [])
    assert status == 413
    assert body["error"] == f"request body is too large (9,000,000 bytes): {limit}"


def test_a_chunked_body_is_refused_once_it_passes_the_limit_without_waiting_for_its_end(
    engine: EngineThread,
) -> None:
    head = (
        b"POST /e/key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = 64 * 1024
    chunk = f"{piece:x}\r\n".encode() + b" " * piece + b"\r\n"
    chunks = [chunk] * (MAX_INGEST_BODY // piece) + [b"1\r\n \r\n"]  # one byte over; no end
    status, body = _raw_exchange(engine.url, head, chunks)
    assert status == 413
    assert body == {
        "ids": [],
        "status": 413,
        "error": f"request body is too large: {BODY_LIMIT}",
    }


def test_an_sdk_sized_oversized_send_gets_the_413_over_a_normal_client(
    engine: EngineThread,
) -> None:
    events = [{"name": "big/batch", "data": {"blob": "x" * 100_000}}] * 40  # about 4 MB
    response = httpx.post(f"{engine.url}/e/key", json=events, timeout=30)
    assert response.status_code == 413
    size = len(response.request.content)
    assert response.json()["error"] == f"request body is too large ({size:,} bytes): {BODY_LIMIT}"
    assert httpx.get(f"{engine.url}/v1/events").json()["data"] == []


def _stored_names(engine: EngineThread) -> list[str]:
    return sorted(e["name"] for e in httpx.get(f"{engine.url}/v1/events").json()["data"])


def test_an_event_over_the_size_limit_is_a_413_and_the_events_before_it_are_taken(
    engine: EngineThread,
) -> None:
    big = {"name": "batch/big", "data": {"blob": "x" * MAX_EVENT_BYTES}}
    size = len(json.dumps(big, separators=(",", ":")))
    batch = [{"name": "batch/first"}, {"name": "batch/second"}, big, {"name": "batch/after"}]
    response = httpx.post(f"{engine.url}/e/key", json=batch)
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == (
        f"event #2 is too large ({size:,} bytes): the event size limit is 524,288 bytes (512 KiB)"
    )
    assert body["status"] == 413
    assert len(body["ids"]) == 2  # as the server does: what came before the bad event is in
    for event_id in body["ids"]:
        assert httpx.get(f"{engine.url}/v1/events/{event_id}").status_code == 200
    assert _stored_names(engine) == ["batch/first", "batch/second"]


@pytest.mark.parametrize(
    "name",
    [
        "inngest/function.finished",
        "inngest/function.invoked",
        "inngest/scheduled.timer",
        "Inngest/Function.Failed",
        "inngest/anything",
    ],
)
def test_internal_event_names_are_refused_naming_the_event_and_the_rule(
    engine: EngineThread, name: str
) -> None:
    response = httpx.post(f"{engine.url}/e/key", json=[{"name": "user/ok"}, {"name": name}])
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == (
        f"event #1: the name {name!r} is reserved: names starting with 'inngest/' are"
        " Inngest's own events"
    )
    assert len(body["ids"]) == 1
    assert _stored_names(engine) == ["user/ok"]


def test_run_control_refuses_internal_names_and_takes_nothing(engine: EngineThread) -> None:
    response = httpx.post(
        f"{engine.url}/v1/events",
        json=[{"name": "user/ok"}, {"name": "inngest/function.finished", "data": {}}],
    )
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "error": "event #1: the name 'inngest/function.finished' is reserved: names starting"
        " with 'inngest/' are Inngest's own events",
    }
    assert _stored_names(engine) == []


def test_an_event_over_the_size_limit_sent_by_run_control_is_a_413(engine: EngineThread) -> None:
    big = {"name": "control/big", "data": {"blob": "x" * MAX_EVENT_BYTES}}
    response = httpx.post(f"{engine.url}/v1/events", json=big)
    assert response.status_code == 413
    assert "the event size limit is 524,288 bytes (512 KiB)" in response.json()["error"]
    assert _stored_names(engine) == []
