"""Checkpointing on the embedded engine: a function's steps run back to back in one request to the
app, each reported to the engine before the next starts; off, the old one-request-per-step path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from engine_support import (
    AppServer,
    get_run,
    run_for_event,
    runs_for_event,
    send,
    sync,
    wait_run,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

KEY = "checkpoint-test-key"


class Counted:
    """An ASGI app wrapper counting the call requests (POSTs) the app gets, per function."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            query = dict(
                part.split("=", 1) for part in scope["query_string"].decode().split("&") if part
            )
            with self.lock:
                fn = query.get("fnId", "")
                self.calls[fn] = self.calls.get(fn, 0) + 1
        await self.app(scope, receive, send)


def build(client: inngest_mw.Inngest, runs: dict[str, int]) -> list[inngest_mw.Function[Any]]:
    def hit(name: str) -> int:
        runs[name] = runs.get(name, 0) + 1
        return runs[name]

    @client.create_function(fn_id="ten", trigger=TriggerEvent(event="cp/ten"))
    async def ten(ctx: Context) -> int:
        total = 0
        for i in range(10):
            total += await ctx.step.run(f"s{i}", lambda i=i: hit(f"{ctx.run_id}:s{i}") and i)
        return total

    @client.create_function(fn_id="ten-sync", trigger=TriggerEvent(event="cp/ten"))
    def ten_sync(ctx: ContextSync) -> int:
        total = 0
        for i in range(10):
            total += ctx.step.run(f"s{i}", lambda i=i: hit(f"{ctx.run_id}:s{i}") and i)
        return total

    @client.create_function(fn_id="sleepy", trigger=TriggerEvent(event="cp/sleepy"))
    async def sleepy(ctx: Context) -> list[int]:
        a = await ctx.step.run("a", lambda: 1)
        await ctx.step.sleep("nap", "1s")
        b = await ctx.step.run("b", lambda: 2)
        return [a, b]

    @client.create_function(
        fn_id="secret", trigger=TriggerEvent(event="cp/secret"),
        middleware=[EncryptionMiddleware.factory(key=KEY)],
    )  # fmt: skip
    async def secret(ctx: Context) -> str:
        card = await ctx.step.run("card", lambda: "4242")
        return await ctx.step.run("masked", lambda: "**" + card[-2:])

    return [ten, ten_sync, sleepy, secret]


Env = tuple[str, Counted, dict[str, int]]


def _env(tmp: pytest.TempPathFactory, checkpointing: bool) -> Iterator[Env]:
    runs: dict[str, int] = {}
    db = tmp.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="cp",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
            checkpointing=checkpointing,
        )
        counted = Counted(serve(client, build(client, runs)))
        with AppServer(counted) as app:
            sync(app)
            yield engine.url, counted, runs


@pytest.fixture(scope="module")
def on(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, True)


@pytest.fixture(scope="module")
def off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from _env(tmp_path_factory, False)


@pytest.mark.parametrize("fn", ["cp-ten", "cp-ten-sync"])
def test_ten_steps_complete_in_one_request_with_each_step_run_once(on: Env, fn: str) -> None:
    url, counted, runs = on
    before = counted.calls.get(fn, 0)
    [event_id] = send(url, {"name": "cp/ten", "data": {}})
    run = next(r for r in _runs(url, event_id) if r["function_id"] == fn)
    assert (run["status"], run["output"]) == ("Completed", 45)
    assert counted.calls[fn] - before == 1
    assert [runs[f"{run['run_id']}:s{i}"] for i in range(10)] == [1] * 10
    assert [s["status"] for s in run["steps"]] == ["Completed"] * 10


@pytest.mark.parametrize("fn", ["cp-ten", "cp-ten-sync"])
def test_without_checkpointing_each_step_is_a_request(off: Env, fn: str) -> None:
    url, counted, _ = off
    before = counted.calls.get(fn, 0)
    [event_id] = send(url, {"name": "cp/ten", "data": {}})
    run = next(r for r in _runs(url, event_id) if r["function_id"] == fn)
    assert (run["status"], run["output"]) == ("Completed", 45)
    assert counted.calls[fn] - before == 11  # ten steps, then the function's result


def test_a_step_the_engine_must_act_on_ends_the_request(on: Env) -> None:
    url, counted, _ = on
    before = counted.calls.get("cp-sleepy", 0)
    [event_id] = send(url, {"name": "cp/sleepy", "data": {}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", [1, 2])
    # "a" checkpointed, the sleep reported; after it, "b" checkpointed and the result returned.
    assert counted.calls["cp-sleepy"] - before == 2


def test_a_checkpointed_step_is_sealed_by_the_encryption_middleware(on: Env) -> None:
    url, _, _ = on
    [event_id] = send(url, {"name": "cp/secret", "data": {}})
    run = run_for_event(url, event_id)
    strategy = LibsodiumStrategy(KEY)
    assert strategy.decrypt(run["output"]["data"]) == "**42"
    card = next(s for s in get_run(url, run["run_id"])["steps"] if s["name"] == "card")
    assert card["output"]["__ENCRYPTED__"] is True
    assert strategy.decrypt(card["output"]["data"]) == "4242"


def _runs(url: str, event_id: str) -> list[dict[str, Any]]:
    return [wait_run(url, r["run_id"]) for r in runs_for_event(url, event_id, count=2)]
