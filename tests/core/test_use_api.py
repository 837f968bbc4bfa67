"""``use_api``: when the call body was too large, events and memoized steps come from the API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from inngest_mw_asgi import serve
from support import Caller, call_body, send_json, serve_asgi

import inngest_mw
from inngest_mw import TriggerEvent, signature
from inngest_mw.memo import hash_step_id

KEY = "signkey-test-abababababababababababababababababababababababababababababababab"


class RunStateApi:
    """Serves ``/v0/runs/{id}/batch`` and ``/actions`` like the Inngest API, checking the bearer."""

    def __init__(self) -> None:
        self.auth: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.auth.append(headers.get("authorization", ""))
        body: object
        status, body = 404, {"error": "not found"}
        if headers.get("authorization") != "Bearer " + signature.hash_signing_key(KEY):
            status, body = 401, {"error": "unauthorized"}
        elif scope["path"] == "/v0/runs/01BIG/batch":
            status, body = 200, [{"name": "test/event", "data": {"x": 41}, "id": "e1", "ts": 1}]
        elif scope["path"] == "/v0/runs/01BIG/actions":
            status, body = 200, {hash_step_id("a"): {"data": 42}}
        await send_json(send, status, body)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Caller, RunStateApi]]:
    api = RunStateApi()
    with serve_asgi(api) as api_url:
        client = inngest_mw.Inngest(app_id="app", signing_key=KEY, api_base_url=api_url)

        @client.create_function(fn_id="big", trigger=TriggerEvent(event="test/event"))
        async def big(ctx: inngest_mw.Context) -> Any:
            a = await ctx.step.run("a", lambda: 0)
            return {"a": a, "x": ctx.event.data["x"]}

        @client.create_function(fn_id="big-sync", trigger=TriggerEvent(event="test/event"))
        def big_sync(ctx: inngest_mw.ContextSync) -> Any:
            a = ctx.step.run("a", lambda: 0)
            return {"a": a, "x": ctx.event.data["x"]}

        with serve_asgi(serve(client, [big, big_sync])) as url:
            yield Caller(url + "/api/inngest", KEY), api


@pytest.mark.parametrize("fn", ["app-big", "app-big-sync"])
def test_use_api_fetches_events_and_steps_with_the_hashed_key(
    setup: tuple[Caller, RunStateApi], fn: str
) -> None:
    caller, api = setup
    body = call_body(run_id="01BIG")
    body.update(events=[], steps={}, use_api=True)
    body["ctx"]["use_api"] = True
    res = caller.call(fn, body)
    assert (res.status_code, res.json()) == (200, {"a": 42, "x": 41})
    assert api.auth[-2:] == ["Bearer " + signature.hash_signing_key(KEY)] * 2


def test_use_api_failure_is_a_retriable_500(setup: tuple[Caller, RunStateApi]) -> None:
    caller, _ = setup
    body = call_body(run_id="01GONE")
    body.update(events=[], steps={}, use_api=True)
    res = caller.call("app-big", body)
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    assert "404" in res.json()["message"]
    assert ".py" not in res.json()["stack"]  # no SDK frames or file paths leak
