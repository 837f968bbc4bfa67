"""The connection pool under the SDK's async HTTP client: constant work per request.

httpx's own pool (httpcore's ``AsyncConnectionPool``) walks every pooled connection, and checks
each one's socket, for every queued request, whenever a request starts or a response closes: with
``C`` connections and ``R`` requests in flight that is ``R x C`` checks per request. An app running
100 runs that checkpoint at once spent most of its CPU there (a 3,000-run load test went at 23 runs
per second with checkpoints against 198 without). This pool keeps each origin's idle connections on
a stack: a request takes the most recently used one (checking only that one), a closed response
puts it back, and at most ``max_connections`` requests are in flight. The connections themselves
are httpcore's (``AsyncHTTPConnection``: HTTP/1.1, TLS, timeouts), and errors are httpx's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterator

import httpcore
import httpx

__all__ = ["AsyncPool"]

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
"""httpcore's errors and the httpx errors they become, the most specific first."""

_Origin = tuple[bytes, bytes, int]


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors raised inside become httpx's; any other exception passes as raised."""
    try:
        yield
    except Exception as exc:
        for core, ours in _ERRORS:
            if isinstance(exc, core):
                raise ours(str(exc)) from exc
        raise


class AsyncPool(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport: ``httpx.AsyncClient(transport=AsyncPool(...))``.

    Idle connections are kept (at most ``max_connections`` per origin) and dropped after
    ``keepalive_expiry`` seconds idle (or once the server has closed them). One event loop only,
    as the SDK's per-loop client is."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, max_connections: int, keepalive_expiry: float
    ) -> None:
        self._ssl, self._expiry, self._max = ssl_context, keepalive_expiry, max_connections
        self._idle: dict[_Origin, list[httpcore.AsyncHTTPConnection]] = {}
        self._slots: asyncio.Semaphore | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        url = request.url
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        origin = core.url.origin
        key = (origin.scheme, origin.host, origin.port)
        await self._acquire(request.extensions.get("timeout", {}).get("pool"))
        try:
            while True:
                connection = await self._take(key, origin)
                try:
                    with _httpx_errors():
                        response = await connection.handle_async_request(core)
                except httpcore.ConnectionNotAvailable:  # it closed as it was taken: another
                    await connection.aclose()
                    continue
                except BaseException:  # a cancelled request's connection is closed too
                    await connection.aclose()
                    raise
                break
        except BaseException:
            self._release()
            raise
        assert isinstance(response.stream, AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, key, connection, response.stream),
            extensions=response.extensions,
        )

    async def _acquire(self, timeout: float | None) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max)
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection became free within {timeout}s") from None

    def _release(self) -> None:
        assert self._slots is not None
        self._slots.release()

    async def _take(self, key: _Origin, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        """The most recently used idle connection to ``origin`` still open, else a new one."""
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        return httpcore.AsyncHTTPConnection(
            origin=origin, ssl_context=self._ssl, keepalive_expiry=self._expiry
        )

    async def _put_back(self, key: _Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        """Keep a connection whose response is done; drop the oldest kept one if it expired.

        A connection to an origin is opened only when none to it is idle, so the pool never
        holds more per origin than the most requests ever in flight: ``max_connections``."""
        self._release()
        if not connection.is_idle():
            await connection.aclose()
            return
        stack = self._idle.setdefault(key, [])
        if stack and stack[0].has_expired():
            await stack.pop(0).aclose()
        stack.append(connection)

    async def aclose(self) -> None:
        stacks, self._idle = list(self._idle.values()), {}
        for stack in stacks:
            for connection in stack:
                await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """A response body read from httpcore; closing it gives its connection back to the pool."""

    def __init__(
        self,
        pool: AsyncPool,
        key: _Origin,
        connection: httpcore.AsyncHTTPConnection,
        stream: AsyncIterable[bytes],
    ) -> None:
        self._pool, self._key, self._connection, self._stream = pool, key, connection, stream
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            closer = getattr(self._stream, "aclose", None)
            if closer is not None:
                await closer()
        finally:
            await self._pool._put_back(self._key, self._connection)
