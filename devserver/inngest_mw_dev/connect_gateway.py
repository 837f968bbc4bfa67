"""The engine as a connect gateway: workers dial in over a WebSocket and receive their calls there.

A worker first asks ``POST /v0/connect/start`` (on the API port) for a connection ID and a
session token, then opens the gateway's WebSocket (a port of its own, 8289 like the Dev Server),
says ``WORKER_CONNECT`` with its functions (registered as the app ``ws://connect?app_name=...``,
as the Dev Server names connect apps) and is ready. A call for a connect app goes to the least
busy ready worker of that app; the worker acknowledges it, extends its lease while it runs, and
replies. A call whose worker vanishes (its connection drops, or its lease runs out unextended)
is sent to another worker within the same call request, without costing an attempt: the step in
progress may run twice, never zero times. With no worker connected, a call waits a while for
one, then fails as a network error and is retried like any other.

The seam with the executor is ``post()``: the same shape as ``AppClient.post``, so a call over
connect is built, signed and classified exactly like one over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlsplit

from google.protobuf.message import DecodeError
from inngest_mw_connect import connect_pb2 as pb
from inngest_mw_connect.protocol import (
    GATEWAY_PATH,
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
    ProtocolError,
    decode,
    encode,
    format_duration,
    kind_name,
    payload,
)
from starlette.requests import Request
from starlette.responses import Response
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.typing import Subprotocol

from inngest_mw.signature import hash_signing_key, strip_key_prefix
from inngest_mw_dev.appclient import AppResponse
from inngest_mw_dev.bodies import read_body
from inngest_mw_dev.connect_http import connect_app_url, refused
from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.registration import RegistrationError, parse_registration

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["ConnectGateway", "WorkerConn"]

log = logging.getLogger("inngest_mw_dev")

DEFAULT_PORT: Final = 8289
MAX_APPS_PER_CONNECTION: Final = 100
_START_BODY_LIMIT = 1024 * 1024
_SESSION_TTL_S = 300.0
_HANDSHAKE_S = 5.0
#: Heartbeat intervals a worker may miss before its connection counts as dead.
_MISSED_HEARTBEATS = 5


class GatewayListenError(OSError):
    """The gateway's port cannot be listened on; ``port`` and ``option`` say which to change."""

    option = "--connect-port"

    def __init__(self, errno: int | None, strerror: str | None, port: int) -> None:
        super().__init__(errno, strerror)
        self.port = port


class WorkerLostError(ConnectionError):
    """The worker running a call went away before replying."""


@dataclass(eq=False, slots=True)
class WorkerConn:
    """One connected worker."""

    id: str
    instance_id: str
    apps: list[str]
    ws: ServerConnection
    sdk: str
    max_concurrency: int
    connected_at: float
    status: str = "CONNECTED"
    last_heartbeat: float = 0.0
    in_flight: set[str] = field(default_factory=set)
    served: int = 0
    extended: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "connection_id": self.id,
            "instance_id": self.instance_id,
            "apps": self.apps,
            "status": self.status,
            "in_flight": len(self.in_flight),
            "served": self.served,
            "leases_extended": self.extended,
            "max_concurrency": self.max_concurrency,
            "sdk": self.sdk,
            "connected_at": self.connected_at,
        }


@dataclass(eq=False, slots=True)
class _Pending:
    """A call waiting for its reply; ``conn`` is the worker it was last sent to."""

    request_id: str
    app_name: str
    reply: asyncio.Future[pb.SDKResponse]
    conn: WorkerConn | None = None
    lease_id: str = ""
    lease_until: float = 0.0
    lost: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Session:
    token: str
    sync_token: str
    expires: float


class ConnectGateway:
    """Accepts connect workers and routes the calls of their apps to them."""

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        heartbeat_s: float = 10.0,
        lease_s: float = 120.0,
        extend_lease_s: float | None = None,
        worker_wait_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.extend_lease_s = extend_lease_s if extend_lease_s is not None else lease_s / 4
        self.worker_wait_s = worker_wait_s
        self.group = f"inngest-mw-{secrets.token_hex(4)}"
        """This gateway's group: a worker told GATEWAY_CLOSING asks for any other."""
        self._server: Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._workers: dict[str, WorkerConn] = {}
        self._pending: dict[str, _Pending] = {}
        self._changed = asyncio.Event()
        self._turn = 0
        self._closing = False

    @property
    def endpoint(self) -> str:
        return f"ws://{self.host}:{self.port}{GATEWAY_PATH}"

    async def start(self) -> None:
        self._changed = asyncio.Event()
        try:
            self._server = await self._serve_on_port()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise GatewayListenError(exc.errno, reason, self.port) from exc
        self.port = self._server.sockets[0].getsockname()[1]

    def _serve_on_port(self) -> Awaitable[Server]:
        return serve(
            self._connection,
            self.host,
            self.port,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            max_size=MAX_MESSAGE_BYTES,
            process_request=_check_path,
            ping_interval=None,  # the protocol's heartbeats say whether a worker is alive
            open_timeout=_HANDSHAKE_S,
        )

    async def stop(self) -> None:
        """Tell every worker the gateway is closing (they reconnect elsewhere), then close."""
        self._closing = True
        for conn in list(self._workers.values()):
            await self.move(conn)
            with contextlib.suppress(Exception):
                await conn.ws.close(1001, "GATEWAY_DRAINING")
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        self._server = None
        for pending in self._pending.values():
            if not pending.reply.done():
                pending.reply.set_exception(WorkerLostError("the gateway stopped"))
                pending.reply.exception()  # retrieved: nobody else may be waiting for it

    async def move(self, conn: WorkerConn) -> None:
        """Send ``GATEWAY_CLOSING``: the worker opens a new connection and retires this one once
        its calls are done; this one is sent nothing more."""
        conn.status = "CLOSING"
        self._wake()
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(encode(pb.GATEWAY_CLOSING))

    # -- the start request -----------------------------------------------------------------

    def begin(self, request_host: str | None = None) -> pb.StartResponse | None:
        """A new connection's ID and session token; None while the gateway is closing.

        As the Dev Server does, the workers' excluded gateway groups are not asked for: there is
        one gateway, and the one that said it was closing is gone once a worker asks again. The
        endpoint names the host the start request was sent to (so a worker in a container
        reaches the gateway the way it reached the API), else the listening address.
        """
        if self._closing:
            return None
        now = time.monotonic()
        for connection_id, session in list(self._sessions.items()):
            if session.expires < now:
                del self._sessions[connection_id]
        key = self.engine.signing_key
        sync_token = hash_signing_key(strip_key_prefix(key)) if key else ""
        connection_id = new_ulid()
        token = secrets.token_urlsafe(32)
        self._sessions[connection_id] = _Session(token, sync_token, now + _SESSION_TTL_S)
        host = _hostname(request_host) or self.host
        return pb.StartResponse(
            connection_id=connection_id,
            gateway_endpoint=f"ws://{host}:{self.port}{GATEWAY_PATH}",
            gateway_group=self.group,
            session_token=token,
            sync_token=sync_token,
        )

    # -- workers ----------------------------------------------------------------------------

    def workers(self, app_name: str | None = None) -> list[WorkerConn]:
        """Connected workers (of one app), oldest first."""
        conns = sorted(self._workers.values(), key=lambda c: c.connected_at)
        return [c for c in conns if app_name is None or app_name in c.apps]

    async def _connection(self, ws: ServerConnection) -> None:
        conn: WorkerConn | None = None
        try:
            async with asyncio.timeout(_HANDSHAKE_S):
                await ws.send(encode(pb.GATEWAY_HELLO))
                conn = await self._handshake(ws)
            if conn is None:
                return
            await self._serve(conn)
        except TimeoutError:
            await ws.close(1008, "handshake timed out: send WORKER_CONNECT after GATEWAY_HELLO")
        except ConnectionClosed:
            pass
        finally:
            if conn is not None:
                self._drop(conn)

    async def _handshake(self, ws: ServerConnection) -> WorkerConn | None:
        """Check ``WORKER_CONNECT``, register its apps, say ready; None when refused (closed)."""
        try:
            message = decode(await ws.recv())
            if message.kind != pb.WORKER_CONNECT:
                raise ProtocolError(f"expected WORKER_CONNECT, got {kind_name(message.kind)}")
            data = payload(message, pb.WorkerConnectRequestData)
        except ProtocolError as exc:
            await ws.close(1002, str(exc)[:120])
            return None
        session = self._sessions.pop(data.connection_id, None)
        if (
            session is None
            or session.expires < time.monotonic()
            or not hmac.compare_digest(session.token, data.auth_data.session_token)
            or not hmac.compare_digest(session.sync_token, data.auth_data.sync_token)
        ):
            await ws.close(1008, "authentication failed: ask /v0/connect/start for a session")
            return None
        problem = await self.engine.db(self._register, data)
        if problem is not None:
            error = pb.SystemError(code="connect_worker_hello_invalid_payload", message=problem)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(pb.SYNC_FAILED, error))
            await ws.close(1008, problem[:120])
            return None
        conn = WorkerConn(
            id=data.connection_id,
            instance_id=data.instance_id,
            apps=[app.app_name for app in data.apps],
            ws=ws,
            sdk=f"{data.sdk_language}:v{data.sdk_version}",
            max_concurrency=data.max_worker_concurrency or 1000,
            connected_at=time.time(),
            last_heartbeat=time.monotonic(),
            status="CONNECTED" if data.worker_manual_readiness_ack else "READY",
        )
        ready = pb.GatewayConnectionReadyData(
            heartbeat_interval=format_duration(self.heartbeat_s),
            extend_lease_interval=format_duration(self.extend_lease_s),
            status_interval="0s",
        )
        await ws.send(encode(pb.GATEWAY_CONNECTION_READY, ready))
        self._workers[conn.id] = conn
        self._notice(conn, "connected")
        self._wake()
        return conn

    def _register(self, data: pb.WorkerConnectRequestData) -> str | None:
        """Register the connection's apps; the reason they cannot be, if so (a store thread
        job: see ``Engine.db``)."""
        if not data.instance_id.strip():
            return "instance_id: must be a non-empty string"
        if not data.apps:
            return "apps: a worker must serve at least one app"
        if len(data.apps) > MAX_APPS_PER_CONNECTION:
            return f"apps: at most {MAX_APPS_PER_CONNECTION} apps per connection"
        registrations = []
        for index, app in enumerate(data.apps):
            try:
                functions = json.loads(app.functions or b"[]")
                registrations.append(
                    parse_registration(
                        {
                            "appName": app.app_name,
                            "url": connect_app_url(app.app_name),
                            "functions": functions,
                            "framework": data.framework or "connect",
                            "sdk": f"{data.sdk_language}:v{data.sdk_version}",
                            "deployType": "connect",
                        }
                    )
                )
            except RegistrationError as exc:
                return f"apps[{index}] ({app.app_name}): {exc}"
            except (ValueError, RecursionError) as exc:
                return f"apps[{index}].functions: not a JSON list of function configs ({exc})"
        for registration in registrations:
            self.engine.register(registration)
        return None

    async def _serve(self, conn: WorkerConn) -> None:
        watchdog = asyncio.create_task(self._watch_heartbeats(conn))
        try:
            async for frame in conn.ws:
                try:
                    await self._dispatch(conn, decode(frame))
                except ProtocolError as exc:
                    log.warning("connect worker %s sent a bad frame: %s", conn.id, exc)
        finally:
            watchdog.cancel()

    async def _watch_heartbeats(self, conn: WorkerConn) -> None:
        limit = self.heartbeat_s * _MISSED_HEARTBEATS
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if time.monotonic() - conn.last_heartbeat > limit:
                log.warning("connect worker %s missed its heartbeats; closing", conn.id)
                await conn.ws.close(1008, "CONSECUTIVE_HEARTBEATS_MISSED")
                return

    async def _dispatch(self, conn: WorkerConn, message: pb.ConnectMessage) -> None:
        kind = message.kind
        if kind == pb.WORKER_HEARTBEAT:
            conn.last_heartbeat = time.monotonic()
            await conn.ws.send(encode(pb.GATEWAY_HEARTBEAT))
        elif kind == pb.WORKER_REPLY:
            reply = payload(message, pb.SDKResponse)
            self._resolve(reply)
            await conn.ws.send(
                encode(pb.WORKER_REPLY_ACK, pb.WorkerReplyAckData(request_id=reply.request_id))
            )
        elif kind == pb.WORKER_REQUEST_ACK:
            conn.last_heartbeat = time.monotonic()
        elif kind == pb.WORKER_REQUEST_EXTEND_LEASE:
            await self._extend(conn, payload(message, pb.WorkerRequestExtendLeaseData))
        elif kind == pb.WORKER_PAUSE:
            conn.status = "DRAINING"
            self._notice(conn, "draining")
            self._wake()
        elif kind == pb.WORKER_READY:
            if conn.status == "CONNECTED":
                conn.status = "READY"
                self._wake()
        elif kind == pb.WORKER_STATUS:
            conn.last_heartbeat = time.monotonic()
        else:
            log.debug("connect worker %s sent %s; ignored", conn.id, kind_name(kind))

    async def _extend(self, conn: WorkerConn, data: pb.WorkerRequestExtendLeaseData) -> None:
        pending = self._pending.get(data.request_id)
        ack = pb.WorkerRequestExtendLeaseAckData(
            request_id=data.request_id,
            account_id=data.account_id,
            env_id=data.env_id,
            app_id=data.app_id,
            function_slug=data.function_slug,
        )
        if (
            pending is not None
            and pending.conn is conn
            and hmac.compare_digest(pending.lease_id, data.lease_id)
        ):
            pending.lease_id = new_ulid()
            pending.lease_until = time.monotonic() + self.lease_s
            ack.new_lease_id = pending.lease_id
            conn.extended += 1
        await conn.ws.send(encode(pb.WORKER_REQUEST_EXTEND_LEASE_ACK, ack))

    def _resolve(self, reply: pb.SDKResponse) -> bool:
        """Complete the call ``reply`` answers; False when no call waits for it any more."""
        pending = self._pending.get(reply.request_id)
        if pending is None or pending.reply.done():
            return False
        pending.reply.set_result(reply)
        return True

    def flush(self, reply: pb.SDKResponse) -> bool:
        """A reply delivered over HTTP (``/v0/connect/flush``)."""
        return self._resolve(reply)

    async def answer_start(self, request: Request) -> Response:
        """``POST /v0/connect/start``: a ``StartRequest`` in, a ``StartResponse`` out."""
        body = await read_body(request, _START_BODY_LIMIT)
        try:
            pb.StartRequest.FromString(body)  # checked; its excluded groups name no other gateway
        except DecodeError:
            return refused(400, "the body is not a protobuf StartRequest")
        started = self.begin(request.headers.get("host"))
        if started is None:
            return refused(503, "the connect gateway is shutting down; try again shortly")
        return Response(started.SerializeToString(), media_type="application/octet-stream")

    async def answer_flush(self, request: Request) -> Response:
        """``POST /v0/connect/flush``: an ``SDKResponse`` in, a ``FlushResponse`` out."""
        body = await read_body(request, MAX_MESSAGE_BYTES)
        try:
            reply = pb.SDKResponse.FromString(body)
        except DecodeError:
            return refused(400, "the body is not a protobuf SDKResponse")
        if not reply.request_id:
            return refused(400, "request_id: the SDKResponse names no request")
        self.flush(reply)
        answer = pb.FlushResponse(request_id=reply.request_id)
        return Response(answer.SerializeToString(), media_type="application/octet-stream")

    def _drop(self, conn: WorkerConn) -> None:
        if self._workers.pop(conn.id, None) is None:
            return
        for request_id in list(conn.in_flight):
            pending = self._pending.get(request_id)
            if pending is not None and pending.conn is conn:
                pending.lost.set()
        self._notice(conn, "disconnected")
        self._wake()

    def _notice(self, conn: WorkerConn, what: str) -> None:
        apps = ", ".join(conn.apps)
        self.engine.notice(f"connect worker {conn.instance_id} ({conn.id}) of {apps} {what}")
        self.engine.feed.publish("sync", url=connect_app_url(conn.apps[0]) if conn.apps else "")

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- calls --------------------------------------------------------------------------------

    async def _pick(
        self, app_name: str, wait_until: float, avoid: WorkerConn | None = None
    ) -> WorkerConn:
        """The least busy ready worker of ``app_name`` with room (another than ``avoid`` when
        there is one); waits for one until ``wait_until``."""
        while True:
            ready = [
                c
                for c in self._workers.values()
                if c.status == "READY"
                and app_name in c.apps
                and len(c.in_flight) < c.max_concurrency
            ]
            if len(ready) > 1 and avoid in ready:
                ready.remove(avoid)
            if ready:
                self._turn += 1
                least = min(len(c.in_flight) for c in ready)
                candidates = [c for c in ready if len(c.in_flight) == least]
                return candidates[self._turn % len(candidates)]
            remaining = wait_until - time.monotonic()
            if remaining <= 0 or self._closing:
                raise TimeoutError(f"no connect worker of app {app_name!r} is ready")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> AppResponse:
        """One call over connect, shaped as ``AppClient.post``: raises ``TimeoutError`` when no
        worker takes or finishes it in time, ``ConnectionError`` when the gateway stops."""
        query = dict(parse_qsl(urlsplit(url).query))
        app_name = query.get("app_name", "")
        step_id = query.get("stepId", "step")
        deadline = time.monotonic() + timeout
        request_id = new_ulid()
        loop = asyncio.get_running_loop()
        pending = _Pending(request_id, app_name, loop.create_future())
        request = pb.GatewayExecutorRequestData(
            request_id=request_id,
            app_name=app_name,
            function_slug=query.get("fnId", ""),
            step_id=step_id,
            request_payload=body,
            run_id=headers.get("X-Run-ID", ""),
            job_id=request_id,
        )
        self._pending[request_id] = pending
        try:
            while True:
                wait_until = min(deadline, time.monotonic() + self.worker_wait_s)
                conn = await self._pick(app_name, wait_until, pending.conn)
                reply = await self._send(pending, request, conn, deadline)
                if reply is not None:
                    conn.served += 1
                    return _response(reply)
                log.info("call %s lost its worker %s; sending it to another", request_id, conn.id)
        finally:
            self._pending.pop(request_id, None)
            if pending.conn is not None:
                pending.conn.in_flight.discard(request_id)
                self._wake()

    async def _send(
        self,
        pending: _Pending,
        request: pb.GatewayExecutorRequestData,
        conn: WorkerConn,
        deadline: float,
    ) -> pb.SDKResponse | None:
        """Send the call to ``conn``; its reply, or None when the worker or its lease was lost."""
        if pending.conn is not None:
            pending.conn.in_flight.discard(pending.request_id)
        pending.conn = conn
        pending.lost = asyncio.Event()
        pending.lease_id = new_ulid()
        pending.lease_until = time.monotonic() + self.lease_s
        request.lease_id = pending.lease_id
        conn.in_flight.add(pending.request_id)
        try:
            await conn.ws.send(encode(pb.GATEWAY_EXECUTOR_REQUEST, request))
        except ConnectionClosed:
            conn.status = "CLOSED"  # not picked again while its handler is still dropping it
            return None
        lost = asyncio.create_task(pending.lost.wait())
        try:
            while not pending.reply.done():
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError("the connect worker did not reply in time")
                if now >= pending.lease_until:
                    log.warning(
                        "call %s: worker %s let its lease expire", request.request_id, conn.id
                    )
                    return None
                wait = min(deadline, pending.lease_until) - now
                waiters: set[asyncio.Future[Any]] = {pending.reply, lost}
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if lost.done() and not pending.reply.done():
                    return None
            return pending.reply.result()
        finally:
            lost.cancel()


def _response(reply: pb.SDKResponse) -> AppResponse:
    """The reply as the HTTP response it stands for (the server's mapping of the status)."""
    status = {pb.DONE: 200, pb.NOT_COMPLETED: 206}.get(reply.status, 500)
    headers = {
        "content-type": "application/json",
        "x-inngest-sdk": reply.sdk_version or "connect",
        "x-inngest-no-retry": "true" if reply.no_retry else "false",
    }
    if reply.request_version:
        headers["x-inngest-req-version"] = str(reply.request_version)
    if reply.HasField("retry_after"):
        headers["retry-after"] = reply.retry_after
    return AppResponse(status, headers, reply.body)


def _hostname(host_header: str | None) -> str | None:
    """The host of a ``Host`` header (``name:port``, ``[v6]:port``), bracketed when IPv6."""
    if not host_header:
        return None
    host = host_header.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else None
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host or None


def _check_path(connection: ServerConnection, request: WSRequest) -> WSResponse | None:
    if urlsplit(request.path).path.rstrip("/") != GATEWAY_PATH:
        return connection.respond(404, f"the connect gateway is at {GATEWAY_PATH}\n")
    return None
