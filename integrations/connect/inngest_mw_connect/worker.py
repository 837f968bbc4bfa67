"""A connect worker: dials the gateway, registers its functions, runs the calls it is sent.

One ``Worker`` keeps one connection up at a time and reconnects (backoff with jitter) whenever
it drops. Calls run as tasks of the worker, not of a connection: a call outlives the connection
it arrived on, and its reply goes back on that connection while it is open, else on the current
one, else by ``POST /v0/connect/flush``; a reply stays buffered until the gateway acknowledges
it. Every call goes through ``CommHandler.handle``, the entry point of the HTTP adapters, so the
hook pipeline cannot tell a connect call from an HTTP one; a ``def`` function runs in a worker
thread there, off the connection's loop.

Shutdown (SIGTERM, SIGINT or ``shutdown()``) drains: ``WORKER_PAUSE`` tells the gateway to send
nothing more, in-flight calls finish and their replies are acknowledged, then the connection
closes with ``WORKER_SHUTDOWN``. ``GATEWAY_CLOSING`` (a gateway being deployed) makes the worker
open a new connection that excludes that gateway's group, and retire the old one once the calls
it carried are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import platform
import random
import signal
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import inngest_mw
from inngest_mw import CommHandler, CommRequest, CommResponse, Function, Inngest
from inngest_mw_connect import connect_pb2 as pb
from inngest_mw_connect.protocol import (
    FLUSH_PATH,
    MAX_MESSAGE_BYTES,
    START_PATH,
    SUBPROTOCOL,
    WORKER_SHUTDOWN,
    ProtocolError,
    decode,
    encode,
    kind_name,
    parse_duration,
    payload,
)

__all__ = ["ConnectAuthError", "ConnectError", "ConnectionState", "Worker"]

log = logging.getLogger("inngest_mw.connect")

FRAMEWORK: Final = "connect"
LANGUAGE: Final = "py"
VERSION: Final = inngest_mw.__version__
SDK_HEADER: Final = f"inngest-mw:v{VERSION}"
#: The URL functions register with; the gateway, not a URL, reaches them.
CONNECT_URL: Final = "wss://connect"
#: Reconnection delays in seconds (each drawn between half and all of it), the last repeating.
BACKOFF: Final = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0)
HANDSHAKE_TIMEOUT_S: Final = 10.0
REPLY_ACK_TIMEOUT_S: Final = 5.0
#: Unanswered heartbeats after which the connection counts as dead.
MISSED_HEARTBEATS: Final = 2
_DEFAULT_HEARTBEAT_S = 10.0
_DEFAULT_EXTEND_LEASE_S = 30.0


class Header:
    """The header names a connect call and its response carry (lower-cased, as the handler's)."""

    CONTENT_TYPE: Final = "content-type"
    REQUEST_ID: Final = "x-request-id"
    JOB_ID: Final = "x-inngest-job-id"
    NO_RETRY: Final = "x-inngest-no-retry"
    RETRY_AFTER: Final = "retry-after"
    REQ_VERSION: Final = "x-inngest-req-version"


class ConnectError(Exception):
    """The gateway or the start request refused the worker for a reason retrying cannot fix."""


class ConnectAuthError(ConnectError):
    """Every signing key was refused by the start request."""


class ConnectionState(enum.StrEnum):
    CONNECTING = "CONNECTING"
    ACTIVE = "ACTIVE"
    RECONNECTING = "RECONNECTING"
    DRAINING = "DRAINING"
    CLOSED = "CLOSED"


class _Ended(enum.Enum):
    LOST = "lost"
    CLOSING = "closing"
    DONE = "done"


class _ConnectHandler(CommHandler):
    """``CommHandler`` for calls that came over an authenticated connection: they carry no
    signature to check, and their responses need none."""

    def verify(self, request: CommRequest) -> str | None:
        return None


@dataclass(slots=True)
class _Call:
    request: pb.GatewayExecutorRequestData
    session: _Session
    """The connection the call came on; it stays open until the call's reply is acknowledged."""
    lease_id: str | None
    task: asyncio.Task[None] | None = None


@dataclass(eq=False, slots=True)
class _Session:
    """One WebSocket connection after its handshake."""

    ws: ClientConnection
    start: pb.StartResponse
    heartbeat_s: float
    extend_lease_s: float
    calls: set[str] = field(default_factory=set)
    """Calls that came on this connection and whose replies are not acknowledged yet."""
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    missed: int = 0
    paused: bool = False
    open: bool = True

    async def send(self, frame: bytes) -> bool:
        if not self.open:
            return False
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            self.open = False
            return False
        return True


class Worker:
    """A connect worker for one client's functions; ``await run()`` until it has drained."""

    def __init__(
        self,
        client: Inngest,
        functions: Sequence[Function[Any]],
        *,
        instance_id: str | None = None,
        max_concurrency: int | None = None,
        shutdown_signals: Sequence[signal.Signals] | None = (signal.SIGTERM, signal.SIGINT),
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency: must be at least 1, got {max_concurrency}")
        if instance_id is not None and not instance_id.strip():
            raise ValueError("instance_id: must be a non-empty string")
        self.client = client
        # The serve origin only names URLs in a sync, and a connect app's URL is the gateway's.
        self.handler = _ConnectHandler(
            client, functions, framework=FRAMEWORK, serve_origin=CONNECT_URL
        )
        self.instance_id = instance_id or socket.gethostname()
        self.max_concurrency = max_concurrency
        self.shutdown_signals = tuple(shutdown_signals or ())
        self.state = ConnectionState.CLOSED
        self.connection_id: str | None = None
        """The current connection's ID (the gateway's name for it); None between connections."""
        registration = self.handler.registration(CONNECT_URL)
        self._functions_json = json.dumps(registration["functions"], separators=(",", ":")).encode()
        self._capabilities = json.dumps(registration["capabilities"]).encode()
        self._calls: dict[str, _Call] = {}
        self._unsent: dict[str, bytes] = {}
        self._session: _Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._background: set[asyncio.Task[Any]] = set()
        self._retiring: set[_Session] = set()

    # -- control -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Drain and stop: take no new calls, finish those in flight (safe from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _running_loop() is loop:
            self._stop()
        else:
            loop.call_soon_threadsafe(self._stop)

    async def wait_ready(self) -> None:
        """Return once a connection is ready for calls."""
        await self._ready.wait()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def _stop(self) -> None:
        if not self._stopping.is_set():
            log.info("inngest-mw connect: draining (%d call(s) in flight)", len(self._calls))
            self._stopping.set()
            self._changed.set()

    # -- the connection loop ---------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect whenever the connection drops; return after a drain."""
        self._loop = asyncio.get_running_loop()
        installed = self._install_signals()
        try:
            await self._run()
        finally:
            for sig in installed:
                self._loop.remove_signal_handler(sig)
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            self.state = ConnectionState.CLOSED
            self.connection_id = None

    def _install_signals(self) -> list[signal.Signals]:
        if threading.current_thread() is not threading.main_thread() or self._loop is None:
            return []
        installed = []
        for sig in self.shutdown_signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._stop)
                installed.append(sig)
        return installed

    async def _run(self) -> None:
        attempt = 0
        exclude: list[str] = []
        self.state = ConnectionState.CONNECTING
        while not (self._stopping.is_set() and self._idle()):
            try:
                session = await self._open(exclude)
            except ConnectError:
                raise
            except Exception as exc:
                delay = _backoff(attempt)
                attempt += 1
                log.warning(
                    "inngest-mw connect: cannot connect (%s: %s); retrying in %.2fs (attempt %d)",
                    type(exc).__name__,
                    exc,
                    delay,
                    attempt,
                )
                self.state = ConnectionState.RECONNECTING
                await self._pause_for(delay)
                continue
            attempt, exclude = 0, []
            ended = await self._serve(session)
            if ended is _Ended.DONE:
                for done in (session, *self._retiring):
                    done.open = False
                    await done.ws.close(1000, WORKER_SHUTDOWN)
                break
            if ended is _Ended.CLOSING:
                exclude = [session.start.gateway_group]
                self._retire(session)
            else:
                log.warning("inngest-mw connect: connection lost; reconnecting")
                self.state = ConnectionState.RECONNECTING
                await self._pause_for(_backoff(0))

    async def _pause_for(self, delay: float) -> None:
        """Wait ``delay`` before connecting again; cut short only when there is nothing left to
        deliver after a shutdown (other news must not defeat the backoff)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not (self._stopping.is_set() and self._idle()):
            left = deadline - loop.time()
            if left <= 0:
                return
            await self._wait_changed(left)

    async def _wait_changed(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._changed.wait()

    def _idle(self) -> bool:
        return not self._calls and not self._unsent

    async def _open(self, exclude: list[str]) -> _Session:
        """Start request, WebSocket, handshake: a session ready for calls."""
        start = await self._start(exclude)
        ws = await ws_connect(
            start.gateway_endpoint,
            subprotocols=[Subprotocol(SUBPROTOCOL)],
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=HANDSHAKE_TIMEOUT_S,
            # The protocol's own heartbeats detect a dead gateway; no second mechanism.
            ping_interval=None,
        )
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                ready = await self._handshake(ws, start)
        except BaseException:
            await ws.close()
            raise
        heartbeat = parse_duration(ready.heartbeat_interval) or _DEFAULT_HEARTBEAT_S
        extend = parse_duration(ready.extend_lease_interval) or _DEFAULT_EXTEND_LEASE_S
        session = _Session(ws, start, heartbeat, extend)
        self._session = session
        self.connection_id = start.connection_id
        if self._stopping.is_set():
            await self._pause(session)
        else:
            self.state = ConnectionState.ACTIVE
            self._ready.set()
        log.info(
            "inngest-mw connect: connected to %s as %s (%d function(s))",
            start.gateway_endpoint,
            start.connection_id,
            len(self.handler.functions),
        )
        for request_id in list(self._unsent):
            await self._deliver(request_id)
        return session

    async def _start(self, exclude: list[str]) -> pb.StartResponse:
        """``POST /v0/connect/start``; the fallback signing key on a 401."""
        settings = self.client.settings
        url = f"{settings.api_origin}{START_PATH}"
        body = pb.StartRequest(exclude_gateways=exclude).SerializeToString()
        refused = False
        async with httpx.AsyncClient() as http:
            for key in _keys(settings.signing_keys):
                headers = self.client.outbound_headers(key)
                headers[Header.CONTENT_TYPE] = "application/protobuf"
                response = await http.post(url, content=body, headers=headers, timeout=30)
                if response.status_code in (401, 403):
                    refused = True
                    continue
                if response.status_code != 200:
                    raise ConnectionError(
                        f"the start request got HTTP {response.status_code}: {response.text[:200]}"
                    )
                try:
                    start = pb.StartResponse.FromString(response.content)
                except Exception as exc:
                    raise ProtocolError(f"undecodable start response: {exc}") from exc
                if not start.gateway_endpoint or not start.connection_id:
                    raise ProtocolError("the start response names no gateway or connection")
                return start
        assert refused
        which = "signing key was" if settings.signing_keys else "request without a signing key was"
        raise ConnectAuthError(
            f"the {which} refused by {url}: set INNGEST_SIGNING_KEY (and "
            "INNGEST_SIGNING_KEY_FALLBACK while rotating) to the key this server uses"
        )

    async def _handshake(
        self, ws: ClientConnection, start: pb.StartResponse
    ) -> pb.GatewayConnectionReadyData:
        hello = decode(await ws.recv())
        if hello.kind != pb.GATEWAY_HELLO:
            raise ProtocolError(f"expected GATEWAY_HELLO, got {kind_name(hello.kind)}")
        await ws.send(encode(pb.WORKER_CONNECT, self._connect_request(start)))
        reply = decode(await ws.recv())
        if reply.kind == pb.SYNC_FAILED:
            error = payload(reply, pb.SystemError)
            raise ConnectError(f"the gateway refused the app's functions: {error.message}")
        if reply.kind != pb.GATEWAY_CONNECTION_READY:
            raise ProtocolError(f"expected GATEWAY_CONNECTION_READY, got {kind_name(reply.kind)}")
        return payload(reply, pb.GatewayConnectionReadyData)

    def _connect_request(self, start: pb.StartResponse) -> pb.WorkerConnectRequestData:
        client = self.client
        app = pb.AppConfiguration(app_name=client.app_id, functions=self._functions_json)
        if client.app_version:
            app.app_version = client.app_version
        started = Timestamp()
        started.GetCurrentTime()
        request = pb.WorkerConnectRequestData(
            connection_id=start.connection_id,
            instance_id=self.instance_id,
            auth_data=pb.AuthData(session_token=start.session_token, sync_token=start.sync_token),
            capabilities=self._capabilities,
            apps=[app],
            system_attributes=pb.SystemAttributes(
                cpu_cores=os.cpu_count() or 1, mem_bytes=_memory(), os=platform.system().lower()
            ),
            framework=FRAMEWORK,
            sdk_version=VERSION,
            sdk_language=LANGUAGE,
            started_at=started,
        )
        if client.env:
            request.environment = client.env
        if self.max_concurrency:
            request.max_worker_concurrency = self.max_concurrency
        return request

    async def _serve(self, session: _Session) -> _Ended:
        """Read frames and heartbeat until the connection drops, the gateway closes, or the
        worker has drained."""
        reader = asyncio.create_task(self._read(session))
        beat = asyncio.create_task(self._heartbeat(session))
        closing = asyncio.create_task(session.closing.wait())
        try:
            while True:
                if reader.done():
                    return _Ended.LOST
                if closing.done():
                    return _Ended.CLOSING
                if self._stopping.is_set():
                    if not session.paused:
                        await self._pause(session)
                    if self._idle():
                        return _Ended.DONE
                self._changed.clear()
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({reader, closing, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        finally:
            closing.cancel()
            if not session.closing.is_set() or reader.done():
                reader.cancel()
                beat.cancel()
                session.open = False
                if self._session is session:
                    self._session = None
                    self._ready.clear()
            else:  # a retiring session keeps reading acks until its calls are done
                self._keep(reader)
                self._keep(beat)

    async def _pause(self, session: _Session) -> None:
        session.paused = True
        self.state = ConnectionState.DRAINING
        self._ready.clear()
        await session.send(encode(pb.WORKER_PAUSE))

    def _retire(self, session: _Session) -> None:
        """After ``GATEWAY_CLOSING``: close ``session`` once the calls it carried are done."""

        async def retire() -> None:
            while session.calls and session.open:
                await self._wait_changed(1.0)
            session.open = False
            self._retiring.discard(session)
            await session.ws.close(1000, WORKER_SHUTDOWN)

        self._retiring.add(session)
        if self._session is session:
            self._session = None
            self._ready.clear()
        self._keep(asyncio.create_task(retire()))

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _heartbeat(self, session: _Session) -> None:
        while session.open:
            await asyncio.sleep(session.heartbeat_s)
            if session.missed >= MISSED_HEARTBEATS:
                log.warning("inngest-mw connect: the gateway stopped answering heartbeats")
                session.open = False
                await session.ws.close(1001, "CONSECUTIVE_HEARTBEATS_MISSED")
                return
            session.missed += 1
            await session.send(encode(pb.WORKER_HEARTBEAT))

    async def _read(self, session: _Session) -> None:
        try:
            async for frame in session.ws:
                try:
                    message = decode(frame)
                    self._dispatch(session, message)
                except ProtocolError as exc:
                    log.warning("inngest-mw connect: ignoring a bad frame: %s", exc)
        except ConnectionClosed:
            pass
        finally:
            session.open = False
            self._changed.set()

    def _dispatch(self, session: _Session, message: pb.ConnectMessage) -> None:
        kind = message.kind
        if kind == pb.GATEWAY_EXECUTOR_REQUEST:
            self._accept(session, payload(message, pb.GatewayExecutorRequestData))
        elif kind == pb.WORKER_REPLY_ACK:
            self._settle(payload(message, pb.WorkerReplyAckData).request_id)
        elif kind == pb.WORKER_REQUEST_EXTEND_LEASE_ACK:
            ack = payload(message, pb.WorkerRequestExtendLeaseAckData)
            call = self._calls.get(ack.request_id)
            if call is not None:
                call.lease_id = ack.new_lease_id if ack.HasField("new_lease_id") else None
                if call.lease_id is None:
                    log.warning(
                        "inngest-mw connect: the lease on call %s was lost; the gateway may "
                        "run it elsewhere",
                        ack.request_id,
                    )
        elif kind == pb.GATEWAY_HEARTBEAT:
            session.missed = 0
        elif kind == pb.GATEWAY_CLOSING:
            log.info("inngest-mw connect: the gateway is closing; moving to another one")
            session.closing.set()
        else:
            log.debug("inngest-mw connect: ignoring %s", kind_name(kind))

    # -- calls ---------------------------------------------------------------------------

    def _accept(self, session: _Session, request: pb.GatewayExecutorRequestData) -> None:
        running = self._calls.get(request.request_id)
        if running is not None:
            # Sent again (its lease ran out at the gateway): it is running already; extend the
            # new lease from now on.
            running.lease_id = request.lease_id or None
            return
        call = _Call(request, session, request.lease_id or None)
        self._calls[request.request_id] = call
        session.calls.add(request.request_id)
        call.task = asyncio.create_task(self._execute(call))

    async def _execute(self, call: _Call) -> None:
        request = call.request
        rid = request.request_id
        try:
            await call.session.send(encode(pb.WORKER_REQUEST_ACK, _ack(request)))
            extender = asyncio.create_task(self._extend(call))
            try:
                response = await self._handle(request)
            finally:
                extender.cancel()
            self._unsent[rid] = _reply(request, response).SerializeToString()
        finally:
            self._calls.pop(rid, None)
            if rid not in self._unsent:  # cancelled: there is no reply to wait for
                call.session.calls.discard(rid)
            self._changed.set()
        await self._deliver(rid, call.session)

    async def _handle(self, request: pb.GatewayExecutorRequestData) -> CommResponse:
        """The handler's response; a 500 (retried) should anything escape it."""
        try:
            if self._slots is None:
                return await self.handler.handle(_comm_request(request))
            async with self._slots:
                return await self.handler.handle(_comm_request(request))
        except Exception as exc:
            log.exception(
                "inngest-mw connect: call %s failed outside the handler", request.request_id
            )
            error = {"name": type(exc).__name__, "message": f"internal error: {exc}"}
            return CommResponse(
                500, json.dumps(error).encode(), {Header.CONTENT_TYPE: "application/json"}
            )

    def _settle(self, rid: str) -> None:
        """The gateway has the reply: forget it, and let its connection retire if it may."""
        self._unsent.pop(rid, None)
        for session in (self._session, *self._retiring):
            if session is not None:
                session.calls.discard(rid)
        self._changed.set()

    async def _extend(self, call: _Call) -> None:
        request = call.request
        while call.lease_id is not None:
            session = call.session if call.session.open else self._session
            await asyncio.sleep(session.extend_lease_s if session else _DEFAULT_EXTEND_LEASE_S)
            session = call.session if call.session.open else self._session
            if session is None or call.lease_id is None:
                continue
            await session.send(encode(pb.WORKER_REQUEST_EXTEND_LEASE, _extend(request, call)))

    async def _deliver(self, rid: str, origin: _Session | None = None) -> None:
        """Send a reply on the call's connection, else the current one, else over HTTP."""
        data = self._unsent.get(rid)
        if data is None:
            return
        for candidate in (origin, self._session):
            if candidate is not None and await candidate.send(encode(pb.WORKER_REPLY, data)):
                self._keep(asyncio.create_task(self._await_ack(rid)))
                return
        await self._flush(rid)

    async def _await_ack(self, rid: str) -> None:
        await asyncio.sleep(REPLY_ACK_TIMEOUT_S)
        if rid in self._unsent:
            await self._flush(rid)

    async def _flush(self, rid: str) -> None:
        """``POST /v0/connect/flush``: hand a reply to the gateway without a connection."""
        data = self._unsent.get(rid)
        if data is None:
            return
        settings = self.client.settings
        url = f"{settings.api_origin}{FLUSH_PATH}"
        try:
            async with httpx.AsyncClient() as http:
                for key in _keys(settings.signing_keys):
                    headers = self.client.outbound_headers(key)
                    headers[Header.CONTENT_TYPE] = "application/protobuf"
                    response = await http.post(url, content=data, headers=headers, timeout=30)
                    if response.status_code in (401, 403):
                        continue
                    if response.status_code == 200:
                        self._settle(rid)
                    return
        except httpx.HTTPError as exc:
            log.info("inngest-mw connect: reply %s kept for the next connection (%s)", rid, exc)


def _comm_request(request: pb.GatewayExecutorRequestData) -> CommRequest:
    query = {"fnId": request.function_slug}
    if request.HasField("step_id"):
        query["stepId"] = request.step_id
    headers = {Header.CONTENT_TYPE: "application/json", Header.REQUEST_ID: request.request_id}
    if request.job_id:
        headers[Header.JOB_ID] = request.job_id
    url = httpx.URL(CONNECT_URL + "/", params=query)
    return CommRequest("POST", str(url), headers, request.request_payload, raw=request)


def _reply(request: pb.GatewayExecutorRequestData, response: CommResponse) -> pb.SDKResponse:
    if response.status == 200:
        status = pb.DONE
    elif response.status == 206:
        status = pb.NOT_COMPLETED
    else:
        status = pb.ERROR
    headers = response.headers
    version = headers.get(Header.REQ_VERSION, "")
    reply = pb.SDKResponse(
        request_id=request.request_id,
        account_id=request.account_id,
        env_id=request.env_id,
        app_id=request.app_id,
        status=status,
        body=response.body,
        no_retry=headers.get(Header.NO_RETRY, "").lower() == "true",
        sdk_version=SDK_HEADER,
        request_version=int(version) if version.isdigit() else 0,
        system_trace_ctx=request.system_trace_ctx,
        user_trace_ctx=request.user_trace_ctx,
        run_id=request.run_id,
    )
    if headers.get(Header.RETRY_AFTER):
        reply.retry_after = headers[Header.RETRY_AFTER]
    return reply


def _ack(request: pb.GatewayExecutorRequestData) -> pb.WorkerRequestAckData:
    ack = pb.WorkerRequestAckData(
        request_id=request.request_id,
        account_id=request.account_id,
        env_id=request.env_id,
        app_id=request.app_id,
        function_slug=request.function_slug,
        system_trace_ctx=request.system_trace_ctx,
        user_trace_ctx=request.user_trace_ctx,
        run_id=request.run_id,
    )
    if request.HasField("step_id"):
        ack.step_id = request.step_id
    return ack


def _extend(request: pb.GatewayExecutorRequestData, call: _Call) -> pb.WorkerRequestExtendLeaseData:
    data = pb.WorkerRequestExtendLeaseData(
        request_id=request.request_id,
        account_id=request.account_id,
        env_id=request.env_id,
        app_id=request.app_id,
        function_slug=request.function_slug,
        system_trace_ctx=request.system_trace_ctx,
        user_trace_ctx=request.user_trace_ctx,
        run_id=request.run_id,
        lease_id=call.lease_id or "",
    )
    if request.HasField("step_id"):
        data.step_id = request.step_id
    return data


def _keys(keys: list[str]) -> list[str | None]:
    """The signing keys to try in turn (the fallback after the first); one try without any."""
    return list(keys) if keys else [None]


def _backoff(attempt: int) -> float:
    base = BACKOFF[min(attempt, len(BACKOFF) - 1)]
    return random.uniform(base / 2, base)


def _memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
