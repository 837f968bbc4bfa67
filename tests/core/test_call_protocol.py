"""Every call-request response the protocol defines, over real HTTP, for async and sync functions."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from core.apps import build
from inngest_mw_asgi import serve
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw.memo import hash_step_id

KEY = "signkey-test-8ee2262a15e8d3c7ef8a9b2b2bdad5c4e15d4bb9e0fcd9c1a7ebdd3c0c2f6e43"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    client = inngest_mw.Inngest(app_id="app", is_production=False)
    with serve_asgi(serve(client, build(client))) as base:
        yield base + "/api/inngest"


@pytest.fixture
def caller(url: str) -> Caller:
    return Caller(url)


def assert_sdk_headers(res: httpx.Response) -> None:
    assert res.headers["x-inngest-sdk"] == f"inngest-mw:v{inngest_mw.__version__}"
    assert res.headers["x-inngest-req-version"] == "2"


def test_discovery_runs_the_first_new_step_immediately(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-two-steps{variant}", call_body())
    assert res.status_code == 206
    assert_sdk_headers(res)
    assert res.json() == [
        {
            "id": hash_step_id("a"),
            "op": "StepRun",
            "name": "a",
            "displayName": "a",
            "userland": {"id": "a", "index": 0},
            "data": 2,
        }
    ]


def test_memoized_step_feeds_the_next_new_step(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-two-steps{variant}", call_body(steps={hash_step_id("a"): {"data": 7}}))
    assert res.status_code == 206
    [op] = res.json()
    assert (op["op"], op["id"], op["data"]) == ("StepRun", hash_step_id("b"), 70)


def test_function_returns_200_with_its_value_once_all_steps_are_memoized(
    caller: Caller, variant: str
) -> None:
    steps = {hash_step_id("a"): {"data": 2}, hash_step_id("b"): {"data": 20}}
    res = caller.call(f"app-two-steps{variant}", call_body(steps=steps))
    assert res.status_code == 200
    assert_sdk_headers(res)
    assert res.json() == {"a": 2, "b": 20}


def test_run_driven_request_by_request_completes(caller: Caller, variant: str) -> None:
    res, trace = caller.run_to_completion(f"app-two-steps{variant}")
    assert res.status_code == 200
    assert res.json() == {"a": 2, "b": 20}
    assert trace == ["StepRun:a", "StepRun:b"]


def test_disable_immediate_execution_plans_instead_of_running(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-two-steps{variant}", call_body(disable_immediate=True))
    [op] = res.json()
    assert (res.status_code, op["op"], op["id"]) == (206, "StepPlanned", hash_step_id("a"))
    assert "data" not in op


def test_sleep_wait_and_invoke_report_their_opcodes(caller: Caller, variant: str) -> None:
    fn = f"app-waits{variant}"
    [sleep] = caller.call(fn, call_body()).json()
    assert (sleep["op"], sleep["name"], sleep["id"]) == ("Sleep", "1m30s", hash_step_id("nap"))
    steps: dict[str, object] = {hash_step_id("nap"): None}
    [wait] = caller.call(fn, call_body(steps=steps)).json()
    assert wait["op"] == "WaitForEvent"
    assert wait["name"] == "test/reply"
    assert wait["opts"] == {
        "event": "test/reply",
        "if": "async.data.x == event.data.x",
        "timeout": "1h",
    }
    steps[hash_step_id("wait")] = {
        "name": "test/reply",
        "data": {"x": 1, "ok": True},
        "id": "e2",
        "ts": 1,
    }
    [invoke] = caller.call(fn, call_body(steps=steps)).json()
    assert invoke["op"] == "InvokeFunction"
    assert invoke["opts"] == {
        "function_id": "app-two-steps",
        "payload": {"data": {"x": 5}},
        "timeout": "10m",
    }
    steps[hash_step_id("call")] = {"data": {"a": 6, "b": 60}}
    res = caller.call(fn, call_body(steps=steps))
    assert (res.status_code, res.json()) == (
        200,
        {"got": {"x": 1, "ok": True}, "res": {"a": 6, "b": 60}},
    )


def test_wait_timeout_memo_is_none(caller: Caller, variant: str) -> None:
    steps = {
        hash_step_id("nap"): None,
        hash_step_id("wait"): None,
        hash_step_id("call"): {"data": 1},
    }
    res = caller.call(f"app-waits{variant}", call_body(steps=steps))
    assert res.json() == {"got": None, "res": 1}


def test_invoke_error_memo_raises_step_error_and_fails_non_retriably(
    caller: Caller, variant: str
) -> None:
    error = {"name": "InngestInvokeTimeoutError", "message": "timed out", "stack": ""}
    steps = {
        hash_step_id("nap"): None,
        hash_step_id("wait"): None,
        hash_step_id("call"): {"error": error},
    }
    res = caller.call(f"app-waits{variant}", call_body(steps=steps))
    assert res.status_code == 400
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json()["name"] == "InngestInvokeTimeoutError"
    assert res.json()["message"] == "timed out"


def test_parallel_steps_are_planned_together_then_targeted(caller: Caller, variant: str) -> None:
    fn = f"app-parallel{variant}"
    res = caller.call(fn, call_body())
    assert res.status_code == 206
    assert [(op["op"], op["id"]) for op in res.json()] == [
        ("StepPlanned", hash_step_id("p1")),
        ("StepPlanned", hash_step_id("p2")),
    ]
    res = caller.call(fn, call_body(disable_immediate=True), step_id=hash_step_id("p2"))
    [op] = res.json()
    assert (op["op"], op["id"], op["data"]) == ("StepRun", hash_step_id("p2"), 2)
    steps = {hash_step_id("p2"): {"data": 2}, hash_step_id("p1"): {"data": 1}}
    assert caller.call(fn, call_body(steps=steps)).json() == [1, 2]


def test_step_error_is_retriable_before_the_final_attempt(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-step-fails{variant}", call_body(attempt=1, max_attempts=4))
    assert res.status_code == 206
    assert res.headers["x-inngest-no-retry"] == "false"
    [op] = res.json()
    assert op["op"] == "StepError"
    assert op["error"]["name"] == "ValueError"
    assert op["error"]["message"] == "card declined"
    assert "card declined" in op["error"]["stack"]


def test_step_failure_on_the_final_attempt_is_step_failed(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-step-fails{variant}", call_body(attempt=3, max_attempts=4))
    [op] = res.json()
    assert (res.status_code, op["op"]) == (206, "StepFailed")


def test_a_memoized_step_failure_can_be_caught_by_user_code(caller: Caller, variant: str) -> None:
    error = {"name": "ValueError", "message": "card declined", "stack": "..."}
    res = caller.call(
        f"app-catches{variant}", call_body(steps={hash_step_id("charge"): {"error": error}})
    )
    assert (res.status_code, res.json()) == (200, {"caught": "card declined", "name": "ValueError"})


def test_uncaught_memoized_step_failure_fails_the_run_without_retry(
    caller: Caller, variant: str
) -> None:
    error = {"name": "ValueError", "message": "card declined", "stack": "..."}
    res = caller.call(
        f"app-step-fails{variant}", call_body(steps={hash_step_id("charge"): {"error": error}})
    )
    assert res.status_code == 400
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json()["message"] == "card declined"


def test_non_retriable_error_is_400_no_retry(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-non-retriable{variant}", call_body())
    assert res.status_code == 400
    assert_sdk_headers(res)
    assert res.headers["x-inngest-no-retry"] == "true"
    body = res.json()
    assert (body["name"], body["message"]) == ("NonRetriableError", "invalid input")
    assert isinstance(body["stack"], str)


def test_uncaught_exception_is_500_retriable(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-crashes{variant}", call_body())
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    assert res.json()["name"] == "RuntimeError"


def test_retry_after_error_sets_retry_after_seconds(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-retry-after{variant}", call_body())
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    assert 29 <= int(res.headers["retry-after"]) <= 30


def test_repeated_step_ids_get_suffixed_hashes(caller: Caller, variant: str) -> None:
    res, _trace = caller.run_to_completion(f"app-repeated{variant}")
    assert res.json() == [0, 1, 2]
    ids = [hash_step_id("same"), hash_step_id("same:1"), hash_step_id("same:2")]
    steps = {h: {"data": i} for i, h in enumerate(ids)}
    assert caller.call(f"app-repeated{variant}", call_body(steps=steps)).json() == [0, 1, 2]


def test_targeting_an_unknown_step_answers_step_not_found(caller: Caller, variant: str) -> None:
    res = caller.call(f"app-two-steps{variant}", call_body(), step_id="0" * 40)
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    assert res.json()["requestedStep"] == "0" * 40


def test_unknown_function_is_500_with_a_message(caller: Caller) -> None:
    res = caller.call("app-nope", call_body())
    assert res.status_code == 500
    assert "app-nope" in res.json()["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"event": 5}',
        b'{"event": {"name": ""}}',
        b'{"event": {"name": "x"}, "steps": []}',
    ],
)
def test_malformed_body_is_400_with_a_message(url: str, body: bytes) -> None:
    res = httpx.post(url, params={"fnId": "app-two-steps"}, content=body)
    assert res.status_code == 400
    assert res.headers["x-inngest-no-retry"] == "true"
    assert res.json()["message"]


def test_missing_fn_id_is_400(url: str) -> None:
    res = httpx.post(url, content=b"{}")
    assert (res.status_code, res.json()["message"]) == (400, "missing fnId query parameter")


def test_wrong_method_is_405(url: str) -> None:
    res = httpx.delete(url)
    assert res.status_code == 405
    assert_sdk_headers(res)
    assert "DELETE" in res.json()["message"]


def test_trust_probe_answers_200(url: str) -> None:
    res = httpx.post(url, params={"probe": "trust"})
    assert (res.status_code, res.json()) == (200, None)


def test_dev_mode_introspection_is_unauthenticated(url: str) -> None:
    body = httpx.get(url).json()
    assert body == {
        "schema_version": "2024-05-24",
        "authentication_succeeded": None,
        "function_count": 18,
        "has_event_key": False,
        "has_signing_key": False,
        "has_signing_key_fallback": False,
        "mode": "dev",
    }


def test_step_output_over_4_mib_fails_the_step_for_good() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)

    @client.create_function(fn_id="huge", trigger=inngest_mw.TriggerEvent(event="e/x"))
    async def huge(ctx: inngest_mw.Context) -> object:
        return await ctx.step.run("blob", lambda: "x" * (4 * 1024 * 1024 + 1))

    with serve_asgi(serve(client, [huge])) as base:
        res = Caller(base + "/api/inngest").call("app-huge", call_body())
    [op] = res.json()
    assert (res.status_code, op["op"], res.headers["x-inngest-no-retry"]) == (
        206,
        "StepFailed",
        "true",
    )
    assert "limit is 4194304" in op["error"]["message"]
    assert "data" not in op
