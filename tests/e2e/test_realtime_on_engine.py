"""End-to-end realtime over real HTTP: async and sync functions served by uvicorn publish through
the embedded engine to subscribers (the SDK's SSE subscriber, a FastAPI endpoint relaying it, a
WebSocket), which receive every message in order; tokens expire and bad input is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi
import httpx
import markupsafe
import pytest
import websockets
import websockets.sync.client
from engine_support import AppServer, FakeClock, get_json, run_for_event, sync
from fastapi.responses import StreamingResponse
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.render import describe

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent, realtime

COLOURS = ["async", "sync"]
TOPICS = ["progress", "status"]
N = 5


def build(client: inngest_mw.Inngest, prefix: str) -> list[Any]:
    create = client.create_function

    @create(fn_id="publish-async", trigger=TriggerEvent(event=f"{prefix}/publish.async"))
    async def publish_async(ctx: Context) -> Any:
        channel = ctx.event.data["channel"]
        for i in range(ctx.event.data["n"]):
            got = await ctx.step.realtime.publish(f"progress-{i}", channel, "progress", {"i": i})
            assert got == {"i": i}
        await ctx.publish(channel, "status", "done")
        return "published"

    @create(fn_id="publish-sync", trigger=TriggerEvent(event=f"{prefix}/publish.sync"))
    def publish_sync(ctx: ContextSync) -> Any:
        channel = ctx.event.data["channel"]
        for i in range(ctx.event.data["n"]):
            got = ctx.step.realtime.publish(f"progress-{i}", channel, "progress", {"i": i})
            assert got == {"i": i}
        ctx.publish(channel, "status", "done")
        return "published"

    return [publish_async, publish_sync]


Env = tuple[str, inngest_mw.Inngest, FakeClock]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    clock = FakeClock()
    db = tmp_path_factory.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.02, tick=0.02, clock=clock) as engine:
        client = inngest_mw.Inngest(
            app_id="rt",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        # The same functions with checkpointing off: one request per step, the body replayed.
        stepwise = inngest_mw.Inngest(
            app_id="rt-stepwise",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
            checkpointing=False,
        )
        with (
            AppServer(serve(client, build(client, "rt"))) as app,
            AppServer(serve(stepwise, build(stepwise, "rt-stepwise"))) as stepwise_app,
        ):
            sync(app)
            sync(stepwise_app)
            yield engine.url, client, clock


async def _take(sub: realtime.Subscription, count: int) -> list[realtime.Message]:
    got: list[realtime.Message] = []
    async with asyncio.timeout(20):
        async for message in sub:
            got.append(message)
            if len(got) == count:
                break
    return got


def _expected(channel: str) -> list[tuple[str, str, str, Any]]:
    progress = [("data", channel, "progress", {"i": i}) for i in range(N)]
    return [*progress, ("data", channel, "status", "done")]


@pytest.mark.parametrize("colour", COLOURS)
@pytest.mark.parametrize("app", ["rt", "rt-stepwise"])
async def test_a_subscriber_started_before_the_run_receives_every_message_in_order(
    env: Env, app: str, colour: str
) -> None:
    url, client, _ = env
    channel = f"order:{app}:{colour}"
    async with realtime.subscribe(client, channel, TOPICS) as sub:
        [event_id] = await client.send(
            inngest_mw.Event(name=f"{app}/publish.{colour}", data={"channel": channel, "n": N})
        )
        got = await _take(sub, N + 1)
    assert [(m.kind, m.channel, m.topic, m.data) for m in got] == _expected(channel)
    run = await asyncio.to_thread(run_for_event, url, event_id)
    assert (run["status"], run["output"]) == ("Completed", "published")
    assert {m.run_id for m in got} == {run["run_id"]}
    assert all(m.created_at for m in got)
    # Each publish step ran once (a step) and the run's history shows every message.
    assert [s["name"] for s in run["steps"]] == [f"progress-{i}" for i in range(N)]
    published = [h for h in run["history"] if h["type"] == "published"]
    assert [(h["channel"], h["topic"]) for h in published] == [(channel, "progress")] * N + [
        (channel, "status")
    ]
    line = describe("published", None, published[0])
    assert line == f'published to {channel}/progress: {{"i":0}} (7 bytes)'
    page = await asyncio.to_thread(httpx.get, f"{url}/runs/{run['run_id']}", timeout=10)
    assert str(markupsafe.escape(line)) in page.text  # the UI's run page shows it too


async def test_a_fastapi_endpoint_relays_a_subscription_to_its_own_client(env: Env) -> None:
    _, client, _ = env
    app = fastapi.FastAPI()

    @app.get("/orders/{order}/progress")
    async def progress(order: str) -> StreamingResponse:
        async def lines() -> Any:
            async with realtime.subscribe(client, f"order:{order}", TOPICS) as sub:
                yield ": subscribed\n\n"
                async for message in sub:
                    yield f"data: {json.dumps([message.topic, message.data])}\n\n"
                    if message.topic == "status":
                        return

        return StreamingResponse(lines(), media_type="text/event-stream")

    with AppServer(app) as relay:
        base = f"http://127.0.0.1:{relay.port}"
        async with (
            httpx.AsyncClient(timeout=20) as http,
            http.stream("GET", f"{base}/orders/relay/progress") as response,
        ):
            lines = response.aiter_lines()
            assert await anext(lines) == ": subscribed"
            await client.send(
                inngest_mw.Event(name="rt/publish.async", data={"channel": "order:relay", "n": 2})
            )
            got = [json.loads(line[len("data: ") :]) async for line in lines if line]
    assert got == [["progress", {"i": 0}], ["progress", {"i": 1}], ["status", "done"]]


async def test_a_client_publish_reaches_only_the_subscribed_topics(env: Env) -> None:
    _, client, _ = env
    async with realtime.subscribe(client, "alerts", ["level"]) as sub:
        await realtime.publish(client, "alerts", "other", {"ignored": True})
        await realtime.publish(client, "elsewhere", "level", {"ignored": True})
        await asyncio.to_thread(realtime.publish_sync, client, "alerts", "level", "not JSON-ish")
        await realtime.publish(client, "alerts", "level", [1, 2, 3])
        async with httpx.AsyncClient(timeout=10) as http:
            # The TypeScript SDK may repeat ``topic``; the server reads the first.
            raw = await http.post(
                f"{client.api_origin}v1/realtime/publish?channel=alerts&topic=level&topic=x",
                content=b"plain text, not JSON",
            )
            assert (raw.status_code, raw.content) == (200, b"")
        got = await _take(sub, 3)
    assert [(m.topic, m.data, m.run_id) for m in got] == [
        ("level", "not JSON-ish", None),
        ("level", [1, 2, 3], None),
        ("level", "plain text, not JSON", None),
    ]


def test_a_token_is_for_one_minute_and_a_subscription_without_one_is_refused(env: Env) -> None:
    url, client, clock = env
    token = realtime.get_subscription_token_sync(client, "late", ["t"])
    assert token.as_dict() == {"channel": "late", "topics": ["t"], "key": token.key}
    clock.offset += 61
    refused = httpx.get(f"{url}/v1/realtime/sse?token={token.key}", timeout=10)
    assert refused.status_code == 401
    assert "expired" in refused.json()["error"]

    async def subscribe_late() -> None:
        async with realtime.subscribe(client, "late", ["t"], token=token):
            pass

    with pytest.raises(realtime.RealtimeError, match=r"\(401\).*expired"):
        asyncio.run(subscribe_late())
    missing = httpx.get(f"{url}/v1/realtime/sse", timeout=10)
    assert missing.status_code == 401
    assert "POST /v1/realtime/token" in missing.json()["error"]
    forged = httpx.get(f"{url}/v1/realtime/sse", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    assert "not valid" in forged.json()["error"]


def test_an_oversize_message_is_refused_with_413_by_the_engine_and_before_sending_by_the_sdk(
    env: Env,
) -> None:
    url, client, _ = env
    big = json.dumps("x" * (512 * 1024)).encode()
    response = httpx.post(f"{url}/v1/realtime/publish?channel=c&topic=t", content=big, timeout=10)
    assert response.status_code == 413
    assert "524,288 bytes (512 KiB)" in response.json()["error"]
    with pytest.raises(realtime.RealtimeError, match=r"the limit is 524,288 bytes") as caught:
        realtime.publish_sync(client, "c", "t", "x" * (512 * 1024))
    assert caught.value.retriable is False


@pytest.mark.parametrize(
    ("query", "body", "reason"),
    [
        ("topic=t", b"{}", "the channel query parameter is required"),
        ("channel=c", b"{}", "the topic query parameter is required"),
        ("channel=c&topic=t&run_id=nope", b"{}", "run_id must be a run's ID"),
        ("channel=c&topic=t&metadata={", b"{}", "the metadata query parameter is not valid JSON"),
    ],
)
def test_a_bad_publish_is_a_400_naming_the_parameter(
    env: Env, query: str, body: bytes, reason: str
) -> None:
    url, _, _ = env
    response = httpx.post(f"{url}/v1/realtime/publish?{query}", content=body, timeout=10)
    assert (response.status_code, reason in response.json()["error"]) == (400, True), response.text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"channel": "c"}, "must provide a list of topics"),
        ([], "the list of topics is empty"),
        ([{"channel": "c"}], "topic 0: 'name' must be a non-empty string"),
        ([{"channel": "c", "name": "t", "kind": "nope"}], "topic 0: 'kind' must be"),
    ],
)
def test_a_bad_token_request_is_a_400_naming_the_topic(env: Env, body: Any, reason: str) -> None:
    url, _, _ = env
    response = httpx.post(f"{url}/v1/realtime/token", json=body, timeout=10)
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_the_websocket_route_streams_the_same_messages_and_takes_more_topics(env: Env) -> None:
    url, client, _ = env
    first = realtime.get_subscription_token_sync(client, "ws", ["a"])
    more = realtime.get_subscription_token_sync(client, "ws", ["b"])
    ws_url = url.replace("http://", "ws://") + f"/v1/realtime/connect?token={first.key}"
    with websockets.sync.client.connect(ws_url, open_timeout=10) as ws:
        ws.send(json.dumps({"kind": "sub", "data": more.key}))
        # The engine applies a connection's frames in order: once a message on "a" arrives, the
        # "sub" sent before it was applied.
        realtime.publish_sync(client, "ws", "a", 1)
        assert json.loads(ws.recv(timeout=10))["data"] == 1
        realtime.publish_sync(client, "ws", "b", 2)
        message = json.loads(ws.recv(timeout=10))
        assert (message["kind"], message["channel"], message["topic"], message["data"]) == (
            "data",
            "ws",
            "b",
            2,
        )
    with pytest.raises(websockets.InvalidStatus) as refused:
        websockets.sync.client.connect(ws_url.replace(first.key, "x.y.z"), open_timeout=10)
    assert refused.value.response.status_code == 401
    assert b"not valid" in refused.value.response.body


def test_a_streamed_publish_arrives_as_start_chunks_and_end(env: Env) -> None:
    url, client, _ = env
    text = "é" + "a" * 2500  # a two-byte character first: chunks never split one

    async def stream() -> list[realtime.Message]:
        async with realtime.subscribe(client, "streams", ["out"]) as sub:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(
                    f"{url}/v1/realtime/publish?channel=streams&topic=out",
                    content=text.encode(),
                    headers={"Content-Type": "text/stream"},
                )
                assert response.status_code == 200
            return await _take(sub, 5)

    got = asyncio.run(stream())
    assert [m.kind for m in got] == [
        "datastream-start",
        "chunk",
        "chunk",
        "chunk",
        "datastream-end",
    ]
    assert {m.stream_id for m in got[1:4]} == {got[0].data}
    assert "".join(m.data for m in got[1:4]) == text


def test_a_publish_naming_an_unknown_run_is_forwarded_and_makes_no_run(env: Env) -> None:
    url, client, _ = env
    runs_before = get_json(f"{url}/v1/runs")["data"]

    async def publish_for_nobody() -> list[realtime.Message]:
        async with realtime.subscribe(client, "nobody", ["t"]) as sub:
            await realtime.publish(client, "nobody", "t", 1, run_id="01arz3ndektsv4rrffq69g5fav")
            return await _take(sub, 1)

    [message] = asyncio.run(publish_for_nobody())
    assert (message.data, message.run_id) == (1, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert get_json(f"{url}/v1/runs")["data"] == runs_before


def test_with_a_signing_key_publishing_and_minting_need_it_and_subscribing_the_token(
    tmp_path: Path,
) -> None:
    key = "signkey-test-" + "cd" * 32
    with EngineThread(tmp_path / "keyed.db", port=0, signing_key=key) as engine:
        client = inngest_mw.Inngest(
            app_id="keyed", is_production=False, api_base_url=engine.url, signing_key=key
        )
        for path in ("publish?channel=c&topic=t", "token"):
            refused = httpx.post(f"{engine.url}/v1/realtime/{path}", json=[], timeout=10)
            assert refused.status_code == 401, path
            assert "signing key" in refused.json()["error"]

        async def round_trip() -> list[realtime.Message]:
            async with realtime.subscribe(client, "keyed", ["t"]) as sub:
                await realtime.publish(client, "keyed", "t", {"ok": True})
                return await _take(sub, 1)

        [message] = asyncio.run(round_trip())
        assert message.data == {"ok": True}
        stranger = inngest_mw.Inngest(
            app_id="keyed",
            is_production=False,
            api_base_url=engine.url,
            signing_key="signkey-test-" + "ef" * 32,
        )
        with pytest.raises(realtime.RealtimeError, match=r"refused publishing to keyed/t \(401\)"):
            realtime.publish_sync(stranger, "keyed", "t", 1)


async def test_closing_a_subscription_from_another_task_ends_its_iteration(env: Env) -> None:
    _, client, _ = env
    sub = realtime.subscribe(client, "closing", ["t"])
    await sub.open()
    got: list[realtime.Message] = []
    first = asyncio.Event()

    async def read() -> None:
        async for message in sub:
            got.append(message)
            first.set()

    reader = asyncio.create_task(read())
    await realtime.publish(client, "closing", "t", "last")
    async with asyncio.timeout(10):
        await first.wait()
        await sub.aclose()  # the reader is waiting for the next message
        await reader
    assert [m.data for m in got] == ["last"]
    with pytest.raises(realtime.RealtimeError, match="was closed"):
        await sub.open()
