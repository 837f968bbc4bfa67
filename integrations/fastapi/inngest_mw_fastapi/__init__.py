"""Serve inngest-mw functions from a FastAPI app.

``serve(app, client, functions)`` adds one GET/PUT/POST route at ``serve_path`` whose endpoint is
the pure ASGI app of ``inngest_mw_asgi``: FastAPI routes to it, ``CommHandler`` does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi
import starlette.requests
import starlette.routing
from inngest_mw_asgi import InngestASGI

import inngest_mw
from inngest_mw import CommHandler, Function, Inngest

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

    # FastAPI's router matches the path; the endpoint is the ASGI app itself, so a call goes
    # from the router straight to the handler (no dependency solving, no response object), and
    # middleware still gets FastAPI's request object (made from the scope, a thin wrapper).
    # Always async: ``CommHandler.handle`` moves sync functions to a worker thread itself.
    endpoint = InngestASGI(handler, path, match_path=False, raw_request=starlette.requests.Request)
    route = starlette.routing.Route(
        path, endpoint, methods=["GET", "PUT", "POST"], include_in_schema=False
    )
    # First among the routes: an Inngest call is matched at once, whatever else the app routes
    # (a route list is tried in order, so appended last it would wait behind every other, and a
    # catch-all route added earlier would take it).
    app.router.routes.insert(0, route)
