"""Faults on the app side: it hangs mid-step, its process dies mid-step, or a proxy answers for it.

Each case must end with the run completed or failed with a reason, and a completed run must carry
the step's output. The apps are inngest-mw apps on uvicorn; the crashing one runs as a child
process (``crashing_app`` is its ``uvicorn --factory`` entry point) so it can really die.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_support import (
    START_TIMEOUT,
    AppServer,
    free_port,
    poll,
    run_for_event,
    runs_for_event,
    send,
    sync,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

HERE = Path(__file__).resolve().parent


def _client(engine: EngineThread, app_id: str) -> inngest_mw.Inngest:
    return inngest_mw.Inngest(
        app_id=app_id, is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
    )


def _retry_reasons(run: dict[str, Any]) -> list[str]:
    return [h["reason"] for h in run["history"] if h["type"] == "retry_scheduled"]


def test_a_step_hanging_past_the_request_timeout_is_retried_and_the_run_completes(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    with EngineThread(
        tmp_path / "e.db", port=0, retry_base=0.05, tick=0.02, request_timeout=1
    ) as engine:
        client = _client(engine, "hang")

        @client.create_function(fn_id="hang", trigger=TriggerEvent(event="faults/hang"))
        async def hang(ctx: Context) -> str:
            async def work() -> str:
                if ctx.attempt == 0:
                    # Blocks until the test is done, long after the engine gave up on this call.
                    await asyncio.to_thread(release.wait, 30)
                return f"done on attempt {ctx.attempt}"

            return await ctx.step.run("slow", work)

        with AppServer(serve(client, [hang])) as app:
            sync(app)
            [event_id] = send(engine.url, {"name": "faults/hang"})
            try:
                run = run_for_event(engine.url, event_id)
            finally:
                release.set()
    assert (run["status"], run["output"]) == ("Completed", "done on attempt 1")
    assert _retry_reasons(run) == ["request timed out after 1s"]
    [step] = run["steps"]
    assert (step["name"], step["status"]) == ("slow", "Completed")


def crashing_app() -> ASGIApp:
    """The child process's app: its step kills the process on the first attempt."""
    engine_url, markers = os.environ["FAULTS_ENGINE_URL"], Path(os.environ["FAULTS_MARKERS"])
    client = inngest_mw.Inngest(
        app_id="crash", is_production=False, api_base_url=engine_url, event_api_base_url=engine_url
    )

    @client.create_function(fn_id="crash", trigger=TriggerEvent(event="faults/crash"), retries=20)
    async def crash(ctx: Context) -> str:
        def work() -> str:
            (markers / f"attempt-{ctx.attempt}").touch()
            if ctx.attempt == 0:
                os._exit(1)
            return "survived"

        return await ctx.step.run("fragile", work)

    @client.create_function(
        fn_id="crash-late", trigger=TriggerEvent(event="faults/crash-late"), retries=20
    )
    def crash_late(ctx: ContextSync) -> list[str]:
        """Three steps in one request (checkpointing): the second kills the process once."""

        def step(name: str) -> str:
            (markers / f"{name}-{time.time_ns()}").touch()
            if name == "two" and ctx.attempt == 0:
                os._exit(1)
            return name

        return [ctx.step.run(name, step, name) for name in ("one", "two", "three")]

    return serve(client, [crash, crash_late])


@contextmanager
def _app_process(port: int, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``uvicorn --factory test_faults:crashing_app`` as a child, ready once it answers."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "test_faults:crashing_app",
                "--app-dir",
                str(HERE),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        poll(
            lambda: _answers(port) or proc.poll() is not None,
            bool,
            timeout=START_TIMEOUT,
            what="the app to start",
        )
        assert proc.poll() is None, log.read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/api/inngest", timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_an_app_process_dying_mid_step_is_retried_until_it_is_back(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    port, log = free_port(), tmp_path / "app.log"
    # retry_base 0.1 with 20 retries: the engine keeps retrying for minutes, the restart takes ~1 s.
    with EngineThread(tmp_path / "e.db", port=0, retry_base=0.1, tick=0.02) as engine:
        env = {
            **os.environ,
            "FAULTS_ENGINE_URL": engine.url,
            "FAULTS_MARKERS": str(markers),
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        with _app_process(port, env, log) as proc:
            sync_url = f"http://127.0.0.1:{port}/api/inngest"
            assert httpx.put(sync_url, timeout=10).status_code == 200
            [event_id] = send(engine.url, {"name": "faults/crash"})
            assert proc.wait(15) == 1
        [started] = runs_for_event(engine.url, event_id)
        down = poll(
            lambda: _retry_reasons(_run(engine.url, started["run_id"])),
            lambda reasons: len(reasons) >= 2,
            what="retries while the app is down",
        )
        with _app_process(port, env, log):
            run = run_for_event(engine.url, event_id, timeout=30)
    assert (run["status"], run["output"]) == ("Completed", "survived")
    assert all(reason.startswith("connection error (") for reason in down), down
    # The step ran on attempt 0 (and died with the process), then once more, to completion.
    attempts = sorted(int(p.name.split("-")[1]) for p in markers.iterdir())
    assert len(attempts) == 2
    assert attempts[0] == 0
    [step] = run["steps"]
    assert (step["name"], step["status"]) == ("fragile", "Completed")


def test_a_crash_mid_request_loses_only_the_step_in_progress(tmp_path: Path) -> None:
    """With checkpointing the steps of a run share one request; ``kill -9`` of the app in the
    second step loses that step only: the first was checkpointed and is not run again."""
    markers = tmp_path / "markers"
    markers.mkdir()
    port, log = free_port(), tmp_path / "app.log"
    with EngineThread(tmp_path / "e.db", port=0, retry_base=0.1, tick=0.02) as engine:
        env = {
            **os.environ,
            "FAULTS_ENGINE_URL": engine.url,
            "FAULTS_MARKERS": str(markers),
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
        }
        with _app_process(port, env, log) as proc:
            assert httpx.put(f"http://127.0.0.1:{port}/api/inngest", timeout=10).status_code == 200
            [event_id] = send(engine.url, {"name": "faults/crash-late"})
            assert proc.wait(15) == 1
        [started] = runs_for_event(engine.url, event_id)
        saved = _run(engine.url, started["run_id"])["steps"]
        assert [(s["name"], s["status"]) for s in saved] == [("one", "Completed")]
        with _app_process(port, env, log):
            run = run_for_event(engine.url, event_id, timeout=30)
    assert (run["status"], run["output"]) == ("Completed", ["one", "two", "three"])
    ran = sorted(p.name.split("-")[0] for p in markers.iterdir())
    assert ran == ["one", "three", "two", "two"], "only the step in progress ran twice"


def _run(engine_url: str, run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{engine_url}/v1/runs/{run_id}", timeout=10)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()["data"]
    return run


BAD_GATEWAY = HTMLResponse("<html><body><h1>502 Bad Gateway</h1>nginx</body></html>", 502)
NOT_THE_SDK = PlainTextResponse("OK", 200)


class FaultyProxy:
    """Answers the first POSTs with canned non-SDK responses (as a proxy would), then forwards."""

    def __init__(self, app: ASGIApp, faults: list[Response]) -> None:
        self.app, self.faults, self.served = app, list(faults), 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.faults:
            self.served += 1
            await self.faults.pop(0)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    ("faults", "status", "reasons"),
    [
        (
            [BAD_GATEWAY, NOT_THE_SDK],
            "Completed",
            ["HTTP 502 without X-Inngest-Sdk header", "HTTP 200 without X-Inngest-Sdk header"],
        ),
        ([BAD_GATEWAY] * 4, "Failed", ["HTTP 502 without X-Inngest-Sdk header"] * 3),
    ],
    ids=["recovers", "exhausts-attempts"],
)
def test_non_sdk_responses_are_retried_then_complete_or_fail_with_the_reason(
    tmp_path: Path, faults: list[Response], status: str, reasons: list[str]
) -> None:
    effects: list[int] = []
    with EngineThread(tmp_path / "e.db", port=0, retry_base=0.05, tick=0.02) as engine:
        client = _client(engine, "proxied")

        @client.create_function(fn_id="echo", trigger=TriggerEvent(event="faults/proxy"), retries=3)
        async def echo(ctx: Context) -> int:
            def effect() -> int:
                effects.append(ctx.attempt)
                return 7

            return await ctx.step.run("effect", effect)

        proxy = FaultyProxy(serve(client, [echo]), faults)
        with AppServer(proxy) as app:
            sync(app)
            [event_id] = send(engine.url, {"name": "faults/proxy"})
            run = run_for_event(engine.url, event_id)
    assert run["status"] == status
    assert _retry_reasons(run) == reasons
    assert proxy.served == len(faults)
    if status == "Completed":
        assert run["output"] == 7
        assert effects == [len(faults)]
    else:
        assert run["error"]["name"] == "FatalUpstreamError"
        assert run["history"][-1]["reason"] == (
            "HTTP 502 without X-Inngest-Sdk header (4 attempts failed)"
        )
        assert effects == []
