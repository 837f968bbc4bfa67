"""``ctx.metadata``: the wire form of in-band updates (``metadata`` on the step's op, the server's
``ScopedUpdate``: scope, kind, op, values) over real HTTP, and where each update goes (in-band or
the API) for async and sync functions, through the testing toolkit, which records both."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from inngest_mw_asgi import serve
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, MetadataError, TriggerEvent
from inngest_mw.memo import hash_step_id
from inngest_mw.testing import run_sync

TRIGGER = TriggerEvent(event="test/event")


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="meta", trigger=TRIGGER, retries=0)
    async def meta(ctx: Context) -> Any:
        await ctx.metadata.update({"phase": "body"}, kind="progress")

        async def work() -> int:
            await ctx.metadata.update({"n": 1}, kind="counter", op="add")
            await ctx.metadata.run().update({"phase": "in-step"}, kind="progress")
            await ctx.metadata.step("other", 2).update({"seen": True})
            return 1

        value = await ctx.step.run("work", work)
        try:
            await ctx.metadata.step().update({"x": 1})
        except MetadataError as exc:
            return {"value": value, "refused": str(exc)}
        return value

    @create(fn_id="meta-sync", trigger=TRIGGER, retries=0)
    def meta_sync(ctx: ContextSync) -> Any:
        ctx.metadata.update({"phase": "body"}, kind="progress")

        def work() -> int:
            ctx.metadata.update({"n": 1}, kind="counter", op="add")
            ctx.metadata.run().update({"phase": "in-step"}, kind="progress")
            ctx.metadata.step("other", 2).update({"seen": True})
            return 1

        value = ctx.step.run("work", work)
        try:
            ctx.metadata.step().update({"x": 1})
        except MetadataError as exc:
            return {"value": value, "refused": str(exc)}
        return value

    @create(fn_id="wire", trigger=TRIGGER)
    async def wire(ctx: Context) -> Any:
        async def work() -> int:
            await ctx.metadata.update({"n": 1}, kind="counter", op="add")
            await ctx.metadata.run().update({"phase": "in-step"}, kind="progress")
            return 1

        return await ctx.step.run("work", work)

    @create(fn_id="wire-sync", trigger=TRIGGER)
    def wire_sync(ctx: ContextSync) -> Any:
        def work() -> int:
            ctx.metadata.update({"n": 1}, kind="counter", op="add")
            ctx.metadata.run().update({"phase": "in-step"}, kind="progress")
            return 1

        return ctx.step.run("work", work)

    return [meta, meta_sync, wire, wire_sync]


@pytest.fixture(scope="module")
def client() -> inngest_mw.Inngest:
    return inngest_mw.Inngest(app_id="app", is_production=False, checkpointing=False)


@pytest.fixture(scope="module")
def caller(client: inngest_mw.Inngest) -> Iterator[Caller]:
    with serve_asgi(serve(client, _functions(client))) as base:
        yield Caller(base + "/api/inngest")


def test_updates_made_in_a_step_ride_on_its_op_as_the_server_reads_them(
    caller: Caller, variant: str
) -> None:
    res = caller.call(f"app-wire{variant}", call_body(), step_id=hash_step_id("work"))
    assert res.status_code == 206, res.text
    assert res.json() == [
        {
            "id": hash_step_id("work"),
            "op": "StepRun",
            "name": "work",
            "displayName": "work",
            "userland": {"id": "work", "index": 0},
            "data": 1,
            "metadata": [
                {"scope": "step", "kind": "userland.counter", "op": "add", "values": {"n": 1}},
                {
                    "scope": "run",
                    "kind": "userland.progress",
                    "op": "merge",
                    "values": {"phase": "in-step"},
                },
            ],
        },
    ]
    # Replayed, the step makes no updates: they were recorded once, with it.
    done = caller.call(f"app-wire{variant}", call_body(steps={hash_step_id("work"): {"data": 1}}))
    assert (done.status_code, done.json()) == (200, 1)


@pytest.mark.parametrize("fn_index", [0, 1], ids=["async", "sync"])
def test_the_toolkit_records_where_each_update_goes(
    client: inngest_mw.Inngest, fn_index: int
) -> None:
    fn = _functions(client)[fn_index]
    result = run_sync(fn, event={"name": "test/event", "data": {}})
    assert result.output == {
        "value": 1,
        "refused": "metadata step() without an ID needs a running step: call it inside a "
        "step.run handler, or name the step",
    }
    run_id = "01TESTRUN0000000000000000"
    body = {
        "via": "api",
        "run_id": run_id,
        "target": {},
        "scope": "run",
        "kind": "userland.progress",
        "op": "merge",
        "values": {"phase": "body"},
    }
    other = {
        "via": "api",
        "run_id": run_id,
        "target": {"step_id": "other", "step_index": 2},
        "scope": "step",
        "kind": "userland.default",
        "op": "merge",
        "values": {"seen": True},
    }
    in_step = [
        {
            "via": "op",
            "run_id": run_id,
            "step": "work",
            "scope": "step",
            "kind": "userland.counter",
            "op": "add",
            "values": {"n": 1},
        },
        {
            "via": "op",
            "run_id": run_id,
            "step": "work",
            "scope": "run",
            "kind": "userland.progress",
            "op": "merge",
            "values": {"phase": "in-step"},
        },
    ]
    # Request 1: the body's update, then the step (its API update to another step as it runs,
    # its in-band ones on its op); request 2 replays the body, so its update is sent again.
    assert result.metadata == [body, other, *in_step, body]
