"""Connect under failure: a worker killed mid-step, a worker drained by SIGTERM, an engine
restarted under a connected worker, and a worker written with the official SDK."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from connect_support import WorkerThread, end, wait_workers, worker_process
from engine_support import free_port, poll, run_for_event, runs_for_event, send, wait_run
from inngest_mw_connect import ConnectionState
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, TriggerEvent

APP = "connect_worker_app.py"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(
        tmp_path / "engine.db", port=0, connect_port=0, retry_base=0.05, tick=0.02
    ) as running:
        yield running


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path


def started(marks: Path, key: str, pid: int | None = None) -> list[Path]:
    return sorted(marks.glob(f"{key}.{pid if pid is not None else '*'}.started"))


@pytest.mark.parametrize("event", ["procs/hold", "procs/hold-sync"], ids=["async", "sync"])
def test_kill_9_of_a_worker_mid_step_the_run_completes_on_a_second_worker(
    engine: EngineThread, tmp_path: Path, marks: Path, event: str
) -> None:
    first = worker_process(APP, engine.url, tmp_path / "first.log", str(marks), "first")
    second = None
    try:
        wait_workers(engine.url, "procs", 1)
        (event_id,) = send(engine.url, {"name": event, "data": {"key": "k"}})
        poll(lambda: started(marks, "k", first.pid), bool, what="the step to start on the first")
        second = worker_process(APP, engine.url, tmp_path / "second.log", str(marks), "second")
        wait_workers(engine.url, "procs", 2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # The gateway sees the connection drop and sends the call to the second worker.
        poll(lambda: started(marks, "k", second.pid), bool, what="the step to start again")
        (marks / "release").touch()
        run = run_for_event(engine.url, event_id, timeout=30)
    finally:
        end(first)
        if second is not None:
            end(second)
    assert run["status"] == "Completed", run
    assert run["output"] == {"pid": second.pid}
    (work,) = [s for s in run["steps"] if s["name"] == "work"]
    # The step in progress ran twice (at-least-once), but the lost worker cost no attempt.
    assert work["attempts"] == 1
    assert len(started(marks, "k")) == 2


def test_sigterm_during_20_in_flight_calls_all_finish_and_the_worker_exits(
    engine: EngineThread, tmp_path: Path, marks: Path
) -> None:
    worker = worker_process(APP, engine.url, tmp_path / "drainer.log", str(marks), "drainer")
    fresh = None
    try:
        wait_workers(engine.url, "procs", 1)
        ids = send(
            engine.url, [{"name": "procs/hold", "data": {"key": f"k{i}"}} for i in range(20)]
        )
        poll(lambda: len(started(marks, "k*")), lambda n: n == 20, what="20 calls in flight")
        worker.send_signal(signal.SIGTERM)
        wait_workers(engine.url, "procs", 1, status="DRAINING")
        # A draining worker is sent nothing new: the next call waits for another worker.
        (late,) = send(engine.url, {"name": "procs/hold", "data": {"key": "late"}})
        fresh = worker_process(APP, engine.url, tmp_path / "fresh.log", str(marks), "fresh")
        poll(
            lambda: started(marks, "late", fresh.pid),
            bool,
            what="the late call on the fresh worker",
        )
        assert worker.poll() is None, "the draining worker left with calls in flight"
        (marks / "release").touch()
        runs = [run_for_event(engine.url, event_id, timeout=30) for event_id in ids]
        assert worker.wait(30) == 0
        late_run = run_for_event(engine.url, late, timeout=30)
    finally:
        end(worker)
        if fresh is not None:
            end(fresh)
    assert [r["status"] for r in runs] == ["Completed"] * 20
    assert {r["output"]["pid"] for r in runs} == {worker.pid}
    assert len(started(marks, "k*")) == 20  # none ran twice
    assert late_run["output"] == {"pid": fresh.pid}
    assert "drained and stopped" in (tmp_path / "drainer.log").read_text()


def test_the_engine_stopped_and_started_again_the_worker_reconnects_by_itself(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = inngest_mw.Inngest(
        app_id="shop", is_production=False, api_base_url=url, event_api_base_url=url
    )

    @client.create_function(fn_id="ping", trigger=TriggerEvent(event="shop/ping"))
    async def ping(ctx: Context) -> str:
        return await ctx.step.run("pong", lambda: "pong")

    def engine() -> EngineThread:
        return EngineThread(
            tmp_path / "engine.db", port=port, connect_port=0, retry_base=0.05, tick=0.02
        ).start()

    first = engine()
    with WorkerThread(client, [ping], instance_id="survivor") as worker:
        try:
            wait_workers(url, "shop", 1)
            (before,) = send(url, {"name": "shop/ping", "data": {}})
            assert run_for_event(url, before)["output"] == "pong"
        finally:
            first.stop()
        poll(
            lambda: worker.worker.state,
            lambda state: state != ConnectionState.ACTIVE,
            what="the worker to notice the engine is gone",
        )
        second = engine()
        try:
            wait_workers(url, "shop", 1, timeout=30)
            (after,) = send(url, {"name": "shop/ping", "data": {}})
            assert run_for_event(url, after)["output"] == "pong"
        finally:
            worker.stop()
            second.stop()


def test_a_worker_written_with_the_official_sdk_runs_on_the_engine(
    engine: EngineThread, tmp_path: Path
) -> None:
    worker = worker_process("connect_official_worker.py", engine.url, tmp_path / "official.log")
    try:
        (connected,) = wait_workers(engine.url, "official", 1)
        (event_id,) = send(engine.url, {"name": "official/greet", "data": {"name": "ann"}})
        (run,) = runs_for_event(engine.url, event_id)
        done = wait_run(engine.url, run["run_id"], timeout=30)
    finally:
        end(worker)
    assert connected["instance_id"] == "official-1"
    assert connected["sdk"].startswith("py:v")
    assert done["status"] == "Completed", done
    assert done["output"] == "hello ann"
    assert [s["name"] for s in done["steps"]] == ["name", "nap"]
