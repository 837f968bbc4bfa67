"""Realtime in the testing toolkit: every publish is recorded and none is sent, the publish step
passes through the step hooks with its own kind, is published once per run however often the
function retries, and can be mocked like any step; for both colours."""

from __future__ import annotations

from typing import Any

import pytest

import inngest_mw
from inngest_mw import Context, ContextSync, MiddlewareSync, StepInfo, StepKind, TriggerEvent
from inngest_mw import realtime as rt
from inngest_mw.realtime import PublishedMessage
from inngest_mw.testing import run_sync

seen: list[tuple[str, str, str, dict[str, Any]]] = []
failures_left: dict[str, int] = {}


class Watch(MiddlewareSync):
    """Records which step hooks saw which step kind, and its options."""

    def transform_step_input(self, info: StepInfo) -> None:
        seen.append(("transform_step_input", info.id, info.kind, dict(info.options)))

    def on_step_start(self, info: StepInfo) -> None:
        seen.append(("on_step_start", info.id, info.kind, dict(info.options)))

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        seen.append(("on_step_complete", info.id, info.kind, dict(info.options)))


# An API nothing listens on: a publish that was sent instead of recorded would fail the run.
client = inngest_mw.Inngest(
    app_id="rt", is_production=False, api_base_url="http://127.0.0.1:9", middleware=[Watch]
)


def _fail_once(colour: str) -> None:
    if failures_left.get(colour, 0) > 0:
        failures_left[colour] -= 1
        raise RuntimeError("flaky after publishing")


@client.create_function(fn_id="rt-async", trigger=TriggerEvent(event="rt/go"), retries=2)
async def rt_async(ctx: Context) -> Any:
    sent = await ctx.step.realtime.publish("started", "order:1", "status", {"state": "started"})
    await ctx.publish("order:1", "log", "body ran")
    _fail_once("async")
    await ctx.step.run("work", lambda: None)
    await rt.publish(client, "order:1", "status", "plain client publish")
    return sent


@client.create_function(fn_id="rt-sync", trigger=TriggerEvent(event="rt/go"), retries=2)
def rt_sync(ctx: ContextSync) -> Any:
    sent = ctx.step.realtime.publish("started", "order:1", "status", {"state": "started"})
    ctx.publish("order:1", "log", "body ran")
    _fail_once("sync")
    ctx.step.run("work", lambda: None)
    rt.publish_sync(client, "order:1", "status", "plain client publish")
    return sent


FUNCTIONS = {"async": rt_async, "sync": rt_sync}
RUN_ID = "01TESTRUN0000000000000000"


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_publishes_are_recorded_not_sent_and_the_step_publishes_once_across_retries(
    colour: str,
) -> None:
    failures_left[colour] = 1
    seen.clear()
    result = run_sync(FUNCTIONS[colour], event={"name": "rt/go"})
    assert (result.error, result.output) == (None, {"state": "started"})
    assert result.attempts == 2
    step = {"channel": "order:1", "topic": "status"}
    body_ran = PublishedMessage("order:1", "log", "body ran", RUN_ID)
    # The step published once; ctx.publish, in the body, again at every request that ran the body.
    assert result.published[0] == PublishedMessage(
        "order:1", "status", {"state": "started"}, RUN_ID
    )
    assert result.published[1:-1] == [body_ran] * (len(result.published) - 2)
    assert len(result.published) >= 4  # the failed attempt's request and at least the last one
    assert result.published[-1] == PublishedMessage(
        "order:1", "status", "plain client publish", None
    )
    record = result.step("started")
    assert (record.kind, record.input, record.output, record.attempts) == (
        StepKind.REALTIME_PUBLISH,
        ["order:1", "status", {"state": "started"}],
        {"state": "started"},
        1,
    )
    hooks = [(hook, kind, opts) for hook, sid, kind, opts in seen if sid == "started"]
    assert hooks[:3] == [
        ("transform_step_input", "realtime.publish", step),
        ("on_step_start", "realtime.publish", step),
        ("on_step_complete", "realtime.publish", step),
    ]
    assert all(hook == "transform_step_input" for hook, _, _ in hooks[3:])  # replays: no run


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_a_mocked_publish_step_publishes_nothing_and_returns_the_mock(colour: str) -> None:
    result = run_sync(FUNCTIONS[colour], event={"name": "rt/go"}, mocks={"started": "mocked"})
    assert result.output == "mocked"
    assert result.step("started").mocked
    assert [m.topic for m in result.published if m.topic == "status"] == ["status"]  # client's


def test_a_publish_the_api_would_refuse_fails_in_the_toolkit_too() -> None:
    @client.create_function(fn_id="too-big", trigger=TriggerEvent(event="rt/big"), retries=0)
    def too_big(ctx: ContextSync) -> Any:
        return ctx.step.realtime.publish("big", "c", "t", "x" * (512 * 1024))

    result = run_sync(too_big, event={"name": "rt/big"})
    assert result.error is not None
    assert result.error["name"] == "RealtimeError"
    assert "the limit is 524,288 bytes" in result.error["message"]
    assert result.published == []
