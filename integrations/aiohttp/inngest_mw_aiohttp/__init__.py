"""Serve inngest-mw functions from an aiohttp application.

``serve(app, client, functions)`` adds GET/PUT/POST routes at ``serve_path`` that await
``CommHandler.handle``; sync functions run in a worker thread, so both kinds can be served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["serve"]


def serve(
    app: web.Application,
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
        framework="aiohttp",
        serve_origin=serve_origin,
        serve_path=path,
        public_path=public_path,
    )

    async def inngest_view(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Read in chunks under the handler's own limit (``request.read()`` stops at 1 MiB).
        body = await handler.receive(request.method, headers, request.content.iter_any())
        if isinstance(body, CommResponse):
            return web.Response(body=body.body, status=body.status, headers=body.headers)
        comm = CommRequest(
            method=request.method, url=str(request.url), headers=headers, body=body, raw=request
        )
        response = await handler.handle(comm)
        return web.Response(body=response.body, status=response.status, headers=response.headers)

    for method in ("GET", "PUT", "POST"):
        app.router.add_route(method, path, inngest_view)
