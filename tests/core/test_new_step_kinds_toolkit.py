"""The newer step kinds in the testing toolkit, through every step hook, for both colours."""

from __future__ import annotations

from typing import Any

import pytest

import inngest_mw
from inngest_mw import (
    Context,
    ContextSync,
    FetchResponse,
    MiddlewareSync,
    Signal,
    StepInfo,
    StepKind,
    TriggerEvent,
    ai,
)
from inngest_mw.testing import TIMEOUT, UnmockedStepError, run_sync

MODEL = ai.openai("gpt-test", api_key="sk-1")
seen: list[tuple[str, str, str]] = []


class Watch(MiddlewareSync):
    """Records which step hooks saw which step kind."""

    def transform_step_input(self, info: StepInfo) -> None:
        seen.append(("transform_step_input", info.id, info.kind))

    def on_step_start(self, info: StepInfo) -> None:
        seen.append(("on_step_start", info.id, info.kind))

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        seen.append(("on_step_complete", info.id, info.kind))


client = inngest_mw.Inngest(app_id="kinds", is_production=False, middleware=[Watch])


@client.create_function(fn_id="all-async", trigger=TriggerEvent(event="k/all"))
async def all_async(ctx: Context) -> Any:
    page = await ctx.step.fetch("page", "https://example.com")
    answer = await ctx.step.ai.infer("ask", model=MODEL, body={"messages": []})
    shout = await ctx.step.ai.wrap("shout", str.upper, "hi")
    got = await ctx.step.wait_for_signal("approve", signal="s-1", timeout="1h")
    return [page.status, answer, shout, None if got is None else got.data]


@client.create_function(fn_id="all-sync", trigger=TriggerEvent(event="k/all"))
def all_sync(ctx: ContextSync) -> Any:
    page = ctx.step.fetch("page", "https://example.com")
    answer = ctx.step.ai.infer("ask", model=MODEL, body={"messages": []})
    shout = ctx.step.ai.wrap("shout", str.upper, "hi")
    got = ctx.step.wait_for_signal("approve", signal="s-1", timeout="1h")
    return [page.status, answer, shout, None if got is None else got.data]


MOCKS: dict[str, object] = {
    "page": FetchResponse(204, {}, "", "https://example.com"),
    "ask": {"choices": []},
    "approve": {"by": "ana"},
}


@pytest.mark.parametrize("fn", [all_async, all_sync], ids=["async", "sync"])
def test_each_new_kind_is_mocked_recorded_and_seen_by_the_step_hooks(
    fn: inngest_mw.Function[Any],
) -> None:
    seen.clear()
    result = run_sync(fn, mocks=MOCKS)
    assert result.output == [204, {"choices": []}, "HI", {"by": "ana"}]
    assert [(s.id, s.kind) for s in result.steps] == [
        ("page", StepKind.FETCH),
        ("ask", StepKind.AI_INFER),
        ("shout", StepKind.AI_WRAP),
        ("approve", StepKind.WAIT_FOR_SIGNAL),
    ]
    first_seen = {step: kind for hook, step, kind in seen if hook == "transform_step_input"}
    assert first_seen == {
        "page": "fetch",
        "ask": "ai.infer",
        "shout": "ai.wrap",
        "approve": "wait_for_signal",
    }
    # Only ai.wrap runs in the app: the others are resolved by the server, so never "start".
    assert [step for hook, step, _ in seen if hook == "on_step_start"] == ["shout"]


@pytest.mark.parametrize("fn", [all_async, all_sync], ids=["async", "sync"])
def test_a_signal_mock_may_be_a_signal_or_a_timeout(fn: inngest_mw.Function[Any]) -> None:
    got = run_sync(fn, mocks={**MOCKS, "approve": Signal("s-1", 7)})
    assert got.output[-1] == 7
    assert run_sync(fn, mocks={**MOCKS, "approve": TIMEOUT}).output[-1] is None


def test_an_unmocked_fetch_names_the_step_and_what_to_mock() -> None:
    with pytest.raises(
        UnmockedStepError, match=r"step 'page' \(fetch\) needs a mock.*FetchResponse"
    ):
        run_sync(all_sync)


def test_a_fetch_mocked_as_an_exception_fails_the_run_with_that_error() -> None:
    # The step's error reaches the function as a StepError carrying the original name.
    result = run_sync(all_sync, mocks={**MOCKS, "page": RuntimeError("no route to host")})
    assert result.error is not None
    assert (result.error["name"], result.error["message"]) == ("RuntimeError", "no route to host")
