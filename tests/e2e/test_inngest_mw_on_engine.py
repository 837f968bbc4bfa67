"""End-to-end: apps written with inngest-mw, served by uvicorn, driven by the embedded engine."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from engine_support import (
    AppServer,
    FakeClock,
    get_json,
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

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

ROOT = Path(__file__).resolve().parents[2]


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.failures: list[dict[str, Any]] = []

    def hit(self, key: str) -> int:
        with self.lock:
            self.calls[key] += 1
            return self.calls[key]


def build(client: inngest_mw.Inngest, record: Record) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="steps", trigger=TriggerEvent(event="t/steps"))
    async def steps(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: record.hit(f"{ctx.run_id}:a") and 1)
        b = await ctx.step.run("b", lambda: record.hit(f"{ctx.run_id}:b") and a + 1)
        await ctx.step.sleep("nap", "1s")
        return {"sum": a + b}

    @create(fn_id="steps-sync", trigger=TriggerEvent(event="t/steps-sync"))
    def steps_sync(ctx: ContextSync) -> Any:
        a = ctx.step.run("a", lambda: record.hit(f"{ctx.run_id}:a") and 1)
        ctx.step.sleep("nap", "1s")
        return {"a": a}

    @create(fn_id="waiter", trigger=TriggerEvent(event="t/wait"))
    async def waiter(ctx: Context) -> Any:
        got = await ctx.step.wait_for_event(
            "reply",
            event="t/wait.reply",
            if_exp="event.data.x == async.data.x",
            timeout=ctx.event.data["timeout"],
        )
        return None if got is None else got.data

    @create(fn_id="child", trigger=TriggerEvent(event="t/child"))
    def child(ctx: ContextSync) -> Any:
        if ctx.event.data.get("fail"):
            raise inngest_mw.NonRetriableError("child refuses")
        return ctx.step.run("double", lambda: ctx.event.data["value"] * 2)

    @create(fn_id="parent", trigger=TriggerEvent(event="t/parent"))
    async def parent(ctx: Context) -> Any:
        try:
            return await ctx.step.invoke("call", function=child, data=ctx.event.data, timeout="30s")
        except inngest_mw.StepError as exc:
            return {"child_failed": exc.message}

    @create(fn_id="fanout", trigger=TriggerEvent(event="t/parallel"))
    async def fanout(ctx: Context) -> Any:
        return await ctx.group.parallel(
            tuple(
                # a lambda whose only parameter has a default is a zero-argument callable
                cast(
                    Callable[[], Awaitable[int]],
                    lambda i=i: ctx.step.run(
                        f"p{i}", lambda: record.hit(f"{ctx.run_id}:p{i}") and i
                    ),
                )
                for i in range(3)
            )
        )

    @create(fn_id="flaky", trigger=TriggerEvent(event="t/flaky"), retries=3)
    async def flaky(ctx: Context) -> Any:
        def attempt() -> str:
            if record.hit(f"{ctx.run_id}:flaky") < 3:
                raise RuntimeError("not yet")
            return "third time lucky"

        return await ctx.step.run("try", attempt)

    async def on_failure(ctx: Context) -> None:
        record.failures.append(dict(ctx.event.data))

    @create(fn_id="doomed", trigger=TriggerEvent(event="t/doomed"), on_failure=on_failure)
    async def doomed(ctx: Context) -> Any:
        await ctx.step.run("s", lambda: 1)
        raise inngest_mw.NonRetriableError("bad order")

    @create(
        fn_id="cancellable",
        trigger=TriggerEvent(event="t/cancellable"),
        cancel=inngest_mw.Cancel(event="t/cancel", if_exp="event.data.id == async.data.id"),
    )
    async def cancellable(ctx: Context) -> Any:
        await ctx.step.sleep("long", "1h")
        return "not reached"

    return [steps, steps_sync, waiter, child, parent, fanout, flaky, doomed, cancellable]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Record]]:
    record = Record()
    db = tmp_path_factory.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="mw", is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
        )
        with AppServer(serve(client, build(client, record))) as app:
            sync(app)
            yield engine.url, record


@pytest.mark.parametrize("name", ["t/steps", "t/steps-sync"])
def test_steps_and_sleep_complete_with_each_side_effect_once(
    env: tuple[str, Record], name: str
) -> None:
    url, record = env
    [event_id] = send(url, {"name": name, "data": {}})
    run = run_for_event(url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] in ({"sum": 3}, {"a": 1})
    assert record.calls[f"{run['run_id']}:a"] == 1
    assert [s["op"] for s in run["steps"]][-1] == "Sleep"


def test_wait_for_event_is_resumed_by_a_matching_event(env: tuple[str, Record]) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "t/wait", "data": {"x": 7, "timeout": "30s"}})
    [run] = runs_for_event(url, event_id)
    wait_step(url, run["run_id"], "reply", "Waiting")
    send(
        url,
        [
            {"name": "t/wait.reply", "data": {"x": 8}},
            {"name": "t/wait.reply", "data": {"x": 7, "ok": True}},
        ],
    )
    assert wait_run(url, run["run_id"])["output"] == {"x": 7, "ok": True}


def test_wait_for_event_times_out_to_none(env: tuple[str, Record]) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "t/wait", "data": {"x": 1, "timeout": "1s"}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", None)


@pytest.mark.parametrize(
    ("data", "expected"), [({"value": 21}, 42), ({"fail": True}, {"child_failed": "child refuses"})]
)
def test_invoke_returns_the_child_result_or_its_error(
    env: tuple[str, Record], data: dict[str, Any], expected: Any
) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "t/parent", "data": data})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", expected)


def test_parallel_steps_each_run_once_and_join(env: tuple[str, Record]) -> None:
    url, record = env
    [event_id] = send(url, {"name": "t/parallel", "data": {}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", [0, 1, 2])
    assert [record.calls[f"{run['run_id']}:p{i}"] for i in range(3)] == [1, 1, 1]


def test_step_retries_then_succeeds(env: tuple[str, Record]) -> None:
    url, record = env
    [event_id] = send(url, {"name": "t/flaky", "data": {}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", "third time lucky")
    assert record.calls[f"{run['run_id']}:flaky"] == 3


def test_non_retriable_failure_fails_the_run_and_runs_on_failure(env: tuple[str, Record]) -> None:
    url, record = env
    [event_id] = send(url, {"name": "t/doomed", "data": {"order": 9}})
    run = run_for_event(url, event_id)
    assert run["status"] == "Failed"
    assert "bad order" in str(run["error"])
    poll(lambda: list(record.failures), bool, what="the on_failure handler to run")
    [failure] = record.failures
    assert failure["function_id"] == "mw-doomed"
    assert failure["run_id"] == run["run_id"]


def test_cancel_event_cancels_a_sleeping_run(env: tuple[str, Record]) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "t/cancellable", "data": {"id": "c-1"}})
    [run] = runs_for_event(url, event_id)
    wait_step(url, run["run_id"], "long", "Sleeping")
    send(url, {"name": "t/cancel", "data": {"id": "c-1"}})
    assert wait_run(url, run["run_id"])["status"] == "Cancelled"


def test_readme_demo_command_completes_a_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "inngest_mw_dev", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    checkout, _, follow_on = result.stdout.partition("\nfollow-on run: ")
    assert "shop-checkout  Completed" in checkout
    lines = checkout.splitlines()
    header = lines.index("steps:") + 1
    assert lines[header] == (
        "  STEP                        KIND            STATUS     ATTEMPTS  DURATION  OUTPUT OR ERROR"
    )
    assert lines[header + 3].startswith(
        "  cool-off                    Sleep           Completed         1"
    )
    [event_line] = [line for line in lines if line.startswith("  event ")]
    assert re.search(r"  ended \S+ \S+  took (\d+ms|\d+\.\d\ds)$", event_line), event_line
    sent = re.search(r'  order-completed .*\["(\w+)"\]$', checkout, re.MULTILINE)
    assert sent is not None, checkout
    assert follow_on.startswith(
        f"step order-completed sent shop/order.completed (event {sent.group(1)}), which started"
        " shop-thank-you\n"
    )
    assert "  shop-thank-you  Completed\n" in follow_on
    assert '\noutput: "thanks for order A-1001"\n' in follow_on


def test_event_id_starts_one_run_per_id(env: tuple[str, Record]) -> None:
    url, _ = env
    event = {"name": "t/steps", "id": "dedupe-once", "data": {}}
    [first] = send(url, event)
    [second] = send(url, event)
    assert first == second
    run = run_for_event(url, first)
    assert run["status"] == "Completed"
    assert len(runs_for_event(url, first)) == 1


def test_cron_function_fires_when_due(tmp_path: Path) -> None:
    clock = FakeClock()
    with EngineThread(tmp_path / "cron.db", port=0, clock=clock, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="crons",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="tick", trigger=inngest_mw.TriggerCron(cron="* * * * *"))
        def tick(ctx: ContextSync) -> Any:
            return ctx.step.run("read", lambda: ctx.event.data.get("cron"))

        with AppServer(serve(client, [tick])) as app:
            sync(app)

            def cron_runs() -> list[dict[str, Any]]:
                runs: list[dict[str, Any]] = get_json(f"{engine.url}/v1/runs?limit=50")["data"]
                return [r for r in runs if r["function_id"] == "crons-tick"]

            assert cron_runs() == []
            clock.offset += 61
            [run] = poll(cron_runs, lambda r: len(r) == 1, what="a cron run")
            done = wait_run(engine.url, run["run_id"])
            assert (done["status"], done["output"]) == ("Completed", "* * * * *")
