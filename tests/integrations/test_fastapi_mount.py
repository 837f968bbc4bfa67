"""The FastAPI adapter mounts the ASGI app as its route: FastAPI's router decides the path."""

from __future__ import annotations

from typing import Any, ClassVar

import fastapi
import httpx
import inngest_mw_fastapi
import starlette.requests
from support import call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, TriggerEvent


class SeenRequests(inngest_mw.MiddlewareSync):
    """Records the request object middleware is given, and its path."""

    paths: ClassVar[list[str]] = []

    def before_response(self) -> None:
        request = self.raw_request
        assert isinstance(request, starlette.requests.Request)
        SeenRequests.paths.append(request.url.path)


def _app() -> fastapi.FastAPI:
    client = inngest_mw.Inngest(app_id="mounted", is_production=False, middleware=[SeenRequests])

    @client.create_function(fn_id="double", trigger=TriggerEvent(event="t/double"))
    async def double(ctx: Context) -> int:
        return await ctx.step.run("twice", lambda: 2 * int(ctx.event.data["n"]))

    app = fastapi.FastAPI()
    inngest_mw_fastapi.serve(app, client, [double])

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _call(base: str, path: str) -> httpx.Response:
    body = call_body(event={"name": "t/double", "data": {"n": 21}})
    return httpx.post(
        base + path, params={"fnId": "mounted-double", "stepId": "step"}, json=body, timeout=10
    )


def test_a_call_reaches_the_handler_and_middleware_gets_fastapis_request() -> None:
    SeenRequests.paths.clear()
    with serve_asgi(_app()) as base:
        answer = _call(base, "/api/inngest")
        assert answer.status_code == 206, answer.text
        [op] = answer.json()
        assert (op["op"], op["data"]) == ("StepRun", 42)
        assert httpx.get(base + "/health", timeout=10).json() == {"status": "ok"}
        assert httpx.get(base + "/api/inngest", timeout=10).json()["function_count"] == 1
        assert httpx.post(base + "/api/other", json={}, timeout=10).status_code == 404
    assert SeenRequests.paths == ["/api/inngest"]


def test_an_app_behind_a_path_prefix_still_serves_its_functions() -> None:
    # As a server run with a root path (``uvicorn --root-path /shop``) gives the request:
    # root_path "/shop" and the full path. FastAPI's router strips the prefix to match the route;
    # the adapter must not refuse the path it was routed.
    app = _app()

    async def behind_prefix(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "root_path": "/shop"}
        await app(scope, receive, send)

    SeenRequests.paths.clear()
    with serve_asgi(behind_prefix) as base:
        answer = _call(base, "/shop/api/inngest")
        assert answer.status_code == 206, answer.text
        assert answer.json()[0]["data"] == 42
    assert SeenRequests.paths == ["/shop/api/inngest"]


def test_a_catch_all_route_declared_first_does_not_take_inngests_calls() -> None:
    client = inngest_mw.Inngest(app_id="mounted", is_production=False)

    @client.create_function(fn_id="double", trigger=TriggerEvent(event="t/double"))
    async def double(ctx: Context) -> int:
        return await ctx.step.run("twice", lambda: 2 * int(ctx.event.data["n"]))

    app = fastapi.FastAPI()

    @app.api_route("/{anything:path}", methods=["GET", "PUT", "POST"])
    async def everything_else(anything: str) -> dict[str, str]:
        return {"caught": anything}

    inngest_mw_fastapi.serve(app, client, [double])
    with serve_asgi(app) as base:
        answer = _call(base, "/api/inngest")
        assert answer.status_code == 206, answer.text
        assert answer.json()[0]["data"] == 42
        assert httpx.get(base + "/shop/cart", timeout=10).json() == {"caught": "shop/cart"}
