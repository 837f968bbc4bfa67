"""The engine's gateway at the protocol level: authentication, bad input, heartbeats, leases, and
the HTTP reply path, driven by raw protobuf frames over a real WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from connect_support import WorkerThread, wait_workers
from engine_support import poll, run_for_event, runs_for_event, send
from inngest_mw_connect import ConnectAuthError, Worker
from inngest_mw_connect import connect_pb2 as pb
from inngest_mw_connect.protocol import SUBPROTOCOL, decode, encode, payload
from inngest_mw_dev import EngineThread
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

import inngest_mw
from inngest_mw import Context, TriggerEvent
from inngest_mw.signature import hash_signing_key

KEY = "signkey-test-" + "ab" * 32
OTHER_KEY = "signkey-test-" + "cd" * 32
FN = [
    {
        "id": "raw-fn",
        "name": "raw",
        "triggers": [{"event": "raw/go"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "ws", "url": "wss://connect?fnId=raw-fn&stepId=step"},
            }
        },
    }
]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(
        tmp_path / "engine.db",
        port=0,
        connect_port=0,
        retry_base=0.05,
        tick=0.02,
        connect_heartbeat=0.2,
        connect_lease=1.0,
    ) as running:
        yield running


def start(engine: EngineThread, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.post(f"{engine.url}/v0/connect/start", content=body, headers=headers, timeout=10)


def started(engine: EngineThread) -> pb.StartResponse:
    response = start(engine)
    assert response.status_code == 200, response.text
    return pb.StartResponse.FromString(response.content)


def connect_request(
    session: pb.StartResponse, functions: Any = FN, app: str = "raw"
) -> pb.WorkerConnectRequestData:
    return pb.WorkerConnectRequestData(
        connection_id=session.connection_id,
        instance_id="raw-worker",
        auth_data=pb.AuthData(session_token=session.session_token, sync_token=session.sync_token),
        apps=[pb.AppConfiguration(app_name=app, functions=json.dumps(functions).encode())],
        framework="connect",
        sdk_language="py",
        sdk_version="0.0.1",
    )


async def dial(session: pb.StartResponse) -> ClientConnection:
    ws = await connect(session.gateway_endpoint, subprotocols=[Subprotocol(SUBPROTOCOL)])
    hello = decode(await ws.recv())
    assert hello.kind == pb.GATEWAY_HELLO
    return ws


async def ready_worker(
    engine: EngineThread,
) -> tuple[ClientConnection, pb.GatewayConnectionReadyData]:
    session = started(engine)
    ws = await dial(session)
    await ws.send(encode(pb.WORKER_CONNECT, connect_request(session)))
    reply = decode(await ws.recv())
    assert reply.kind == pb.GATEWAY_CONNECTION_READY, reply
    return ws, payload(reply, pb.GatewayConnectionReadyData)


def test_the_start_request_answers_a_session_on_the_gateway(engine: EngineThread) -> None:
    assert engine.engine.connect is not None
    session = started(engine)
    assert session.gateway_endpoint == f"ws://127.0.0.1:{engine.engine.connect.port}/v0/connect"
    assert session.connection_id
    assert session.session_token
    assert session.gateway_group
    # As the Dev Server does: one gateway, so a worker's excluded groups are not asked for, and
    # the endpoint names the host the worker reached the API at.
    body = pb.StartRequest(exclude_gateways=[session.gateway_group]).SerializeToString()
    again = start(engine, body, Host=f"engine.internal:{engine.engine.port}")
    assert again.status_code == 200
    moved = pb.StartResponse.FromString(again.content)
    assert moved.gateway_endpoint == f"ws://engine.internal:{engine.engine.connect.port}/v0/connect"


def test_a_start_request_that_is_not_protobuf_is_a_400(engine: EngineThread) -> None:
    response = start(engine, b"\xff\xff\xff")
    assert response.status_code == 400
    assert "StartRequest" in response.json()["error"]


def test_the_handshake_registers_the_app_and_heartbeats_are_answered(engine: EngineThread) -> None:
    async def scenario() -> pb.GatewayConnectionReadyData:
        ws, ready = await ready_worker(engine)
        async with ws:
            await ws.send(encode(pb.WORKER_HEARTBEAT))
            assert decode(await ws.recv()).kind == pb.GATEWAY_HEARTBEAT
        return ready

    ready = asyncio.run(scenario())
    assert (ready.heartbeat_interval, ready.extend_lease_interval) == ("200ms", "250ms")
    apps = httpx.get(f"{engine.url}/v1/apps", timeout=10).json()["data"]
    assert [a["functions"] for a in apps if a["name"] == "raw"] == [["raw-fn"]]


def test_a_wrong_session_token_is_refused(engine: EngineThread) -> None:
    async def scenario() -> ConnectionClosed:
        session = started(engine)
        session.session_token = "forged"
        ws = await dial(session)
        await ws.send(encode(pb.WORKER_CONNECT, connect_request(session)))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        return closed.value

    closed = asyncio.run(scenario())
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008
    assert "authentication failed" in closed.rcvd.reason


def test_invalid_functions_are_a_sync_failure_naming_the_field(engine: EngineThread) -> None:
    async def scenario() -> pb.SystemError:
        session = started(engine)
        ws = await dial(session)
        bad = [{"id": "raw-fn", "name": "raw", "triggers": [{"event": ""}]}]
        await ws.send(encode(pb.WORKER_CONNECT, connect_request(session, bad)))
        reply = decode(await ws.recv())
        assert reply.kind == pb.SYNC_FAILED
        return payload(reply, pb.SystemError)

    error = asyncio.run(scenario())
    assert "apps[0] (raw)" in error.message
    assert "trigger" in error.message


def test_a_connection_outside_the_gateway_path_is_a_404(engine: EngineThread) -> None:
    assert engine.engine.connect is not None
    port = engine.engine.connect.port

    async def scenario() -> None:
        await connect(f"ws://127.0.0.1:{port}/elsewhere")

    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(scenario())
    assert refused.value.response.status_code == 404


def test_a_worker_that_stops_extending_its_lease_loses_the_call_to_another(
    engine: EngineThread,
) -> None:
    """A fake worker acknowledges the call and then says nothing: once its one-second lease
    runs out, the gateway gives the call to a real worker."""
    calls: list[str] = []
    got = threading.Event()
    client = inngest_mw.Inngest(
        app_id="raw", is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
    )

    @client.create_function(fn_id="fn", trigger=TriggerEvent(event="raw/go"))
    async def fn(ctx: Context) -> str:
        calls.append(ctx.run_id)
        return "real"

    async def hang() -> None:
        ws, _ = await ready_worker(engine)
        with contextlib.suppress(ConnectionClosed):  # until the engine stops
            while True:
                message = decode(await ws.recv())
                if message.kind == pb.GATEWAY_EXECUTOR_REQUEST:
                    request = payload(message, pb.GatewayExecutorRequestData)
                    ack = pb.WorkerRequestAckData(request_id=request.request_id)
                    await ws.send(encode(pb.WORKER_REQUEST_ACK, ack))
                    got.set()
                    await ws.send(encode(pb.WORKER_HEARTBEAT))
                elif message.kind == pb.GATEWAY_HEARTBEAT:
                    await asyncio.sleep(0.1)
                    await ws.send(encode(pb.WORKER_HEARTBEAT))

    hung = threading.Thread(target=lambda: asyncio.run(hang()), daemon=True)
    hung.start()
    wait_workers(engine.url, "raw", 1)
    (event_id,) = send(engine.url, {"name": "raw/go", "data": {}})
    assert got.wait(15), "the fake worker never got the call"
    with WorkerThread(client, [fn], instance_id="real"):
        run = run_for_event(engine.url, event_id, timeout=30)
    assert run["status"] == "Completed"
    assert run["output"] == "real"
    assert len(calls) == 1


def test_a_reply_flushed_over_http_completes_the_call(engine: EngineThread) -> None:
    """A worker whose connection is gone hands its reply to ``POST /v0/connect/flush``."""

    async def answer_by_flush() -> None:
        ws, _ = await ready_worker(engine)
        async with ws:
            message = decode(await ws.recv())
            while message.kind != pb.GATEWAY_EXECUTOR_REQUEST:
                message = decode(await ws.recv())
            request = payload(message, pb.GatewayExecutorRequestData)
            reply = pb.SDKResponse(
                request_id=request.request_id,
                status=pb.DONE,
                body=b'"flushed"',
                sdk_version="raw:v0",
            )
            async with httpx.AsyncClient() as http:
                flushed = await http.post(
                    f"{engine.url}/v0/connect/flush", content=reply.SerializeToString()
                )
            assert flushed.status_code == 200
            assert pb.FlushResponse.FromString(flushed.content).request_id == request.request_id

    worker = threading.Thread(target=lambda: asyncio.run(answer_by_flush()), daemon=True)
    worker.start()
    wait_workers(engine.url, "raw", 1)
    (event_id,) = send(engine.url, {"name": "raw/go", "data": {}})
    run = run_for_event(engine.url, event_id, timeout=30)
    worker.join(10)
    assert run["output"] == "flushed"


def test_a_long_step_keeps_its_call_by_extending_the_lease(engine: EngineThread) -> None:
    """With a one-second lease, a step held for several leases still runs once: the worker's
    extensions keep the call from moving to the second worker."""
    release = threading.Event()
    starts: list[str] = []
    client = inngest_mw.Inngest(
        app_id="raw", is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
    )

    @client.create_function(fn_id="fn", trigger=TriggerEvent(event="raw/go"))
    def fn(ctx: inngest_mw.ContextSync) -> str:
        def long() -> str:
            starts.append(ctx.run_id)
            release.wait(60)
            return "done"

        return ctx.step.run("long", long)

    assert engine.engine.connect is not None
    gateway = engine.engine.connect
    with WorkerThread(client, [fn], instance_id="a"), WorkerThread(client, [fn], instance_id="b"):
        wait_workers(engine.url, "raw", 2)
        (event_id,) = send(engine.url, {"name": "raw/go", "data": {}})
        (run,) = runs_for_event(engine.url, event_id)
        # Four extensions granted: the step has outlived its first lease several times over.
        poll(
            lambda: sum(w.extended for w in gateway.workers("raw")),
            lambda n: n >= 4,
            what="the lease to be extended four times",
        )
        release.set()
        done = run_for_event(engine.url, event_id, timeout=30)
    assert done["output"] == "done"
    assert starts == [run["run_id"]]


def test_the_fallback_signing_key_is_used_when_the_first_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, connect_port=0, signing_key=KEY) as engine:
        # Without the key the start request is refused.
        assert start(engine).status_code == 401
        hashed = start(engine, Authorization=f"Bearer {hash_signing_key(KEY)}")
        assert hashed.status_code == 200
        monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", KEY)
        client = inngest_mw.Inngest(
            app_id="keyed",
            is_production=True,
            signing_key=OTHER_KEY,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="fn", trigger=TriggerEvent(event="keyed/go"))
        async def fn(ctx: Context) -> str:
            return await ctx.step.run("s", lambda: "signed")

        gateway = engine.engine.connect
        assert gateway is not None
        auth = {"Authorization": f"Bearer {hash_signing_key(KEY)}"}
        with WorkerThread(client, [fn]):
            poll(lambda: gateway.workers("keyed"), bool, what="the worker to connect")
            (event_id,) = send(engine.url, {"name": "keyed/go", "data": {}})
            assert run_for_event(engine.url, event_id, headers=auth)["output"] == "signed"


def test_a_worker_whose_keys_are_all_refused_stops_with_a_clear_error(tmp_path: Path) -> None:
    with EngineThread(tmp_path / "e.db", port=0, connect_port=0, signing_key=KEY) as engine:
        client = inngest_mw.Inngest(
            app_id="keyed",
            is_production=True,
            signing_key=OTHER_KEY,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="fn", trigger=TriggerEvent(event="keyed/go"))
        async def fn(ctx: Context) -> None:
            return None

        worker = Worker(client, [fn], shutdown_signals=None)
        with pytest.raises(ConnectAuthError, match="signing key was refused"):
            asyncio.run(worker.run())


def test_bad_worker_options_are_refused_naming_the_option() -> None:
    client = inngest_mw.Inngest(app_id="opts", is_production=False)
    with pytest.raises(ValueError, match="max_concurrency: must be at least 1"):
        Worker(client, [], max_concurrency=0)
    with pytest.raises(ValueError, match="instance_id: must be a non-empty string"):
        Worker(client, [], instance_id=" ")
