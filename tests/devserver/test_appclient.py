"""The engine's call client against a real uvicorn app: reuse, closes, timeouts and errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import h11
import pytest
from engine_support import AppServer, free_port
from inngest_mw_dev.appclient import AppClient
from starlette.types import Receive, Scope, Send
from support import read_asgi_body


class Recorder:
    """Answers each POST with its body reversed; remembers the client port of each request."""

    def __init__(self, *, close: bool = False, hang: threading.Event | None = None) -> None:
        self.ports: list[int] = []
        self.close, self.hang = close, hang

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_asgi_body(receive)
        self.ports.append(scope["client"][1])
        if self.hang is not None:
            await asyncio.to_thread(self.hang.wait, 10)
        headers = [(b"x-echo", scope["query_string"])]
        if self.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 206, "headers": headers})
        await send({"type": "http.response.body", "body": body[::-1]})


def _post(client: AppClient, url: str, body: bytes, timeout: float = 10.0) -> Any:
    return client.post(url, body, {"content-type": "application/json"}, timeout)


def test_sequential_requests_reuse_one_kept_alive_connection() -> None:
    app = Recorder()

    async def scenario() -> list[Any]:
        client = AppClient()
        try:
            return [await _post(client, f"{server.url}?n={n}", b"abc%d" % n) for n in range(3)]
        finally:
            await client.aclose()

    with AppServer(app) as server:
        responses = asyncio.run(scenario())
    assert [(r.status, r.content, r.headers["x-echo"]) for r in responses] == [
        (206, b"0cba", "n=0"),
        (206, b"1cba", "n=1"),
        (206, b"2cba", "n=2"),
    ]
    assert len(set(app.ports)) == 1


def test_concurrent_requests_each_get_their_own_response() -> None:
    app = Recorder()

    async def scenario() -> list[Any]:
        client = AppClient()
        try:
            calls = [_post(client, server.url, b"%03d" % n) for n in range(20)]
            return list(await asyncio.gather(*calls))
        finally:
            await client.aclose()

    with AppServer(app) as server:
        responses = asyncio.run(scenario())
    assert [r.content for r in responses] == [(b"%03d" % n)[::-1] for n in range(20)]


def test_a_connection_the_app_asks_to_close_is_not_reused() -> None:
    app = Recorder(close=True)

    async def scenario() -> None:
        client = AppClient()
        try:
            for _ in range(2):
                assert (await _post(client, server.url, b"x")).content == b"x"
        finally:
            await client.aclose()

    with AppServer(app) as server:
        asyncio.run(scenario())
    assert len(set(app.ports)) == 2


def test_an_app_slower_than_the_timeout_raises_timeout_and_its_connection_is_dropped() -> None:
    release = threading.Event()
    app = Recorder(hang=release)

    async def scenario() -> None:
        client = AppClient()
        try:
            with pytest.raises(TimeoutError):
                await _post(client, server.url, b"slow", timeout=0.2)
            release.set()
            assert (await _post(client, server.url, b"next")).content == b"txen"
        finally:
            await client.aclose()

    with AppServer(app) as server:
        asyncio.run(scenario())
    assert len(set(app.ports)) == 2


def test_nothing_listening_raises_a_connection_error() -> None:
    async def scenario() -> None:
        client = AppClient()
        with pytest.raises(ConnectionRefusedError):
            await _post(client, f"http://127.0.0.1:{free_port()}/api/inngest", b"x")

    asyncio.run(scenario())


def test_a_reply_that_is_not_http_raises_a_protocol_error() -> None:
    async def scenario() -> None:
        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(100)
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = AppClient()
        try:
            with pytest.raises(h11.RemoteProtocolError):
                await _post(client, f"http://127.0.0.1:{port}/", b"x")
        finally:
            server.close()
            await client.aclose()

    asyncio.run(scenario())


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(_post(AppClient(), "ftp://127.0.0.1/x", b"x"))
