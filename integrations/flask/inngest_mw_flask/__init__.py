"""Serve inngest-mw functions from a Flask app.

``serve(app, client, functions)`` adds one GET/PUT/POST view at ``serve_path``. The view is sync
(``CommHandler.handle_sync``) unless a function is async: then it is an async view, which Flask
runs through asgiref (``flask[async]``), so both kinds of function can be served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flask

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["serve"]

_METHODS = ["GET", "PUT", "POST"]


def serve(
    app: flask.Flask,
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
        framework="flask",
        serve_origin=serve_origin,
        serve_path=path,
        public_path=public_path,
    )
    if any(fn.is_async for fn in functions):

        async def inngest_async_view() -> flask.Response:
            request = _request(handler)
            if isinstance(request, CommResponse):
                return _response(request)
            return _response(await handler.handle(request))

        app.add_url_rule(path, "inngest", inngest_async_view, methods=_METHODS)
    else:

        def inngest_view() -> flask.Response:
            request = _request(handler)
            if isinstance(request, CommResponse):
                return _response(request)
            return _response(handler.handle_sync(request))

        app.add_url_rule(path, "inngest", inngest_view, methods=_METHODS)


def _request(handler: CommHandler) -> CommRequest | CommResponse:
    """The request, or the handler's refusal of it (read under the handler's body limit)."""
    request = flask.request
    headers = {k.lower(): v for k, v in request.headers.items()}
    body = handler.receive_sync(request.method, headers, request.stream.read)
    if isinstance(body, CommResponse):
        return body
    return CommRequest(
        method=request.method,
        url=request.url,
        headers=headers,
        body=body,
        # The request object itself, not the context-local proxy, so middleware may keep it. Flask
        # types the proxy as the ``Request`` it stands for, which hides the proxy's own method.
        raw=request._get_current_object(),  # type: ignore[attr-defined]
    )


def _response(response: CommResponse) -> flask.Response:
    return flask.Response(response.body, response.status, response.headers)
