"""End-to-end: ``step.fetch``, ``step.ai.infer``/``ai.wrap`` and signals, in async and sync
functions served by uvicorn, driven by the embedded engine, which makes the fetch and model
requests itself (to a local stub server standing in for a model API and a web site)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engine_support import (
    AppServer,
    free_port,
    get_json,
    run_for_event,
    runs_for_event,
    send,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.render import describe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import inngest_mw
from inngest_mw import Context, ContextSync, EventModel, StepError, TriggerEvent, ai

COLOURS = ["async", "sync"]


class Shipped(EventModel, name="k/typed.shipped"):
    order: str
    boxes: int


class Stub:
    """A local server standing in for a model provider and a web site; it keeps what it got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []

    def keep(self, request: Request, body: bytes) -> None:
        with self.lock:
            self.requests.append(
                {
                    "path": request.url.path,
                    "query": dict(request.query_params),
                    "headers": dict(request.headers),
                    "body": body.decode(),
                }
            )

    def app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            body = await request.body()
            self.keep(request, body)
            asked = (await request.json())["messages"][-1]["content"]
            return JSONResponse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": f"echo: {asked}"}}
                    ],
                }
            )

        async def overloaded(request: Request) -> Response:
            self.keep(request, await request.body())
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=529)

        async def hello(request: Request) -> Response:
            self.keep(request, await request.body())
            name = request.query_params.get("name", "nobody")
            return PlainTextResponse(f"hello {name}", headers={"X-Greeting": "yes"})

        async def missing(request: Request) -> Response:
            self.keep(request, await request.body())
            return PlainTextResponse("no such page", status_code=404)

        return Starlette(
            routes=[
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/busy/v1/chat/completions", overloaded, methods=["POST"]),
                Route("/hello", hello, methods=["GET", "POST"]),
                Route("/missing", missing, methods=["GET"]),
            ]
        )


def build(client: inngest_mw.Inngest, stub_url: str, down_url: str) -> list[Any]:
    create = client.create_function
    model = ai.openai("gpt-test", api_key="sk-test-key", base_url=f"{stub_url}/v1/")
    busy = ai.openai("gpt-test", api_key="sk-test-key", base_url=f"{stub_url}/busy/v1/")

    @create(fn_id="fetch-async", trigger=TriggerEvent(event="k/fetch.async"))
    async def fetch_async(ctx: Context) -> Any:
        got = await ctx.step.fetch(
            "greet", f"{stub_url}/hello?name={ctx.event.data['name']}", headers={"X-Me": "1"}
        )
        page = await ctx.step.fetch("missing", f"{stub_url}/missing")
        return {
            "status": got.status,
            "body": got.body,
            "greeting": got.headers.get("X-Greeting"),
            "missing": page.status,
        }

    @create(fn_id="fetch-sync", trigger=TriggerEvent(event="k/fetch.sync"))
    def fetch_sync(ctx: ContextSync) -> Any:
        got = ctx.step.fetch(
            "greet", f"{stub_url}/hello?name={ctx.event.data['name']}", headers={"X-Me": "1"}
        )
        page = ctx.step.fetch("missing", f"{stub_url}/missing")
        return {
            "status": got.status,
            "body": got.body,
            "greeting": got.headers.get("X-Greeting"),
            "missing": page.status,
        }

    @create(fn_id="down-async", trigger=TriggerEvent(event="k/down.async"), retries=2)
    async def down_async(ctx: Context) -> Any:
        try:
            await ctx.step.fetch("unreachable", down_url)
        except StepError as exc:
            return {"name": exc.name, "message": exc.message}
        return "answered"

    @create(fn_id="down-sync", trigger=TriggerEvent(event="k/down.sync"), retries=2)
    def down_sync(ctx: ContextSync) -> Any:
        try:
            ctx.step.fetch("unreachable", down_url)
        except StepError as exc:
            return {"name": exc.name, "message": exc.message}
        return "answered"

    @create(fn_id="infer-async", trigger=TriggerEvent(event="k/infer.async"))
    async def infer_async(ctx: Context) -> Any:
        answer = await ctx.step.ai.infer(
            "ask", model=model, body={"messages": [{"role": "user", "content": "hi"}]}
        )
        shout = await ctx.step.ai.wrap("shout", lambda text: text.upper(), "quiet")
        return {"answer": answer["choices"][0]["message"]["content"], "shout": shout}

    @create(fn_id="infer-sync", trigger=TriggerEvent(event="k/infer.sync"))
    def infer_sync(ctx: ContextSync) -> Any:
        answer = ctx.step.ai.infer(
            "ask", model=model, body={"messages": [{"role": "user", "content": "hi"}]}
        )
        shout = ctx.step.ai.wrap("shout", lambda text: text.upper(), "quiet")
        return {"answer": answer["choices"][0]["message"]["content"], "shout": shout}

    @create(fn_id="busy-async", trigger=TriggerEvent(event="k/busy.async"), retries=1)
    async def busy_async(ctx: Context) -> Any:
        try:
            await ctx.step.ai.infer("ask", model=busy, body={"messages": []})
        except StepError as exc:
            return {"name": exc.name, "message": exc.message}
        return "answered"

    @create(fn_id="signal-async", trigger=TriggerEvent(event="k/signal.async"))
    async def signal_async(ctx: Context) -> Any:
        try:
            got = await ctx.step.wait_for_signal(
                "approval", signal=ctx.event.data["signal"], timeout=ctx.event.data["timeout"]
            )
        except StepError as exc:
            return {"refused": exc.name}
        return None if got is None else {"signal": got.signal, "data": got.data}

    @create(fn_id="signal-sync", trigger=TriggerEvent(event="k/signal.sync"))
    def signal_sync(ctx: ContextSync) -> Any:
        try:
            got = ctx.step.wait_for_signal(
                "approval",
                signal=ctx.event.data["signal"],
                timeout=ctx.event.data["timeout"],
                on_conflict=ctx.event.data.get("conflict", "fail"),
            )
        except StepError as exc:
            return {"refused": exc.name}
        return None if got is None else {"signal": got.signal, "data": got.data}

    @create(fn_id="typed", trigger=Shipped)
    async def typed(ctx: Context[Shipped]) -> Any:
        return {"order": ctx.event.data.order, "boxes": ctx.event.data.boxes * 2}

    @create(fn_id="typed-sync", trigger=Shipped)
    def typed_sync(ctx: ContextSync[Shipped]) -> Any:
        return {"order": ctx.event.data.order, "boxes": ctx.event.data.boxes * 2}

    return [
        fetch_async,
        fetch_sync,
        down_async,
        down_sync,
        infer_async,
        infer_sync,
        busy_async,
        signal_async,
        signal_sync,
        typed,
        typed_sync,
    ]


Env = tuple[str, inngest_mw.Inngest, Stub]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    stub = Stub()
    db = tmp_path_factory.mktemp("engine") / "engine.db"
    down_url = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    with (
        AppServer(stub.app()) as stub_server,
        EngineThread(db, port=0, retry_base=0.02, tick=0.02) as engine,
    ):
        stub_url = f"http://127.0.0.1:{stub_server.port}"
        client = inngest_mw.Inngest(
            app_id="kinds",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )
        with AppServer(serve(client, build(client, stub_url, down_url))) as app:
            sync(app)
            yield engine.url, client, stub


def _lines(history: list[dict[str, Any]]) -> list[str]:
    """The run's history as ``inngest-mw run`` and the UI print it."""
    skip = ("at", "type", "step")
    return [
        describe(h["type"], h["step"], {k: v for k, v in h.items() if k not in skip})
        for h in history
    ]


def _history(url: str, run_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = get_json(f"{url}/v1/runs/{run_id}")["data"]["history"]
    return entries


@pytest.mark.parametrize("colour", COLOURS)
def test_fetch_is_made_by_the_engine_and_returns_status_headers_and_body(
    env: Env, colour: str
) -> None:
    url, _, stub = env
    [event_id] = send(url, {"name": f"k/fetch.{colour}", "data": {"name": colour}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == (
        "Completed",
        {"status": 200, "body": f"hello {colour}", "greeting": "yes", "missing": 404},
    )
    [greet] = [r for r in stub.requests if r["query"].get("name") == colour]
    assert greet["headers"]["x-me"] == "1"
    assert [s["op"] for s in run["steps"]] == ["Gateway", "Gateway"]


@pytest.mark.parametrize("colour", COLOURS)
def test_fetch_without_an_answer_is_retried_then_fails_the_step(env: Env, colour: str) -> None:
    url, _, _ = env
    [event_id] = send(url, {"name": f"k/down.{colour}", "data": {}})
    run = run_for_event(url, event_id)
    assert run["status"] == "Completed"
    assert run["output"]["name"] == "GatewayError"
    assert run["output"]["message"].startswith("Error making gateway request: ConnectError")
    retries = [h for h in _history(url, run["run_id"]) if h["type"] == "retry_scheduled"]
    assert len(retries) == 2  # retries=2: three attempts in all


@pytest.mark.parametrize("colour", COLOURS)
def test_ai_infer_is_sent_by_the_engine_with_the_key_and_its_answer_memoized(
    env: Env, colour: str
) -> None:
    url, _, stub = env
    before = len([r for r in stub.requests if r["path"] == "/v1/chat/completions"])
    [event_id] = send(url, {"name": f"k/infer.{colour}", "data": {}})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", {"answer": "echo: hi", "shout": "QUIET"})
    asks = [r for r in stub.requests if r["path"] == "/v1/chat/completions"]
    assert len(asks) == before + 1  # made once, by the engine, never replayed
    ask = asks[-1]
    assert ask["headers"]["authorization"] == "Bearer sk-test-key"
    assert ask["headers"]["content-type"] == "application/json"
    assert '"model":"gpt-test"' in ask["body"]
    ops = {s["name"]: s["op"] for s in run["steps"]}
    assert ops == {"ask": "AIGateway", "shout": "StepRun"}
    history = _history(url, run["run_id"])
    assert "sk-test-key" not in str(history)
    lines = _lines(history)
    assert any(
        line.startswith('step "ask" engine requesting openai-chat model request to http://')
        for line in lines
    ), lines
    assert 'step "ask" answered HTTP 200' in [line.rsplit(" in ", 1)[0] for line in lines]


def test_ai_infer_error_status_is_retried_then_raised_with_the_provider_answer(env: Env) -> None:
    url, _, stub = env
    [event_id] = send(url, {"name": "k/busy.async", "data": {}})
    run = run_for_event(url, event_id)
    assert run["output"] == {
        "name": "AIGatewayError",
        "message": "Error making AI request: the provider answered 529",
    }
    assert len([r for r in stub.requests if r["path"].startswith("/busy/")]) >= 2


def _send_signal(client: inngest_mw.Inngest, colour: str, signal: str, data: Any) -> str:
    if colour == "sync":
        return client.send_signal_sync(signal, data)
    return asyncio.run(client.send_signal(signal, data))


@pytest.mark.parametrize("colour", COLOURS)
def test_a_signal_resumes_exactly_the_run_waiting_for_it(env: Env, colour: str) -> None:
    url, client, _ = env
    signal = f"approve-{colour}"
    [event_id] = send(
        url, {"name": f"k/signal.{colour}", "data": {"signal": signal, "timeout": "1m"}}
    )
    [run] = runs_for_event(url, event_id)
    wait_step(url, run["run_id"], "approval", "Waiting")
    assert _send_signal(client, colour, signal, {"by": "ana"}) == run["run_id"]
    done = wait_run(url, run["run_id"])
    assert done["output"] == {"signal": signal, "data": {"by": "ana"}}
    lines = _lines(done["history"])
    assert f'step "approval" waiting for signal {signal}' in lines
    assert 'step "approval" resumed by signal' in lines
    with pytest.raises(inngest_mw.SignalNotFoundError, match=repr(signal)):
        _send_signal(client, colour, signal, None)  # that run has resumed: nobody waits now


@pytest.mark.parametrize("colour", COLOURS)
def test_a_signal_wait_times_out_to_none(env: Env, colour: str) -> None:
    url, _, _ = env
    data = {"signal": f"never-{colour}", "timeout": "1s"}
    [event_id] = send(url, {"name": f"k/signal.{colour}", "data": data})
    run = run_for_event(url, event_id)
    assert (run["status"], run["output"]) == ("Completed", None)


def test_a_second_wait_on_a_held_signal_fails_unless_it_replaces(env: Env) -> None:
    url, client, _ = env
    signal = "held-signal"
    wait: Callable[[str], dict[str, Any]] = lambda conflict: {  # noqa: E731
        "name": "k/signal.sync",
        "data": {"signal": signal, "timeout": "1m", "conflict": conflict},
    }
    [first_event] = send(url, wait("fail"))
    [first] = runs_for_event(url, first_event)
    wait_step(url, first["run_id"], "approval", "Waiting")
    [second_event] = send(url, wait("fail"))
    assert run_for_event(url, second_event)["output"] == {"refused": "SignalConflictError"}
    [third_event] = send(url, wait("replace"))
    [third] = runs_for_event(url, third_event)
    # The replaced wait ends as a timeout would; the signal now goes to the run that took it.
    assert wait_run(url, first["run_id"])["output"] is None
    wait_step(url, third["run_id"], "approval", "Waiting")
    assert client.send_signal_sync(signal, 1) == third["run_id"]
    assert wait_run(url, third["run_id"])["output"] == {"signal": signal, "data": 1}


def test_a_typed_event_round_trips_through_the_engine_and_an_invalid_one_is_never_sent(
    env: Env,
) -> None:
    url, client, _ = env
    [event_id] = client.send_sync(Shipped(order="S-1", boxes=2))
    runs = [wait_run(url, r["run_id"]) for r in runs_for_event(url, event_id, count=2)]
    assert sorted(r["function_id"] for r in runs) == ["kinds-typed", "kinds-typed-sync"]
    assert [r["output"] for r in runs] == [{"order": "S-1", "boxes": 4}] * 2
    bad = inngest_mw.Event(name="k/typed.shipped", data={"order": "S-2", "boxes": "two"})
    with pytest.raises(inngest_mw.EventDataInvalidError, match=r"data\.boxes"):
        client.send_sync(bad)
    # What did reach the engine with that name: only the valid event.
    listed = get_json(f"{url}/v1/events?limit=500")["data"]
    assert [e["id"] for e in listed if e["name"] == "k/typed.shipped"] == [event_id]
