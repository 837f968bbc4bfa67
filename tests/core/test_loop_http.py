"""The SDK's async requests share one HTTP client per event loop: its kept-alive connection
serves one operation after another (no new TCP and TLS handshake each time), and it is closed
with its loop, leaving nothing open behind (an unclosed transport would fail the test run)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from support import read_asgi_body, serve_asgi

import inngest_mw
from inngest_mw import client as client_module
from inngest_mw import realtime


class Recorder:
    """An event, signal and realtime API answering 200 that records each request's client port."""

    def __init__(self) -> None:
        self.ports: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_asgi_body(receive)
        self.ports.append(scope["client"][1])
        body: dict[str, Any] = {"ids": ["e1"], "status": 200}
        if scope["path"] == "/v1/signals":
            body = {"data": {"run_id": "01RUN"}}
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


@pytest.fixture
def api() -> Iterator[tuple[Recorder, inngest_mw.Inngest]]:
    recorder = Recorder()
    with serve_asgi(recorder) as url:
        yield (
            recorder,
            inngest_mw.Inngest(
                app_id="loop", is_production=False, api_base_url=url, event_api_base_url=url
            ),
        )


def test_operations_on_one_loop_share_one_connection(
    api: tuple[Recorder, inngest_mw.Inngest],
) -> None:
    recorder, client = api

    async def operations() -> None:
        await client.send(inngest_mw.Event(name="loop/a"))
        await client.send(inngest_mw.Event(name="loop/b"))
        await client.send_signal("s", 1)
        await realtime.publish(client, "c", "t", 1)

    asyncio.run(operations())
    assert len(recorder.ports) == 4
    assert len(set(recorder.ports)) == 1, recorder.ports


def test_the_client_closes_with_its_loop_and_each_loop_gets_its_own(
    api: tuple[Recorder, inngest_mw.Inngest],
) -> None:
    recorder, client = api
    seen: list[Any] = []

    async def one_send() -> None:
        await client.send(inngest_mw.Event(name="loop/x"))
        seen.append(client_module._loop_clients[asyncio.get_running_loop()][0])

    for _ in range(20):
        asyncio.run(one_send())
    gc.collect()
    assert len({id(http) for http in seen}) == 20
    assert all(http.is_closed for http in seen)
    assert len(set(recorder.ports)) == 20  # a new loop, a new connection
    kept = [http for http, _ in client_module._loop_clients.values()]
    assert not any(http in kept for http in seen)  # nothing kept for a loop that has ended
