"""Differential test against the official SDK (``inngest`` 0.5.x, a test-only peer).

The same functions (``core/differential_apps.py``) are served by both SDKs over real HTTP on
127.0.0.1; both receive byte-identical call requests and must answer alike: status code, opcodes,
step IDs, names, ``data``/``opts``/``error`` and the retry headers. Two kinds of allowance, both
data the test applies, never silent:

* ``NORMALIZE``: facts that are not protocol (error stacks are each SDK's own tracebacks; the
  ``Retry-After`` value is compared for presence, its format for each SDK in its own test).
* ``DIFFERENCES``: every way our answer deliberately differs from the official one, with the
  reason, as a transform from the official reply to the reply we must send. ``GLOBAL`` ones apply
  to every reply; each case names the others it expects, and the test checks that each named
  difference is still present (so the list cannot go stale).

The reasons state the Inngest server's behaviour that makes each difference safe.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from core.differential_apps import (
    APP_ID,
    BODIES,
    SLEEP,
    official_app,
    our_app,
)
from support import call_body, serve_asgi

from inngest_mw.memo import hash_step_id

Reply = dict[str, Any]
"""A response reduced to what the protocol defines: status, retry headers and JSON body."""

Transform = Callable[[Reply], Reply]

UNKNOWN_STEP = "0" * 40
"""A ``stepId`` no function has."""


# -- reducing a response ------------------------------------------------------------------------


def reply_of(res: httpx.Response) -> Reply:
    """``Retry-After`` is reduced to its presence: its format is each SDK's own (an ISO date from
    the official SDK, delta-seconds from us; the server reads both), checked separately."""
    return {
        "status": res.status_code,
        "no_retry": res.headers.get("x-inngest-no-retry"),
        "retry_after": "retry-after" in res.headers,
        "body": res.json(),
    }


def ops_of(reply: Reply) -> list[dict[str, Any]]:
    body = reply["body"]
    if reply["status"] == 206 and isinstance(body, list):
        return body
    return []


def errors_of(reply: Reply) -> list[dict[str, Any]]:
    """The serialized errors in a reply: each op's ``error``, or a function-level error body."""
    if reply["status"] == 206:
        return [op["error"] for op in ops_of(reply) if isinstance(op.get("error"), dict)]
    if reply["status"] >= 400 and isinstance(reply["body"], dict):
        return [reply["body"]]
    return []


def _drop_stacks(reply: Reply) -> Reply:
    for error in errors_of(reply):
        error.pop("stack", None)
    return reply


NORMALIZE: dict[str, tuple[str, Transform]] = {
    "error-stack": (
        "An error's stack is the traceback through each SDK's own frames; the protocol only "
        "requires name and message to match, so stacks are dropped on both sides.",
        _drop_stacks,
    ),
}


def normalized(res: httpx.Response) -> Reply:
    reply = reply_of(res)
    for _reason, transform in NORMALIZE.values():
        reply = transform(reply)
    return reply


# -- the deliberate differences -----------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    reason: str
    transform: Transform
    """Turns the official (normalized) reply into the reply we must send."""


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def _official_null_keys(reply: Reply) -> Reply:
    for op in ops_of(reply):
        if op.get("opts") is None:
            op.pop("opts", None)
        else:
            op["opts"] = _drop_nulls(op["opts"])
        if op.get("data", ...) is None and op["op"] != "StepRun":
            op.pop("data")
    return reply


def _official_error_code(reply: Reply) -> Reply:
    for error in errors_of(reply):
        error.pop("code", None)
    return reply


def _userland_index(reply: Reply) -> Reply:
    for op in ops_of(reply):
        userland = op.get("userland")
        if isinstance(userland, dict) and userland.get("index") is None:
            userland["index"] = 0
    return reply


def _explicit_no_retry(reply: Reply) -> Reply:
    step_error = any(op["op"] == "StepError" for op in ops_of(reply))
    says_retry = reply["status"] >= 400 or step_error or reply["retry_after"]
    if says_retry and reply["no_retry"] is None:
        reply["no_retry"] = "false"
    return reply


def _sleep_name_is_duration(duration: str) -> Transform:
    def transform(reply: Reply) -> Reply:
        for op in ops_of(reply):
            if op["op"] == "Sleep":
                wake = dt.datetime.fromisoformat(op["name"].replace("Z", "+00:00"))
                expected = dt.datetime.now(dt.UTC) + SLEEP
                assert abs(wake - expected) < dt.timedelta(minutes=1), op["name"]
                op["name"] = duration
        return reply

    return transform


def _wait_opts_carry_event(reply: Reply) -> Reply:
    for op in ops_of(reply):
        if op["op"] == "WaitForEvent":
            op["opts"] = {"event": op["name"], **op.get("opts", {})}
    return reply


def _timeout_written(official: str, ours: str) -> Transform:
    def transform(reply: Reply) -> Reply:
        for op in ops_of(reply):
            opts = op.get("opts") or {}
            if opts.get("timeout") == official:
                opts["timeout"] = ours
        return reply

    return transform


def _invoke_data_defaults_to_object(reply: Reply) -> Reply:
    for op in ops_of(reply):
        if op["op"] == "InvokeFunction":
            op["opts"]["payload"].setdefault("data", {})
    return reply


def _non_retriable_is_400(reply: Reply) -> Reply:
    if reply["status"] == 500 and reply["no_retry"] == "true":
        reply["status"] = 400
    return reply


def _step_failed_is_no_retry(reply: Reply) -> Reply:
    if any(op["op"] == "StepFailed" for op in ops_of(reply)):
        reply["no_retry"] = "true"
    return reply


def _kept_at_step_level(step_id: str, opcode: str, no_retry: str) -> Transform:
    """The official SDK re-raises the error out of ``step.run`` (a function-level 500); we report
    it as the step's own outcome, like any other step error."""

    def transform(reply: Reply) -> Reply:
        if reply["status"] != 500:
            return reply
        error = {"name": reply["body"]["name"], "message": reply["body"]["message"]}
        op = {
            "id": hash_step_id(step_id),
            "op": opcode,
            "name": step_id,
            "displayName": step_id,
            "userland": {"id": step_id, "index": 0},
            "error": error,
        }
        return {**reply, "status": 206, "no_retry": no_retry, "body": [op]}

    return transform


def _step_not_found_body(target: str) -> Transform:
    def transform(reply: Reply) -> Reply:
        body = reply["body"]
        if reply["status"] != 500 or body.get("name") != "StepUnexpectedError":
            return reply
        found = re.fullmatch(r'found step "(.+)" when targeting a different step', body["message"])
        assert found is not None, body
        body = {"error": ANY, "requestedStep": target, "foundSteps": [found.group(1)]}
        return {**reply, "body": body}

    return transform


def _handler_error_wording(reply: Reply) -> Reply:
    if reply["status"] >= 400 and isinstance(reply["body"], dict):
        reply["body"] = {key: ANY for key in reply["body"]}
    return reply


GLOBAL = (
    "official-null-keys",
    "official-error-code",
    "userland-index",
    "explicit-no-retry-false",
)

DIFFERENCES: dict[str, Difference] = {
    # -- applied to every reply ----------------------------------------------------------------
    "official-null-keys": Difference(
        "The official SDK puts `opts: null` and `data: null` on every op that has "
        "none, and null-valued keys inside opts (`if: null` on a wait without expression; "
        "`payload.v: null` and `timeout: null` on invoke). We omit absent values; the server "
        "treats null and absent alike. StepRun keeps `data` (null is a real step result).",
        _official_null_keys,
    ),
    "official-error-code": Difference(
        "Official error objects carry the SDK-internal `code`; ours are "
        "`{name, message, stack}` as the protocol defines.",
        _official_error_code,
    ),
    "userland-index": Difference(
        "`userland.index` is the repeat count of a step ID; the official SDK sends "
        "null for the first use, we send 0 (repeats agree: 1, 2, ...).",
        _userland_index,
    ),
    "explicit-no-retry-false": Difference(
        "The official SDK omits `x-inngest-no-retry` unless it is true; we send it on every "
        "error response and on a 206 that carries a step error or a Retry-After (MUST be "
        "true/false on error responses). Same meaning: the server retries when the header is "
        "absent or not 'true' (its retry rule).",
        _explicit_no_retry,
    ),
    # -- named by cases ----------------------------------------------------------------------------
    "sleep-name-is-duration": Difference(
        "Official Sleep `name` is the ISO-8601 wake-up time computed from the SDK "
        "host's clock; we send the duration ('1h'), as the JS SDK does, so the op does not depend "
        "on the host clock (the server reads either).",
        _sleep_name_is_duration("1h"),
    ),
    "wait-opts-carry-event": Difference(
        "We also put the event name in `opts.event` (the server prefers it and falls "
        "back to `name`); the rest of opts is equal.",
        _wait_opts_carry_event,
    ),
    "timeout-compound-format": Difference(
        "A 90 s timeout is '90s' for the official SDK (largest unit dividing evenly) and '1m30s' "
        "for us (shortest exact compound string); the server's str2duration parses both to 90 s.",
        _timeout_written("90s", "1m30s"),
    ),
    "invoke-data-defaults-to-object": Difference(
        "`invoke_by_id` without `data`: the official SDK sends `payload.data: null`, we send `{}`; "
        "the payload is an event whose `data` is an object (the invoked function's `event.data`).",
        _invoke_data_defaults_to_object,
    ),
    "non-retriable-is-400": Difference(
        "A NonRetriableError or an uncaught memoized StepError at function level: "
        "official 500 + no-retry true, ours 400 + no-retry true (4xx + no-retry "
        "for non-retriable failures, as the JS SDK answers). Retry headers are equal.",
        _non_retriable_is_400,
    ),
    "step-failed-is-no-retry": Difference(
        "StepFailed (a step's final attempt failed) carries `x-inngest-no-retry: true` from us, "
        "as from the JS SDK (final step failure is not retriable); the official SDK omits the "
        "header because a generic exception counts as retriable. The server ends the step either "
        "way (StepFailed is not retried).",
        _step_failed_is_no_retry,
    ),
    "non-retriable-in-step-fails-the-step": Difference(
        "NonRetriableError raised inside step.run: the official SDK re-raises it at "
        "function level (500, no-retry true, the run fails); we report the step as StepFailed "
        "(no retries, memoized as an error the function can catch), as the JS SDK does.",
        _kept_at_step_level("check", "StepFailed", "true"),
    ),
    "retry-after-in-step-is-a-step-error": Difference(
        "RetryAfterError raised inside step.run: the official SDK re-raises it at function level "
        "(500 + Retry-After); we report a retriable StepError with Retry-After, so only the step "
        "is retried at that time, as the JS SDK does (example).",
        _kept_at_step_level("api", "StepError", "false"),
    ),
    "step-not-found-body": Difference(
        "A targeted step that is never reached: both answer a retriable 500. The official body is "
        "its StepUnexpectedError naming the first other step found; ours is the JS SDK's "
        "step-not-found body `{error, requestedStep, foundSteps}` (StepNotFound).",
        _step_not_found_body(UNKNOWN_STEP),
    ),
    "handler-error-wording": Difference(
        "Errors raised by the serve handler itself (not by the function) are worded by each SDK; "
        "the values are not compared, but the keys are: the protocol's error body is "
        "`{name, message, stack?}`.",
        _handler_error_wording,
    ),
}


def expected_ours(official: Reply, names: tuple[str, ...]) -> tuple[Reply, set[str]]:
    """Apply the global and the named differences; also return the named ones that changed it."""
    reply = copy.deepcopy(official)
    for name in GLOBAL:
        reply = DIFFERENCES[name].transform(reply)
    present: set[str] = set()
    for name in names:
        before = copy.deepcopy(reply)
        reply = DIFFERENCES[name].transform(reply)
        if reply != before:
            present.add(name)
    return reply, present


# -- serving both SDKs ---------------------------------------------------------------------------


@dataclass
class Pair:
    """Both SDKs behind real HTTP; every request goes byte-identical to both."""

    official: str
    ours: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def post(self, fn: str, body: dict[str, Any], step_id: str) -> tuple[Reply, Reply]:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        params = {"fnId": f"{APP_ID}-{fn}", "stepId": step_id}
        headers = {"content-type": "application/json"}
        replies = [
            normalized(self.http.post(url, params=params, content=raw, headers=headers))
            for url in (self.official, self.ours)
        ]
        return replies[0], replies[1]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with serve_asgi(official_app()) as official, serve_asgi(our_app()) as ours:
        both = Pair(official + "/api/inngest", ours + "/api/inngest")
        yield both
        both.http.close()


# -- single requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    fn: str
    body: dict[str, Any]
    step_id: str = "step"
    differences: tuple[str, ...] = ()


def _err(name: str, message: str) -> dict[str, Any]:
    return {"error": {"name": name, "message": message, "stack": "Traceback ..."}}


H = hash_step_id
REPLY_EVENT = {"name": "test/reply", "data": {"x": 1, "ok": True}, "id": "01REPLY", "ts": 1}
SUM_MEMOS = {H("p1"): {"data": 1}, H("p2"): {"data": 2}}

CASES: dict[str, Case] = {
    "discovery-runs-the-first-new-step-immediately": Case("two-steps", call_body()),
    "memoized-step-feeds-the-next-new-step": Case(
        "two-steps", call_body(steps={H("a"): {"data": 7}})
    ),
    "function-returns-200-with-its-value-once-all-steps-are-memoized": Case(
        "two-steps", call_body(steps={H("a"): {"data": 2}, H("b"): {"data": 20}})
    ),
    "function-without-steps-returns-200-with-its-value": Case("returns", call_body(attempt=2)),
    "step-returning-none-reports-data-null": Case("nothing", call_body()),
    "function-returning-none-answers-200-null": Case(
        "nothing", call_body(steps={H("noop"): {"data": None}})
    ),
    "disabled-immediate-execution-plans-a-single-new-step": Case(
        "two-steps", call_body(disable_immediate=True)
    ),
    "sleep-reports-a-sleep-op": Case(
        "sleeps", call_body(), differences=("sleep-name-is-duration",)
    ),
    "memoized-sleep-resumes-the-function": Case("sleeps", call_body(steps={H("nap"): None})),
    "wait-for-event-reports-event-expression-and-timeout": Case(
        "waits", call_body(), differences=("wait-opts-carry-event",)
    ),
    "wait-without-expression-reports-an-uneven-timeout": Case(
        "waits-odd",
        call_body(),
        differences=("wait-opts-carry-event", "timeout-compound-format"),
    ),
    "wait-fulfilled-by-an-event-returns-the-event": Case(
        "waits", call_body(steps={H("wait"): REPLY_EVENT})
    ),
    "wait-timed-out-returns-none": Case("waits-odd", call_body(steps={H("wait"): None})),
    "invoke-reports-target-payload-and-timeout": Case("invokes", call_body()),
    "invoke-without-data-or-timeout": Case(
        "invokes-bare", call_body(), differences=("invoke-data-defaults-to-object",)
    ),
    "invoke-result-is-returned": Case(
        "invokes", call_body(steps={H("call"): {"data": {"a": 6, "b": 60}}})
    ),
    "invoke-failure-fails-the-run-without-retry": Case(
        "invokes",
        call_body(steps={H("call"): _err("InngestInvokeTimeoutError", "timed out")}),
        differences=("non-retriable-is-400",),
    ),
    "parallel-steps-are-planned-together": Case("parallel", call_body()),
    "targeted-step-runs-after-a-plan": Case(
        "parallel", call_body(disable_immediate=True), step_id=H("p2")
    ),
    "targeted-step-runs-when-its-sibling-is-memoized": Case(
        "parallel", call_body(steps={H("p2"): {"data": 2}}, disable_immediate=True), H("p1")
    ),
    "parallel-with-one-memoized-step-plans-the-other": Case(
        "parallel", call_body(steps={H("p1"): {"data": 1}}, disable_immediate=True)
    ),
    "step-after-parallel-is-planned-while-immediate-execution-is-disabled": Case(
        "parallel", call_body(steps=SUM_MEMOS, disable_immediate=True)
    ),
    "targeted-step-after-parallel-runs": Case(
        "parallel", call_body(steps=SUM_MEMOS, disable_immediate=True), H("sum")
    ),
    "parallel-function-returns-once-all-steps-are-memoized": Case(
        "parallel", call_body(steps={**SUM_MEMOS, H("sum"): {"data": 3}})
    ),
    "step-error-on-the-first-attempt-is-retriable": Case("step-fails", call_body(attempt=0)),
    "step-error-on-a-middle-attempt-is-retriable": Case("step-fails", call_body(attempt=1)),
    "step-failure-on-the-final-attempt-is-step-failed": Case(
        "step-fails", call_body(attempt=3, max_attempts=4), differences=("step-failed-is-no-retry",)
    ),
    "uncaught-memoized-step-error-fails-the-run-without-retry": Case(
        "step-fails",
        call_body(steps={H("charge"): _err("ValueError", "card declined")}),
        differences=("non-retriable-is-400",),
    ),
    "memoized-step-error-can-be-caught-by-user-code": Case(
        "catches", call_body(steps={H("charge"): _err("ValueError", "card declined")})
    ),
    "non-retriable-error-fails-the-run-without-retry": Case(
        "non-retriable", call_body(), differences=("non-retriable-is-400",)
    ),
    "non-retriable-error-inside-a-step": Case(
        "non-retriable-in-step",
        call_body(),
        differences=("non-retriable-in-step-fails-the-step",),
    ),
    "retry-after-error-inside-a-step": Case(
        "retry-after-in-step",
        call_body(),
        differences=("retry-after-in-step-is-a-step-error",),
    ),
    "uncaught-exception-is-a-retriable-500": Case("crashes", call_body()),
    "targeting-an-unknown-step-is-a-retriable-500": Case(
        "two-steps", call_body(), UNKNOWN_STEP, differences=("step-not-found-body",)
    ),
    "repeated-step-id-hashes-with-suffix-1": Case(
        "repeated", call_body(steps={H("same"): {"data": 0}})
    ),
    "repeated-step-id-hashes-with-suffix-2": Case(
        "repeated", call_body(steps={H("same"): {"data": 0}, H("same:1"): {"data": 3}})
    ),
    "repeated-step-ids-memoized-return-in-order": Case(
        "repeated",
        call_body(
            steps={H("same"): {"data": 0}, H("same:1"): {"data": 3}, H("same:2"): {"data": 6}}
        ),
    ),
}


def assert_same(official: Reply, ours: Reply, names: tuple[str, ...]) -> set[str]:
    expected, present = expected_ours(official, names)
    assert ours == expected, (
        "our reply differs from the official one beyond the listed differences\n"
        f"official (normalized): {json.dumps(official, sort_keys=True, default=repr)}\n"
        f"expected from us:      {json.dumps(expected, sort_keys=True, default=repr)}\n"
        f"ours:                  {json.dumps(ours, sort_keys=True, default=repr)}"
    )
    return present


@pytest.mark.parametrize("name", list(CASES))
def test_answers_a_call_request_like_the_official_sdk(pair: Pair, variant: str, name: str) -> None:
    case = CASES[name]
    official, ours = pair.post(case.fn + variant, case.body, case.step_id)
    present = assert_same(official, ours, case.differences)
    assert present == set(case.differences), (
        f"listed differences no longer observed: {sorted(set(case.differences) - present)}"
    )


UNKNOWN_FUNCTION_DIFFERENCES = ("handler-error-wording",)


def test_unknown_function_is_a_retriable_500_with_a_name_and_message_error_body(
    pair: Pair,
) -> None:
    """Both official SDKs (Python and JS) answer an unknown ``fnId`` with an error body carrying
    ``name`` and ``message``, the protocol's error shape; the wording is each SDK's own."""
    official, ours = pair.post("no-such-function", call_body(), "step")
    assert_same(official, ours, UNKNOWN_FUNCTION_DIFFERENCES)


# -- whole runs, request by request --------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    fn: str
    outcomes: dict[str, Any] = field(default_factory=dict)
    """Memos for the async ops, by step ID: what the server would store when they complete."""
    differences: tuple[str, ...] = ()
    final_status: int = 200


RUNS: dict[str, Run] = {
    "sequential-steps": Run("two-steps"),
    "sleep": Run("sleeps", differences=("sleep-name-is-duration",)),
    "wait-for-event": Run("waits", {"wait": REPLY_EVENT}, differences=("wait-opts-carry-event",)),
    "invoke": Run("invokes", {"call": {"data": {"a": 6, "b": 60}}}),
    "parallel-then-step": Run("parallel"),
    "repeated-step-ids": Run("repeated"),
    "step-retried-until-failed-then-caught": Run(
        "catches", differences=("step-failed-is-no-retry",)
    ),
    "step-retried-until-failed-then-uncaught": Run(
        "step-fails",
        differences=("step-failed-is-no-retry", "non-retriable-is-400"),
        final_status=400,
    ),
}


def drive(pair: Pair, fn: str, run: Run, max_attempts: int = 4) -> tuple[list[str], set[str]]:
    """Drive a run like the executor, feeding both SDKs the same requests; the next request
    follows from the official reply. Returns the op trace and the differences observed."""
    steps: dict[str, Any] = {}
    planned: list[str] = []
    trace: list[str] = []
    observed: set[str] = set()
    attempt, disable = 0, False
    target = "step"
    for _ in range(60):
        body = call_body(
            steps=steps, attempt=attempt, max_attempts=max_attempts, disable_immediate=disable
        )
        official, ours = pair.post(fn, body, target)
        observed |= assert_same(official, ours, run.differences)
        if official["status"] != 206:
            assert ours["status"] == run.final_status
            trace.append(f"{official['status']}")
            return trace, observed
        ops = ops_of(official)
        disable = disable or len(ops) > 1
        attempt = 0
        for op in ops:
            trace.append(f"{op['op']}:{op['displayName']}")
            name = op["displayName"]
            if op["op"] == "StepRun":
                steps[op["id"]] = {"data": op.get("data")}
            elif op["op"] == "StepFailed":
                steps[op["id"]] = {"error": op["error"]}
            elif op["op"] == "StepError":
                attempt = body["ctx"]["attempt"] + 1
            elif op["op"] == "StepPlanned":
                planned.append(op["id"])
            else:  # Sleep, WaitForEvent, InvokeFunction complete with their scripted outcome
                steps[op["id"]] = run.outcomes.get(name)
        if attempt == 0:
            target = planned.pop(0) if planned else "step"
    raise AssertionError(f"run did not finish: {trace}")


@pytest.mark.parametrize("name", list(RUNS))
def test_whole_run_matches_the_official_sdk_request_by_request(
    pair: Pair, variant: str, name: str
) -> None:
    run = RUNS[name]
    _trace, observed = drive(pair, run.fn + variant, run)
    assert observed == set(run.differences), (
        f"listed differences no longer observed: {sorted(set(run.differences) - observed)}"
    )


def test_parallel_run_plans_then_targets_each_step(pair: Pair) -> None:
    trace, _ = drive(pair, "parallel", RUNS["parallel-then-step"])
    assert trace == [
        "StepPlanned:p1",
        "StepPlanned:p2",
        "StepRun:p1",
        "StepRun:p2",
        "StepPlanned:sum",
        "StepRun:sum",
        "200",
    ]


def test_step_retries_end_in_step_failed_on_the_last_attempt(pair: Pair) -> None:
    trace, _ = drive(pair, "catches", RUNS["step-retried-until-failed-then-caught"])
    assert trace == ["StepError:charge"] * 3 + ["StepFailed:charge", "200"]


# -- the differences list itself -----------------------------------------------------------------


def test_every_listed_difference_is_applied_by_some_case() -> None:
    named = {d for case in CASES.values() for d in case.differences}
    named |= {d for run in RUNS.values() for d in run.differences}
    named |= set(UNKNOWN_FUNCTION_DIFFERENCES)
    assert set(DIFFERENCES) == named | set(GLOBAL)


def test_every_case_calls_a_function_of_the_differential_app() -> None:
    assert {case.fn for case in CASES.values()} | {run.fn for run in RUNS.values()} <= set(BODIES)


def test_official_nulls_that_we_omit_are_on_the_raw_wire(pair: Pair) -> None:
    """Documents ``official-null-keys`` and ``invoke-data-defaults-to-object`` before transforms."""
    official, ours = pair.post("invokes-bare", call_body(), "step")
    [op_official], [op_ours] = official["body"], ours["body"]
    assert (op_official["opts"], op_official["data"]) == (
        {"function_id": f"{APP_ID}-returns", "payload": {"data": None, "v": None}, "timeout": None},
        None,
    )
    assert op_ours["opts"] == {"function_id": f"{APP_ID}-returns", "payload": {"data": {}}}
    assert "data" not in op_ours
    official, ours = pair.post("waits-odd", call_body(), "step")
    assert official["body"][0]["opts"] == {"if": None, "timeout": "90s"}
    assert ours["body"][0]["opts"] == {"event": "test/reply", "timeout": "1m30s"}


def test_retry_after_values_differ_only_in_format(pair: Pair) -> None:
    """Official Retry-After is an ISO date, ours delta-seconds; the server reads both."""
    raw = json.dumps(call_body()).encode()
    params = {"fnId": f"{APP_ID}-retry-after-in-step", "stepId": "step"}
    theirs = pair.http.post(pair.official, params=params, content=raw).headers["retry-after"]
    ours = pair.http.post(pair.ours, params=params, content=raw).headers["retry-after"]
    wake = dt.datetime.fromisoformat(theirs.replace("Z", "+00:00"))
    delay = (wake - dt.datetime.now(dt.UTC)).total_seconds()
    assert 25 <= delay <= 31
    assert 29 <= int(ours) <= 30
