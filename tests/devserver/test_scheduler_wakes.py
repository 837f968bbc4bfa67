"""The scheduler moves a run on when something happens, never on its timer alone.

The engine here has a scheduler timer of an hour, so anything that waited for it would never
happen within the test. An event must still start its run and the run reach its end: the tick
that takes an event leases the first call of the runs it starts, an answer queues the next call
in the tick that applies it, and an invoke or a sent event starts its run the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_support import AppServer, run_for_event, runs_for_event, send, wait_run
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

HOUR = 3600.0


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="child", trigger=TriggerEvent(event="wake/child"))
    async def child(ctx: Context) -> int:
        return int(ctx.event.data["n"]) * 10

    @client.create_function(fn_id="steps", trigger=TriggerEvent(event="wake/start"))
    async def steps(ctx: Context) -> int:
        first = await ctx.step.run("first", lambda: 1)
        second = await ctx.step.run("second", lambda: first + 1)
        called = await ctx.step.invoke("call", function=child, data={"n": second})
        await ctx.step.send_event("tell", inngest_mw.Event(name="wake/told", data={"v": called}))
        return int(called)

    @client.create_function(fn_id="steps-sync", trigger=TriggerEvent(event="wake/start"))
    def steps_sync(ctx: ContextSync) -> int:
        first = ctx.step.run("first", lambda: 2)
        return int(ctx.step.invoke("call", function=child, data={"n": first}))

    @client.create_function(fn_id="told", trigger=TriggerEvent(event="wake/told"))
    async def told(ctx: Context) -> Any:
        return ctx.event.data["v"]

    return [child, steps, steps_sync, told]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(tmp_path / "engine.db", port=0, tick=HOUR) as engine:
        client = inngest_mw.Inngest(
            app_id="wake",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with AppServer(serve(client, _functions(client))) as app:
            assert httpx.put(app.url, timeout=10).status_code == 200
            yield engine


def test_runs_start_and_finish_without_the_scheduler_timer(engine: EngineThread) -> None:
    [event_id] = send(engine.url, {"name": "wake/start", "data": {}})
    runs = {r["function_id"]: r for r in runs_for_event(engine.url, event_id, count=2)}
    done = {fn: wait_run(engine.url, r["run_id"]) for fn, r in runs.items()}
    assert {fn: (r["status"], r["output"]) for fn, r in done.items()} == {
        "wake-steps": ("Completed", 20),
        "wake-steps-sync": ("Completed", 20),
    }
    [told] = [s for s in done["wake-steps"]["steps"] if s["name"] == "tell"]
    [sent_id] = told["output"]
    assert run_for_event(engine.url, sent_id)["output"] == 20
