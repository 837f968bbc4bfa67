"""The wire form of realtime, pinned to what the Inngest server reads: ``step.realtime.publish``
is a step the app runs (``StepRun``/``StepPlanned`` with ``opts.type = "step.realtime.publish"``,
as the TypeScript SDK sends it) whose body calls ``POST /v1/realtime/publish`` with the run's ID,
once per run; and the publish and token requests compared with the official SDK's
(``inngest.experimental.realtime``) against the same stand-in API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import inngest
import inngest.experimental.realtime
import pytest
from inngest_mw_asgi import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent, realtime
from inngest_mw.memo import hash_step_id
from inngest_mw.signature import strip_key_prefix

TRIGGER = TriggerEvent(event="test/event")
KEY = "signkey-test-" + "ab" * 32


class StubApi:
    """Stands in for the realtime API; keeps every request it got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.publish_status = 200

    def app(self) -> Starlette:
        async def keep(request: Request) -> dict[str, Any]:
            got = {
                "path": request.url.path,
                "query": list(request.query_params.multi_items()),
                "headers": dict(request.headers),
                "body": json.loads(await request.body()),
            }
            with self.lock:
                self.requests.append(got)
            return got

        async def publish(request: Request) -> Response:
            await keep(request)
            return Response(status_code=self.publish_status)

        async def token(request: Request) -> Response:
            await keep(request)
            return JSONResponse({"jwt": "stub.jwt.token"}, status_code=201)

        return Starlette(
            routes=[
                Route("/v1/realtime/publish", publish, methods=["POST"]),
                Route("/v1/realtime/token", token, methods=["POST"]),
            ]
        )

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            got, self.requests = self.requests, []
        return got


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="publish", trigger=TRIGGER)
    async def publish(ctx: Context) -> Any:
        sent = await ctx.step.realtime.publish("notify", "order:1", "status", {"n": 1})
        return {"returned": sent}

    @create(fn_id="publish-sync", trigger=TRIGGER)
    def publish_sync(ctx: ContextSync) -> Any:
        sent = ctx.step.realtime.publish("notify", "order:1", "status", {"n": 1})
        return {"returned": sent}

    return [publish, publish_sync]


Env = tuple[Caller, StubApi, str]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    stub = StubApi()
    with serve_asgi(stub.app()) as api:
        client = inngest_mw.Inngest(
            app_id="app", is_production=False, api_base_url=api, checkpointing=False
        )
        with serve_asgi(serve(client, _functions(client))) as base:
            yield Caller(base + "/api/inngest"), stub, api


def _op(op: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": hash_step_id("notify"),
        "op": op,
        "name": "notify",
        "displayName": "notify",
        "userland": {"id": "notify", "index": 0},
        "opts": {"type": "step.realtime.publish"},
        **extra,
    }


def test_a_publish_step_runs_in_the_request_and_reports_step_run_with_its_data(
    env: Env, variant: str
) -> None:
    caller, stub, _ = env
    stub.take()
    res = caller.call(f"app-publish{variant}", call_body(run_id="01HZY0RUN0000000000000000A"))
    assert res.status_code == 206
    assert res.json() == [_op("StepRun", data={"n": 1})]
    [sent] = stub.take()
    assert sent["path"] == "/v1/realtime/publish"
    assert sent["query"] == [
        ("channel", "order:1"),
        ("topic", "status"),
        ("run_id", "01HZY0RUN0000000000000000A"),
    ]
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["body"] == {"n": 1}


def test_a_replayed_publish_step_returns_its_memo_and_publishes_nothing(
    env: Env, variant: str
) -> None:
    caller, stub, _ = env
    stub.take()
    memo = {hash_step_id("notify"): {"data": {"n": 1}}}
    res = caller.call(f"app-publish{variant}", call_body(steps=memo))
    assert (res.status_code, res.json()) == (200, {"returned": {"n": 1}})
    assert stub.take() == []


def test_a_planned_publish_step_is_step_planned_typed_as_a_publish(env: Env, variant: str) -> None:
    caller, stub, _ = env
    stub.take()
    res = caller.call(f"app-publish{variant}", call_body(disable_immediate=True))
    assert (res.status_code, res.json()) == (206, [_op("StepPlanned")])
    assert stub.take() == []


def test_a_refused_publish_fails_the_step_for_good_naming_the_answer(
    env: Env, variant: str
) -> None:
    caller, stub, _ = env
    stub.publish_status = 400
    try:
        res = caller.call(f"app-publish{variant}", call_body())
    finally:
        stub.publish_status = 200
    assert res.status_code == 206
    [op] = res.json()
    assert (op["op"], op["error"]["name"]) == ("StepFailed", "RealtimeError")
    assert "refused publishing to order:1/status (400)" in op["error"]["message"]


def test_names_and_topics_are_checked_before_anything_is_sent() -> None:
    client = inngest_mw.Inngest(
        app_id="app", is_production=False, api_base_url="http://127.0.0.1:9"
    )
    with pytest.raises(ValueError, match="channel must be a non-empty string"):
        realtime.publish_sync(client, "", "t", 1)
    with pytest.raises(ValueError, match="topic must be a non-empty string"):
        realtime.publish_sync(client, "c", "", 1)
    with pytest.raises(ValueError, match="a list of topic names"):
        realtime.get_subscription_token_sync(client, "c", "status")
    with pytest.raises(realtime.RealtimeError, match="not JSON-serializable"):
        realtime.publish_sync(client, "c", "t", object())


def _compared(request: dict[str, Any]) -> dict[str, Any]:
    headers = request["headers"]
    return {
        "path": request["path"],
        "query": request["query"],
        "body": request["body"],
        "content-type": headers["content-type"],
        "authorization": strip_key_prefix(headers["authorization"].removeprefix("Bearer ")),
    }


def test_publish_and_token_requests_match_the_official_sdk(env: Env) -> None:
    """The same publish and token calls, to the same API, from both SDKs. Deliberate differences:

    * A refused publish raises ``RealtimeError`` here; the official SDK ignores the answer's
      status (a refused message is lost without a word). Transport errors and 5xx answers are
      retried here, as for sends and signals.
    * ``run_id``: the official SDK has no way to send one; ours sends it from ``ctx.publish`` and
      ``step.realtime.publish`` (as the TypeScript SDK does), and ``publish(..., run_id=)``.
    * The official SDK has no step form; ``step.realtime.publish`` follows the TypeScript SDK.
    * Ours returns a ``SubscriptionToken``; ``as_dict()`` is the official SDK's dict exactly.
    * The bearer keeps the key's ``signkey-<env>-`` prefix, as on every request this SDK makes
      to the API; the server strips it before comparing, so both are accepted.
    """
    _, stub, api = env
    theirs_client = inngest.Inngest(
        app_id="app", is_production=False, api_base_url=api, signing_key=KEY
    )
    ours_client = inngest_mw.Inngest(
        app_id="app", is_production=False, api_base_url=api, signing_key=KEY
    )
    data = {"msg": "héllo", "n": [1, 2.5, None, True]}
    stub.take()
    asyncio.run(inngest.experimental.realtime.publish(theirs_client, "chan", "topic", data))
    inngest.experimental.realtime.publish_sync(theirs_client, "chan", "topic", data)
    theirs_token = inngest.experimental.realtime.get_subscription_token_sync(
        theirs_client, "chan", ["a", "b"]
    )
    theirs = stub.take()
    asyncio.run(realtime.publish(ours_client, "chan", "topic", data))
    realtime.publish_sync(ours_client, "chan", "topic", data)
    ours_token = realtime.get_subscription_token_sync(ours_client, "chan", ["a", "b"])
    ours = stub.take()
    assert len(theirs) == len(ours) == 3
    assert [_compared(r) for r in ours] == [_compared(r) for r in theirs]
    assert ours[2]["body"] == [
        {"channel": "chan", "name": "a", "kind": "run"},
        {"channel": "chan", "name": "b", "kind": "run"},
    ]
    assert ours_token.as_dict() == dict(theirs_token)
