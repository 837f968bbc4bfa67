"""What the middleware saw, end to end over real HTTP: the app reports the hooks each request ran,
the engine keeps them per attempt, and ``GET /v1/runs/{id}`` and ``inngest-mw run`` show them.

A hostile header from an app never costs the engine more than a note on the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from engine_support import AppServer, get_run, run_for_event, send, sync
from inngest_mw_dev import EngineThread
from inngest_mw_dev.cli import main
from middleware_seen_app import EVENTS, build_app, build_flaky_app

from inngest_mw._const import Header


def _hooks(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [hook for request in run["middleware"] for hook in request["hooks"]]


@pytest.fixture
def app(engine: EngineThread) -> Iterator[AppServer]:
    with AppServer(build_app(engine.url)) as served:
        sync(served)
        yield served


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_the_run_shows_each_hook_of_each_request_and_what_it_raised(
    engine: EngineThread, app: AppServer, colour: str, capsys: pytest.CaptureFixture[str]
) -> None:
    [event_id] = send(engine.url, {"name": EVENTS[colour], "data": {}})
    run = run_for_event(engine.url, event_id)
    assert run["status"] == "Completed", run
    assert run["output"] == {"reserved": 2, "charged": 5.0}  # the failing observer changed nothing
    requests = run["middleware"]
    assert requests, run
    assert [r["request"] for r in requests] == list(range(1, len(requests) + 1))
    assert all(r["attempt"] == 1 for r in requests)
    assert requests[-1]["outcome"] == "completed"
    hooks = _hooks(run)
    names = {(h["middleware"], h["hook"]) for h in hooks}
    assert names == {
        ("audit-log", "transform_input"),
        ("StepTimer", "wrap_step_handler"),
        ("audit-log", "on_step_complete"),
    }
    handled = sorted(h["step"] for h in hooks if h["hook"] == "wrap_step_handler")
    assert handled == ["charge", "reserve"]
    [raised] = [h for h in hooks if h["error"]]
    assert (raised["hook"], raised["step"]) == ("on_step_complete", "charge")
    assert raised["error"] == "ConnectionError: audit log unavailable"
    for hook in hooks:
        assert 0 <= hook["self_us"] <= hook["duration_us"]
        assert hook["depth"] == 0  # no wrap hook of theirs is around another

    code = main(["run", run["run_id"][:10], "--url", engine.url])
    out = capsys.readouterr().out
    assert code == 0
    assert "middleware (the hooks the app's middleware ran, per request):" in out
    assert "audit-log.on_step_complete" in out
    assert "[charge]  raised ConnectionError: audit log unavailable" in out
    assert "StepTimer.wrap_step_handler" in out


class _Rewrites:
    """ASGI middleware replacing the app's trace header with the next hostile value."""

    def __init__(self, app: Any, values: list[bytes]) -> None:
        self.app, self.values = app, values

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def rewritten(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST":
                value = self.values.pop(0) if self.values else b"{"
                headers = [(k, v) for k, v in message["headers"] if k != Header.MW_TRACE.encode()]
                message["headers"] = [*headers, (Header.MW_TRACE.encode(), value)]
            await send(message)

        await self.app(scope, receive, rewritten)


HOSTILE = [
    b"not json",
    b'{"v":1,"h":[["m","h",-1,1,1,null,null],["m","h",1,2,3,4,5],"x",["\xff\x01","h",1,2,3,null,null]]}',
    b"[" * 4000,
    b'{"v":1,"h":[["m","wrap_x",0,99999999999999999,0,null,null]],"more":-3}',
    b'{"v":99}',
]


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_a_hostile_trace_header_is_a_note_never_an_error(engine: EngineThread, colour: str) -> None:
    with AppServer(_Rewrites(build_app(engine.url), list(HOSTILE))) as served:
        sync(served)
        [event_id] = send(engine.url, {"name": EVENTS[colour], "data": {}})
        run = run_for_event(engine.url, event_id)
    assert run["status"] == "Completed", run
    again = get_run(engine.url, run["run_id"])  # 200, every time
    assert again["middleware"] == run["middleware"]
    for request in run["middleware"]:
        assert request["problem"] or request["hooks"] or request["more"], request
        for hook in request["hooks"]:
            assert hook["duration_us"] >= 0
            assert hook["self_us"] >= 0
    page = httpx.get(f"{engine.url}/runs/{run['run_id']}", timeout=10)
    assert page.status_code == 200
    assert "could not be read" in page.text


def test_each_request_and_attempt_is_its_own_entry_with_hooks_nested_in_wraps(
    engine: EngineThread,
) -> None:
    failures: dict[str, int] = {}
    with AppServer(build_flaky_app(engine.url, failures)) as served:
        sync(served)
        [event_id] = send(engine.url, {"name": "seen/pay", "data": {}})
        run = run_for_event(engine.url, event_id)
    assert run["status"] == "Completed", run
    assert failures == {"charge": 2}
    requests = run["middleware"]
    targets = [(r["step_name"], r["attempt"]) for r in requests]
    # Each new step runs in the request that found it: reserve in the first, charge (failing)
    # in the second; the retry targets the step; the last request completes the run.
    assert targets == [(None, 1), (None, 1), ("charge", 2), (None, 1)], targets
    assert requests[1]["outcome"] == "reported charge"
    assert requests[-1]["outcome"] == "completed"
    for request in requests:
        [outer] = [h for h in request["hooks"] if h["hook"] == "wrap_function"]
        assert (outer["middleware"], outer["depth"]) == ("Around", 0)
        inside = [h for h in request["hooks"] if h["hook"] != "wrap_function"]
        later = [h for h in inside if h["start_us"] > outer["start_us"]]
        assert all(h["depth"] == 1 for h in later), request
    retried = [h["hook"] for h in requests[2]["hooks"] if h["step"] == "charge"]
    assert retried == ["on_step_complete"]  # the audit log fails on charge, again: shown again
    assert [h["error"] for h in requests[2]["hooks"] if h["step"] == "charge"] == [
        "ConnectionError: audit log unavailable"
    ]
