"""What the API port knows of connect without loading the gateway (protobuf, websockets).

The names of connect apps, and the routes ``POST /v0/connect/start`` and ``/v0/connect/flush``:
with no gateway running they refuse, else they hand the request to it (``connect_gateway``), so
an engine started without a connect port never imports the gateway's dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["CONNECT_APP_URL", "connect_app_url", "connect_routes", "is_connect_url", "refused"]

#: The URL a connect app is registered under (``?app_name=`` added), as the Dev Server does.
CONNECT_APP_URL: Final = "ws://connect"

Handler = Callable[[Request], Awaitable[Response]]


def is_connect_url(url: str) -> bool:
    """Whether ``url`` is ``CONNECT_APP_URL``, with or without a query (asked on every call)."""
    return url.startswith(CONNECT_APP_URL) and url[len(CONNECT_APP_URL) :][:1] in ("", "?")


def connect_app_url(app_name: str) -> str:
    return f"{CONNECT_APP_URL}?app_name={quote(app_name, safe='')}"


def refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def connect_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[Route]:
    """``POST /v0/connect/start`` and ``/v0/connect/flush`` on the API port."""

    async def start(request: Request) -> Response:
        gateway = engine.connect
        if gateway is None:
            return refused(
                503, "this engine runs no connect gateway (start it with a connect port)"
            )
        return await gateway.answer_start(request)

    async def flush(request: Request) -> Response:
        gateway = engine.connect
        if gateway is None:
            return refused(503, "this engine runs no connect gateway")
        return await gateway.answer_flush(request)

    return [
        Route("/v0/connect/start", authed(start), methods=["POST"]),
        Route("/v0/connect/flush", authed(flush), methods=["POST"]),
    ]
