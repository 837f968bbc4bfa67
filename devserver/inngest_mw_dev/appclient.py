"""The engine's HTTP/1.1 client for call requests: kept-alive connections to each app, over h11.

Chosen by measurement (``benchmarks/README.md``). httpx spent most of the engine's CPU in its
connection pool (scanning every pooled connection for expiry on each request, anyio lock
bookkeeping); aiohttp's client costs about what this one does per request but adds about 7 MiB
of memory to the engine. This one is h11 (already loaded with httpx and uvicorn) on an asyncio
protocol: one parser per connection, idle connections reused newest first, nothing else per call.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

__all__ = ["AppClient", "AppResponse"]

# Below the 5 s keep-alive of uvicorn (and most app servers): an idle connection is dropped by the
# engine before the app would close it under a request being sent.
KEEPALIVE_S = 4.0

_Origin = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: dict[str, str]
    """Names lower-cased; a repeated header keeps its last value."""
    content: bytes


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[_Origin, str, str]:
    """``((scheme, host, port), target, Host header)`` of an ``http(s)`` URL, parsed once."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname, port), target, parts.netloc.rpartition("@")[2]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: bytes in feed its h11 state machine, which ``request`` reads."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end()

    def _end(self) -> None:
        if not self._eof:
            self._eof = True
            self._h11.receive_data(b"")
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def post(
        self, target: str, host: str, headers: dict[str, str], body: bytes
    ) -> AppResponse:
        """Send one request and read its whole response (the connection must be idle)."""
        if self._transport is None or self.closed:
            raise ConnectionResetError("the connection is closed")
        conn = self._h11
        fields = [("Host", host), ("Content-Length", str(len(body))), *headers.items()]
        out = conn.send(h11.Request(method="POST", target=target, headers=fields)) or b""
        out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        self._transport.write(out)
        loop = asyncio.get_running_loop()
        status, received, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                self._waiter = loop.create_future()
                await self._waiter
            elif isinstance(event, h11.Response):
                status = event.status_code
                received = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the app closed the connection without answering")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            self.close()  # the app asked to close it (or it cannot be reused)
        return AppResponse(status, received, b"".join(chunks))


class AppClient:
    """Keep-alive HTTP/1.1 POSTs to apps; one pool of idle connections per origin."""

    def __init__(self, *, keepalive: float = KEEPALIVE_S) -> None:
        self._keepalive = keepalive
        self._idle: dict[_Origin, collections.deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> AppResponse:
        """POST ``body``; raises ``TimeoutError`` past ``timeout`` seconds (connecting included),
        ``OSError`` or ``h11.ProtocolError`` when the connection fails or the reply is not HTTP."""
        origin, target, host = _split(url)
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await self._acquire(origin)
                response = await conn.post(target, host, headers, body)
        except BaseException:
            if conn is not None:
                conn.close()  # its state is unknown: never reused
            raise
        if not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, collections.deque()).append(conn)
        return response

    async def _acquire(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        if idle:
            now = time.monotonic()
            while idle and (idle[0].closed or now - idle[0].idle_since >= self._keepalive):
                idle.popleft().close()
            if idle:
                return idle.pop()  # the most recently used: the least likely to be closing
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            tls = self._tls = self._tls or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection, host, port, ssl=tls, server_hostname=host if tls else None
        )
        return conn

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
