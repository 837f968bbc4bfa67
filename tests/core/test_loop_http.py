"""The SDK's async requests share one HTTP client per event loop: its kept-alive connection
serves one operation after another (no new TCP and TLS handshake each time), and it is closed
with its loop, leaving nothing open behind (an unclosed transport would fail the test run)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
from support import Rounds, read_asgi_body, send_json, serve_asgi

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
        await send_json(send, 200, body)


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


class Gathering(Recorder):
    """A ``Recorder`` that answers no request of a round before ``size`` of them are in, so the
    client holds that many connections open at once."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.rounds = Rounds(size)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.rounds.wait()
        await super().__call__(scope, receive, send)


def test_concurrent_requests_keep_every_connection_they_opened() -> None:
    """Two rounds of 50 concurrent sends: the second reuses the 50 connections of the first
    (httpx's default pool keeps only 20, so 30 of them would be opened anew)."""
    recorder = Gathering(50)
    with serve_asgi(recorder) as url:
        client = inngest_mw.Inngest(
            app_id="pool", is_production=False, api_base_url=url, event_api_base_url=url
        )

        async def rounds() -> None:
            for n in range(2):
                events = [inngest_mw.Event(name=f"pool/{n}.{i}") for i in range(50)]
                await asyncio.gather(*(client.send(event) for event in events))

        asyncio.run(rounds())
    first, second = recorder.ports[:50], recorder.ports[50:]
    assert len(set(first)) == 50
    assert len(second) == 50
    assert set(second) <= set(first), set(second) - set(first)
