"""Serve inngest-mw functions from a FastAPI app.

``serve(app, client, functions)`` adds one GET/PUT/POST route at ``serve_path``; the endpoint only
translates FastAPI's request to a ``CommRequest`` and back, and ``CommHandler`` does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["serve"]


def serve(
    app: fastapi.FastAPI,
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
        framework="fastapi",
        serve_origin=serve_origin,
        serve_path=path,
        public_path=public_path,
    )

    # Always async: ``CommHandler.handle`` moves sync functions to a worker thread itself.
    async def inngest_endpoint(request: fastapi.Request) -> fastapi.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await handler.receive(request.method, headers, request.stream())
        if isinstance(body, CommResponse):
            return fastapi.Response(body.body, body.status, body.headers)
        comm = CommRequest(
            method=request.method, url=str(request.url), headers=headers, body=body, raw=request
        )
        response = await handler.handle(comm)
        return fastapi.Response(response.body, response.status, response.headers)

    app.add_api_route(
        path, inngest_endpoint, methods=["GET", "PUT", "POST"], include_in_schema=False
    )
