"""Serve inngest-mw functions from a Django project.

``serve(client, functions)`` returns a ``URLPattern`` for ``urlpatterns``. The view is sync
(``CommHandler.handle_sync``) unless a function is async: then it is an async view, which Django
runs natively under ASGI and through ``async_to_sync`` under WSGI. Requests are signed by Inngest,
so the view is exempt from CSRF; other methods get a 405 JSON answer from the handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest

__all__ = ["serve"]


def serve(
    client: Inngest,
    functions: Sequence[Function[Any]],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
    public_path: str | None = None,
) -> URLPattern:
    """A URL pattern answering Inngest's requests for ``functions`` at ``serve_path``."""
    serve_path = inngest_mw.resolve_serve_path(client, serve_path)
    handler = CommHandler(
        client,
        functions,
        framework="django",
        serve_origin=serve_origin,
        serve_path=serve_path,
        public_path=public_path,
    )
    # Django routes have no leading slash; the handler keeps the full path for registration.
    route = serve_path.lstrip("/")
    if any(fn.is_async for fn in functions):

        @csrf_exempt
        async def inngest_async_view(request: HttpRequest) -> HttpResponse:
            comm = _request(handler, request)
            if isinstance(comm, CommResponse):
                return _response(comm)
            return _response(await handler.handle(comm))

        return path(route, inngest_async_view, name="inngest")

    @csrf_exempt
    def inngest_view(request: HttpRequest) -> HttpResponse:
        comm = _request(handler, request)
        if isinstance(comm, CommResponse):
            return _response(comm)
        return _response(handler.handle_sync(comm))

    return path(route, inngest_view, name="inngest")


def _request(handler: CommHandler, request: HttpRequest) -> CommRequest | CommResponse:
    """The request, or the handler's refusal of it (read under the handler's body limit)."""
    method = request.method or "GET"
    headers = {k.lower(): v for k, v in request.headers.items()}
    # ``request.read`` streams; ``request.body`` would buffer it all first (and refuse anything
    # over Django's DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB, which call bodies may exceed).
    body = handler.receive_sync(method, headers, request.read)
    if isinstance(body, CommResponse):
        return body
    return CommRequest(
        method=method,
        url=request.build_absolute_uri(),
        headers=headers,
        body=body,
        raw=request,
    )


def _response(response: CommResponse) -> HttpResponse:
    return HttpResponse(response.body, status=response.status, headers=response.headers)
