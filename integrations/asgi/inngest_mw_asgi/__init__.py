"""Serve inngest-mw functions as a pure ASGI app (Starlette, Litestar, Quart, uvicorn, ...).

``serve(client, functions)`` returns an ASGI application answering GET/PUT/POST at ``serve_path``;
mount it in any framework or run it directly with an ASGI server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["InngestASGI", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class InngestASGI:
    """An ASGI app for one client; requests to other paths get a 404 JSON answer.

    A framework that routes to it itself passes ``match_path=False`` (its router has matched the
    path, whatever prefix it strips) and, as ``raw_request``, how to make the framework's request
    object that middleware is given; by default middleware gets the ASGI scope.
    """

    def __init__(
        self,
        handler: CommHandler,
        path: str,
        *,
        match_path: bool = True,
        raw_request: Callable[[Scope, Receive], object] | None = None,
    ) -> None:
        self.handler = handler
        self.path = path.rstrip("/") or "/"
        self.match_path = match_path
        self.raw_request = raw_request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.match_path and not self._matches(scope):
            await _send(send, 404, b'{"message":"not found"}', {"content-type": "application/json"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await self._body(scope["method"], headers, receive)
        if isinstance(body, CommResponse):
            await _send(send, body.status, body.body, body.headers)
            return
        request = CommRequest(
            method=scope["method"],
            url=_url(scope, headers),
            headers=headers,
            body=body,
            raw=scope if self.raw_request is None else self.raw_request(scope, receive),
        )
        response = await self.handler.handle(request)
        await _send(send, response.status, response.body, response.headers)

    def _matches(self, scope: Scope) -> bool:
        path = (scope.get("root_path", "") + scope["path"]).rstrip("/") or "/"
        return path == self.path or scope["path"].rstrip("/") == self.path

    async def _body(
        self, method: str, headers: dict[str, str], receive: Receive
    ) -> bytes | CommResponse:
        """The body, or the handler's refusal: a one-message body is read without a loop."""
        early = self.handler.refuse_early(method, headers)
        if early is not None:
            return early
        message = await receive()
        body: bytes = message.get("body", b"")
        if message.get("more_body"):
            return await self.handler.read_capped(_rest(body, receive))
        if len(body) > self.handler.max_body_bytes:
            return self.handler.too_large()
        return body


async def _rest(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    yield first
    while True:
        message = await receive()
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _url(scope: Scope, headers: dict[str, str]) -> str:
    scheme = scope.get("scheme", "http")
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    path = scope.get("root_path", "") + scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


async def _send(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def serve(
    client: Inngest,
    functions: Sequence[Function[Any]],
    *,
    serve_path: str | None = None,
    serve_origin: str | None = None,
    public_path: str | None = None,
) -> InngestASGI:
    """An ASGI app serving ``functions`` at ``serve_path`` (default ``/api/inngest``)."""
    path = inngest_mw.resolve_serve_path(client, serve_path)
    handler = CommHandler(
        client,
        functions,
        framework="asgi",
        serve_origin=serve_origin,
        serve_path=path,
        public_path=public_path,
    )
    return InngestASGI(handler, path)
