"""Deeply nested JSON from a peer: a 400 naming the reason on every endpoint that takes JSON, and a
failed attempt with the reason when an app answers with it, never a 500 or a crashed task.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
import pytest
from engine_support import AppServer, run_for_event, send
from inngest_mw_dev import EngineThread
from inngest_mw_dev.limits import MAX_JSON_DEPTH
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

TOO_DEEP = f"request body is nested too deeply: JSON may nest at most {MAX_JSON_DEPTH} levels"
JSON_PATHS = [
    "/e/key",
    "/fn/register",
    "/v1/events",
    "/v1/functions/some-fn/invoke",
    "/v1/runs/cancel",
    "/v1/runs/some-run/rerun",
]


def nested(depth: int) -> str:
    """``depth`` levels of arrays around a number: ``[[1]]`` is 2."""
    return "[" * depth + "1" + "]" * depth


def event_nested(depth: int) -> str:
    """An event whose whole body nests ``depth`` levels (the event object is the first)."""
    return '{"name": "deep/event", "data": {"v": ' + nested(depth - 2) + "}}"


@pytest.mark.parametrize("path", JSON_PATHS)
@pytest.mark.parametrize("depth", [2_000, 100_000, MAX_JSON_DEPTH + 1])
def test_json_nested_too_deeply_is_a_400_naming_the_reason_on_every_json_endpoint(
    engine: EngineThread, caplog: pytest.LogCaptureFixture, path: str, depth: int
) -> None:
    caplog.set_level(logging.ERROR)
    response = httpx.post(f"{engine.url}{path}", content=nested(depth))
    assert response.status_code == 400
    assert response.json()["error"] == TOO_DEEP
    assert "Exception in ASGI application" not in caplog.text
    assert "Traceback" not in response.text


def test_an_event_at_the_depth_limit_is_taken_and_one_level_more_is_refused(
    engine: EngineThread,
) -> None:
    taken = httpx.post(f"{engine.url}/e/key", content=event_nested(MAX_JSON_DEPTH))
    assert taken.status_code == 200
    assert taken.json()["status"] == 200
    refused = httpx.post(f"{engine.url}/e/key", content=event_nested(MAX_JSON_DEPTH + 1))
    assert refused.status_code == 400
    assert refused.json() == {"ids": [], "status": 400, "error": TOO_DEEP}


def test_a_body_that_is_not_json_is_a_400_saying_so(engine: EngineThread) -> None:
    for path in JSON_PATHS:
        response = httpx.post(f"{engine.url}{path}", content=b"{\xff")
        assert response.status_code == 400, path
        assert response.json()["error"] == "request body is not valid JSON", path


def _deep_answer_app(calls: list[int], depth: int) -> Starlette:
    """An 'app' that answers every call with a 200 whose JSON nests ``depth`` levels."""
    lock = threading.Lock()

    async def endpoint(request: Request) -> Response:
        with lock:
            calls.append(1)
        return PlainTextResponse(nested(depth), headers={"X-Inngest-Sdk": "x:v1"})

    return Starlette(routes=[Route("/api/inngest", endpoint, methods=["POST"])])


def _register(engine: EngineThread, app: AppServer, fn_id: str) -> None:
    register: dict[str, Any] = {
        "appName": "deep",
        "url": app.url,
        "sdk": "x:v1",
        "v": "0.1",
        "deployType": "ping",
        "functions": [
            {
                "id": fn_id,
                "name": fn_id,
                "triggers": [{"event": f"{fn_id}/go"}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "retries": {"attempts": 1},
                        "runtime": {"type": "http", "url": app.url},
                    }
                },
            }
        ],
    }
    response = httpx.post(f"{engine.url}/fn/register", json=register)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("depth", [5_000, MAX_JSON_DEPTH + 1])
def test_an_app_answer_nested_too_deeply_fails_the_attempt_with_the_reason(
    engine: EngineThread, depth: int
) -> None:
    calls: list[int] = []
    with AppServer(_deep_answer_app(calls, depth)) as app:
        _register(engine, app, "deep-fn")
        (event_id,) = send(engine.url, {"name": "deep-fn/go"})
        run = run_for_event(engine.url, event_id)
        assert run["status"] == "Failed"
        assert len(calls) == 2  # the first attempt and its one retry: the engine kept working
        reasons = [h["reason"] for h in run["history"] if h["type"] == "retry_scheduled"]
        assert reasons == ["JSON body nested too deeply"]
        assert run["error"]["message"] == (
            f"response body is nested too deeply (JSON may nest at most {MAX_JSON_DEPTH} levels)"
        )
        (again,) = send(engine.url, {"name": "deep-fn/go"})
        assert run_for_event(engine.url, again)["status"] == "Failed"
    assert httpx.get(f"{engine.url}/health").json() == {"status": 200, "message": "OK"}


def _deep_sync_answer_app() -> Starlette:
    """An 'app' refusing every sync with a 500 whose JSON nests past the recursion limit."""

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(nested(5_000), status_code=500)

    return Starlette(routes=[Route("/api/inngest", endpoint, methods=["PUT"])])


def test_a_sync_answer_nested_too_deeply_is_a_failed_sync_with_its_start(
    engine: EngineThread,
) -> None:
    with AppServer(_deep_sync_answer_app()) as app:
        response = httpx.post(f"{engine.url}/fn/sync", params={"url": app.url})
    assert response.status_code == 502
    (result,) = response.json()["results"]
    assert result["ok"] is False
    assert result["status"] == 500
    apps = httpx.get(f"{engine.url}/v1/apps").json()["data"]
    (synced,) = [a for a in apps if a["url"] == app.url]
    assert synced["status"] == "failed"
    assert synced["error"].startswith("HTTP 500: " + "[" * 100)
