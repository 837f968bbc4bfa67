"""End-to-end: every framework's example app, under its real server, driven by the embedded engine.

Each app is synced, runs the checkout flow (steps, a 1 s sleep, a wait resumed by a second event)
with sync and with async functions, hands its own request object to middleware, and in signed mode
lets the engine drive a run while refusing an unsigned call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import aiohttp.web
import django.http
import flask
import httpx
import pytest
import starlette.requests
import tornado.httputil
from engine_support import run_for_event, runs_for_event, send, wait_run, wait_step
from inngest_mw_dev import EngineThread
from integrations.framework_servers import FLAVOURS, FRAMEWORKS

import inngest_mw
from inngest_mw import ContextSync, TriggerEvent
from inngest_mw.signature import hash_signing_key, sign

SIGNING_KEY = "signkey-test-" + "1" * 64
PATH = "/api/inngest"

RAW_REQUEST_TYPES: dict[str, type] = {
    "fastapi": starlette.requests.Request,
    "starlette": dict,  # the pure ASGI app hands over its scope
    "flask": flask.Request,
    "django-wsgi": django.http.HttpRequest,
    "django-asgi": django.http.HttpRequest,
    "tornado": tornado.httputil.HTTPServerRequest,
    "aiohttp": aiohttp.web.Request,
}


class RawRequests(inngest_mw.MiddlewareSync):
    """Records the type of the framework request each call reached middleware with."""

    seen: ClassVar[list[type]] = []
    lock = threading.Lock()

    def before_response(self) -> None:
        with RawRequests.lock:
            RawRequests.seen.append(type(self.raw_request))


def put(url: str, signing_key: str | None = None) -> None:
    """Ask the app to sync; signed like Inngest signs when the app is in cloud mode (a cloud app
    trusts the URL it registers only from a signed request)."""
    headers = {"x-inngest-signature": sign(b"", signing_key)} if signing_key else {}
    response = httpx.put(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Successfully synced."


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_checkout_steps_sleep_and_wait_for_payment_then_complete(
    tmp_path: Path, framework: str, flavour: str
) -> None:
    RawRequests.seen.clear()
    with EngineThread(tmp_path / "engine.db", port=0, retry_base=0.05, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id=f"shop-{framework}-{flavour}",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
            middleware=[RawRequests],
        )
        with FRAMEWORKS[framework](client, FLAVOURS[flavour](client)) as base:
            put(base + PATH)
            order = {"order": "o-1", "sku": "tea"}
            [event_id] = send(engine.url, {"name": "shop/checkout", "data": order})
            [run] = runs_for_event(engine.url, event_id)
            wait_step(engine.url, run["run_id"], "payment", "Waiting")
            send(
                engine.url,
                [
                    {"name": "shop/payment.confirmed", "data": {"order": "o-2"}},
                    {"name": "shop/payment.confirmed", "data": {"order": "o-1"}},
                ],
            )
            done = wait_run(engine.url, run["run_id"])

    assert done["status"] == "Completed", done
    assert done["output"] == {
        "order": "o-1",
        "reserved": {"sku": "tea", "qty": 1},
        "receipt": "receipt for o-1",
    }
    steps = {step["name"]: step["op"] for step in done["steps"]}
    assert steps["cool-off"] == "Sleep"
    assert steps["payment"] == "WaitForEvent"
    assert RawRequests.seen
    assert all(issubclass(kind, RAW_REQUEST_TYPES[framework]) for kind in RawRequests.seen)


def greeter(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="greet", trigger=TriggerEvent(event="signed/greet"))
    def greet(ctx: ContextSync) -> str:
        return ctx.step.run("name", lambda: f"hello {ctx.event.data['name']}")

    return [greet]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_signed_engine_drives_a_run_and_an_unsigned_call_is_refused(
    tmp_path: Path, framework: str
) -> None:
    auth = {"Authorization": f"Bearer {hash_signing_key(SIGNING_KEY)}"}
    with EngineThread(tmp_path / "engine.db", port=0, signing_key=SIGNING_KEY) as engine:
        client = inngest_mw.Inngest(
            app_id=f"signed-{framework}",
            is_production=True,
            signing_key=SIGNING_KEY,
            event_key="test-key",
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with FRAMEWORKS[framework](client, greeter(client)) as base:
            put(base + PATH, SIGNING_KEY)
            [event_id] = send(engine.url, {"name": "signed/greet", "data": {"name": "ada"}})
            run = run_for_event(engine.url, event_id, headers=auth)
            unsigned = httpx.post(
                f"{base}{PATH}?fnId=signed-{framework}-greet&stepId=step", json={}, timeout=10
            )

    assert (run["status"], run["output"]) == ("Completed", "hello ada")
    assert unsigned.status_code == 401
    assert unsigned.json()["message"] == "Unauthorized"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_serve_path_from_the_environment_answers_get_and_refuses_other_methods(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_SERVE_PATH", "/hooks/inngest.v1")
    client = inngest_mw.Inngest(app_id=f"paths-{framework}", is_production=False)
    with FRAMEWORKS[framework](client, greeter(client)) as base:
        introspection = httpx.get(f"{base}/hooks/inngest.v1", timeout=10)
        elsewhere = httpx.get(f"{base}{PATH}", timeout=10)
        delete = httpx.delete(f"{base}/hooks/inngest.v1", timeout=10)

    assert introspection.status_code == 200
    assert introspection.json()["function_count"] == 1
    assert introspection.headers["x-inngest-sdk"].startswith("inngest-mw:")
    assert elsewhere.status_code == 404
    assert delete.status_code == 405
    if framework.startswith(
        "django"
    ):  # Django routes every method to the view: the handler answers
        assert delete.json()["message"] == "method DELETE not allowed"
