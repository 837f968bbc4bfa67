"""The SDK's async connection pool (``inngest_mw._pool``): it checks one connection per request
however many are in flight, keeps the connections it opened, caps requests in flight, and raises
httpx's own errors, over real sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpcore
import httpx
import pytest
from support import Rounds, free_port, read_asgi_body, send_json, serve_asgi

from inngest_mw import client as client_module
from inngest_mw._pool import AsyncPool


def _pool(max_connections: int = 100) -> AsyncPool:
    return AsyncPool(
        ssl_context=client_module._tls_context(),
        max_connections=max_connections,
        keepalive_expiry=4.0,
    )


class Held:
    """Answers 200, recording the client's port, once the round of ``size`` requests it fell in
    has arrived (so the client has ``size`` requests in flight at once)."""

    def __init__(self, size: int) -> None:
        self.rounds = Rounds(size)
        self.ports: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_asgi_body(receive)
        await self.rounds.wait()
        self.ports.append(scope["client"][1])
        await send_json(send, 200, {"ok": True})


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts httpcore's per-connection expiry checks (one socket poll each)."""
    counted: list[int] = [0]
    has_expired = httpcore.AsyncHTTPConnection.has_expired

    def counting(self: httpcore.AsyncHTTPConnection) -> bool:
        counted[0] += 1
        return has_expired(self)

    monkeypatch.setattr(httpcore.AsyncHTTPConnection, "has_expired", counting)
    return counted


def _rounds(url: str, transport: httpx.AsyncBaseTransport | None, size: int) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            for _ in range(3):
                answers = await asyncio.gather(
                    *(http.post(url, content=b"{}") for _ in range(size))
                )
                assert all(answer.status_code == 200 for answer in answers)

    asyncio.run(go())


def test_each_request_checks_at_most_two_connections_however_many_are_in_flight(
    checks: list[int],
) -> None:
    """Three rounds of 50 concurrent requests: the pool checks the connection it takes and, as it
    puts one back, the oldest one kept; httpx's own pool checks every pooled connection for every
    queued request each time a request starts or ends."""
    server = Held(50)
    with serve_asgi(server) as url:
        _rounds(url, _pool(), 50)
    assert checks[0] <= 2 * 150, checks[0]
    first, later = server.ports[:50], server.ports[50:]
    assert len(set(first)) == 50
    assert set(later) <= set(first)  # the second and third rounds reused the first's connections

    checks[0] = 0
    with serve_asgi(Held(50)) as url:
        _rounds(url, None, 50)  # httpx's pool, for contrast: the test would catch a regression
    assert checks[0] > 10 * 150, checks[0]


def test_requests_past_the_cap_wait_for_a_connection_and_then_time_out_as_pool_timeouts() -> None:
    arrived = threading.Event()
    held: dict[str, Any] = {}

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_asgi_body(receive)
        if not arrived.is_set():  # hold the first request until the test lets it go
            held["loop"], held["release"] = asyncio.get_running_loop(), asyncio.Event()
            arrived.set()
            await held["release"].wait()
        await send_json(send, 200, {"ok": True})

    async def go(url: str) -> None:
        async with httpx.AsyncClient(transport=_pool(max_connections=1)) as http:
            first = asyncio.ensure_future(http.post(url, content=b"{}"))
            assert await asyncio.to_thread(arrived.wait, 10)  # it holds the one connection
            with pytest.raises(httpx.PoolTimeout):
                await http.post(url, content=b"{}", timeout=httpx.Timeout(10, pool=0.05))
            held["loop"].call_soon_threadsafe(held["release"].set)
            assert (await first).status_code == 200
            again = await http.post(url, content=b"{}")  # the slot came back with the answer
            assert again.status_code == 200

    with serve_asgi(slow) as url:
        asyncio.run(go(url))


def test_a_refused_connection_is_an_httpx_connect_error() -> None:
    async def go() -> None:
        async with httpx.AsyncClient(transport=_pool()) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post(f"http://127.0.0.1:{free_port()}/", content=b"{}")

    asyncio.run(go())


@pytest.fixture
def truncating() -> Iterator[str]:
    """A raw server promising 100 bytes of body, sending 10 and closing the connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while not request.endswith(b"\r\n\r\n{}"):  # the whole request (body "{}"),
                    chunk = conn.recv(65536)  # so the close sends no reset
                    if not chunk:
                        break
                    request += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/"
    thread.join(10)


def test_a_body_cut_short_is_an_httpx_error_and_its_connection_is_not_kept(truncating: str) -> None:
    pool = _pool()

    async def go() -> None:
        async with httpx.AsyncClient(transport=pool) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(truncating, content=b"{}")
            assert not any(pool._idle.values())

    asyncio.run(go())


def test_a_connection_the_server_closes_after_answering_is_not_reused() -> None:
    ports: list[int] = []

    async def closing(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_asgi_body(receive)
        ports.append(scope["client"][1])
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"connection", b"close")]}
        )
        await send({"type": "http.response.body", "body": b"{}"})

    async def go(url: str) -> None:
        async with httpx.AsyncClient(transport=_pool()) as http:
            for _ in range(3):
                assert (await http.post(url, content=b"{}")).status_code == 200

    with serve_asgi(closing) as url:
        asyncio.run(go(url))
    assert len(set(ports)) == 3


def test_the_sdk_client_uses_the_pool_unless_the_environment_names_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)

    async def transport() -> object:
        http = client_module._async_client()
        try:
            return http._transport
        finally:
            await http.aclose()

    assert isinstance(asyncio.run(transport()), AsyncPool)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert not isinstance(asyncio.run(transport()), AsyncPool)


def test_a_cancelled_request_gives_its_slot_back_and_leaves_no_connection_kept() -> None:
    arrived = threading.Event()

    async def first_hangs(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_asgi_body(receive)
        if not arrived.is_set():
            arrived.set()
            assert (await receive())["type"] == "http.disconnect"  # never answers
        await send_json(send, 200, {"ok": True})

    pool = _pool(max_connections=1)

    async def go(url: str) -> None:
        async with httpx.AsyncClient(transport=pool) as http:
            first = asyncio.ensure_future(http.post(url, content=b"{}"))
            assert await asyncio.to_thread(arrived.wait, 10)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            assert not any(pool._idle.values())  # the half-used connection was not kept
            answer = await http.post(url, content=b"{}", timeout=httpx.Timeout(10, pool=5))
            assert answer.status_code == 200

    with serve_asgi(first_hangs) as url:
        asyncio.run(go(url))


def test_an_error_of_the_callers_own_passes_through_unchanged() -> None:
    """Only httpcore's errors become httpx's: a request body that raises is that error."""

    async def body() -> AsyncIterator[bytes]:
        yield b"{"
        raise RuntimeError("the body failed")

    async def go(url: str) -> None:
        async with httpx.AsyncClient(transport=_pool()) as http:
            with pytest.raises(RuntimeError, match="the body failed") as raised:
                await http.post(url, content=body())
            assert raised.value.__cause__ is None
            assert (await http.post(url, content=b"{}")).status_code == 200  # the pool goes on

    with serve_asgi(Held(1)) as url:
        asyncio.run(go(url))
