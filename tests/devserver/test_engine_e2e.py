"""End-to-end: the engine drives an app written with the official ``inngest`` SDK over real HTTP.

One engine and one app serve every scenario here; each test uses its own event names.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import inngest
import pytest
from engine_support import (
    AppServer,
    dev_client,
    get_run,
    poll,
    run_for_event,
    runs_for_event,
    send,
    serve_functions,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_dev import EngineThread


class Record:
    """Side effects observed by the app, shared with the tests (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []

    def hit(self, key: str) -> int:
        with self.lock:
            self.calls[key] += 1
            return self.calls[key]


def build_functions(client: inngest.Inngest, record: Record) -> list[Any]:
    @client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="test/steps"))
    async def steps(ctx: inngest.Context) -> dict[str, Any]:
        a: int = await ctx.step.run("a", lambda: record.hit(f"{ctx.run_id}:a") and 1)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        b: int = await ctx.step.run("b", lambda: record.hit(f"{ctx.run_id}:b") and a + 1)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        c: int = await ctx.step.run("c", lambda: record.hit(f"{ctx.run_id}:c") and b + 1)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        return {"sum": a + b + c, "input": ctx.event.data.get("n")}

    @client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="test/sleep"))
    async def sleeper(ctx: inngest.Context) -> str:
        await ctx.step.sleep("nap", dt.timedelta(seconds=1))
        return await ctx.step.run("after", lambda: "awake")  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too

    @client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="test/wait"))
    async def waiter(ctx: inngest.Context) -> Any:
        seconds = ctx.event.data["timeout"]
        assert isinstance(seconds, int)
        reply = await ctx.step.wait_for_event(
            "wait-reply",
            event="test/wait.reply",
            if_exp="event.data.x == async.data.x",
            timeout=dt.timedelta(seconds=seconds),
        )
        return None if reply is None else dict(reply.data)

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="test/child"))
    async def child(ctx: inngest.Context) -> int:
        if ctx.event.data.get("fail"):
            raise inngest.NonRetriableError("child refuses")
        value = ctx.event.data["value"]
        assert isinstance(value, int)
        return await ctx.step.run("double", lambda: value * 2)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="test/parent"))
    async def parent(ctx: inngest.Context) -> Any:
        try:
            return await ctx.step.invoke("call-child", function=child, data=dict(ctx.event.data))
        except inngest.StepError as err:
            return {"caught": err.message}

    @client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="test/parallel"))
    async def fanout(ctx: inngest.Context) -> Any:
        def branch(name: str) -> Any:
            async def go() -> str:
                return await ctx.step.run(name, lambda: record.hit(f"{ctx.run_id}:{name}") and name)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too

            return go

        results = await ctx.group.parallel((branch("p1"), branch("p2"), branch("p3")))
        joined: str = await ctx.step.run("join", lambda: "+".join(results))  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        return joined

    @client.create_function(
        fn_id="flaky", trigger=inngest.TriggerEvent(event="test/flaky"), retries=3
    )
    async def flaky(ctx: inngest.Context) -> str:
        def attempt() -> str:
            if record.hit(f"{ctx.run_id}:flaky") <= 2:
                raise RuntimeError("not yet")
            return "finally"

        return await ctx.step.run("flaky-step", attempt)  # type: ignore[arg-type]  # inngest types handlers async-only; sync ones run too

    @client.create_function(
        fn_id="fatal", trigger=inngest.TriggerEvent(event="test/fatal"), retries=3
    )
    async def fatal(ctx: inngest.Context) -> None:
        record.hit(f"{ctx.run_id}:fatal")
        raise inngest.NonRetriableError("do not retry me")

    async def on_failure(ctx: inngest.Context) -> None:
        with record.lock:
            record.failures.append(dict(ctx.event.data))

    @client.create_function(
        fn_id="doomed",
        trigger=inngest.TriggerEvent(event="test/doomed"),
        retries=1,
        on_failure=on_failure,
    )
    async def doomed(ctx: inngest.Context) -> None:
        raise RuntimeError("always broken")

    @client.create_function(
        fn_id="cancellable",
        trigger=inngest.TriggerEvent(event="test/cancellable"),
        cancel=[inngest.Cancel(event="test/cancel.stop", if_exp="event.data.id == async.data.id")],
    )
    async def cancellable(ctx: inngest.Context) -> str:
        await ctx.step.sleep("long-nap", dt.timedelta(seconds=30))
        return "should not finish"

    @client.create_function(fn_id="slow-child", trigger=inngest.TriggerEvent(event="test/slow"))
    async def slow_child(ctx: inngest.Context) -> str:
        await ctx.step.sleep("dawdle", dt.timedelta(seconds=5))
        return "too late"

    @client.create_function(fn_id="impatient", trigger=inngest.TriggerEvent(event="test/impatient"))
    async def impatient(ctx: inngest.Context) -> Any:
        try:
            return await ctx.step.invoke(
                "call-slow", function=slow_child, timeout=dt.timedelta(seconds=1)
            )
        except inngest.StepError as err:
            return {"name": err.name, "message": err.message}

    return [
        steps,
        sleeper,
        waiter,
        child,
        parent,
        fanout,
        flaky,
        fatal,
        doomed,
        cancellable,
        slow_child,
        impatient,
    ]


class World:
    def __init__(self, engine: EngineThread, app: AppServer, record: Record) -> None:
        self.engine, self.app, self.record = engine, app, record

    @property
    def url(self) -> str:
        return self.engine.url


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    db = Path(tmp_path_factory.mktemp("engine")) / "engine.db"
    record = Record()
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
        client = dev_client("e2e", engine.url)
        with serve_functions(client, build_functions(client, record)) as app:
            sync(app)
            yield World(engine, app, record)


def test_step_sequence_runs_each_step_once_and_completes_with_output(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/steps", "data": {"n": 7}})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"sum": 6, "input": 7}
    assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]
    assert all(s["status"] == "Completed" for s in run["steps"])
    assert [s["output"] for s in run["steps"]] == [1, 2, 3]
    for name in "abc":
        assert world.record.calls[f"{run['run_id']}:{name}"] == 1
    kinds = [h["type"] for h in run["history"]]
    assert kinds[:2] == ["queued", "started"]
    assert kinds[-1] == "completed"


def test_sleep_suspends_the_run_and_memoizes_null(world: World) -> None:
    started = time.monotonic()
    (event_id,) = send(world.url, {"name": "test/sleep"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == "awake"
    assert time.monotonic() - started >= 0.9
    nap = next(s for s in run["steps"] if s["name"] == "nap")
    assert nap["op"] == "Sleep"
    assert nap["output"] is None


def test_wait_for_event_resumes_only_on_a_matching_event(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/wait", "data": {"x": 42, "timeout": 30}})
    (run,) = runs_for_event(world.url, event_id)
    wait_step(world.url, run["run_id"], "wait-reply", "Waiting")
    send(world.url, {"name": "test/wait.reply", "data": {"x": 41, "msg": "wrong"}})
    send(world.url, {"name": "test/wait.reply", "data": {"x": 42, "msg": "right"}})
    done = wait_run(world.url, run["run_id"])
    assert done["status"] == "Completed"
    assert done["output"] == {"x": 42, "msg": "right"}


def test_wait_for_event_times_out_with_null(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/wait", "data": {"x": 1, "timeout": 1}})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] is None


def test_invoke_returns_the_child_result(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/parent", "data": {"value": 21}})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == 42
    step = next(s for s in run["steps"] if s["name"] == "call-child")
    assert step["op"] == "InvokeFunction"
    assert step["output"] == 42


def test_invoke_of_a_failing_child_raises_in_the_parent(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/parent", "data": {"value": 1, "fail": True}})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == {"caught": "child refuses"}


def test_invoke_times_out_with_an_invoke_timeout_error(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/impatient"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == {
        "name": "InngestInvokeTimeoutError",
        "message": "Timed out waiting for invoked function to complete",
    }


def test_parallel_steps_fan_out_and_join_once(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/parallel"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == "p1+p2+p3"
    for name in ("p1", "p2", "p3"):
        assert world.record.calls[f"{run['run_id']}:{name}"] == 1
    assert sorted(s["name"] for s in run["steps"]) == ["join", "p1", "p2", "p3"]


def test_a_step_failing_twice_is_retried_then_succeeds(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/flaky"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == "finally"
    assert world.record.calls[f"{run['run_id']}:flaky"] == 3
    (step,) = run["steps"]
    assert step["attempts"] == 3
    retries = [h for h in run["history"] if h["type"] == "retry_scheduled"]
    assert len(retries) == 2
    assert "not yet" in retries[0]["reason"]


def test_non_retriable_error_fails_the_run_after_one_attempt(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/fatal"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Failed"
    assert run["error"]["message"] == "do not retry me"
    assert world.record.calls[f"{run['run_id']}:fatal"] == 1


def test_on_failure_handler_runs_after_retries_are_exhausted(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/doomed"})
    run = run_for_event(world.url, event_id)
    assert run["status"] == "Failed"
    assert run["error"]["message"] == "always broken"
    failures = poll(
        lambda: [f for f in world.record.failures if f.get("run_id") == run["run_id"]],
        bool,
        what="the on_failure handler",
    )
    assert failures[0]["function_id"] == "e2e-doomed"
    assert failures[0]["error"]["message"] == "always broken"
    assert failures[0]["event"]["name"] == "test/doomed"


def test_cancel_event_matching_the_condition_cancels_the_run(world: World) -> None:
    ids = send(
        world.url,
        [
            {"name": "test/cancellable", "data": {"id": "A"}},
            {"name": "test/cancellable", "data": {"id": "B"}},
        ],
    )
    run_a, run_b = (runs_for_event(world.url, i)[0] for i in ids)
    for run in (run_a, run_b):
        wait_step(world.url, run["run_id"], "long-nap", "Sleeping")
    send(world.url, {"name": "test/cancel.stop", "data": {"id": "A"}})
    done = wait_run(world.url, run_a["run_id"])
    assert done["status"] == "Cancelled"
    assert "test/cancel.stop" in done["history"][-1]["reason"]
    assert get_run(world.url, run_b["run_id"])["status"] == "Running"
    response = httpx.delete(f"{world.url}/v1/runs/{run_b['run_id']}")
    assert response.status_code == 200
    assert wait_run(world.url, run_b["run_id"])["status"] == "Cancelled"


def test_event_id_idempotency_starts_one_run_per_id(world: World) -> None:
    event: dict[str, Any] = {
        "name": "test/steps",
        "id": f"dedupe-{time.time_ns()}",
        "data": {"n": 1},
    }
    assert send(world.url, event) == [event["id"]]
    assert send(world.url, [event, event]) == [event["id"], event["id"]]
    run = run_for_event(world.url, event["id"])
    assert run["status"] == "Completed"
    time.sleep(0.3)
    assert len(runs_for_event(world.url, event["id"])) == 1


def test_large_payload_api_returns_events_and_memoized_steps(world: World) -> None:
    (event_id,) = send(world.url, {"name": "test/steps", "data": {"n": 3}})
    run = run_for_event(world.url, event_id)
    batch = httpx.get(f"{world.url}/v0/runs/{run['run_id']}/batch").json()
    assert [e["id"] for e in batch] == [event_id]
    actions = httpx.get(f"{world.url}/v0/runs/{run['run_id']}/actions").json()
    assert sorted(v["data"] for v in actions.values()) == [1, 2, 3]
    missing = httpx.get(f"{world.url}/v0/runs/nope/actions")
    assert missing.status_code == 410
    assert "runtime state is no longer available for runID: nope" in missing.text
