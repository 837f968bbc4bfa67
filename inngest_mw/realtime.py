"""Realtime: publish messages to a channel's topics and subscribe to them, through the server's
realtime API (``/v1/realtime/...``).

- ``publish(client, channel, topic, data)`` (and ``publish_sync``) sends one message now. It is not
  a step: code in a function body runs again each time the body replays, and so does a publish
  there. ``step.realtime.publish(id, channel, topic, data)`` is the memoized form (published once
  per run); ``ctx.publish(channel, topic, data)`` is the plain form, tagged with the run's ID.
- ``get_subscription_token(client, channel, topics)`` mints a token (valid one minute, meant to be
  used at once) that a browser or another process subscribes with; the signing key stays here.
- ``subscribe(client, channel, topics)`` is an async iterator of ``Message``s, read over
  Server-Sent Events (``GET /v1/realtime/sse``), so it needs no library beyond httpx and fits a
  streaming FastAPI or Starlette endpoint; ``subscribe_sync`` is the same for sync code (a Flask
  or Django streaming view, a thread).

A channel is any name the app picks (``"order:42"``, a run ID, a user ID); a topic is one kind of
message within it (``"status"``, ``"tokens"``). Subscribers get the messages published after they
subscribed, in the order they were published; nothing is stored for later.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast
from urllib.parse import urlencode

import httpx

from inngest_mw import serializer as _ser
from inngest_mw._const import Header
from inngest_mw._drive import Flow, adrive, drive
from inngest_mw.errors import Error
from inngest_mw.stepkind import StepKind

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.step import Step, StepSync

T = TypeVar("T")

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Message",
    "PublishedMessage",
    "RealtimeError",
    "Subscription",
    "SubscriptionSync",
    "SubscriptionToken",
    "get_subscription_token",
    "get_subscription_token_sync",
    "publish",
    "publish_sync",
    "subscribe",
    "subscribe_sync",
]

_log = logging.getLogger("inngest_mw")

MAX_MESSAGE_BYTES: Final = 512 * 1024
"""The most a published message's data may take as JSON (the server's
``MaxStreamingMessageSizeBytes``)."""

# Both the server and the embedded engine send a keep-alive every 15 s: a stream silent for a
# minute has lost its server.
_READ_TIMEOUT = 60.0


class RealtimeError(Error):
    """Publishing, minting a token or subscribing failed: the API refused it or was unreachable."""

    code = "realtime_failed"

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


@dataclass(frozen=True, slots=True)
class Message:
    """One message a subscription received, as the server sends it.

    ``kind`` is ``"data"`` for what ``publish`` sent; the server also streams ``"run"``,
    ``"step"``, ``"datastream-start"``/``"datastream-end"`` and ``"chunk"`` messages (a chunk's
    stream is ``stream_id``).
    """

    kind: str
    channel: str
    topic: str
    data: Any
    run_id: str | None = None
    created_at: str | None = None
    metadata: Any = None
    stream_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Message:
        def text(key: str) -> str | None:
            value = raw.get(key)
            return value if isinstance(value, str) and value else None

        return cls(
            kind=text("kind") or "data",
            channel=text("channel") or "",
            topic=text("topic") or "",
            data=raw.get("data"),
            run_id=text("run_id"),
            created_at=text("created_at"),
            metadata=raw.get("metadata"),
            stream_id=text("stream_id"),
            raw=dict(raw),
        )


@dataclass(frozen=True, slots=True)
class SubscriptionToken:
    """A subscription token for ``channel``'s ``topics``; ``key`` is the JWT."""

    channel: str
    topics: list[str]
    key: str

    def as_dict(self) -> dict[str, Any]:
        """``{"channel", "topics", "key"}``: what the ``@inngest/realtime`` browser client takes."""
        return {"channel": self.channel, "topics": list(self.topics), "key": self.key}


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    """A message a function published under the testing toolkit (which sends none)."""

    channel: str
    topic: str
    data: Any
    run_id: str | None


_recorder: contextvars.ContextVar[Callable[[PublishedMessage], None] | None] = (
    contextvars.ContextVar("inngest_mw_realtime_recorder", default=None)
)
"""Set by ``inngest_mw.testing`` for the duration of a test run: publishes are recorded, not sent."""


def check_names(channel: object, topic: object = "-") -> None:
    """``ValueError`` naming the argument when a channel or topic is not a non-empty string."""
    for what, value in (("channel", channel), ("topic", topic)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"realtime: {what} must be a non-empty string, got {value!r:.100}")


def _topic_list(topics: object) -> list[str]:
    if isinstance(topics, str) or not isinstance(topics, Sequence):
        raise ValueError("realtime: topics must be a list of topic names (not a single string)")
    names = list(topics)
    if not names or not all(isinstance(t, str) and t for t in names):
        raise ValueError("realtime: topics must be a non-empty list of non-empty strings")
    return names


def _refused(what: str, response: httpx.Response) -> RealtimeError:
    reason = response.text.strip()[:300] or response.reason_phrase
    return RealtimeError(
        f"the realtime API refused {what} ({response.status_code}): {reason}", retriable=False
    )


# -- publishing ------------------------------------------------------------------------


def _publish_request(
    client: Inngest, channel: str, topic: str, data: object, run_id: str | None
) -> tuple[str, bytes]:
    check_names(channel, topic)
    try:
        body = json.dumps(_ser.encode(client, data), separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise RealtimeError(
            f"realtime: data published to {channel}/{topic} is not JSON-serializable: {exc}",
            retriable=False,
        ) from None
    if len(body) > MAX_MESSAGE_BYTES:
        raise RealtimeError(
            f"realtime: the message to {channel}/{topic} is {len(body):,} bytes as JSON; "
            f"the limit is {MAX_MESSAGE_BYTES:,} bytes (512 KiB)",
            retriable=False,
        )
    params = {"channel": channel, "topic": topic}
    if run_id:
        params["run_id"] = run_id
    return f"{client.settings.api_origin}v1/realtime/publish?{urlencode(params)}", body


def _record(client: Inngest, channel: str, topic: str, data: object, run_id: str | None) -> bool:
    recorder = _recorder.get()
    if recorder is None:
        return False
    _publish_request(client, channel, topic, data, run_id)  # the same checks as a real publish
    recorder(PublishedMessage(channel, topic, _ser.encode(client, data), run_id))
    return True


def _api_flow(client: Inngest, url: str, body: bytes, what: str) -> Flow[httpx.Response]:
    """POST ``body`` with each signing key in turn, retrying transport errors and 5xx answers."""

    def outcome(response: httpx.Response) -> httpx.Response | None:
        if 200 <= response.status_code < 300:
            return response
        if response.status_code < 500:
            raise _refused(what, response)
        return None

    return (
        yield from client.api_post_flow(
            url,
            body,
            outcome,
            lambda why: RealtimeError(f"{what} {why}"),
        )
    )


def _publish_flow(
    client: Inngest, channel: str, topic: str, data: object, run_id: str | None
) -> Flow[None]:
    if _record(client, channel, topic, data, run_id):
        return
    url, body = _publish_request(client, channel, topic, data, run_id)
    yield from _api_flow(client, url, body, f"publishing to {channel}/{topic}")


async def publish(
    client: Inngest, channel: str, topic: str, data: object, *, run_id: str | None = None
) -> None:
    """Publish ``data`` (anything the client's serializer makes JSON) to ``topic`` of ``channel``.

    ``run_id`` ties the message to a run (``ctx.publish`` and ``step.realtime.publish`` set it).
    Transport errors and 5xx answers are retried; a refusal raises ``RealtimeError``.
    """
    await adrive(_publish_flow(client, channel, topic, data, run_id))


def publish_sync(
    client: Inngest, channel: str, topic: str, data: object, *, run_id: str | None = None
) -> None:
    """Blocking ``publish``."""
    drive(_publish_flow(client, channel, topic, data, run_id))


# -- subscription tokens ---------------------------------------------------------------


def _token_flow(client: Inngest, channel: str, topics: object) -> Flow[SubscriptionToken]:
    check_names(channel)
    names = _topic_list(topics)
    body = json.dumps(
        [{"channel": channel, "name": name, "kind": "run"} for name in names],
        separators=(",", ":"),
    ).encode()
    url = f"{client.settings.api_origin}v1/realtime/token"
    what = f"a subscription token for {channel} {names}"
    response = yield from _api_flow(client, url, body, what)
    try:
        jwt = response.json().get("jwt")
    except (ValueError, AttributeError):
        jwt = None
    if not isinstance(jwt, str) or not jwt:
        raise RealtimeError(
            f"the realtime API answered {what} without a token: {response.text:.200}"
        )
    return SubscriptionToken(channel, names, jwt)


async def get_subscription_token(
    client: Inngest, channel: str, topics: Sequence[str]
) -> SubscriptionToken:
    """A token to subscribe to ``topics`` of ``channel`` with; it expires a minute after minting.

    Hand ``token.as_dict()`` to a browser, or pass the token to ``subscribe``.
    """
    return await adrive(_token_flow(client, channel, topics))


def get_subscription_token_sync(
    client: Inngest, channel: str, topics: Sequence[str]
) -> SubscriptionToken:
    """Blocking ``get_subscription_token``."""
    return drive(_token_flow(client, channel, topics))


# -- subscribing -----------------------------------------------------------------------


class _Stream:
    """What both subscription faces share: the stream's request, its refusals and the decoding
    of its Server-Sent Events into ``Message``s (one ``feed`` per line)."""

    def __init__(self, client: Inngest, channel: str, topics: Sequence[str]) -> None:
        check_names(channel)
        self.client = client
        self.channel = channel
        self.topics = _topic_list(topics)
        self._data: list[str] = []

    def http_options(self) -> dict[str, Any]:
        from inngest_mw.client import _tls_context

        timeout = httpx.Timeout(self.client.request_timeout, read=_READ_TIMEOUT)
        return {"verify": _tls_context(), "timeout": timeout}

    def request(self, token: SubscriptionToken | str) -> tuple[str, dict[str, str]]:
        """The stream's URL and headers, authorized by ``token``."""
        key = token.key if isinstance(token, SubscriptionToken) else token
        headers = self.client.outbound_headers()
        headers[Header.AUTHORIZATION] = f"Bearer {key}"
        headers["accept"] = "text/event-stream"
        return f"{self.client.settings.api_origin}v1/realtime/sse", headers

    def failed(self, exc: httpx.HTTPError, url: str) -> RealtimeError:
        reason = self.client._transport_failure(exc, url)
        return RealtimeError(f"subscribing to {self.channel} failed: {reason}")

    def refused(self, response: httpx.Response) -> RealtimeError:
        """The error for a stream answered with anything but 200 (its body already read)."""
        what = f"the subscription to {self.channel} {self.topics}"
        if response.status_code == 401:
            return RealtimeError(
                f"the realtime API refused {what} (401): the token is invalid or expired "
                "(tokens last one minute: mint one just before subscribing)",
                retriable=False,
            )
        return _refused(what, response)

    def broke(self, exc: Exception) -> RealtimeError:
        return RealtimeError(
            f"the subscription to {self.channel} broke: {type(exc).__name__}: {exc}"
        )

    def feed(self, line: str) -> Message | None:
        """One line of the stream; the message it completes, if any."""
        if line.startswith(":"):
            return None  # a keep-alive
        if line:
            name, _, value = line.partition(":")
            if name == "data":
                self._data.append(value.removeprefix(" "))
            return None
        if not self._data:
            return None
        text, self._data = "\n".join(self._data), []
        try:
            raw = json.loads(text)
        except ValueError:
            _log.warning("inngest-mw: realtime message is not JSON: %.200s", text)
            return None
        return Message.from_wire(raw) if isinstance(raw, dict) else None


_H = TypeVar("_H", httpx.AsyncClient, httpx.Client)


class _Subscribed(Generic[_H]):
    """The state both subscription faces keep: the stream, the token, the open connection."""

    def __init__(
        self,
        client: Inngest,
        channel: str,
        topics: Sequence[str],
        token: SubscriptionToken | str | None = None,
    ) -> None:
        self._stream = _Stream(client, channel, topics)
        self.channel, self.topics = channel, self._stream.topics
        self._token = token
        self._http: _H | None = None
        self._response: httpx.Response | None = None
        self._closed = False

    def _to_open(self) -> bool:
        """Whether ``open`` has a connection to make (False: it is open); raises once closed."""
        if self._closed:
            raise RealtimeError("this subscription was closed; subscribe again", retriable=False)
        return self._response is None


class Subscription(_Subscribed[httpx.AsyncClient]):
    """Messages published to some topics of a channel, from when the subscription opened.

    Use it as ``async with subscribe(...) as sub: async for message in sub: ...``: entering
    returns once the server has the subscription (so a run started afterwards is not missed), and
    leaving closes the connection. Iterating without ``async with`` opens it on first use. The
    iteration ends when the server closes the stream (the server does after 15 minutes).
    ``SubscriptionSync`` (``subscribe_sync``) is the same for sync code.
    """

    async def open(self) -> None:
        """Mint a token if none was given and open the stream; ``RealtimeError`` if refused."""
        if not self._to_open():
            return
        stream = self._stream
        token = self._token
        if token is None:
            token = await get_subscription_token(stream.client, self.channel, self.topics)
        url, headers = stream.request(token)
        http = httpx.AsyncClient(**stream.http_options())
        try:
            response = await http.send(http.build_request("GET", url, headers=headers), stream=True)
        except httpx.HTTPError as exc:
            await http.aclose()
            raise stream.failed(exc, url) from None
        if response.status_code != 200:
            await response.aread()
            await http.aclose()
            raise stream.refused(response)
        self._http, self._response = http, response

    async def aclose(self) -> None:
        """Close the connection (iteration then ends)."""
        self._closed = True
        response, http = self._response, self._http
        self._response = self._http = None
        if response is not None:
            await response.aclose()
        if http is not None:
            await http.aclose()

    async def __aenter__(self) -> Subscription:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        await self.open()
        response = self._response
        if response is None:
            return
        try:
            async for line in response.aiter_lines():
                message = self._stream.feed(line)
                if message is not None:
                    yield message
        except (httpx.HTTPError, httpx.StreamError) as exc:
            if not self._closed:  # closed by ``aclose`` (another task): the iteration just ends
                raise self._stream.broke(exc) from None


class SubscriptionSync(_Subscribed[httpx.Client]):
    """``Subscription`` for sync code (a Flask or Django streaming view, a script, a thread):
    ``with subscribe_sync(...) as sub: for message in sub: ...``. Entering returns once the server
    has the subscription; ``close()``, from any thread, ends the iteration."""

    _socket: socket.socket | None = None

    def open(self) -> None:
        """Mint a token if none was given and open the stream; ``RealtimeError`` if refused."""
        if not self._to_open():
            return
        stream = self._stream
        token = self._token
        if token is None:
            token = get_subscription_token_sync(stream.client, self.channel, self.topics)
        url, headers = stream.request(token)
        http = httpx.Client(**stream.http_options())
        try:
            response = http.send(http.build_request("GET", url, headers=headers), stream=True)
        except httpx.HTTPError as exc:
            http.close()
            raise stream.failed(exc, url) from None
        if response.status_code != 200:
            response.read()
            http.close()
            raise stream.refused(response)
        self._http, self._response = http, response
        network = response.extensions.get("network_stream")
        self._socket = network.get_extra_info("socket") if network is not None else None

    def close(self) -> None:
        """Close the connection (iteration then ends), from this thread or another."""
        self._closed = True
        response, http, sock = self._response, self._http, self._socket
        self._response = self._http = self._socket = None
        if sock is not None:
            # A read blocked in another thread returns only once the socket is shut down.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if response is not None:
            response.close()
        if http is not None:
            http.close()

    def __enter__(self) -> SubscriptionSync:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Message]:
        self.open()
        response = self._response
        if response is None:
            return
        try:
            for line in response.iter_lines():
                message = self._stream.feed(line)
                if message is not None:
                    yield message
        except (httpx.HTTPError, httpx.StreamError, OSError, ValueError) as exc:
            if not self._closed:  # closed by ``close`` (another thread): the iteration just ends
                raise self._stream.broke(exc) from None


def subscribe(
    client: Inngest,
    channel: str,
    topics: Sequence[str],
    *,
    token: SubscriptionToken | str | None = None,
) -> Subscription:
    """Subscribe to ``topics`` of ``channel``: ``async with subscribe(...) as sub: async for m in
    sub``. Without ``token``, one is minted with the client's signing key."""
    return Subscription(client, channel, topics, token)


def subscribe_sync(
    client: Inngest,
    channel: str,
    topics: Sequence[str],
    *,
    token: SubscriptionToken | str | None = None,
) -> SubscriptionSync:
    """``subscribe`` for sync code: ``with subscribe_sync(...) as sub: for m in sub``."""
    return SubscriptionSync(client, channel, topics, token)


# -- the publish step (``ctx.step.realtime``) ------------------------------------------


class StepRealtime:
    """``ctx.step.realtime`` of an async function."""

    __slots__ = ("_step",)

    def __init__(self, step: Step) -> None:
        self._step = step

    async def publish(self, step_id: str, channel: str, topic: str, data: T) -> T:
        """Publish ``data`` to ``topic`` of ``channel`` as a step: sent once per run (a retry or
        a replay does not send it again), tagged with the run's ID; returns ``data``."""
        check_names(channel, topic)
        step = self._step
        run_id = step._core.run_id or None

        async def send(channel: str, topic: str, data: T) -> T:
            await publish(step._client, channel, topic, data, run_id=run_id)
            return data

        opts = {"channel": channel, "topic": topic}
        args = (channel, topic, data)
        return cast(T, await step._step(StepKind.REALTIME_PUBLISH, step_id, opts, args, send, None))


class StepRealtimeSync:
    """``ctx.step.realtime`` of a sync function."""

    __slots__ = ("_step",)

    def __init__(self, step: StepSync) -> None:
        self._step = step

    def publish(self, step_id: str, channel: str, topic: str, data: T) -> T:
        """Publish ``data`` to ``topic`` of ``channel`` as a step: sent once per run (a retry or
        a replay does not send it again), tagged with the run's ID; returns ``data``."""
        check_names(channel, topic)
        step = self._step
        run_id = step._core.run_id or None

        def send(channel: str, topic: str, data: T) -> T:
            publish_sync(step._client, channel, topic, data, run_id=run_id)
            return data

        opts = {"channel": channel, "topic": topic}
        args = (channel, topic, data)
        return cast(T, step._step(StepKind.REALTIME_PUBLISH, step_id, opts, args, send, None))
