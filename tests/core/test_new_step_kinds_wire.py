"""The wire form of the newer step kinds (fetch, ai.infer, ai.wrap, wait_for_signal), pinned to the
shapes the Inngest server reads (``pkg/execution/state/opcode.go``, ``pkg/util/gateway``,
``pkg/util/aigateway``), for async and sync functions over real HTTP; and ``ai.infer`` compared
with the official SDK's answer to the same call request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fastapi
import inngest
import inngest.experimental.ai.openai
import inngest.fast_api
import pytest
from inngest_mw_asgi import serve
from support import Caller, call_body, serve_asgi

import inngest_mw
from inngest_mw import Context, ContextSync, FetchResponse, Signal, TriggerEvent, ai
from inngest_mw.memo import hash_step_id

TRIGGER = TriggerEvent(event="test/event")
BODY = {"messages": [{"role": "user", "content": "hi"}]}
MODEL = ai.openai("gpt-test", api_key="sk-1", base_url="http://127.0.0.1:9/v1")
seen: list[Any] = []


def _functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(fn_id="fetch", trigger=TRIGGER)
    async def fetch(ctx: Context) -> Any:
        got = await ctx.step.fetch(
            "get", "https://example.com/x", method="post", headers={"A": "b"}, body={"k": 1}
        )
        seen.append(got)
        return got.status

    @create(fn_id="fetch-sync", trigger=TRIGGER)
    def fetch_sync(ctx: ContextSync) -> Any:
        got = ctx.step.fetch(
            "get", "https://example.com/x", method="post", headers={"A": "b"}, body={"k": 1}
        )
        seen.append(got)
        return got.status

    @create(fn_id="infer", trigger=TRIGGER)
    async def infer(ctx: Context) -> Any:
        return await ctx.step.ai.infer("ask", model=MODEL, body=BODY)

    @create(fn_id="infer-sync", trigger=TRIGGER)
    def infer_sync(ctx: ContextSync) -> Any:
        return ctx.step.ai.infer("ask", model=MODEL, body=BODY)

    @create(fn_id="wrap", trigger=TRIGGER)
    async def wrap(ctx: Context) -> Any:
        return await ctx.step.ai.wrap("call-model", lambda p: {"said": p}, "hello")

    @create(fn_id="wrap-sync", trigger=TRIGGER)
    def wrap_sync(ctx: ContextSync) -> Any:
        return ctx.step.ai.wrap("call-model", lambda p: {"said": p}, "hello")

    @create(fn_id="signal", trigger=TRIGGER)
    async def signal(ctx: Context) -> Any:
        got = await ctx.step.wait_for_signal("approve", signal="order-1", timeout="2h")
        seen.append(got)
        return None if got is None else got.data

    @create(fn_id="signal-sync", trigger=TRIGGER)
    def signal_sync(ctx: ContextSync) -> Any:
        got = ctx.step.wait_for_signal(
            "approve", signal="order-1", timeout="2h", on_conflict="replace"
        )
        seen.append(got)
        return None if got is None else got.data

    return [fetch, fetch_sync, infer, infer_sync, wrap, wrap_sync, signal, signal_sync]


@pytest.fixture(scope="module")
def caller() -> Iterator[Caller]:
    client = inngest_mw.Inngest(app_id="app", is_production=False)
    with serve_asgi(serve(client, _functions(client))) as base:
        yield Caller(base + "/api/inngest")


def _op(step_id: str, op: str, name: str, opts: dict[str, Any] | None) -> dict[str, Any]:
    out = {
        "id": hash_step_id(step_id),
        "op": op,
        "name": name,
        "displayName": step_id,
        "userland": {"id": step_id, "index": 0},
    }
    if opts is not None:
        out["opts"] = opts
    return out


def test_fetch_reports_a_gateway_op_and_returns_the_memoized_answer(
    caller: Caller, variant: str
) -> None:
    res = caller.call(f"app-fetch{variant}", call_body())
    assert res.status_code == 206
    opts = {
        "url": "https://example.com/x",
        "method": "POST",
        "body": '{"k":1}',
        "headers": {"A": "b", "Content-Type": "application/json"},
    }
    assert res.json() == [_op("get", "Gateway", "get", opts)]
    answer = {
        "url": "https://example.com/x",
        "headers": {"Content-Type": "text/plain"},
        "body": "ok",
        "status_code": 201,
    }
    seen.clear()
    res = caller.call(
        f"app-fetch{variant}", call_body(steps={hash_step_id("get"): {"data": answer}})
    )
    assert (res.status_code, res.json()) == (200, 201)
    assert seen == [
        FetchResponse(201, {"Content-Type": "text/plain"}, "ok", "https://example.com/x")
    ]


def test_ai_infer_reports_an_ai_gateway_op_with_the_provider_body(
    caller: Caller, variant: str
) -> None:
    res = caller.call(f"app-infer{variant}", call_body())
    assert res.status_code == 206
    opts = {
        "type": "step.ai.infer",
        "url": "http://127.0.0.1:9/v1/chat/completions",
        "headers": {},
        "auth_key": "sk-1",
        "format": "openai-chat",
        "body": {**BODY, "model": "gpt-test"},
    }
    assert res.json() == [_op("ask", "AIGateway", "ask", opts)]
    answer = {"choices": [{"message": {"content": "yo"}}]}
    res = caller.call(
        f"app-infer{variant}", call_body(steps={hash_step_id("ask"): {"data": answer}})
    )
    assert (res.status_code, res.json()) == (200, answer)


def test_ai_wrap_is_a_run_step_typed_as_an_ai_call_with_its_input(
    caller: Caller, variant: str
) -> None:
    res = caller.call(f"app-wrap{variant}", call_body())
    assert res.status_code == 206
    expected = _op(
        "call-model", "StepRun", "call-model", {"type": "step.ai.wrap", "input": ["hello"]}
    )
    assert res.json() == [{**expected, "data": {"said": "hello"}}]


def test_wait_for_signal_reports_its_signal_and_returns_it_or_none(
    caller: Caller, variant: str
) -> None:
    res = caller.call(f"app-signal{variant}", call_body())
    assert res.status_code == 206
    conflict = "replace" if variant else "fail"
    opts = {"signal": "order-1", "timeout": "2h", "conflict": conflict}
    assert res.json() == [_op("approve", "WaitForSignal", "order-1", opts)]
    seen.clear()
    memo = {"data": {"signal": "order-1", "data": {"ok": True}}}
    res = caller.call(f"app-signal{variant}", call_body(steps={hash_step_id("approve"): memo}))
    assert (res.status_code, res.json()) == (200, {"ok": True})
    res = caller.call(f"app-signal{variant}", call_body(steps={hash_step_id("approve"): None}))
    assert (res.status_code, res.json()) == (200, None)
    assert seen == [Signal("order-1", {"ok": True}), None]


def test_invalid_step_options_fail_the_run_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        inngest_mw.fetch.fetch_options("ftp://example.com")
    with pytest.raises(ValueError, match="method must be one of"):
        inngest_mw.fetch.fetch_options("https://example.com", method="BREW")
    with pytest.raises(ValueError, match="signal must be a non-empty string"):
        inngest_mw.signals.signal_options("", "1h", "fail")
    with pytest.raises(inngest_mw.ConfigError, match="OPENAI_API_KEY"):
        ai.openai("gpt-4o", api_key="")


def test_model_helpers_put_url_format_and_headers_where_each_provider_wants_them() -> None:
    claude = ai.anthropic("claude-x", api_key="k", base_url="http://h/v1")
    assert (claude.url, claude.format, dict(claude.headers)) == (
        "http://h/v1/messages",
        "anthropic",
        {"anthropic-version": "2023-06-01"},
    )
    assert claude.request_body({"max_tokens": 5}) == {"max_tokens": 5, "model": "claude-x"}
    gem = ai.gemini("gemini-pro", api_key="k")
    assert gem.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent"
    )
    assert gem.request_body({"contents": []}) == {"contents": []}  # the model is in the URL
    assert "k" not in repr(gem)  # the key never shows in a repr (logs, tracebacks)


def _official_infer_app() -> fastapi.FastAPI:
    client = inngest.Inngest(app_id="app", is_production=False)
    adapter = inngest.experimental.ai.openai.Adapter(
        auth_key="sk-1", base_url="http://127.0.0.1:9/v1", model="gpt-test"
    )

    @client.create_function(fn_id="infer", trigger=inngest.TriggerEvent(event="test/event"))
    async def infer(ctx: inngest.Context) -> Any:
        return await ctx.step.ai.infer("ask", adapter=adapter, body=dict(BODY))

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [infer])
    return app


def test_ai_infer_op_matches_the_official_sdk(caller: Caller) -> None:
    """Same call request to both SDKs: the same ``AIGateway`` op. Deliberate differences:

    * ``userland`` (``{id, index}``): we send it with every op, as the TypeScript SDK does; the
      official Python SDK sends none. The server reads it only for display.
    * ``data``: the official SDK sends ``"data": null`` on an op that carries no data; we leave
      the key out, as for every reported op (the server reads a missing and a null ``data``
      alike).
    """
    with serve_asgi(_official_infer_app()) as base:
        official = Caller(base + "/api/inngest").call("app-infer", call_body())
    ours = caller.call("app-infer", call_body())
    assert official.status_code == ours.status_code == 206
    [theirs] = official.json()
    [mine] = ours.json()
    mine.pop("userland")
    theirs.pop("userland", None)
    assert theirs.pop("data") is None
    assert mine == theirs
