"""Middleware cannot tell a connect call from an HTTP one: the same function, with a middleware
recording every hook, runs on the engine once over HTTP and once over connect, and the two
records are the same, hook for hook, async and sync."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from connect_support import WorkerThread, wait_workers
from engine_support import AppServer, run_for_event, send, sync
from inngest_mw_asgi import serve
from inngest_mw_connect import connect_pb2 as pb
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, ContextSync, Middleware, MiddlewareSync, TriggerEvent
from inngest_mw.hooks import HOOKS, HookKind


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(
        tmp_path / "engine.db", port=0, connect_port=0, retry_base=0.05, tick=0.02
    ) as running:
        yield running


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: list[str] = []
        self.raw: list[type] = []

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


def recorder(log: Log, *, sync_hooks: bool) -> type:
    """A middleware recording every hook it is given (``>``/``<`` around the wraps)."""
    ns: dict[str, Any] = {}
    for spec in HOOKS.ALL:
        name = spec.name
        if spec.kind is HookKind.WRAP:

            def wrap(name: str = name) -> Callable[..., Any]:
                if sync_hooks:

                    def fn(self: Any, call_next: Callable[[], Any], arg: Any) -> Any:
                        log.add(f"{name}>")
                        try:
                            return call_next()
                        finally:
                            log.add(f"{name}<")

                    return fn

                async def afn(self: Any, call_next: Callable[[], Awaitable[Any]], arg: Any) -> Any:
                    log.add(f"{name}>")
                    try:
                        return await call_next()
                    finally:
                        log.add(f"{name}<")

                return afn

            ns[name] = wrap()
            continue

        def hook(name: str = name) -> Callable[..., Any]:
            if sync_hooks:

                def fn(self: Any, *args: Any) -> None:
                    log.add(name)

                return fn

            async def afn(self: Any, *args: Any) -> None:
                log.add(name)

            return afn

        ns[name] = hook()

    def init(self: Any, client: inngest_mw.Inngest, raw_request: object) -> None:
        base.__init__(self, client, raw_request)
        log.raw.append(type(raw_request))

    base = MiddlewareSync if sync_hooks else Middleware
    ns["__init__"] = init
    return type("Recorder", (base,), ns)


def app(
    engine: EngineThread, app_id: str, log: Log, *, sync_fn: bool
) -> tuple[inngest_mw.Inngest, list[inngest_mw.Function[Any]]]:
    client = inngest_mw.Inngest(
        app_id=app_id,
        is_production=False,
        api_base_url=engine.url,
        event_api_base_url=engine.url,
        checkpointing=False,
        middleware=[recorder(log, sync_hooks=sync_fn)],
    )

    if sync_fn:

        @client.create_function(fn_id="flow", trigger=TriggerEvent(event=f"{app_id}/go"))
        def flow_sync(ctx: ContextSync) -> int:
            a = ctx.step.run("a", lambda: 1)
            ctx.step.send_event("tell", [inngest_mw.Event(name=f"{app_id}/told", data={})])
            return ctx.step.run("b", lambda: a + 1)

        return client, [flow_sync]

    @client.create_function(fn_id="flow", trigger=TriggerEvent(event=f"{app_id}/go"))
    async def flow(ctx: Context) -> int:
        a = await ctx.step.run("a", lambda: 1)
        await ctx.step.send_event("tell", [inngest_mw.Event(name=f"{app_id}/told", data={})])
        return await ctx.step.run("b", lambda: a + 1)

    return client, [flow]


@pytest.mark.parametrize("sync_fn", [False, True], ids=["async", "sync"])
def test_every_hook_runs_the_same_over_connect_as_over_http(
    engine: EngineThread, sync_fn: bool
) -> None:
    over_http, over_connect = Log(), Log()
    http_client, http_fns = app(engine, "mw-http", over_http, sync_fn=sync_fn)
    connect_client, connect_fns = app(engine, "mw-connect", over_connect, sync_fn=sync_fn)
    with AppServer(serve(http_client, http_fns)) as server:
        sync(server)
        (event_id,) = send(engine.url, {"name": "mw-http/go", "data": {}})
        assert run_for_event(engine.url, event_id)["output"] == 2
    with WorkerThread(connect_client, connect_fns):
        wait_workers(engine.url, "mw-connect", 1)
        (event_id,) = send(engine.url, {"name": "mw-connect/go", "data": {}})
        assert run_for_event(engine.url, event_id)["output"] == 2
    assert len(over_http.lines) > 40
    assert over_connect.lines == over_http.lines
    # Only the transport's own request object differs, as it does between frameworks.
    assert set(over_connect.raw) == {pb.GatewayExecutorRequestData}
    assert pb.GatewayExecutorRequestData not in over_http.raw
