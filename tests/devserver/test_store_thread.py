"""The engine does its SQLite work on its store thread: the event loop's thread makes no sqlite3
call while runs execute, events arrive and the API and UI are read.

A profile hook on each thread records every call into sqlite3 (the module's functions and the
methods of its connections and cursors); the hook on the loop's thread must record none.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import inngest
import pytest
from engine_support import (
    dev_client,
    get_json,
    runs_for_event,
    send,
    serve_functions,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_dev import EngineThread
from inngest_mw_dev.storethread import StoreThread

_SQLITE_TYPES = (sqlite3.Connection, sqlite3.Cursor, sqlite3.Blob)
_Hook = Callable[[FrameType, str, Any], None]


def _recorder(seen: list[str]) -> _Hook:
    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event != "c_call":
            return
        owner = getattr(arg, "__self__", None)
        if isinstance(owner, _SQLITE_TYPES) or getattr(arg, "__module__", None) == "_sqlite3":
            seen.append(f"{type(owner).__name__}.{arg.__name__}")

    return hook


def _set_profile(hook: _Hook | None) -> int:
    sys.setprofile(hook)
    return threading.get_ident()


async def _on_loop(hook: _Hook | None) -> int:
    return _set_profile(hook)


async def _sqlite_on_loop() -> None:
    sqlite3.connect(":memory:").execute("SELECT 1").fetchall()


def _workload(url: str) -> None:
    client = dev_client("offloop", url)

    @client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="offloop/go"))
    async def steps(ctx: inngest.Context) -> Any:
        a: int = await ctx.step.run("a", lambda: 1)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        reply = await ctx.step.wait_for_event(
            "reply", event="offloop/reply", timeout=dt.timedelta(seconds=60)
        )
        b: int = await ctx.step.run("b", lambda: 2)  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
        return {"sum": a + b, "reply": None if reply is None else dict(reply.data)}

    with serve_functions(client, [steps]) as app:
        sync(app)
        ids = send(url, [{"name": "offloop/go", "data": {"n": n}} for n in range(3)])
        runs = [runs_for_event(url, event_id)[0]["run_id"] for event_id in ids]
        for run_id in runs:
            wait_step(url, run_id, "reply", "Waiting")
        send(url, {"name": "offloop/reply", "data": {"ok": True}})
        finished = [wait_run(url, run_id) for run_id in runs]
        assert {r["status"] for r in finished} == {"Completed"}
        assert get_json(f"{url}/v1/runs?limit=5")["data"]
        assert get_json(f"{url}/v1/apps")["data"]
        for page in ("/", f"/runs/{runs[0]}", "/events", "/apps", "/functions/offloop-steps"):
            assert httpx.get(url + page, timeout=10).status_code == 200, page
        rerun = httpx.post(f"{url}/v1/runs/{runs[0]}/rerun", json={}, timeout=10)
        assert rerun.status_code == 200, rerun.text
        wait_step(url, rerun.json()["data"]["run_id"], "reply", "Waiting")
        cancel = httpx.post(f"{url}/v1/runs/{rerun.json()['data']['run_id']}/cancel", timeout=10)
        assert cancel.status_code == 200, cancel.text


def test_the_loops_thread_makes_no_sqlite3_call_the_store_thread_makes_them_all(
    tmp_path: Path,
) -> None:
    on_loop: list[str] = []
    on_store: list[str] = []
    with EngineThread(tmp_path / "e.db", port=0, tick=0.02) as engine:
        store_ident = engine.engine.db_sync(_set_profile, _recorder(on_store))
        loop_ident = engine.call(_on_loop(_recorder(on_loop)))
        try:
            _workload(engine.url)
        finally:
            engine.call(_on_loop(None))
            engine.engine.db_sync(_set_profile, None)
        assert on_loop == []
        # The hook on the loop's thread does see sqlite3 calls made there:
        engine.call(_on_loop(_recorder(on_loop)))
        try:
            engine.call(_sqlite_on_loop())
        finally:
            engine.call(_on_loop(None))
    assert on_loop[:3] == ["module.connect", "Connection.execute", "Cursor.fetchall"]
    assert loop_ident != store_ident
    assert {"Connection.execute", "Cursor.fetchall"} <= set(on_store)
    assert len(on_store) > 100


def test_a_job_runs_on_the_store_thread_and_its_actions_on_the_caller() -> None:
    store = StoreThread()
    try:
        threads: list[str] = []

        def job(value: int) -> int:
            threads.append(threading.current_thread().name)
            store.later(lambda: threads.append(threading.current_thread().name))
            return value * 2

        assert store.call(job, 21) == 42
        assert threads == [StoreThread.NAME, threading.current_thread().name]

        def fails() -> None:
            store.later(lambda: threads.append("action of a failed job"))
            raise ValueError("refused")

        with pytest.raises(ValueError, match=r"^refused$"):
            store.call(fails)
        assert threads[-1] == "action of a failed job"
    finally:
        store.stop()
