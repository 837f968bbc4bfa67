"""The engine's call client against a real uvicorn app: reuse, closes, timeouts and errors."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from engine_support import AppServer, free_port
from inngest_mw_dev.appclient import AppClient, ProtocolError
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
            with pytest.raises(ProtocolError):
                await _post(client, f"http://127.0.0.1:{port}/", b"x")
        finally:
            server.close()
            await client.aclose()

    asyncio.run(scenario())


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not an http"):
        asyncio.run(_post(AppClient(), "ftp://127.0.0.1/x", b"x"))


# The response parser, against a raw TCP peer that answers each request with exact bytes (split
# into the pieces given, each written on its own), as real servers may frame them.


class RawPeer:
    """A TCP server on 127.0.0.1: for the n-th request it reads the request head and body, then
    writes ``answers[n]`` piece by piece; after the last answer (or with ``close``) it closes."""

    def __init__(self, answers: list[list[bytes]], *, close: bool = False) -> None:
        self.answers, self.close = answers, close
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                self.requests.append(head + await reader.readexactly(length))
                for piece in self.answers.pop(0):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.005)
                if self.close:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/api?fnId=f"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def _run(peer: RawPeer, bodies: list[bytes]) -> list[Any]:
    """Each body POSTed in turn through one client; each response, or the exception raised."""

    async def scenario() -> list[Any]:
        client = AppClient()
        results: list[Any] = []
        try:
            async with peer as url:
                for body in bodies:
                    try:
                        results.append(await _post(client, url, body, timeout=5))
                    except Exception as exc:  # the outcome under test
                        results.append(exc)
        finally:
            await client.aclose()
        return results

    return asyncio.run(scenario())


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def test_the_request_is_one_well_formed_http_11_message() -> None:
    peer = RawPeer([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]])
    (response,) = _run(peer, [b'{"a":1}'])
    assert (response.status, response.content) == (200, b"ok")
    head, _, body = peer.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api?fnId=f HTTP/1.1"
    assert lines[1].startswith(b"Host: 127.0.0.1:")
    assert b"Content-Length: 7" in lines
    assert b"content-type: application/json" in lines
    assert body == b'{"a":1}'


def test_a_chunked_response_with_extensions_and_trailers_arriving_byte_by_byte() -> None:
    chunked = (
        b"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\nX-Inngest-Sdk: py\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    peer = RawPeer([_bytewise(chunked), [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"]])
    first, second = _run(peer, [b"a", b"b"])
    assert (first.status, first.content) == (206, b"hello 0123456789")
    assert first.headers["x-inngest-sdk"] == "py"
    assert (second.status, second.content) == (200, b"")
    assert peer.connections == 1  # the chunked answer left the connection reusable


def test_an_interim_100_response_is_skipped_and_a_body_may_end_with_the_connection() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end"
    peer = RawPeer([[answer]], close=True)
    (response,) = _run(peer, [b"x"])
    assert (response.status, response.headers, response.content) == (
        200,
        {"x-a": "1"},
        b"until the end",
    )


def test_connections_the_app_will_not_keep_are_not_reused() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"
    answers = [
        [b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n1"],  # HTTP/1.0 without keep-alive
        [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1"],
        [ok + ok],  # a second, unrequested response
        [ok],
    ]
    peer = RawPeer(answers)
    results = _run(peer, [b"a", b"b", b"c", b"d"])
    assert [r.content for r in results] == [b"1"] * 4
    assert peer.connections == 4


def test_malformed_responses_raise_protocol_errors() -> None:
    bad = [
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nxx",  # a Latin-1 digit is no length
        b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",  # a bare LF in a field
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",  # space before the colon
        b"HTTP/1.1 200 OK\r\n: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"a" * (70 * 1024),
    ]
    for answer in bad:
        (result,) = _run(RawPeer([[answer]]), [b"x"])
        assert isinstance(result, ProtocolError), (answer[:60], result)


def test_a_protocol_error_says_which_part_of_the_head_is_wrong() -> None:
    for answer, said in [
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\rX: 1\r\n\r\n", "not an HTTP/1.x response"),
        (b"HTTP/1.1 200 OK\r\nX\x00: 1\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200\r\nContent-Length: 1x\r\n\r\n", "invalid Content-Length"),
    ]:
        (result,) = _run(RawPeer([[answer]]), [b"x"])
        assert isinstance(result, ProtocolError), (answer, result)
        assert said in str(result), (answer, result)


def test_an_answer_cut_short_raises_a_connection_error() -> None:
    (result,) = _run(
        RawPeer([[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]], close=True), [b"x"]
    )
    assert isinstance(result, ConnectionResetError)
    assert "before its answer was complete" in str(result)


def test_header_values_with_control_characters_are_refused_before_sending() -> None:
    async def scenario() -> None:
        client = AppClient()
        with pytest.raises(ValueError, match="control character"):
            await client.post("http://127.0.0.1:9/x", b"x", {"X-Run-ID": "a\r\nEvil: 1"}, 1)
        with pytest.raises(ValueError, match="control characters"):
            await client.post("http://127.0.0.1:9/x y", b"x", {}, 1)

    asyncio.run(scenario())
