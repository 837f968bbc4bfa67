"""EncryptionMiddleware in an inngest-mw app over real HTTP: what leaves a request is ciphertext,
what user code sees is plaintext, for every step kind and for sync and async functions."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import nacl.secret
import pytest
from inngest_mw_asgi import serve
from inngest_mw_encryption import EncryptionMiddleware, LibsodiumStrategy
from inngest_mw_encryption._codec import Codec
from support import Caller, EventSink, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, Event, TriggerEvent
from inngest_mw.errors import ConfigError
from inngest_mw.memo import hash_step_id

KEY = "call-test-key"
OLD_KEY = "call-test-old-key"
SECRET: dict[str, Any] = {"card": "4242 4242 4242 4242", "cvc": 123}
RAW_KEY = bytes(range(32))


def seal(value: object, key: str = KEY) -> Any:
    return Codec(LibsodiumStrategy(key)).seal(value, "test value")


def unseal(value: Any, key: str = KEY) -> Any:
    assert value["__ENCRYPTED__"] is True
    assert value["__STRATEGY__"] == "inngest/libsodium"
    return LibsodiumStrategy(key).decrypt(value["data"])


class HexSecretboxStrategy:
    """Another algorithm, to show strategies plug in: secretbox over a raw key, hex-encoded."""

    identifier = "test/hex-secretbox"

    def __init__(self, raw_key: bytes) -> None:
        self.box = nacl.secret.SecretBox(raw_key)

    def encrypt(self, value: object) -> str:
        return bytes(self.box.encrypt(json.dumps(value).encode())).hex()

    def decrypt(self, data: str) -> object:
        return json.loads(self.box.decrypt(bytes.fromhex(data)))


def build(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    enc = [EncryptionMiddleware.factory(key=KEY)]
    create = client.create_function

    @create(fn_id="steps", trigger=TriggerEvent(event="t/steps"), middleware=enc)
    async def steps(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: dict(SECRET))
        b = await ctx.step.run("b", lambda: a["card"][-4:])
        return {"a": a, "b": b}

    @create(fn_id="steps-sync", trigger=TriggerEvent(event="t/steps"), middleware=enc)
    def steps_sync(ctx: ContextSync) -> Any:
        a = ctx.step.run("a", lambda: dict(SECRET))
        b = ctx.step.run("b", lambda: a["card"][-4:])
        return {"a": a, "b": b}

    @create(fn_id="nothing", trigger=TriggerEvent(event="t/nothing"), middleware=enc)
    async def nothing(ctx: Context) -> None:
        await ctx.step.run("none", lambda: None)
        await ctx.step.sleep("nap", "1s")

    @create(fn_id="echo", trigger=TriggerEvent(event="t/echo"), middleware=enc)
    def echo(ctx: ContextSync) -> Any:
        return {"event": ctx.event.data, "events": [e.data for e in ctx.events]}

    @create(fn_id="waiter", trigger=TriggerEvent(event="t/wait"), middleware=enc)
    async def waiter(ctx: Context) -> Any:
        got = await ctx.step.wait_for_event("reply", event="t/reply", timeout="1m")
        return None if got is None else got.data

    @create(fn_id="inviter", trigger=TriggerEvent(event="t/invite"), middleware=enc)
    async def inviter(ctx: Context) -> Any:
        data = {"encrypted": SECRET, "plain": 1}
        return await ctx.step.invoke_by_id("call", function_id="echo", data=data)

    @create(fn_id="parallel", trigger=TriggerEvent(event="t/par"), middleware=enc)
    async def parallel(ctx: Context) -> Any:
        return await ctx.group.parallel(
            (lambda: ctx.step.run("p0", lambda: "zero"), lambda: ctx.step.run("p1", lambda: "one"))
        )

    @create(fn_id="caught", trigger=TriggerEvent(event="t/caught"), middleware=enc)
    async def caught(ctx: Context) -> Any:
        try:
            await ctx.step.run("boom", lambda: 1)
        except inngest_mw.StepError as exc:
            return {"name": exc.name, "message": exc.message}
        return "not reached"

    @create(fn_id="sender", trigger=TriggerEvent(event="t/send"), middleware=enc)
    async def sender(ctx: Context) -> Any:
        event = Event(name="t/out", data={"encrypted": SECRET, "user_id": "u1"})
        ids = await ctx.step.send_event("send", event)
        return {"ids": ids, "data": event.data}

    rotated = [EncryptionMiddleware.factory(key="new-key", fallback_decryption_keys=[OLD_KEY])]

    @create(fn_id="rotated", trigger=TriggerEvent(event="t/steps"), middleware=rotated)
    async def rotated_fn(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: dict(SECRET))
        return await ctx.step.run("b", lambda: a["card"][-4:])

    decrypt_only = [EncryptionMiddleware.factory(key=KEY, decrypt_only=True)]

    @create(fn_id="decrypt-only", trigger=TriggerEvent(event="t/steps"), middleware=decrypt_only)
    async def decrypt_only_fn(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: dict(SECRET))
        return {"a": a, "event": ctx.event.data}

    custom = [EncryptionMiddleware.factory(strategy=HexSecretboxStrategy(RAW_KEY))]

    @create(fn_id="custom", trigger=TriggerEvent(event="t/steps"), middleware=custom)
    async def custom_fn(ctx: Context) -> Any:
        a = await ctx.step.run("a", lambda: dict(SECRET))
        return a["cvc"]

    return [
        steps,
        steps_sync,
        nothing,
        echo,
        waiter,
        inviter,
        parallel,
        caught,
        sender,
        rotated_fn,
        decrypt_only_fn,
        custom_fn,
    ]


@pytest.fixture(scope="module")
def sink_url() -> Iterator[tuple[EventSink, str]]:
    sink = EventSink()
    with serve_asgi(sink) as url:
        yield sink, url


@pytest.fixture(scope="module")
def caller(sink_url: tuple[EventSink, str]) -> Iterator[Caller]:
    client = inngest_mw.Inngest(app_id="enc", is_production=False, event_api_base_url=sink_url[1])
    with serve_asgi(serve(client, build(client))) as base:
        yield Caller(base + "/api/inngest")


@pytest.fixture(params=["steps", "steps-sync"])
def steps_fn(request: pytest.FixtureRequest) -> str:
    return f"enc-{request.param}"


def test_new_step_output_leaves_encrypted(caller: Caller, steps_fn: str) -> None:
    res = caller.call(steps_fn, call_body())
    [op] = res.json()
    assert (res.status_code, op["op"]) == (206, "StepRun")
    assert "4242" not in res.text
    assert unseal(op["data"]) == SECRET


def test_memoized_output_reaches_the_function_decrypted(caller: Caller, steps_fn: str) -> None:
    res = caller.call(steps_fn, call_body(steps={hash_step_id("a"): {"data": seal(SECRET)}}))
    [op] = res.json()
    assert (op["displayName"], unseal(op["data"])) == ("b", "4242")


def test_function_return_value_leaves_encrypted(caller: Caller, steps_fn: str) -> None:
    memos = {hash_step_id("a"): {"data": seal(SECRET)}, hash_step_id("b"): {"data": seal("4242")}}
    res = caller.call(steps_fn, call_body(steps=memos))
    assert res.status_code == 200
    assert unseal(res.json()) == {"a": SECRET, "b": "4242"}


def test_whole_run_driven_request_by_request_completes(caller: Caller, steps_fn: str) -> None:
    res, trace = caller.run_to_completion(steps_fn)
    assert trace == ["StepRun:a", "StepRun:b"]
    assert unseal(res.json()) == {"a": SECRET, "b": "4242"}


def test_none_outputs_and_sleep_ops_carry_no_ciphertext(caller: Caller) -> None:
    [op] = caller.call("enc-nothing", call_body()).json()
    assert (op["op"], op["data"]) == ("StepRun", None)
    memos = {hash_step_id("none"): {"data": None}}
    [op] = caller.call("enc-nothing", call_body(steps=memos)).json()
    assert op["op"] == "Sleep"
    assert "data" not in op
    res = caller.call("enc-nothing", call_body(steps={**memos, hash_step_id("nap"): None}))
    assert (res.status_code, res.json()) == (200, None)


def test_encrypted_event_fields_and_whole_data_are_decrypted(caller: Caller) -> None:
    event = {"name": "t/echo", "data": {"encrypted": seal(SECRET), "other": seal(1), "clear": 2}}
    whole = {"name": "t/echo", "data": {**seal({"x": "y"}), "_inngest": {"source": "invoke"}}}
    body = call_body(event=event)
    body["events"] = [event, whole]
    res = caller.call("enc-echo", body)
    plain = {"encrypted": SECRET, "other": 1, "clear": 2}
    assert unseal(res.json()) == {
        "event": plain,
        "events": [plain, {"x": "y", "_inngest": {"source": "invoke"}}],
    }


def test_event_from_wait_for_event_is_decrypted(caller: Caller) -> None:
    matched = {"name": "t/reply", "data": {"encrypted": seal(SECRET), "n": 1}, "id": "e1", "ts": 1}
    res = caller.call("enc-waiter", call_body(steps={hash_step_id("reply"): matched}))
    assert unseal(res.json()) == {"encrypted": SECRET, "n": 1}


def test_invoke_payload_field_leaves_encrypted_and_the_result_comes_back_decrypted(
    caller: Caller,
) -> None:
    [op] = caller.call("enc-inviter", call_body()).json()
    assert op["op"] == "InvokeFunction"
    data = op["opts"]["payload"]["data"]
    assert data["plain"] == 1
    assert unseal(data["encrypted"]) == SECRET
    res = caller.call("enc-inviter", call_body(steps={hash_step_id("call"): {"data": seal(7)}}))
    assert unseal(res.json()) == 7


def test_parallel_memos_are_all_decrypted(caller: Caller) -> None:
    memos = {hash_step_id("p0"): {"data": seal("zero")}, hash_step_id("p1"): {"data": seal("one")}}
    res = caller.call("enc-parallel", call_body(steps=memos, disable_immediate=True))
    assert unseal(res.json()) == ["zero", "one"]


def test_encrypted_step_error_is_decrypted(caller: Caller) -> None:
    error = {"name": "CardError", "message": seal("card 4242 declined"), "stack": None}
    res = caller.call("enc-caught", call_body(steps={hash_step_id("boom"): {"error": error}}))
    assert unseal(res.json()) == {"name": "CardError", "message": "card 4242 declined"}
    whole = seal({"name": "CardError", "message": "declined"})
    res = caller.call("enc-caught", call_body(steps={hash_step_id("boom"): {"error": whole}}))
    assert unseal(res.json()) == {"name": "CardError", "message": "declined"}


def test_sent_event_field_is_encrypted_and_the_rest_stays_clear(
    caller: Caller, sink_url: tuple[EventSink, str]
) -> None:
    sink, _ = sink_url
    before = len(sink.received)
    [op] = caller.call("enc-sender", call_body()).json()
    [sent] = sink.received[before:]
    assert sent["data"]["user_id"] == "u1"
    assert unseal(sent["data"]["encrypted"]) == SECRET
    assert unseal(op["data"]) == [f"id-{before}"]
    res = caller.call("enc-sender", call_body(steps={hash_step_id("send"): {"data": seal(["x"])}}))
    assert unseal(res.json()) == {"ids": ["x"], "data": {"encrypted": SECRET, "user_id": "u1"}}


def test_rotation_decrypts_old_key_values_and_encrypts_with_the_new_key(caller: Caller) -> None:
    res = caller.call(
        "enc-rotated", call_body(steps={hash_step_id("a"): {"data": seal(SECRET, OLD_KEY)}})
    )
    [op] = res.json()
    assert unseal(op["data"], "new-key") == "4242"


def test_decrypt_only_decrypts_but_encrypts_nothing(caller: Caller) -> None:
    [op] = caller.call("enc-decrypt-only", call_body()).json()
    assert op["data"] == SECRET
    event = {"name": "t/steps", "data": {"encrypted": seal("s")}}
    res = caller.call(
        "enc-decrypt-only",
        call_body(event=event, steps={hash_step_id("a"): {"data": seal(SECRET)}}),
    )
    assert res.json() == {"a": SECRET, "event": {"encrypted": "s"}}


def test_a_custom_strategy_encrypts_and_decrypts(caller: Caller) -> None:
    [op] = caller.call("enc-custom", call_body()).json()
    marker = op["data"]
    assert marker["__STRATEGY__"] == "test/hex-secretbox"
    res = caller.call("enc-custom", call_body(steps={hash_step_id("a"): {"data": marker}}))
    assert HexSecretboxStrategy(RAW_KEY).decrypt(res.json()["data"]) == 123


def test_wrong_key_fails_the_request_without_leaking(
    caller: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = seal(SECRET, "somebody-elses-key")
    with caplog.at_level(logging.DEBUG):
        res = caller.call("enc-steps", call_body(steps={hash_step_id("a"): {"data": stranger}}))
    assert res.status_code == 500
    assert res.headers["x-inngest-no-retry"] == "false"
    error = res.json()
    assert error["name"] == "MiddlewareError"
    assert error["message"] == (
        "middleware EncryptionMiddleware.transform_input raised DecryptionError: cannot decrypt "
        f"step {hash_step_id('a')} output: no configured key matches"
    )
    for text in (res.text, caplog.text):
        assert KEY not in text
        assert "somebody" not in text
        assert "4242" not in text
        assert stranger["data"] not in text


def test_the_bare_class_is_refused_with_a_pointer_to_factory() -> None:
    client = inngest_mw.Inngest(app_id="bare", is_production=False)
    with pytest.raises(ConfigError, match=r"EncryptionMiddleware.factory\(key=...\)"):
        EncryptionMiddleware(client, None)


def test_factory_needs_exactly_one_of_key_and_strategy() -> None:
    with pytest.raises(ConfigError, match="pass key"):
        EncryptionMiddleware.factory()
    with pytest.raises(ConfigError, match="either key"):
        EncryptionMiddleware.factory(key="k", strategy=HexSecretboxStrategy(RAW_KEY))


def test_client_send_encrypts_the_field(sink_url: tuple[EventSink, str]) -> None:
    sink, url = sink_url
    client = inngest_mw.Inngest(
        app_id="sender",
        is_production=False,
        event_api_base_url=url,
        middleware=[EncryptionMiddleware.factory(key=KEY, event_encryption_field="secret")],
    )
    event = Event(name="t/out", data={"secret": "s3", "encrypted": "not this one"})
    before = len(sink.received)
    client.send_sync([event, Event(name="t/plain", data={"a": 1})])
    first, second = sink.received[before:]
    assert unseal(first["data"]["secret"]) == "s3"
    assert first["data"]["encrypted"] == "not this one"
    assert second["data"] == {"a": 1}
    assert event.data["secret"] == "s3"
