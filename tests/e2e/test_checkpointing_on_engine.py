"""Checkpointing on the embedded engine: a function's steps run back to back in one request to the
app, each reported to the engine before the next starts; off, the old one-request-per-step path."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from engine_support import (
    AppServer,
    get_run,
    poll,
    run_for_event,
    runs_for_event,
    send,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent
from inngest_mw.errors import FunctionConfigInvalidError

KEY = "checkpoint-test-key"


class Counted:
    """An ASGI app wrapper counting the call requests (POSTs) the app gets, per function, and
    those it has finished answering."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.answered = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            query = dict(
                part.split("=", 1) for part in scope["query_string"].decode().split("&") if part
            )
            with self.lock:
                fn = query.get("fnId", "")
                self.calls[fn] = self.calls.get(fn, 0) + 1
            try:
                await self.app(scope, receive, send)
            finally:
                with self.lock:
                    self.answered += 1
            return
        await self.app(scope, receive, send)

    @property
    def in_flight(self) -> int:
        with self.lock:
            return sum(self.calls.values()) - self.answered


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
        fn_id="secret",
        trigger=TriggerEvent(event="cp/secret"),
        middleware=[EncryptionMiddleware.factory(key=KEY)],
    )
    async def secret(ctx: Context) -> str:
        card = await ctx.step.run("card", lambda: "4242")
        return await ctx.step.run("masked", lambda: "**" + card[-2:])

    @client.create_function(fn_id="flaky", trigger=TriggerEvent(event="cp/flaky"))
    async def flaky(ctx: Context) -> list[int]:
        def second() -> int:
            if hit(f"{ctx.run_id}:b") == 1:
                raise RuntimeError("first try fails")
            return 2

        a = await ctx.step.run("a", lambda: hit(f"{ctx.run_id}:a"))
        return [a, await ctx.step.run("b", second), await ctx.step.run("c", lambda: 3)]

    @client.create_function(fn_id="flaky-sync", trigger=TriggerEvent(event="cp/flaky"))
    def flaky_sync(ctx: ContextSync) -> list[int]:
        def second() -> int:
            if hit(f"{ctx.run_id}:b") == 1:
                raise RuntimeError("first try fails")
            return 2

        a = ctx.step.run("a", lambda: hit(f"{ctx.run_id}:a"))
        return [a, ctx.step.run("b", second), ctx.step.run("c", lambda: 3)]

    @client.create_function(fn_id="parked", trigger=TriggerEvent(event="cp/parked"))
    async def parked(ctx: Context) -> None:
        await ctx.step.wait_for_event("never", event="cp/never", timeout="1h")

    @client.create_function(
        fn_id="one-by-one", trigger=TriggerEvent(event="cp/one-by-one"), checkpointing=False
    )
    def one_by_one(ctx: ContextSync) -> int:
        return sum(ctx.step.run(f"s{i}", lambda i=i: i) for i in range(3))

    return [ten, ten_sync, sleepy, secret, flaky, flaky_sync, parked, one_by_one]


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


def test_a_function_can_turn_checkpointing_off_for_itself(on: Env) -> None:
    url, counted, _ = on
    before = counted.calls.get("cp-one-by-one", 0)
    [event_id] = send(url, {"name": "cp/one-by-one", "data": {}})
    assert run_for_event(url, event_id)["output"] == 3
    assert counted.calls["cp-one-by-one"] - before == 4


def test_checkpointing_options_must_be_booleans() -> None:
    with pytest.raises(
        inngest_mw.ConfigError, match=r"^checkpointing: must be True, False or None"
    ):
        inngest_mw.Inngest(app_id="x", checkpointing="yes")  # type: ignore[arg-type]
    client = inngest_mw.Inngest(app_id="x", is_production=False)
    with pytest.raises(
        FunctionConfigInvalidError,
        match=r"^checkpointing: must be True, False or None, not 1 \(function 'f'\)$",
    ):
        client.create_function(fn_id="f", trigger=TriggerEvent(event="e"), checkpointing=1)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("fn", ["cp-flaky", "cp-flaky-sync"])
def test_a_step_failing_after_a_checkpoint_keeps_the_steps_before_it(on: Env, fn: str) -> None:
    url, _, runs = on
    [event_id] = send(url, {"name": "cp/flaky", "data": {}})
    run = next(r for r in _runs(url, event_id) if r["function_id"] == fn)
    assert (run["status"], run["output"]) == ("Completed", [1, 2, 3])
    # "a" was checkpointed in the request where "b" failed: the retry replays it, not reruns it.
    assert (runs[f"{run['run_id']}:a"], runs[f"{run['run_id']}:b"]) == (1, 2)


def test_the_checkpoint_route_refuses_what_it_cannot_take(on: Env) -> None:
    url, _, _ = on
    [event_id] = send(url, {"name": "cp/parked", "data": {}})
    [run] = runs_for_event(url, event_id)
    run_id = run["run_id"]
    wait_step(url, run_id, "never", "Waiting")
    done = {"op": "StepRun", "id": "x1", "name": "extra", "data": 1}

    def post(target: str, body: Any) -> httpx.Response:
        return httpx.post(f"{url}/v1/checkpoint/{target}/async", json=body, timeout=10)

    stale = post(run_id, {"run_id": run_id, "qi_id": "999999-1", "steps": [done]})
    assert stale.status_code == 409, stale.text
    assert "stale dispatch" in stale.json()["error"]
    assert stale.json()["data"] == {"run_id": run_id}
    sleep = {"op": "Sleep", "id": "x2", "name": "nap", "opts": {"duration": "1s"}}
    refused = post(run_id, {"run_id": run_id, "steps": [sleep]})
    assert refused.status_code == 400, refused.text
    assert "cannot checkpoint async steps: Sleep" in refused.json()["error"]
    empty = post(run_id, {"run_id": run_id, "steps": []})
    assert (empty.status_code, empty.json()["error"]) == (
        400,
        "the body needs a non-empty 'steps' list",
    )
    unknown = post("01JUNKNOWNRUN0000000000000", {"steps": [done]})
    assert unknown.status_code == 404, unknown.text
    assert [s["name"] for s in get_run(url, run_id)["steps"]] == ["never"], "nothing was saved"
    httpx.delete(f"{url}/v1/runs/{run_id}", timeout=10)


def test_a_request_the_engine_gave_up_on_stops_at_its_next_checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The engine times a call out and retries it while the first request still runs: the first
    request's checkpoint is refused (409), so it stops instead of running the steps after it."""
    second_started = threading.Event()
    after: list[str] = []
    db = tmp_path_factory.mktemp("stale") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02, request_timeout=1.0) as engine:
        client = inngest_mw.Inngest(
            app_id="stale",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="slow", trigger=TriggerEvent(event="stale/go"))
        def slow(ctx: ContextSync) -> str:
            def first() -> str:
                if ctx.attempt == 0:  # outlives the engine's timeout; returns once it retried
                    assert second_started.wait(30), "the engine never retried"
                    return "stale"
                second_started.set()
                return "fresh"

            def record(value: str) -> str:
                after.append(value)
                return value

            return ctx.step.run("after", record, ctx.step.run("first", first))

        counted = Counted(serve(client, [slow]))
        with AppServer(counted) as app:
            sync(app)
            [event_id] = send(engine.url, {"name": "stale/go", "data": {}})
            run = run_for_event(engine.url, event_id)
            assert (run["status"], run["output"]) == ("Completed", "fresh")
            poll(lambda: counted.in_flight, lambda n: n == 0, what="the first request to end")
    assert after == ["fresh"], "the superseded request ran no step after its refused checkpoint"


def _runs(url: str, event_id: str) -> list[dict[str, Any]]:
    return [wait_run(url, r["run_id"]) for r in runs_for_event(url, event_id, count=2)]
