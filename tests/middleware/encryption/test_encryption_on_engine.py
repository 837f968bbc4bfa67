"""End to end over HTTP with the embedded engine: the server stores only ciphertext (step outputs,
function output, sent event fields) while functions see plaintext; a key rotated mid-run still
completes the run; and an app on the official SDK with inngest-encryption shares events with ours."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import inngest
import inngest_encryption
import pytest
from engine_support import (
    AppServer,
    dev_client,
    get_json,
    run_for_event,
    runs_for_event,
    send,
    serve_functions,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy

import inngest_mw
from inngest_mw import Context, Event, TriggerEvent

KEY_A = "engine-key-a"
KEY_B = "engine-key-b"
SECRET: dict[str, Any] = {"card": "4242 4242 4242 4242", "cvc": 123}


def unseal(value: Any, key: str) -> Any:
    assert value["__ENCRYPTED__"] is True, value
    return LibsodiumStrategy(key).decrypt(value["data"])


def mw_client(engine_url: str, key: str, *fallback: str) -> inngest_mw.Inngest:
    factory = EncryptionMiddleware.factory(key=key, fallback_decryption_keys=fallback)
    return inngest_mw.Inngest(
        app_id="enc-e2e",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        middleware=[factory],
    )


class Seen:
    """The distinct values the functions saw, as JSON, by run ID (replays repeat them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, set[str]] = {}

    def add(self, run_id: str, value: Any) -> None:
        with self.lock:
            self.values.setdefault(run_id, set()).add(json.dumps(value, sort_keys=True))

    def of(self, run_id: str) -> list[Any]:
        with self.lock:
            return sorted((json.loads(v) for v in self.values.get(run_id, ())), key=repr)


def build(client: inngest_mw.Inngest, seen: Seen) -> list[inngest_mw.Function[Any]]:
    @client.create_function(fn_id="pay", trigger=TriggerEvent(event="enc/pay"))
    async def pay(ctx: Context) -> Any:
        seen.add(ctx.run_id, ctx.event.data["encrypted"])
        charge = await ctx.step.run("charge", lambda: dict(SECRET))
        seen.add(ctx.run_id, charge)
        notice = Event(
            name="enc/paid", data={"encrypted": charge, "order": ctx.event.data["order"]}
        )
        await ctx.step.send_event("notify", notice)
        return {"last4": charge["card"][-4:]}

    @client.create_function(fn_id="rotate", trigger=TriggerEvent(event="enc/rotate"))
    async def rotate(ctx: Context) -> Any:
        before = await ctx.step.run("before", lambda: dict(SECRET))
        reply = await ctx.step.wait_for_event(
            "reply", event="enc/reply", if_exp="event.data.order == async.data.order", timeout="1m"
        )
        assert reply is not None
        seen.add(ctx.run_id, reply.data["encrypted"])
        after = await ctx.step.run("after", lambda: [before["cvc"], reply.data["encrypted"]])
        return {"after": after}

    @client.create_function(fn_id="from-official", trigger=TriggerEvent(event="enc/official"))
    def from_official(ctx: inngest_mw.ContextSync) -> Any:
        return ctx.event.data["encrypted"]

    return [pay, rotate, from_official]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineThread]:
    db = tmp_path_factory.mktemp("enc-engine") / "engine.db"
    with EngineThread(db, port=0, retry_base=0.05, tick=0.02) as running:
        yield running


def event_data(engine_url: str, event_id: str) -> dict[str, Any]:
    data: dict[str, Any] = get_json(f"{engine_url}/v1/events/{event_id}")["data"]["data"]
    return data


def _texts(value: object) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def find_event(engine_url: str, run: dict[str, Any], name: str) -> str:
    """The ID of the event ``name`` the run's send step produced (the step output lists it)."""
    [step] = [s for s in run["steps"] if s["name"] == "notify"]
    [event_id] = unseal(step["output"], KEY_A)
    assert get_json(f"{engine_url}/v1/events/{event_id}")["data"]["name"] == name
    return str(event_id)


def test_server_stores_only_ciphertext_while_the_function_sees_plaintext(
    engine: EngineThread,
) -> None:
    seen = Seen()
    client = mw_client(engine.url, KEY_A)
    with AppServer(serve(client, build(client, seen))) as app:
        sync(app)
        [event_id] = client.send_sync(
            Event(name="enc/pay", data={"encrypted": {"pin": "0000"}, "order": 5})
        )
        run = run_for_event(engine.url, event_id)
    assert run["status"] == "Completed", run
    trigger = event_data(engine.url, event_id)
    assert trigger["order"] == 5
    assert unseal(trigger["encrypted"], KEY_A) == {"pin": "0000"}
    steps = {s["name"]: s for s in run["steps"]}
    assert unseal(steps["charge"]["output"], KEY_A) == SECRET
    assert unseal(run["output"], KEY_A) == {"last4": "4242"}
    paid = event_data(engine.url, find_event(engine.url, run, "enc/paid"))
    assert paid["order"] == 5
    assert unseal(paid["encrypted"], KEY_A) == SECRET
    # Only text can leak the card number: a timestamp's digits may contain 4242 by chance.
    assert [t for t in _texts([run, paid, trigger]) if "4242" in t] == []
    assert seen.of(run["run_id"]) == sorted([{"pin": "0000"}, SECRET], key=repr)


def test_rotating_keys_mid_run_completes_the_run(engine: EngineThread) -> None:
    seen = Seen()
    client_a = mw_client(engine.url, KEY_A)
    with AppServer(serve(client_a, build(client_a, seen))) as app_a:
        sync(app_a)
        [event_id] = send(engine.url, {"name": "enc/rotate", "data": {"order": 9}})
        [run] = runs_for_event(engine.url, event_id)
        wait_step(engine.url, run["run_id"], "reply", "Waiting")
        port = app_a.port
    client_b = mw_client(engine.url, KEY_B, KEY_A)
    with AppServer(serve(client_b, build(client_b, seen)), port=port):
        client_b.send_sync(Event(name="enc/reply", data={"order": 9, "encrypted": "from B"}))
        done = wait_run(engine.url, run["run_id"])
    assert done["status"] == "Completed", done
    steps = {s["name"]: s for s in done["steps"]}
    assert unseal(steps["before"]["output"], KEY_A) == SECRET
    assert unseal(steps["after"]["output"], KEY_B) == [123, "from B"]
    assert unseal(done["output"], KEY_B) == {"after": [123, "from B"]}
    assert seen.of(run["run_id"]) == ["from B"]


@pytest.fixture
def official_app(engine: EngineThread) -> Iterator[list[Any]]:
    """An app on the official SDK with inngest-encryption: returns the field it was sent."""
    outputs: list[Any] = []
    client = dev_client(
        "official-enc",
        engine.url,
        middleware=[inngest_encryption.EncryptionMiddleware.factory(KEY_A)],
    )

    @client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="enc/to-official"))
    async def echo(ctx: inngest.Context) -> Any:
        outputs.append(ctx.event.data["encrypted"])
        return ctx.event.data["encrypted"]

    with serve_functions(client, [echo]) as app:
        sync(app)
        yield outputs


def test_events_cross_between_our_app_and_an_official_sdk_app(
    engine: EngineThread, official_app: list[Any]
) -> None:
    ours = mw_client(engine.url, KEY_A)
    [to_them] = ours.send_sync(Event(name="enc/to-official", data={"encrypted": {"n": 1}}))
    theirs = run_for_event(engine.url, to_them)
    assert official_app == [{"n": 1}]
    assert unseal(theirs["output"], KEY_A) == {"n": 1}

    official = dev_client(
        "official-sender",
        engine.url,
        middleware=[inngest_encryption.EncryptionMiddleware.factory(KEY_A)],
    )
    with AppServer(serve(ours, build(ours, Seen()))) as app:
        sync(app)
        [to_us] = official.send_sync(inngest.Event(name="enc/official", data={"encrypted": [2]}))
        assert unseal(event_data(engine.url, to_us)["encrypted"], KEY_A) == [2]
        run = run_for_event(engine.url, to_us)
    assert unseal(run["output"], KEY_A) == [2]
