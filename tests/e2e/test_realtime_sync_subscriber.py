"""The sync realtime subscriber (``realtime.subscribe_sync``) end to end on the embedded engine:
a thread receives every message a run publishes, in order, for async and sync functions; a Flask
streaming view relays a subscription under a real WSGI server; ``close`` from another thread ends
the iteration; a refused token is one clear error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import flask
import httpx
import pytest
from engine_support import AppServer, run_for_event, sync
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from werkzeug.serving import make_server

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent, realtime

N = 4
TOPICS = ["progress", "status"]


def build(client: inngest_mw.Inngest) -> list[Any]:
    @client.create_function(fn_id="pub", trigger=TriggerEvent(event="rts/pub.async"))
    async def pub(ctx: Context) -> str:
        channel = ctx.event.data["channel"]
        for i in range(N):
            await ctx.step.realtime.publish(f"p{i}", channel, "progress", {"i": i})
        await ctx.publish(channel, "status", "done")
        return "published"

    @client.create_function(fn_id="pub-sync", trigger=TriggerEvent(event="rts/pub.sync"))
    def pub_sync(ctx: ContextSync) -> str:
        channel = ctx.event.data["channel"]
        for i in range(N):
            ctx.step.realtime.publish(f"p{i}", channel, "progress", {"i": i})
        ctx.publish(channel, "status", "done")
        return "published"

    return [pub, pub_sync]


Env = tuple[str, inngest_mw.Inngest]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    db = tmp_path_factory.mktemp("engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="rts",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with AppServer(serve(client, build(client))) as app:
            sync(app)
            yield engine.url, client


def _expected(channel: str) -> list[tuple[str, str, Any]]:
    return [(channel, "progress", {"i": i}) for i in range(N)] + [(channel, "status", "done")]


@pytest.mark.parametrize("colour", ["async", "sync"])
def test_a_sync_subscriber_receives_every_message_of_a_run_in_order(env: Env, colour: str) -> None:
    url, client = env
    channel = f"order:sync-sub:{colour}"
    got: list[realtime.Message] = []
    with realtime.subscribe_sync(client, channel, TOPICS) as sub:
        [event_id] = client.send_sync(
            inngest_mw.Event(name=f"rts/pub.{colour}", data={"channel": channel})
        )
        for message in sub:
            got.append(message)
            if message.topic == "status":
                break
    assert [(m.channel, m.topic, m.data) for m in got] == _expected(channel)
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", "published")
    assert {m.run_id for m in got} == {run["run_id"]}


def test_a_flask_view_relays_a_subscription_to_its_own_client(env: Env) -> None:
    _, client = env
    app = flask.Flask("relay")

    @app.get("/orders/<order>/progress")
    def progress(order: str) -> flask.Response:
        sub = realtime.subscribe_sync(client, f"order:{order}", TOPICS)
        sub.open()  # subscribed before the view answers: nothing published after it is missed

        def lines() -> Iterator[str]:
            with sub:
                yield ": subscribed\n\n"
                for message in sub:
                    yield f"data: {json.dumps([message.topic, message.data])}\n\n"
                    if message.topic == "status":
                        return

        return flask.Response(lines(), mimetype="text/event-stream")

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with (
            httpx.Client(timeout=20) as http,
            http.stream("GET", f"http://127.0.0.1:{server.port}/orders/flask/progress") as response,
        ):
            lines = response.iter_lines()
            assert next(lines) == ": subscribed"
            client.send_sync(inngest_mw.Event(name="rts/pub.sync", data={"channel": "order:flask"}))
            got = [json.loads(line[len("data: ") :]) for line in lines if line]
    finally:
        server.shutdown()
        thread.join(10)
    expected = [["progress", {"i": i}] for i in range(N)] + [["status", "done"]]
    assert got == expected


def test_closing_from_another_thread_ends_the_iteration(env: Env) -> None:
    _, client = env
    sub = realtime.subscribe_sync(client, "closing-sync", ["t"])
    sub.open()
    got: list[Any] = []
    first, ended = threading.Event(), threading.Event()

    def read() -> None:
        for message in sub:
            got.append(message.data)
            first.set()
        ended.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    realtime.publish_sync(client, "closing-sync", "t", "last")
    assert first.wait(10)
    sub.close()  # the reader is waiting for the next message
    assert ended.wait(10), "the iteration did not end when the subscription was closed"
    assert got == ["last"]
    with pytest.raises(realtime.RealtimeError, match="was closed"):
        sub.open()


def test_a_refused_token_is_one_clear_error(env: Env) -> None:
    _, client = env
    with pytest.raises(realtime.RealtimeError, match=r"refused the subscription .* \(401\)"):
        realtime.subscribe_sync(client, "c", ["t"], token="not-a-token").open()
