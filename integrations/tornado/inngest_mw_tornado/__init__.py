"""Serve inngest-mw functions from a Tornado application.

``serve(app, client, functions)`` adds a ``RequestHandler`` at ``serve_path`` whose async methods
await ``CommHandler.handle``; sync functions run in a worker thread, so both kinds can be served.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import tornado.web

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["InngestHandler", "serve"]


@tornado.web.stream_request_body
class InngestHandler(tornado.web.RequestHandler):
    """Translates one Tornado request to a ``CommRequest`` and the answer back.

    The body is streamed in (``data_received``) so it is refused once it passes the handler's
    limit instead of being buffered whole by Tornado first.
    """

    def initialize(self, handler: CommHandler) -> None:
        self.handler = handler
        self._body = bytearray()
        self._refusal: CommResponse | None = None

    def prepare(self) -> None:
        request = self.request
        headers = {k.lower(): v for k, v in request.headers.get_all()}
        self._refusal = self.handler.refuse_early(request.method or "GET", headers)
        if self._refusal is not None:
            self._write(self._refusal)

    def data_received(self, chunk: bytes) -> None:
        if self._refusal is not None:
            return
        self._body += chunk
        if len(self._body) > self.handler.max_body_bytes:
            self._refusal = self.handler.too_large()
            self._body.clear()

    def check_xsrf_cookie(self) -> None:
        """Inngest signs its requests and sends no cookies, so ``xsrf_cookies`` must not apply."""

    async def get(self) -> None:
        await self._answer()

    async def put(self) -> None:
        await self._answer()

    async def post(self) -> None:
        await self._answer()

    async def _answer(self) -> None:
        if self._refusal is not None:
            self._write(self._refusal)
            return
        request = self.request
        comm = CommRequest(
            method=request.method or "GET",
            url=request.full_url(),
            headers={k.lower(): v for k, v in request.headers.get_all()},
            body=bytes(self._body),
            raw=request,
        )
        self._write(await self.handler.handle(comm))

    def _write(self, response: CommResponse) -> None:
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.finish(response.body)


def serve(
    app: tornado.web.Application,
    client: Inngest,
    functions: Sequence[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
) -> None:
    """Answer Inngest's requests for ``functions`` at ``serve_path`` (default ``/api/inngest``)."""
    path = inngest_mw.resolve_serve_path(client, serve_path)
    handler = CommHandler(
        client,
        functions,
        framework="tornado",
        serve_origin=serve_origin,
        serve_path=path,
        public_path=public_path,
    )
    # Tornado routes are regular expressions; the serve path is a literal.
    app.add_handlers(r".*", [(re.escape(path), InngestHandler, {"handler": handler})])
