"""The realtime API, as the server serves it (``pkg/execution/realtime/`` in ``inngest/inngest``).

- ``POST /v1/realtime/publish?channel=&topic=[&run_id=&metadata=]`` (signing key): the body is
  the message's data, used as it is when it is JSON, else sent as a JSON string; with
  ``Content-Type: text/stream`` it is streamed instead, as ``datastream-start``, 1 KiB ``chunk``
  messages and ``datastream-end``. A publish naming one of the engine's runs is also written to
  that run's history, so ``inngest-mw run ID`` and the UI show it.
- ``POST /v1/realtime/token`` (signing key): a JSON list of topics
  (``[{"channel", "name", "kind": "run"}]``) becomes a subscription JWT (HS256, issuer
  ``rt.inngest.com``, valid one minute), answered ``201 {"jwt"}``.
- ``GET /v1/realtime/sse`` and ``GET /v1/realtime/connect`` (WebSocket) subscribe with that JWT
  (``Authorization: Bearer`` or ``?token=``): every message published to the token's topics from
  then on, as an SSE ``data:`` line or a WebSocket text frame, in publish order.

The broadcaster is in memory and per engine (messages are not stored, as on the server, which
only forwards them), and the JWT secret is made anew at each start: a token lasts a minute.

Deliberate differences from the server: a message over the 512 KiB limit is refused with a 413
naming the limit (the server cuts the body at the limit and forwards the remainder as a string),
and a publish without ``channel`` or ``topic``, or with a ``run_id`` that is not a ULID or
``metadata`` that is not JSON, is a 400 naming the parameter (the server publishes it as given).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import datetime as dt
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw_dev.bodies import BodyError, read_body, read_json
from inngest_mw_dev.ids import new_ulid
from inngest_mw_dev.limits import nested_too_deeply
from inngest_mw_dev.render import preview

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["Broadcaster", "TokenError", "Tokens", "realtime_routes"]

Handler = Callable[[Request], Awaitable[Response]]

MAX_MESSAGE_BYTES = 512 * 1024  # MaxStreamingMessageSizeBytes
STREAM_CHUNK_BYTES = 1024  # StreamingChunkSize
MAX_STREAM_CHUNKS = 1000  # MaxStreamingChunks
TOKEN_TTL_S = 60  # DefaultExpiry
ISSUER = "rt.inngest.com"
KEEPALIVE_S = 15.0  # KeepaliveInterval
SSE_MAX_S = 15 * 60  # SSEConnectionTimeout
QUEUE_SIZE = 10_000
"""Messages a subscriber may lag behind by; one that falls further behind is disconnected."""
_MAX_TOKEN_BODY = 64 * 1024
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$", re.IGNORECASE)
_TOPIC_KINDS = ("run", "event")


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the broadcaster ---------------------------------------------------------------------


class Subscriber:
    """One open subscription: the topics it listens to and the queue its messages wait in."""

    __slots__ = ("dropped", "queue", "topics")

    def __init__(self, topics: set[tuple[str, str]]) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = False


class Broadcaster:
    """Subscribers by ``(channel, topic)``; everything runs on the engine's loop, so no locks."""

    def __init__(self) -> None:
        self._by_topic: dict[tuple[str, str], set[Subscriber]] = {}

    def subscribe(self, topics: set[tuple[str, str]]) -> Subscriber:
        sub = Subscriber(set())
        self.add(sub, topics)
        return sub

    def add(self, sub: Subscriber, topics: set[tuple[str, str]]) -> None:
        for topic in topics:
            self._by_topic.setdefault(topic, set()).add(sub)
        sub.topics |= topics

    def remove(self, sub: Subscriber, topics: set[tuple[str, str]]) -> None:
        for topic in topics & sub.topics:
            subs = self._by_topic.get(topic)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_topic[topic]
        sub.topics -= topics

    def close(self, sub: Subscriber) -> None:
        self.remove(sub, set(sub.topics))

    def publish(self, channel: str, topic: str, message: dict[str, Any]) -> int:
        """Queue ``message`` for every subscriber of ``channel``/``topic``; how many there were."""
        subs = self._by_topic.get((channel, topic), ())
        for sub in list(subs):
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.dropped = True  # it cannot keep up: end its connection
                self.close(sub)
                with contextlib.suppress(asyncio.QueueEmpty):
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        return len(subs)


# -- tokens ------------------------------------------------------------------------------


class TokenError(Exception):
    """A subscription token the engine refuses; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class Claims:
    topics: set[tuple[str, str]]
    publish: bool


class Tokens:
    """Subscription JWTs as the server makes them (``token.go``), signed with a per-start secret
    and timed by the engine's clock (so a test can make one expire without waiting)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._secret = secrets.token_bytes(32)
        self._clock = clock

    def mint(self, topics: list[dict[str, Any]]) -> str:
        now = int(self._clock())
        claims = {
            "iss": ISSUER,
            "sub": _ZERO_UUID,
            "exp": now + TOKEN_TTL_S,
            "iat": now,
            "jti": new_ulid(),
            "env": _ZERO_UUID,
            "topics": [{**t, "env_id": _ZERO_UUID} for t in topics],
            "publish": False,
        }
        import jwt  # with cryptography, about 8 MiB: loaded once realtime is used

        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Claims:
        import jwt

        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=ISSUER,
                # Expiry is checked below against the engine's clock, not the wall clock.
                options={
                    "require": ["exp", "iat", "iss"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"the realtime token is not valid: {exc}") from None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock():
            raise TokenError(
                f"the realtime token has expired (tokens last {TOKEN_TTL_S} s: mint one just "
                "before subscribing)"
            )
        topics = set()
        for topic in claims.get("topics") or []:
            if isinstance(topic, dict) and isinstance(topic.get("channel"), str):
                topics.add((topic["channel"], str(topic.get("name", ""))))
        return Claims(topics, bool(claims.get("publish")))


def _topics_body(body: object) -> list[dict[str, Any]]:
    """The token request's topics; ``ValueError`` naming the entry and field that is wrong."""
    if not isinstance(body, list):
        raise ValueError("Invalid request: must provide a list of topics")
    if not body:
        raise ValueError("Invalid request: the list of topics is empty")
    topics = []
    for index, topic in enumerate(body):
        if not isinstance(topic, dict):
            raise ValueError(f"Invalid request: topic {index} is not an object")
        for key in ("channel", "name"):
            if not isinstance(topic.get(key), str) or not topic[key]:
                raise ValueError(
                    f"Invalid request: topic {index}: {key!r} must be a non-empty string"
                )
        kind = topic.get("kind", "run")
        if kind not in _TOPIC_KINDS:
            raise ValueError(f"Invalid request: topic {index}: 'kind' must be 'run' or 'event'")
        topics.append({"kind": kind, "channel": topic["channel"], "name": topic["name"]})
    return topics


def _bearer(headers: Any, query: Any) -> str:
    scheme, _, value = str(headers.get("authorization", "")).partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return str(query.get("token") or "")


# -- routes ------------------------------------------------------------------------------


class _Realtime:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.broadcaster = Broadcaster()
        self.tokens = Tokens(engine.clock)

    def claims(self, headers: Any, query: Any) -> Claims:
        token = _bearer(headers, query)
        if not token:
            raise TokenError(
                "a realtime subscription needs a token: mint one with POST /v1/realtime/token"
            )
        return self.tokens.verify(token)

    async def token(self, request: Request) -> Response:
        body = await read_json(request, _MAX_TOKEN_BODY)
        try:
            topics = _topics_body(body)
        except ValueError as exc:
            return _refused(400, str(exc))
        return JSONResponse({"jwt": self.tokens.mint(topics)}, status_code=201)

    def _message(self, request: Request, kind: str, data: object) -> dict[str, Any]:
        def first(name: str) -> str:  # as the server reads a repeated parameter: its first value
            values = request.query_params.getlist(name)
            return values[0] if values else ""

        channel, topic = first("channel"), first("topic")
        for name, value in (("channel", channel), ("topic", topic)):
            if not value:
                raise BodyError(400, f"the {name} query parameter is required")
        message: dict[str, Any] = {
            "kind": kind,
            "data": data,
            "created_at": _now_iso(),
            "channel": channel,
            "topic": topic,
        }
        run_id = first("run_id")
        if run_id:
            if not _ULID.match(run_id):
                raise BodyError(400, f"run_id must be a run's ID (a ULID), got {run_id[:40]!r}")
            message["run_id"] = run_id.upper()
        metadata = first("metadata")
        if metadata:
            try:
                message["metadata"] = parse_json(metadata)
            except JSONBodyError as exc:
                raise BodyError(400, f"the metadata query parameter is {exc.reason}") from None
        return message

    async def publish(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() == "text/stream":
            return await self._publish_stream(request)
        message = self._message(request, "data", None)
        raw = await read_body(request, MAX_MESSAGE_BYTES)
        try:
            data = parse_json(raw)
        except JSONBodyError as exc:
            if exc.reason == "nested too deeply":
                raise BodyError(400, "the message is nested too deeply") from None
            data = raw.decode("utf-8", errors="replace")
        else:
            if nested_too_deeply(data, raw):
                raise BodyError(400, "the message is nested too deeply")
        message["data"] = data
        self.broadcaster.publish(message["channel"], message["topic"], message)
        await self._record(message, size=len(raw), data=data)
        return Response(status_code=200)

    async def _publish_stream(self, request: Request) -> Response:
        start = self._message(request, "datastream-start", new_ulid().lower())
        channel, topic = start["channel"], start["topic"]
        stream_id = start["data"]
        self.broadcaster.publish(channel, topic, start)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = b""
        chunks = size = 0

        def emit(piece: bytes, final: bool = False) -> None:
            nonlocal chunks
            chunk: dict[str, Any] = {
                "kind": "chunk",
                "stream_id": stream_id,
                "data": decoder.decode(piece, final),
            }
            if "run_id" in start:
                chunk["run_id"] = start["run_id"]
            self.broadcaster.publish(channel, topic, chunk)
            chunks += 1

        try:
            async for part in request.stream():
                size += len(part)
                pending += part
                while len(pending) >= STREAM_CHUNK_BYTES and chunks < MAX_STREAM_CHUNKS:
                    emit(pending[:STREAM_CHUNK_BYTES])
                    pending = pending[STREAM_CHUNK_BYTES:]
                if chunks >= MAX_STREAM_CHUNKS:
                    break  # as the server does: at most this many chunks, the rest unread
            if pending and chunks < MAX_STREAM_CHUNKS:
                emit(pending, final=True)
        finally:
            self.broadcaster.publish(
                channel, topic, {**start, "kind": "datastream-end", "created_at": _now_iso()}
            )
        await self._record(start, size=size, data=f"<stream of {chunks} chunk(s)>")
        return Response(status_code=200)

    async def _record(self, message: dict[str, Any], *, size: int, data: object) -> None:
        """A publish naming one of the engine's runs goes into that run's history."""
        run_id = message.get("run_id")
        if run_id:
            await self.engine.db(self._record_on, run_id, message, size, preview(data, 120))

    def _record_on(self, run_id: str, message: dict[str, Any], size: int, data: str) -> None:
        """``_record``'s store thread job."""
        machine, store = self.engine.machine, self.engine.store
        run = store.get_run(run_id)
        if run is None:
            return
        with machine.history.tx():
            machine.history.record(
                run,
                "published",
                None,
                channel=message["channel"],
                topic=message["topic"],
                bytes=size,
                data=data,
            )

    async def sse(self, request: Request) -> Response:
        try:
            claims = self.claims(request.headers, request.query_params)
        except TokenError as exc:
            return _refused(401, f"Not authenticated: {exc}")
        return _EventStream(self.broadcaster, claims.topics)

    async def connect(self, ws: WebSocket) -> None:
        try:
            claims = self.claims(ws.headers, ws.query_params)
        except TokenError as exc:
            try:
                await ws.send_denial_response(_refused(401, f"Not authenticated: {exc}"))
            except RuntimeError:  # the server cannot answer a WebSocket handshake with HTTP
                await ws.close(code=1008, reason=str(exc)[:120])
            return
        await ws.accept()
        sub = self.broadcaster.subscribe(claims.topics)
        reader = asyncio.create_task(self._read_frames(ws, sub))
        try:
            while not reader.done():
                getting = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait({getting, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    break
                message = getting.result()
                if message is None:
                    await ws.close(code=1013, reason="closing")
                    break
                await ws.send_text(json.dumps(message, separators=(",", ":")))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.broadcaster.close(sub)
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    async def _read_frames(self, ws: WebSocket, sub: Subscriber) -> None:
        """``{"kind": "sub", "data": JWT}`` adds a token's topics, ``{"kind": "unsub", "data":
        [topics]}`` removes topics; anything else is ignored, as the server does."""
        while True:
            frame = await ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text")
            try:
                request = json.loads(text) if text else None
            except ValueError:
                continue
            if not isinstance(request, dict):
                continue
            if request.get("kind") == "sub" and isinstance(request.get("data"), str):
                with contextlib.suppress(TokenError):
                    self.broadcaster.add(sub, self.tokens.verify(request["data"]).topics)
            elif request.get("kind") == "unsub" and isinstance(request.get("data"), list):
                gone = {
                    (t["channel"], str(t.get("name", "")))
                    for t in request["data"]
                    if isinstance(t, dict) and isinstance(t.get("channel"), str)
                }
                self.broadcaster.remove(sub, gone)


class _EventStream(Response):
    """Server-Sent Events for one subscription: registered before the headers go out (so a
    client holding them is subscribed), removed when the connection ends however it ends."""

    def __init__(self, broadcaster: Broadcaster, topics: set[tuple[str, str]]) -> None:
        super().__init__(status_code=200)
        self.broadcaster, self.topics = broadcaster, topics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.broadcaster.subscribe(self.topics)
        headers = {
            "Cache-Control": "no-cache",
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Expose-Headers": "Content-Type",
        }
        try:
            stream = StreamingResponse(
                self._lines(sub), media_type="text/event-stream", headers=headers
            )
            await stream(scope, receive, send)
        finally:
            self.broadcaster.close(sub)

    @staticmethod
    async def _lines(sub: Subscriber) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        ends = loop.time() + SSE_MAX_S
        yield ":\n\n"  # as the server does at once: a keep-alive
        while (left := ends - loop.time()) > 0:
            try:
                async with asyncio.timeout(min(KEEPALIVE_S, left)):
                    message = await sub.queue.get()
            except TimeoutError:
                yield ":\n\n"
                continue
            if message is None:
                return
            yield f"data: {json.dumps(message, separators=(',', ':'))}\n\n"


def realtime_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[BaseRoute]:
    api = _Realtime(engine)
    return [
        Route("/v1/realtime/publish", authed(api.publish), methods=["POST"]),
        Route("/v1/realtime/token", authed(api.token), methods=["POST"]),
        Route("/v1/realtime/sse", api.sse, methods=["GET"]),
        WebSocketRoute("/v1/realtime/connect", api.connect),
    ]
