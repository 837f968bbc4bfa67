"""End-to-end: signed (cloud) mode, cron ticks with an injected clock, and garbage app responses."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import inngest
from engine_support import (
    AppServer,
    FakeClock,
    dev_client,
    free_port,
    get_json,
    poll,
    run_for_event,
    send,
    serve_functions,
    sync,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import inngest_mw
from inngest_mw.signature import hash_signing_key, strip_key_prefix

SIGNING_KEY = "signkey-test-" + "5e" * 32


def test_signed_mode_official_sdk_verifies_calls_and_engine_verifies_its_bearer(
    tmp_path: Path,
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, signing_key=SIGNING_KEY, retry_base=0.05) as eng:
        client = inngest.Inngest(
            app_id="signed",
            is_production=True,
            signing_key=SIGNING_KEY,
            event_key="ek",
            api_base_url=eng.url,
            event_api_base_url=eng.url,
        )

        @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="signed/hi"))
        async def hello(ctx: inngest.Context) -> str:
            name: str = await ctx.step.run("name", lambda: "world")  # type: ignore[arg-type, return-value]  # inngest types handlers async-only; sync ones run too
            return f"hello {name}"

        with serve_functions(client, [hello]) as app:
            sync(app)
            auth = {"Authorization": f"Bearer {hash_signing_key(SIGNING_KEY)}"}
            (event_id,) = send(eng.url, {"name": "signed/hi"})
            run = run_for_event(eng.url, event_id, headers=auth)
            assert run["status"] == "Completed"
            assert run["output"] == "hello world"

            unsigned = httpx.post(f"{app.url}?fnId=signed-hello&stepId=step", json={})
            assert unsigned.status_code in (401, 500)

        runs_url = f"{eng.url}/v1/runs"
        assert httpx.get(runs_url).status_code == 401
        assert httpx.get(runs_url, headers={"Authorization": "Bearer nope"}).status_code == 401
        for token in (SIGNING_KEY, strip_key_prefix(hash_signing_key(SIGNING_KEY))):
            response = httpx.get(runs_url, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200
            assert response.headers["x-inngest-server-kind"] == "cloud"
        assert httpx.get(f"{eng.url}/health").status_code == 200
        mismatch = httpx.post(
            f"{eng.url}/fn/register",
            json={},
            headers={**auth, "X-Inngest-Expected-Server-Kind": "dev"},
        )
        assert mismatch.status_code == 400
        assert mismatch.json()["error"] == "Expected server kind dev, got cloud"


def _cron_runs(url: str) -> list[dict[str, Any]]:
    runs = get_json(f"{url}/v1/runs?limit=50")["data"]
    return [r for r in runs if r["function_id"] == "crons-tick"]


def test_cron_fires_once_per_due_tick_and_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    db = tmp_path / "e.db"
    fired: list[str] = []
    with contextlib.ExitStack() as stack:
        eng = stack.enter_context(EngineThread(db, port=0, clock=clock))
        client = dev_client("crons", eng.url)

        @client.create_function(fn_id="tick", trigger=inngest.TriggerCron(cron="* * * * *"))
        async def tick(ctx: inngest.Context) -> str:
            fired.append(ctx.event.name)
            return str(ctx.event.data.get("cron"))

        sync(stack.enter_context(serve_functions(client, [tick])))
        time.sleep(0.2)
        assert _cron_runs(eng.url) == []
        clock.offset += 61
        runs = poll(lambda: _cron_runs(eng.url), lambda r: len(r) == 1, what="a cron run")
        run = poll(
            lambda: get_json(f"{eng.url}/v1/runs/{runs[0]['run_id']}")["data"],
            lambda r: r["status"] == "Completed",
            what="cron run to complete",
        )
        assert run["output"] == "* * * * *"
        assert fired == ["inngest/scheduled.timer"]
        time.sleep(0.3)
        assert len(_cron_runs(eng.url)) == 1

        eng.stop()
        clock.offset += 60
        again = stack.enter_context(EngineThread(db, port=0, clock=clock))
        poll(lambda: _cron_runs(again.url), lambda r: len(r) == 2, what="tick after restart")
        time.sleep(0.3)
        assert len(_cron_runs(again.url)) == 2


def _junk_app(calls: list[str]) -> Starlette:
    """An 'app' whose answers break the protocol in a different way each attempt."""
    lock = threading.Lock()

    async def endpoint(request: Request) -> Response:
        with lock:
            calls.append(request.query_params.get("stepId", ""))
            n = len(calls)
        if n == 1:
            return PlainTextResponse("not json", status_code=200, headers={"X-Inngest-Sdk": "x:v1"})
        if n == 2:
            return PlainTextResponse('"ok"', status_code=200)  # no X-Inngest-Sdk header
        if n == 3:
            return PlainTextResponse(
                '{"op": 5}', status_code=206, headers={"X-Inngest-Sdk": "x:v1"}
            )
        return PlainTextResponse("<html>bad gateway</html>", status_code=502)

    return Starlette(routes=[Route("/api/inngest", endpoint, methods=["POST"])])


def test_garbage_responses_are_failed_attempts_and_the_run_fails_with_a_reason(
    engine: EngineThread,
) -> None:
    calls: list[str] = []
    with AppServer(_junk_app(calls)) as junk:
        register = {
            "appName": "junk",
            "url": junk.url,
            "sdk": "x:v1",
            "v": "0.1",
            "deployType": "ping",
            "functions": [
                {
                    "id": "junk-fn",
                    "name": "junk",
                    "triggers": [{"event": "junk/go"}],
                    "steps": {
                        "step": {
                            "id": "step",
                            "name": "step",
                            "retries": {"attempts": 3},
                            "runtime": {"type": "http", "url": junk.url},
                        }
                    },
                }
            ],
        }
        response = httpx.post(f"{engine.url}/fn/register", json=register)
        assert response.status_code == 200, response.text
        (event_id,) = send(engine.url, {"name": "junk/go"})
        run = run_for_event(engine.url, event_id)
    assert run["status"] == "Failed"
    assert len(calls) == 4
    reasons = [h["reason"] for h in run["history"] if h["type"] == "retry_scheduled"]
    assert reasons[0] == "invalid JSON body"
    assert "without X-Inngest-Sdk" in reasons[1]
    assert reasons[2] == "invalid ops"
    assert "502" in run["history"][-1]["reason"]
    assert httpx.get(f"{engine.url}/health").json() == {"status": 200, "message": "OK"}


def test_app_urls_are_synced_at_start_and_on_demand(tmp_path: Path) -> None:
    port = free_port()
    client = dev_client("autosync", f"http://127.0.0.1:{port}")

    @client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="auto/echo"))
    async def echo(ctx: inngest.Context) -> Any:
        return dict(ctx.event.data)

    with (
        serve_functions(client, [echo]) as app,
        EngineThread(tmp_path / "e.db", port=port, app_urls=[app.url]) as eng,
    ):
        (event_id,) = poll(
            lambda: send(eng.url, {"name": "auto/echo", "data": {"k": 1}}),
            lambda ids: bool(httpx.get(f"{eng.url}/v1/events/{ids[0]}/runs").json()["data"]),
            what="the app to be synced",
        )
        assert run_for_event(eng.url, event_id)["output"] == {"k": 1}
        resync = httpx.post(f"{eng.url}/fn/sync", params={"url": app.url})
        assert resync.status_code == 200
        assert resync.json()["ok"] is True


def test_a_signed_engine_syncs_a_cloud_app_that_has_no_serve_origin(tmp_path: Path) -> None:
    """A cloud-mode app takes its URL from a sync request only when the request is signed: the
    engine signs the PUT it sends to the app URLs it was given."""
    port = free_port()
    client = inngest_mw.Inngest(
        app_id="cloudsync",
        is_production=True,
        signing_key=SIGNING_KEY,
        event_key="k",
        api_base_url=f"http://127.0.0.1:{port}",
        event_api_base_url=f"http://127.0.0.1:{port}",
    )

    @client.create_function(fn_id="echo", trigger=inngest_mw.TriggerEvent(event="cloud/echo"))
    async def echo(ctx: inngest_mw.Context) -> Any:
        return dict(ctx.event.data)

    auth = {"Authorization": f"Bearer {hash_signing_key(SIGNING_KEY)}"}
    with (
        AppServer(serve(client, [echo])) as app,
        EngineThread(
            tmp_path / "e.db", port=port, app_urls=[app.url], signing_key=SIGNING_KEY
        ) as eng,
    ):
        unsigned = httpx.put(app.url, timeout=10)
        resync = httpx.post(f"{eng.url}/fn/sync", params={"url": app.url}, headers=auth)
        [event_id] = send(eng.url, {"name": "cloud/echo", "data": {"k": 2}})
        run = run_for_event(eng.url, event_id, headers=auth)
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "serve_origin_required")
    assert (resync.status_code, resync.json()["ok"]) == (200, True)
    assert (run["status"], run["output"]) == ("Completed", {"k": 2})


def test_the_engine_syncs_in_band_an_app_that_points_at_another_server(tmp_path: Path) -> None:
    """The app's own settings name another server (a wrong port); the engine asks for an in-band
    sync, so the app registers here all the same, and its runs work."""
    elsewhere = f"http://127.0.0.1:{free_port()}"
    client = inngest_mw.Inngest(
        app_id="inband", is_production=False, api_base_url=elsewhere, event_api_base_url=elsewhere
    )

    @client.create_function(fn_id="echo", trigger=inngest_mw.TriggerEvent(event="inband/echo"))
    async def echo(ctx: inngest_mw.Context) -> Any:
        return dict(ctx.event.data)

    with AppServer(serve(client, [echo])) as app, EngineThread(tmp_path / "e.db", port=0) as eng:
        resync = httpx.post(f"{eng.url}/fn/sync", params={"url": app.url})
        [event_id] = send(eng.url, {"name": "inband/echo", "data": {"k": 3}})
        run = run_for_event(eng.url, event_id)
    assert (resync.status_code, resync.json()["results"][0]["ok"]) == (200, True)
    assert (run["status"], run["output"]) == ("Completed", {"k": 3})
