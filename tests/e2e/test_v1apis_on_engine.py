"""End-to-end on the embedded engine over real HTTP: run metadata (``ctx.metadata`` in async and
sync functions, in-band inside steps and through ``POST /v1/runs/{id}/metadata`` outside them),
userland traces (``UserlandSpans`` exporting the spans made in steps, and raw OTLP posts) and bulk
cancellations (``/v1/cancellations``), with the refusals of each route."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from engine_support import AppServer, get_json, get_run, poll, run_for_event, runs_for_event, send
from engine_support import sync as sync_app
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.render import describe
from inngest_mw_otel import OTelMiddleware
from inngest_mw_otel.userland import UserlandSpans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider

import inngest_mw
from inngest_mw import Context, ContextSync, MetadataError, TriggerEvent, UpdateMetadataError

COLOURS = ["async", "sync"]


def build(client: inngest_mw.Inngest, provider: TracerProvider) -> list[Any]:
    create = client.create_function
    tracer = provider.get_tracer("shop")

    @create(fn_id="meta-async", trigger=TriggerEvent(event="v1/meta.async"))
    async def meta_async(ctx: Context) -> Any:
        await ctx.metadata.update({"phase": "starting"}, kind="progress")  # outside: the API

        async def charge() -> str:
            await ctx.metadata.update({"card": "visa", "cents": 500}, kind="payment")
            await ctx.metadata.update({"cents": 250}, kind="payment", op="add")
            await ctx.metadata.run().update({"phase": "charged"}, kind="progress")
            with tracer.start_as_current_span("call-bank") as span:
                span.set_attribute("bank", "acme")
                with tracer.start_as_current_span("sign-request"):
                    pass
            return "ok"

        return await ctx.step.run("charge", charge)

    @create(fn_id="meta-sync", trigger=TriggerEvent(event="v1/meta.sync"))
    def meta_sync(ctx: ContextSync) -> Any:
        ctx.metadata.update({"phase": "starting"}, kind="progress")

        def charge() -> str:
            ctx.metadata.update({"card": "visa", "cents": 500}, kind="payment")
            ctx.metadata.update({"cents": 250}, kind="payment", op="add")
            ctx.metadata.run().update({"phase": "charged"}, kind="progress")
            with tracer.start_as_current_span("call-bank") as span:
                span.set_attribute("bank", "acme")
                with tracer.start_as_current_span("sign-request"):
                    pass
            return "ok"

        return ctx.step.run("charge", charge)

    @create(fn_id="waiter", trigger=TriggerEvent(event="v1/wait"))
    async def waiter(ctx: Context) -> Any:
        await ctx.step.wait_for_event("never", event="v1/never", timeout="1h")
        return "woke"

    return [meta_async, meta_sync, waiter]


Env = tuple[str, inngest_mw.Inngest]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    db = tmp_path_factory.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.02, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="v1apis",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        spans = UserlandSpans(client)
        provider = TracerProvider()
        provider.add_span_processor(spans)
        client.add_middleware(OTelMiddleware.factory(tracer_provider=provider, userland=spans))
        with AppServer(serve(client, build(client, provider))) as app:
            sync_app(app)
            yield engine.url, client
        provider.shutdown()


def _post(url: str, path: str, body: object, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=10, **kwargs)


def _lines(run: dict[str, Any]) -> list[str]:
    skip = ("at", "type", "step")
    return [
        describe(h["type"], h["step"], {k: v for k, v in h.items() if k not in skip})
        for h in run["history"]
    ]


@pytest.mark.parametrize("colour", COLOURS)
def test_metadata_in_a_step_rides_on_its_op_and_outside_goes_through_the_api(
    env: Env, colour: str
) -> None:
    url, _ = env
    [event_id] = send(url, {"name": f"v1/meta.{colour}", "data": {}})
    run = run_for_event(url, event_id)
    assert run["status"] == "Completed", run
    by_kind = {(m["kind"], m["scope"]): m for m in run["metadata"]}
    payment = by_kind[("userland.payment", "step")]
    assert payment["values"] == {"card": "visa", "cents": 750}  # merged, then added
    assert (payment["step"], payment["updates"]) == ("charge", 2)
    progress = by_kind[("userland.progress", "run")]
    # "starting" is sent from the body (through the API) by every request that runs it, and
    # "charged" rides on the step's op, recorded once with the step.
    assert progress["values"]["phase"] in ("starting", "charged")
    assert progress["updates"] >= 2
    lines = _lines(run)
    assert 'metadata userland.payment merge on step "charge" (step): card, cents' in lines
    assert "metadata userland.progress merge on run: phase" in lines
    assert sum(1 for line in lines if line == "metadata userland.progress merge on run: phase") >= 2


@pytest.mark.parametrize("colour", COLOURS)
def test_spans_made_in_a_step_are_exported_to_the_engine_and_shown_on_the_run(
    env: Env, colour: str
) -> None:
    url, _ = env
    [event_id] = send(url, {"name": f"v1/meta.{colour}", "data": {}})
    run_id = run_for_event(url, event_id)["run_id"]
    # The middleware flushes before the request answers, so the spans are there with the run.
    spans = {s["name"]: s for s in get_run(url, run_id)["user_spans"]}
    assert set(spans) == {"call-bank", "sign-request"}
    bank, signing = spans["call-bank"], spans["sign-request"]
    assert bank["step"] == "charge"
    assert bank["attributes"] == {"bank": "acme"}
    assert signing["parent_id"] == bank["span_id"]
    assert bank["parent_id"] is None  # its parent, the SDK's step span, is not exported


def test_client_update_metadata_targets_a_step_of_another_run(env: Env) -> None:
    url, client = env
    [event_id] = send(url, {"name": "v1/meta.sync", "data": {}})
    run_id = run_for_event(url, event_id)["run_id"]
    client.update_metadata_sync(run_id, {"reviewed": True}, "review", step_id="charge")
    [item] = [m for m in get_run(url, run_id)["metadata"] if m["kind"] == "userland.review"]
    assert (item["scope"], item["step"], item["values"]) == ("step", "charge", {"reviewed": True})
    with pytest.raises(UpdateMetadataError, match="no step nope"):
        client.update_metadata_sync(run_id, {"x": 1}, step_id="nope")


def test_bad_metadata_is_refused_in_the_sdk_naming_the_field() -> None:
    client = inngest_mw.Inngest(app_id="x", is_production=False)
    with pytest.raises(MetadataError, match="limit is 128"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": 1}, "k" * 130)
    with pytest.raises(MetadataError, match="reserved"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": 1}, "inngest.secret")
    with pytest.raises(MetadataError, match="op must be one of"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": 1}, op="swap")  # type: ignore[arg-type]  # the refusal is the point
    with pytest.raises(MetadataError, match="needs numbers"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": "x"}, op="add")
    with pytest.raises(MetadataError, match="65,536 bytes"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": "x" * 70_000})
    with pytest.raises(MetadataError, match=r"values\['a'\] is not JSON"):
        client.update_metadata_sync("01J00000000000000000000000", {"a": object()})


def test_the_metadata_route_refuses_bad_input_with_a_reason(env: Env) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "v1/meta.async", "data": {}})
    run_id = run_for_event(url, event_id)["run_id"]
    path = f"/v1/runs/{run_id}/metadata"
    ok = {"kind": "userland.x", "op": "merge", "values": {"a": 1}}
    cases: list[tuple[str, object, int, str]] = [
        ("/v1/runs/not-a-ulid/metadata", {"metadata": [ok]}, 400, "Invalid run ID"),
        ("/v1/runs/01J00000000000000000000000/metadata", {"metadata": [ok]}, 404, "no run"),
        (path, {"metadata": [{**ok, "op": "swap"}]}, 400, "op must be one of"),
        (path, {"metadata": [{**ok, "kind": "inngest.secret"}]}, 400, "reserved"),
        (path, {"metadata": [{**ok, "kind": "k" * 200}]}, 400, "limit is 128"),
        (path, {"metadata": [{**ok, "values": [1]}]}, 400, "values must be an object"),
        (path, {"target": {"step_index": 1}, "metadata": [ok]}, 400, "step_id must be defined"),
        (path, {"target": {"step_id": "nope"}, "metadata": [ok]}, 404, "has no step nope"),
        (path, {"metadata": [{**ok, "values": {"a": "x" * 70_000}}]}, 413, "64KB"),
        (path, [1], 400, "JSON object"),
    ]
    for target, body, status, reason in cases:
        response = _post(url, target, body)
        assert response.status_code == status, (target, body, response.text)
        assert reason in response.json()["error"], response.text
    big = {"kind": "userland.big", "op": "merge", "values": {"a": "x" * 60_000}}
    for _ in range(17):  # 17 x 60 KB stays under 1 MiB
        assert _post(url, path, {"metadata": [big]}).status_code == 200
    over = _post(url, path, {"metadata": [big]})
    assert over.status_code == 413
    assert "Cumulative metadata size exceeds limit" in over.json()["error"]


def _otlp_json(run_id: str, traceref: str | None, name: str = "manual") -> dict[str, Any]:
    attributes = [
        {"key": "sdk.run.id", "value": {"stringValue": run_id}},
        {"key": "colour", "value": {"stringValue": "blue"}},
    ]
    if traceref is not None:
        attributes.append({"key": "inngest.traceref", "value": {"stringValue": traceref}})
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": name,
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000250000000",
                                "attributes": attributes,
                                "status": {"code": 2},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_userland_traces_take_otlp_json_and_protobuf_and_reject_spans_they_cannot_place(
    env: Env,
) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "v1/meta.async", "data": {}})
    run_id = run_for_event(url, event_id)["run_id"]
    ref = "%7B%22tp%22%3A%2200-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01%22%7D"
    taken = _post(url, "/v1/traces/userland", _otlp_json(run_id, ref, "json-span"))
    assert taken.status_code == 200, taken.text
    assert taken.json() == {}
    [span] = [s for s in get_run(url, run_id)["user_spans"] if s["name"] == "json-span"]
    assert (span["kind"], span["status"], span["duration_ms"]) == ("client", "error", 250.0)
    assert (span["span_id"], span["service"]) == ("eee19b7ec3c1b174", "shop")
    assert span["attributes"] == {"colour": "blue"}

    rejected = _post(url, "/v1/traces/userland", _otlp_json(run_id, None))
    assert rejected.json()["partialSuccess"]["rejectedSpans"] == "1"

    message = ExportTraceServiceRequest()
    from google.protobuf import json_format

    body = _otlp_json(run_id, ref, "proto-span")
    span_json = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span_json["spanId"], span_json["traceId"] = "qqqqqqqqqqo=", "W47/95gDgQPSabYzgT/GDA=="
    json_format.ParseDict(body, message)
    answer = httpx.post(
        f"{url}/v1/traces/userland",
        content=message.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(answer.content).HasField("partial_success")
    assert "proto-span" in {s["name"] for s in get_run(url, run_id)["user_spans"]}

    bad = httpx.post(
        f"{url}/v1/traces/userland",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert bad.status_code == 400
    assert "Invalid payload" in bad.json()["message"]
    huge = httpx.post(
        f"{url}/v1/traces/userland",
        content=b"\0" * (8 * 1024 * 1024 + 1),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert huge.status_code == 413


def _iso(delta_s: float = 0.0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delta_s)).isoformat()


def _wait_for_history(url: str, run_id: str, kind: str) -> None:
    def history() -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = get_run(url, run_id)["history"]
        return entries

    poll(history, lambda entries: any(h["type"] == kind for h in entries), what=f"{kind} entry")


def test_bulk_cancellation_cancels_the_matching_runs_and_is_listed_and_deleted(env: Env) -> None:
    url, _ = env
    ids = send(url, [{"name": "v1/wait", "data": {"n": 1}}, {"name": "v1/wait", "data": {"n": 2}}])
    runs = [runs_for_event(url, event_id)[0]["run_id"] for event_id in ids]
    for run_id in runs:  # both reach their wait
        _wait_for_history(url, run_id, "waiting")
    body = {
        "app_id": "v1apis",
        "function_id": "waiter",
        "started_before": _iso(),
        "if": "event.data.n == 2",
    }
    created = _post(url, "/v1/cancellations", body)
    assert created.status_code == 200, created.text
    record = created.json()["data"]
    assert (record["function_id"], record["if"]) == ("waiter", "event.data.n == 2")
    assert record["cancelled_run_ids"] == [runs[1]]
    assert get_run(url, runs[1])["status"] == "Cancelled"
    assert get_run(url, runs[0])["status"] == "Running"  # the expression spared it

    listed = get_json(f"{url}/v1/cancellations")["data"]
    assert record["id"] in [c["id"] for c in listed]
    assert httpx.delete(f"{url}/v1/cancellations/{record['id']}", timeout=10).json()["data"] == {
        "ok": True
    }
    assert record["id"] not in [c["id"] for c in get_json(f"{url}/v1/cancellations")["data"]]

    everything = _post(url, "/v1/cancellations", {**body, "if": None})
    assert everything.json()["data"]["cancelled_run_ids"] == [runs[0]]


def test_the_cancellation_routes_refuse_bad_input_with_a_reason(env: Env) -> None:
    url, _ = env
    base = {"app_id": "v1apis", "function_id": "waiter", "started_before": _iso()}
    cases: list[tuple[object, int, str]] = [
        ({}, 400, "app_id is required; function_id is required"),
        ({**base, "started_before": None}, 400, "started_before is required"),
        ({**base, "started_before": _iso(3600)}, 400, "started_before must be in the past"),
        ({**base, "started_before": "yesterday"}, 400, "RFC 3339"),
        ({**base, "started_after": _iso(10)}, 400, "started_after must be before"),
        ({**base, "function_id": "nope"}, 404, "function not found"),
        ({**base, "app_id": "other"}, 404, "function not found"),
        ({**base, "if": "event.data.n =="}, 400, "invalid expression"),
    ]
    for body, status, reason in cases:
        response = _post(url, "/v1/cancellations", body)
        assert response.status_code == status, (body, response.text)
        assert reason in response.json()["error"], response.text
    bad_id = httpx.delete(f"{url}/v1/cancellations/xyz", timeout=10)
    assert (bad_id.status_code, "Invalid cancellation ID" in bad_id.json()["error"]) == (400, True)
    missing = httpx.delete(f"{url}/v1/cancellations/01J00000000000000000000000", timeout=10)
    assert (missing.status_code, "not found" in missing.json()["error"]) == (404, True)


def test_the_run_page_and_the_run_command_show_metadata_and_spans(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    from inngest_mw_dev.cli import print_run

    url, _ = env
    [event_id] = send(url, {"name": "v1/meta.async", "data": {}})
    run_id = run_for_event(url, event_id)["run_id"]
    page = httpx.get(f"{url}/runs/{run_id}", timeout=10)
    assert page.status_code == 200
    for text in (
        "<h2>Metadata</h2>",
        "userland.payment",
        "<h2>Spans from the app</h2>",
        "call-bank",
        "sign-request",
    ):
        assert text in page.text, text
    print_run(get_run(url, run_id))
    out = capsys.readouterr().out
    assert "metadata:\n" in out
    assert "spans from the app:\n" in out
    [line] = [line for line in out.splitlines() if line.startswith("  userland.payment")]
    assert line.split() == ["userland.payment", "step", "charge", '{"card":"visa","cents":750}']


def test_the_v1_routes_need_the_signing_key_and_the_client_falls_back_to_the_second(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "signkey-test-" + "ab" * 32
    with EngineThread(tmp_path / "keyed.db", port=0, signing_key=key) as engine:
        for method, path in (
            ("POST", "/v1/runs/01J00000000000000000000000/metadata"),
            ("POST", "/v1/traces/userland"),
            ("POST", "/v1/cancellations"),
            ("GET", "/v1/cancellations"),
        ):
            response = httpx.request(method, f"{engine.url}{path}", json={}, timeout=10)
            assert response.status_code == 401, (path, response.text)
        wrong = "signkey-test-" + "cd" * 32
        only_wrong = inngest_mw.Inngest(
            app_id="k", is_production=True, signing_key=wrong, api_base_url=engine.url
        )
        with pytest.raises(UpdateMetadataError, match="401"):
            only_wrong.update_metadata_sync("01J00000000000000000000000", {"a": 1})
        monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", key)
        rotated = inngest_mw.Inngest(
            app_id="k", is_production=True, signing_key=wrong, api_base_url=engine.url
        )
        # The fallback key gets through: the engine answers about the run itself.
        with pytest.raises(UpdateMetadataError, match=r"404.*no run"):
            rotated.update_metadata_sync("01J00000000000000000000000", {"a": 1})


def test_in_band_metadata_the_engine_refuses_is_noted_and_the_step_still_saved(env: Env) -> None:
    url, _ = env
    [event_id] = send(url, {"name": "v1/wait", "data": {"n": 3}})
    run_id = runs_for_event(url, event_id)[0]["run_id"]
    _wait_for_history(url, run_id, "waiting")
    ok = {"scope": "step", "kind": "userland.fine", "op": "merge", "values": {"a": 1}}
    op = {
        "id": "f" * 40,
        "op": "StepRun",
        "name": "raw",
        "displayName": "raw",
        "data": 1,
        "metadata": [ok, {**ok, "kind": "inngest.secret"}, {**ok, "values": {"a": "x" * 70_000}}],
    }
    taken = _post(url, f"/v1/checkpoint/{run_id}/async", {"steps": [op]})
    assert taken.status_code == 200, taken.text
    run = get_run(url, run_id)
    assert [m["kind"] for m in run["metadata"]] == ["userland.fine"]
    [refused] = [line for line in _lines(run) if "metadata refused" in line]
    assert "reserved" in refused
    assert "64KB" in refused
    assert any(s["name"] == "raw" and s["status"] == "Completed" for s in run["steps"])
    httpx.post(f"{url}/v1/runs/{run_id}/cancel", timeout=10)
