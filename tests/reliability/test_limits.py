"""Protocol limits enforced by the engine, each failing with a reason that names the limit.

The apps are bare HTTP endpoints answering like an SDK that checks nothing itself: inngest-mw
refuses oversized outputs and op lists before sending, and a real run needs ~30 s of round trips
to reach 1,000 steps, where a bare app gets there in two responses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from engine_support import AppServer, run_for_event, send
from inngest_mw_dev import EngineThread
from inngest_mw_dev.api import normalize_events
from inngest_mw_dev.limits import MAX_EVENT_BYTES, MAX_EVENTS, MAX_STEP_OUTPUT_BYTES
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SDK_HEADERS = {"X-Inngest-Sdk": "bare:v1", "X-Inngest-No-Retry": "false"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    db = tmp_path_factory.mktemp("limits") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as running:
        yield running


def _bare_app(answer: Callable[[dict[str, Any]], Response]) -> AppServer:
    """An app that answers every call with ``answer(call body)``."""

    async def endpoint(request: Request) -> Response:
        return answer(await request.json())

    return AppServer(Starlette(routes=[Route("/api/inngest", endpoint, methods=["POST"])]))


def _register_bare(engine: EngineThread, app: AppServer, name: str) -> None:
    """Register one function of the bare app, without retries, triggered by ``name``."""
    register = {
        "appName": name.replace("/", "-"),
        "url": app.url,
        "sdk": "bare:v1",
        "v": "0.1",
        "deployType": "ping",
        "functions": [
            {
                "id": name.replace("/", "-"),
                "name": name,
                "triggers": [{"event": name}],
                "steps": {
                    "step": {
                        "id": "step",
                        "name": "step",
                        "retries": {"attempts": 0},
                        "runtime": {"type": "http", "url": app.url},
                    }
                },
            }
        ],
    }
    response = httpx.post(f"{engine.url}/fn/register", json=register, timeout=10)
    assert response.status_code == 200, response.text


def _failed_reason(run: dict[str, Any]) -> str:
    assert run["status"] == "Failed", run
    reason: str = run["history"][-1]["reason"]
    return reason


def _step_run(index: int, data: object = None) -> dict[str, Any]:
    return {"id": f"{index:040x}", "op": "StepRun", "name": f"s{index}", "data": data}


def test_a_run_may_have_1000_steps_and_fails_at_the_1001st(engine: EngineThread) -> None:
    def answer(body: dict[str, Any]) -> Response:
        done, count = len(body["steps"]), body["event"]["data"]["count"]
        if done == count:
            return JSONResponse(done, 200, SDK_HEADERS)
        batch = [_step_run(i) for i in range(done, min(done + 600, count))]
        return JSONResponse(batch, 206, SDK_HEADERS)

    with _bare_app(answer) as app:
        _register_bare(engine, app, "limits/steps")
        [at_limit, over_limit] = send(
            engine.url, [{"name": "limits/steps", "data": {"count": n}} for n in (1_000, 1_001)]
        )
        run = run_for_event(engine.url, at_limit)
        assert (run["status"], run["output"]) == ("Completed", 1_000)
        run = run_for_event(engine.url, over_limit)
    assert _failed_reason(run) == "function exceeded the 1,000-step limit (it reached 1001 steps)"
    assert run["error"]["message"] == _failed_reason(run)
    assert len(run["steps"]) == 600


def test_run_state_over_32_mib_fails_the_run_with_its_size(engine: EngineThread) -> None:
    # Each output is under the 4 MiB step limit; nine of them are over 32 MiB of state.
    chunk = "x" * (MAX_STEP_OUTPUT_BYTES - 1024)
    ops = [_step_run(i, chunk) for i in range(9)]
    with _bare_app(lambda _: JSONResponse(ops, 206, SDK_HEADERS)) as app:
        _register_bare(engine, app, "limits/state")
        [event_id] = send(engine.url, {"name": "limits/state"})
        run = run_for_event(engine.url, event_id)
    reason = _failed_reason(run)
    assert reason.startswith("run state reached ")
    assert reason.endswith("; the limit is 33554432 bytes (32 MiB)")
    assert run["error"]["name"] == "StateTooLargeError"
    assert [s["status"] for s in run["steps"]] == ["Completed"] * 8


def test_a_response_with_over_1000_ops_fails_the_run_as_overflowed(engine: EngineThread) -> None:
    ops = [{"id": f"{i:040x}", "op": "StepPlanned", "name": f"p{i}"} for i in range(1_001)]
    with _bare_app(lambda _: JSONResponse(ops, 206, SDK_HEADERS)) as app:
        _register_bare(engine, app, "limits/ops")
        [event_id] = send(engine.url, {"name": "limits/ops"})
        run = run_for_event(engine.url, event_id)
    assert _failed_reason(run) == "function overflowed: 1001 ops in one response (max 1000)"
    assert run["steps"] == []


def test_a_step_output_over_4_mib_fails_that_step_and_the_function_sees_why(
    engine: EngineThread,
) -> None:
    step_id = "ab" * 20
    big = "x" * MAX_STEP_OUTPUT_BYTES

    def answer(body: dict[str, Any]) -> Response:
        memo = body["steps"].get(step_id)
        if memo is None:
            op = {"id": step_id, "op": "StepRun", "name": "big", "data": big}
            return JSONResponse([op], 206, SDK_HEADERS)
        return JSONResponse(memo, 200, SDK_HEADERS)  # what the function got back for the step

    with _bare_app(answer) as app:
        _register_bare(engine, app, "limits/output")
        [event_id] = send(engine.url, {"name": "limits/output"})
        run = run_for_event(engine.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"] == {
        "error": {
            "name": "StepOutputTooLargeError",
            "message": f"step 'big' output is {MAX_STEP_OUTPUT_BYTES + 2} bytes; the limit is "
            f"{MAX_STEP_OUTPUT_BYTES} bytes (store large data elsewhere and return a reference)",
        }
    }
    [step] = run["steps"]
    assert (step["name"], step["status"]) == ("big", "Failed")


def _event_of(size: int) -> dict[str, Any]:
    """An event whose compact JSON is exactly ``size`` bytes."""
    frame = len('{"name":"limits/size","data":{"blob":""}}')
    return {"name": "limits/size", "data": {"blob": "x" * (size - frame)}}


def test_events_at_the_size_and_count_limits_are_accepted_one_more_is_refused(
    engine: EngineThread,
) -> None:
    url = f"{engine.url}/e/key"
    assert httpx.post(url, json=_event_of(MAX_EVENT_BYTES), timeout=10).status_code == 200
    too_big = httpx.post(url, json=_event_of(MAX_EVENT_BYTES + 1), timeout=10)
    assert (too_big.status_code, too_big.json()) == (
        413,
        {
            "ids": [],
            "error": "event #0 is too large (524,289 bytes): the event size limit is 524,288"
            " bytes (512 KiB)",
            "status": 413,
        },
    )
    # Accepting 5,000 over HTTP would keep the engine busy for seconds processing them.
    many = [{"name": "limits/many"}] * MAX_EVENTS
    assert len(normalize_events(many, seed=None, now_ms=1_700_000_000_000)) == MAX_EVENTS
    refused = httpx.post(url, json=[*many, {"name": "limits/many"}], timeout=30)
    assert (refused.status_code, refused.json()) == (
        400,
        {
            "ids": [],
            "error": "too many events: 5,001; the limit is 5,000 per request",
            "status": 400,
        },
    )
