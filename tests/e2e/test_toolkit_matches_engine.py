"""The testing toolkit and the embedded engine agree on retries: same attempts, same final error.

A step that always raises is run both ways, for several ``retries`` values and the default; the
attempt numbers its code saw and the run's final error must be the same.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import AppServer, run_for_event, send, sync
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent
from inngest_mw.testing import run_sync

RETRIES: list[int | None] = [0, 1, 2, 5, None]


class Seen:
    """The attempt numbers each run's step saw, by run ID."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: defaultdict[str, list[int]] = defaultdict(list)

    def hit(self, run_id: str, attempt: int) -> None:
        with self.lock:
            self.attempts[run_id].append(attempt)


def _name(retries: int | None, colour: str) -> str:
    return f"always-fails-{'default' if retries is None else retries}-{colour}"


def build(client: inngest_mw.Inngest, seen: Seen) -> list[inngest_mw.Function[Any]]:
    functions: list[inngest_mw.Function[Any]] = []
    for retries in RETRIES:
        trigger = TriggerEvent(event=f"t/{_name(retries, 'async')}")

        @client.create_function(fn_id=_name(retries, "async"), trigger=trigger, retries=retries)
        async def fails_async(ctx: Context) -> Any:
            def boom() -> None:
                seen.hit(ctx.run_id, ctx.attempt)
                raise ValueError(f"boom on attempt {ctx.attempt}")

            return await ctx.step.run("boom", boom)

        trigger = TriggerEvent(event=f"t/{_name(retries, 'sync')}")

        @client.create_function(fn_id=_name(retries, "sync"), trigger=trigger, retries=retries)
        def fails_sync(ctx: ContextSync) -> Any:
            def boom() -> None:
                seen.hit(ctx.run_id, ctx.attempt)
                raise ValueError(f"boom on attempt {ctx.attempt}")

            return ctx.step.run("boom", boom)

        functions += [fails_async, fails_sync]
    return functions


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Seen, dict[str, inngest_mw.Function[Any]]]]:
    seen = Seen()
    db: Path = tmp_path_factory.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.01, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="tk", is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
        )
        functions = build(client, seen)
        with AppServer(serve(client, functions)) as app:
            sync(app)
            yield engine.url, seen, {fn.local_id: fn for fn in functions}


@pytest.mark.parametrize("colour", ["async", "sync"])
@pytest.mark.parametrize("retries", RETRIES)
def test_a_step_that_always_fails_gets_the_same_attempts_and_error_as_on_the_engine(
    env: tuple[str, Seen, dict[str, inngest_mw.Function[Any]]], retries: int | None, colour: str
) -> None:
    url, seen, functions = env
    name = _name(retries, colour)
    expected = list(range((4 if retries is None else retries) + 1))

    result = run_sync(functions[name], event={"name": f"t/{name}", "data": {}})
    toolkit_attempts = seen.attempts.pop(result_run_id := "01TESTRUN0000000000000000")
    assert not result.succeeded
    assert result.error is not None
    assert toolkit_attempts == expected
    assert result.step("boom").attempts == len(expected)

    [event_id] = send(url, {"name": f"t/{name}", "data": {}})
    run = run_for_event(url, event_id, timeout=60)
    assert run["status"] == "Failed"
    assert seen.attempts[run["run_id"]] == expected
    assert result_run_id != run["run_id"]
    engine_error = run["error"]
    assert (result.error["name"], result.error["message"]) == (
        engine_error["name"],
        engine_error["message"],
    )
    assert result.error["message"] == f"boom on attempt {expected[-1]}"
