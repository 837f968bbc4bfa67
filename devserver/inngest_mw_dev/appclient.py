"""The engine's HTTP/1.1 client for call requests: kept-alive connections to each app.

Chosen by measurement (``benchmarks/README.md``). httpx spent most of the engine's CPU in its
connection pool (scanning every pooled connection for expiry on each request, anyio lock
bookkeeping); h11, the pure-Python parser httpx and uvicorn use, then cost about a third of what
was left (an event object and a state-machine step per request part, every header validated by a
regular expression); aiohttp's C parser costs little per request but adds about 7 MiB of memory
to the engine. This client writes each request in one piece and parses the response itself on an
asyncio protocol: the head is split once when it is complete, the body framed by
``Content-Length``, ``chunked`` or the close of the connection (RFC 9112, section 6), and the
waiting request is woken once, when the whole response is in. Idle connections are reused newest
first; nothing else is done per call.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AppClient", "AppResponse", "ProtocolError"]

# Below the 5 s keep-alive of uvicorn (and most app servers): an idle connection is dropped by the
# engine before the app would close it under a request being sent.
KEEPALIVE_S = 4.0
MAX_HEAD_BYTES = 64 * 1024
"""A response's status line and headers together; more is refused as not HTTP."""

_Origin = tuple[str, str, int]
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?")
_HEAD = re.compile(_STATUS_LINE.pattern + r"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*)*")
"""A response head (its text, read as Latin-1): the status line, then ``name: value`` fields,
each name a token; a CR or LF only as the end of a line."""
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_UNSAFE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters but CR and LF (counted instead): never sent in a header name or value (no
header or request splitting)."""


class ProtocolError(ValueError):
    """The peer's answer is not a well-formed HTTP/1.x response."""


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: dict[str, str]
    """Names lower-cased; a repeated header keeps its last value."""
    content: bytes


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[_Origin, bytes]:
    """``((scheme, host, port), request line + Host header)`` of an ``http(s)`` URL, parsed once."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    if any(c <= " " or c == "\x7f" for c in target + host):
        raise ValueError(f"the URL {url!r} has spaces or control characters")
    prefix = f"POST {target} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii")
    return (parts.scheme, parts.hostname, port), prefix


def _head(prefix: bytes, headers: dict[str, str], length: int) -> bytes:
    lines = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)  # one CR LF per line, none inside a name or value
    if _UNSAFE.search(lines) or lines.count("\r") != count or lines.count("\n") != count:
        raise ValueError("a header name or value holds a control character")
    return b"%sContent-Length: %d\r\n%s\r\n" % (prefix, length, lines.encode("latin-1"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection; ``post`` sends a request and waits for ``_parse`` to finish."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[AppResponse] | None = None
        self._eof = False
        self.closed = False
        self.idle_since = 0.0
        # the response being read
        self._status = 0
        self._headers: dict[str, str] = {}
        self._framing = ""  # "" (head not read yet), "length", "chunked" or "close"
        self._remaining = 0
        self._chunks: list[bytes] = []
        self._keep = True

    @property
    def reusable(self) -> bool:
        """Open, and the app has sent nothing since its last response."""
        return not self.closed and not self._buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None:
            self._advance()
        elif len(self._buffer) > MAX_HEAD_BYTES:
            self.close()  # an idle connection the peer keeps writing to

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._end()

    def _end(self) -> None:
        self._eof = True
        self.closed = True
        if self._waiter is not None:
            self._advance()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def post(self, head: bytes, body: bytes, deadline: float) -> AppResponse:
        """Send one request and read its whole response (the connection must be idle); raises
        ``TimeoutError`` when it is not in by ``deadline`` (the loop's clock)."""
        if self._transport is None or self.closed:
            raise ConnectionResetError("the connection is closed")
        if self._buffer:
            raise ProtocolError("the app sent data before it was asked anything")
        self._status, self._headers, self._framing, self._chunks = 0, {}, "", []
        self._remaining, self._keep = 0, True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AppResponse] = loop.create_future()
        self._waiter = waiter
        # One timer handle, not an ``asyncio.timeout`` context (a third of the cost per call).
        timer = loop.call_at(deadline, _expire, waiter)
        # One write: the head and the body leave together (TCP_NODELAY or not).
        self._transport.write(head + body)
        try:
            response = await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if not self._keep or self._buffer:
            self.close()  # the app asked to close it, or it sent more than one response
        return response

    def _advance(self) -> None:
        """Parse what has arrived; finish the waiting request when its response is complete."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._parse()
        except ProtocolError as exc:
            self._keep = False
            waiter.set_exception(exc)
            return
        if response is not None:
            waiter.set_result(response)
        elif self._eof:
            waiter.set_exception(
                ConnectionResetError("the app closed the connection before its answer was complete")
            )

    def _parse(self) -> AppResponse | None:
        buffer = self._buffer
        while not self._framing:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise ProtocolError("the response head is too large or not HTTP")
                if buffer and not b"HTTP/1.".startswith(bytes(buffer[:7])):
                    raise ProtocolError("the reply is not an HTTP/1.x response")
                return None
            head = bytes(buffer[:end])
            del buffer[: end + 4]
            self._read_head(head)
        if self._framing == "length":
            if len(buffer) < self._remaining:
                return None
            self._chunks.append(bytes(buffer[: self._remaining]))
            del buffer[: self._remaining]
        elif self._framing == "chunked":
            if not self._read_chunks():
                return None
        else:  # delimited by the close of the connection
            if not self._eof:
                return None
            self._chunks.append(bytes(buffer))
            buffer.clear()
            self._keep = False
        return AppResponse(self._status, self._headers, b"".join(self._chunks))

    def _read_head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        match = _HEAD.fullmatch(text)
        if match is None:
            status_line = _STATUS_LINE.match(text)
            if status_line is None or status_line.end() not in (len(text), text.find("\r\n")):
                raise ProtocolError("the reply is not an HTTP/1.x response")
            raise ProtocolError("the response has a malformed header line")
        status = int(match[2])
        headers: dict[str, str] = {}
        lengths: set[str] = set()
        codings = connection = ""
        for line in text.split("\r\n")[1:]:  # every line a valid field: checked by ``_HEAD``
            name, _, value = line.partition(":")
            value = value.strip(" \t")
            lowered = name.lower()
            headers[lowered] = value
            if lowered == "content-length":
                lengths.update(v.strip(" \t") for v in value.split(","))
            elif lowered == "transfer-encoding":
                codings += "," + value.lower()
            elif lowered == "connection":
                connection += "," + value.lower()
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("the app switched protocols")
            return  # an interim response (100 Continue, 103 Early Hints): the real one follows
        self._status, self._headers = status, headers
        tokens = {t.strip() for t in connection.split(",")}
        self._keep = "close" not in tokens and (match[1] == "1" or "keep-alive" in tokens)
        if status in (204, 304):
            self._framing, self._remaining = "length", 0
        elif codings:
            final = codings.rsplit(",", 1)[1].strip()
            self._framing = "chunked" if final == "chunked" else "close"
        elif lengths:
            length = next(iter(lengths))
            if len(lengths) != 1 or not (length.isascii() and length.isdigit()):
                raise ProtocolError("the response has an invalid Content-Length")
            self._framing, self._remaining = "length", int(length)
        else:
            self._framing = "close"

    def _read_chunks(self) -> bool:
        """Consume complete chunks; True once the last chunk and the trailers are in."""
        buffer = self._buffer
        while True:
            if self._remaining < 0:  # the zero-size chunk was read: trailers up to an empty line
                end = buffer.find(b"\r\n\r\n") if not buffer.startswith(b"\r\n") else -2
                if end == -1:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise ProtocolError("the response's trailers are too large")
                    return False
                del buffer[: end + 4]
                return True
            if self._remaining == 0:
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > 1024:
                        raise ProtocolError("the response has a malformed chunk size")
                    return False
                size = _CHUNK_SIZE.fullmatch(bytes(buffer[:end]))
                if size is None:
                    raise ProtocolError("the response has a malformed chunk size")
                del buffer[: end + 2]
                length = int(size[1], 16)
                self._remaining = length + 2 if length else -1  # with its CRLF; 0 is the last
                continue
            if len(buffer) < self._remaining:
                return False
            if buffer[self._remaining - 2 : self._remaining] != b"\r\n":
                raise ProtocolError("a chunk of the response does not end where its size says")
            self._chunks.append(bytes(buffer[: self._remaining - 2]))
            del buffer[: self._remaining]
            self._remaining = 0


def _expire(waiter: asyncio.Future[AppResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


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
        ``OSError`` when the connection fails, ``ProtocolError`` when the reply is not HTTP and
        ``ValueError`` for a URL or header value that cannot be sent."""
        origin, prefix = _split(url)
        head = _head(prefix, headers, len(body))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn = self._idle_connection(origin)
        try:
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(origin)
            response = await conn.post(head, body, deadline)
        except BaseException:
            if conn is not None:
                conn.close()  # its state is unknown: never reused
            raise
        if not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, collections.deque()).append(conn)
        return response

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` still fit for a request."""
        idle = self._idle.get(origin)
        if idle:
            now = time.monotonic()
            while idle and (idle[0].closed or now - idle[0].idle_since >= self._keepalive):
                idle.popleft().close()
            while idle:
                conn = idle.pop()  # the most recently used: the least likely to be closing
                if conn.reusable:
                    return conn
                conn.close()
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
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
