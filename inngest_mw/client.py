"""The ``Inngest`` client: configuration, function definition and sending events.

Every send goes through the hook pipeline: ``before_send_events`` -> ``wrap_send`` (around the HTTP
call) -> ``after_send_events``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as _dt
import functools
import json
import logging
import os
import random
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from inngest_mw import serializer as _ser
from inngest_mw import signature
from inngest_mw._const import (
    DEV_EVENT_KEY,
    MAX_EVENT_BYTES,
    MAX_EVENTS_PER_SEND,
    REQ_VERSION,
    SDK_HEADER,
    Header,
)
from inngest_mw._drive import Effect, Flow, adrive, drive
from inngest_mw._pool import AsyncPool
from inngest_mw.checkpoint import checkpointing_default
from inngest_mw.config import (
    Batch,
    Cancel,
    Concurrency,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from inngest_mw.errors import (
    ConfigError,
    FunctionConfigInvalidError,
    SendEventsError,
    SendSignalError,
)
from inngest_mw.event import Event, EventModel, Sendable, SendEventsResult, to_events
from inngest_mw.function import Function, Handler, validate_options
from inngest_mw.hooks import HOOKS
from inngest_mw.metadata import MetadataOp, UpdateMetadataError, api_request, metadata_outcome
from inngest_mw.pipeline import HookTable, MiddlewareFactory, PipelineSpec
from inngest_mw.run_state import keys_or_none
from inngest_mw.serializer import Serializer
from inngest_mw.settings import Settings, resolve
from inngest_mw.signals import signal_body, signal_outcome

__all__ = ["Inngest"]

T = TypeVar("T")
_SEND_ATTEMPTS = 5


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


_MAX_CONNECTIONS, _KEEPALIVE_S = 100, 4.0
_POOL = httpx.Limits(
    max_connections=_MAX_CONNECTIONS,
    max_keepalive_connections=_MAX_CONNECTIONS,
    keepalive_expiry=_KEEPALIVE_S,
)
"""Every connection the SDK opens is kept for the next request. httpx's default keeps 20, so
under more concurrent requests (checkpoints of many runs, sends from many tasks) each answer past
the twentieth closed its connection and the next request opened a new one (a TCP and TLS
handshake each, and as much more work for the server). An idle connection is dropped after 4 s,
before the 5 s after which uvicorn and many other servers close it: a request sent as the server
closes its connection fails without having been read. The async client's own pool (below) takes
the same cap and expiry."""


def _unbound(response: httpx.Response) -> httpx.Response:
    """``response`` once its body is read, out of the reference cycle httpx sends it in: its stream
    refers back to it, so every response, with its request, headers and URL (some fifty objects),
    waited for the cycle collector, and an app checkpointing each step grew the heap between its
    collections. The stream is spent by then: the body itself takes its place, and the response
    is freed as soon as it is dropped."""
    response.stream = httpx.ByteStream(response.content)
    return response


class _Client(httpx.Client):
    """The SDK's sync client: ``httpx.Client`` with its read responses ``_unbound``."""

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        response = super().send(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )
        return response if stream else _unbound(response)


class _AsyncClient(httpx.AsyncClient):
    """The SDK's async client: ``httpx.AsyncClient`` with its read responses ``_unbound``."""

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        response = await super().send(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )
        return response if stream else _unbound(response)


def _async_client() -> httpx.AsyncClient:
    """An async client on the SDK's own pool (``inngest_mw._pool``: constant work per request
    however many are in flight), or on httpx's when the environment names a proxy, which only
    httpx's transports go through."""
    if any(key in ("http", "https", "all") for key in urllib.request.getproxies()):
        return _AsyncClient(verify=_tls_context(), limits=_POOL)
    pool = AsyncPool(
        ssl_context=_tls_context(), max_connections=_MAX_CONNECTIONS, keepalive_expiry=_KEEPALIVE_S
    )
    return _AsyncClient(transport=pool)


_Kept = tuple[httpx.AsyncClient, AsyncIterator[None]]
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Kept]
_loop_clients = weakref.WeakKeyDictionary()
"""Each loop's client, with the parked generator that closes it (the loop holds that weakly)."""
_loop_lock = threading.Lock()


async def loop_http() -> httpx.AsyncClient:
    """The running event loop's async HTTP client, shared by every request the SDK makes on that
    loop (events, checkpoints, signals, metadata, realtime publishes), so its kept-alive
    connections, and their TLS sessions, serve request after request instead of one handshake
    per operation.

    It is closed with its loop: when the loop shuts its async generators down, which
    ``asyncio.run``, uvicorn and asgiref's ``async_to_sync`` each do before closing it, a parked
    async generator holding the client is finalized and closes it there, while the loop still
    runs. A loop closed without that (a bare ``loop.close()``) keeps its client, and the
    sockets it left open, for as long as the process.
    """
    loop = asyncio.get_running_loop()
    kept = _loop_clients.get(loop)
    if kept is not None and not kept[0].is_closed:
        return kept[0]
    http = _async_client()
    closer = _closed_with_loop(loop, http)
    await closer.__anext__()  # parks at its yield: registered with this loop from now on
    with _loop_lock:
        _loop_clients[loop] = (http, closer)
    return http


async def _closed_with_loop(
    loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient
) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with _loop_lock:
            kept = _loop_clients.get(loop)
            if kept is not None and kept[0] is http:
                del _loop_clients[loop]
        await http.aclose()


class Inngest:
    """An Inngest app: ``Inngest(app_id="shop")``; dev mode via ``is_production=False`` or ``INNGEST_DEV``."""

    def __init__(
        self,
        *,
        app_id: str,
        is_production: bool | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        event_key: str | None = None,
        signing_key: str | None = None,
        env: str | None = None,
        app_version: str | None = None,
        logger: logging.Logger | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        request_timeout: int | _dt.timedelta | None = None,
        serializer: Serializer | None = None,
        checkpointing: bool | None = None,
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip():
            raise ConfigError("app_id: must be a non-empty string")
        self.app_id = app_id
        self.app_version = app_version
        self.logger = logger or logging.getLogger("inngest_mw.app")
        self.serializer = serializer
        self.settings: Settings = resolve(
            is_production=is_production,
            api_base_url=api_base_url,
            event_api_base_url=event_api_base_url,
            signing_key=signing_key,
            event_key=event_key,
            env=env,
        )
        if isinstance(request_timeout, _dt.timedelta):
            self.request_timeout = request_timeout.total_seconds()
        else:
            self.request_timeout = (request_timeout or 30_000) / 1000
        self.middleware = PipelineSpec(list(middleware or []))
        if checkpointing is not None and not isinstance(checkpointing, bool):
            raise ConfigError(f"checkpointing: must be True, False or None, not {checkpointing!r}")
        self.checkpointing = checkpointing_default() if checkpointing is None else checkpointing
        """Run the next steps in the same request, checkpointing each, where the server allows
        it (``INNGEST_CHECKPOINTING=0`` or ``checkpointing=False`` turns it off)."""
        self._sync_http: httpx.Client | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def is_dev(self) -> bool:
        return self.settings.is_dev

    @property
    def is_production(self) -> bool:
        return not self.settings.is_dev

    @property
    def api_origin(self) -> str:
        return self.settings.api_origin

    @property
    def event_api_origin(self) -> str:
        return self.settings.event_api_origin

    @property
    def signing_key(self) -> str | None:
        return self.settings.signing_key

    @property
    def signing_key_fallback(self) -> str | None:
        return self.settings.signing_key_fallback

    @property
    def event_key(self) -> str | None:
        return self.settings.event_key

    @property
    def env(self) -> str | None:
        return self.settings.env

    def serialize(self, value: object) -> object:
        """``value`` in the JSON-ready form this client's serializer gives step outputs."""
        return _ser.encode(self, value)

    def add_middleware(self, middleware: MiddlewareFactory) -> None:
        self.middleware = self.middleware + PipelineSpec([middleware])

    def outbound_headers(self, key: str | None = None) -> dict[str, str]:
        """Headers for every request to Inngest; ``key`` picks the signing key for the bearer."""
        headers = {
            Header.SDK: SDK_HEADER,
            "user-agent": SDK_HEADER,
            Header.REQ_VERSION: REQ_VERSION,
        }
        key = key or self.settings.signing_key
        if key:
            headers[Header.AUTHORIZATION] = signature.bearer_token(key)
        if self.settings.env:
            headers[Header.ENV] = self.settings.env
        return headers

    # -- functions -----------------------------------------------------------------------

    def create_function(
        self,
        *,
        fn_id: str,
        trigger: TriggerEvent
        | TriggerCron
        | type[EventModel]
        | Sequence[TriggerEvent | TriggerCron | type[EventModel]],
        name: str | None = None,
        retries: int | None = None,
        timeouts: Timeouts | None = None,
        batch_events: Batch | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        rate_limit: RateLimit | None = None,
        throttle: Throttle | None = None,
        debounce: Debounce | None = None,
        cancel: Cancel | Sequence[Cancel] | None = None,
        idempotency: str | None = None,
        priority: Priority | None = None,
        singleton: Singleton | None = None,
        on_failure: Handler | None = None,
        middleware: Sequence[MiddlewareFactory] | None = None,
        output_type: object = None,
        checkpointing: bool | None = None,
    ) -> Callable[[Callable[..., Any]], Function[Any]]:
        """Decorate a handler ``(ctx) -> result`` (sync or async); options are validated now.

        ``checkpointing`` overrides the client's for this function (None: the client's)."""
        options = validate_options(
            fn_id=fn_id,
            name=name,
            triggers=(
                trigger if isinstance(trigger, TriggerEvent | TriggerCron | type) else list(trigger)
            ),
            retries=retries,
            timeouts=timeouts,
            batch_events=batch_events,
            concurrency=concurrency,
            rate_limit=rate_limit,
            throttle=throttle,
            debounce=debounce,
            cancel=cancel,
            idempotency=idempotency,
            priority=priority,
            singleton=singleton,
        )
        spec = PipelineSpec(list(middleware or []))
        if checkpointing is not None and not isinstance(checkpointing, bool):
            raise FunctionConfigInvalidError(
                f"checkpointing: must be True, False or None, not {checkpointing!r} "
                f"(function {fn_id!r})"
            )

        def decorator(handler: Callable[..., Any]) -> Function[Any]:
            if not callable(handler):
                raise ConfigError(f"create_function({fn_id!r}) must decorate a function")
            return Function(
                app_id=self.app_id,
                options=options,
                handler=handler,
                on_failure=on_failure,
                middleware=spec.factories,
                output_type=output_type,
                client=self,
                checkpointing=checkpointing,
            )

        return decorator

    # -- events --------------------------------------------------------------------------

    async def send(self, events: Sendable, *, skip_middleware: bool = False) -> list[str]:
        """Send events (``Event``s or ``EventModel``s); returns their IDs.

        ``SendEventsError.ids`` lists any accepted before a failure; an event whose data does not
        match its ``EventModel`` is refused before anything is sent (``EventDataInvalidError``).
        """
        batch = to_events(events)
        hooks = HookTable([]) if skip_middleware else self.middleware.build(self, None)
        return await self._send_with(batch, hooks)

    def send_sync(self, events: Sendable, *, skip_middleware: bool = False) -> list[str]:
        """Blocking ``send``."""
        batch = to_events(events)
        hooks = (
            HookTable([])
            if skip_middleware
            else self.middleware.build(self, None, async_path=False)
        )
        return self._send_with_sync(batch, hooks)

    async def _send_with(self, events: list[Event], hooks: HookTable) -> list[str]:
        return await adrive(self._send_flow(events, hooks))

    def _send_with_sync(self, events: list[Event], hooks: HookTable) -> list[str]:
        return drive(self._send_flow(events, hooks))

    def _send_flow(self, events: list[Event], hooks: HookTable) -> Flow[list[str]]:
        """before_send_events (each sees the previous one's list) -> wrap_send -> after_send_events."""
        batch = events
        if hooks.has(HOOKS.BEFORE_SEND_EVENTS):
            replaced = yield from hooks.call(HOOKS.BEFORE_SEND_EVENTS, events)
            batch = events if replaced is None else list(replaced)
        result = SendEventsResult()
        try:
            request = self._prepare_send(batch)
            ids = yield from hooks.wrap(
                HOOKS.WRAP_SEND, batch, functools.partial(self._post_flow, request)
            )
        except SendEventsError as exc:
            result.ids, result.error = exc.ids, exc.message
            if hooks.has(HOOKS.AFTER_SEND_EVENTS):
                yield from hooks.call(HOOKS.AFTER_SEND_EVENTS, result)
            raise
        result.ids = ids
        if hooks.has(HOOKS.AFTER_SEND_EVENTS):
            yield from hooks.call(HOOKS.AFTER_SEND_EVENTS, result)
        return ids

    def _prepare_send(self, events: list[Event]) -> tuple[str, bytes, dict[str, str]]:
        if len(events) > MAX_EVENTS_PER_SEND:
            raise SendEventsError(
                f"at most {MAX_EVENTS_PER_SEND} events per send, got {len(events)}"
            )
        now = int(time.time() * 1000)
        payload = []
        for event in events:
            wire = event.to_wire()
            wire.setdefault("ts", now)
            encoded = json.dumps(wire, separators=(",", ":"))
            if len(encoded) > MAX_EVENT_BYTES:
                raise SendEventsError(
                    f"event {event.name!r} is {len(encoded)} bytes; the limit is {MAX_EVENT_BYTES}"
                )
            payload.append(encoded)
        key = self.settings.event_key or (DEV_EVENT_KEY if self.is_dev else "")
        headers = self.outbound_headers()
        headers[Header.CONTENT_TYPE] = "application/json"
        entropy = base64.b64encode(os.urandom(10)).decode()
        headers[Header.EVENT_ID_SEED] = f"{now},{entropy}"
        url = f"{self.settings.event_api_origin}e/{key}"
        return url, ("[" + ",".join(payload) + "]").encode(), headers

    @staticmethod
    def _send_outcome(response: httpx.Response) -> list[str] | None:
        """IDs on success, ``None`` to retry; raises ``SendEventsError`` on a final failure."""
        if response.status_code >= 500:
            return None
        try:
            body = response.json()
        except ValueError:
            raise SendEventsError(
                f"event API answered {response.status_code} with a non-JSON body"
            ) from None
        ids = body.get("ids") if isinstance(body, dict) else None
        ids = [str(i) for i in ids] if isinstance(ids, list) else []
        error = body.get("error") if isinstance(body, dict) else None
        if response.status_code >= 400 or error:
            raise SendEventsError(
                f"event API refused the events ({response.status_code}): {error or body}", ids
            )
        return ids

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(0.1 * 2**attempt + random.uniform(0, 0.1))

    def _check_key(self) -> None:
        # Checked at the HTTP call, not before: a wrap_send that never sends needs no key.
        if not self.settings.event_key and not self.is_dev:
            raise SendEventsError(
                "no event key: pass Inngest(event_key=...) or set INNGEST_EVENT_KEY"
            )

    def _post_flow(self, request: tuple[str, bytes, dict[str, str]]) -> Flow[list[str]]:
        """POST the events, retrying transport errors and 5xx answers with backoff."""
        url, body, headers = request
        self._check_key()
        last = "no attempt made"
        for attempt in range(_SEND_ATTEMPTS):
            try:
                response = yield _Post(self, url, body, headers)
                ids = self._send_outcome(response)
                if ids is not None:
                    return ids
                last = f"event API answered {response.status_code}"
            except httpx.HTTPError as exc:
                last = self._transport_failure(exc, url)
            if attempt + 1 < _SEND_ATTEMPTS:
                yield _Sleep(self._backoff(attempt))
        raise SendEventsError(f"sending events failed after {_SEND_ATTEMPTS} attempts: {last}")

    def _transport_failure(self, exc: httpx.HTTPError, url: str) -> str:
        """Why a request to ``url`` got no answer, naming where it went; in dev mode, a refused
        connection also says how to point the SDK at the dev server."""
        reason = f"{type(exc).__name__} from {url}: {exc}"
        if self.is_dev and isinstance(exc, httpx.ConnectError):
            reason += (
                " (is the dev server running there? INNGEST_DEV=http://HOST:PORT, or the "
                "client's api_base_url and event_api_base_url, say where it is)"
            )
        return reason

    # -- signals -------------------------------------------------------------------------

    async def send_signal(self, signal: str, data: object = None) -> str:
        """Resume the run waiting in ``step.wait_for_signal`` for ``signal``, handing it ``data``;
        returns that run's ID. ``SignalNotFoundError`` when no run is waiting for it."""
        return await adrive(self._signal_flow(signal, data))

    def send_signal_sync(self, signal: str, data: object = None) -> str:
        """Blocking ``send_signal``."""
        return drive(self._signal_flow(signal, data))

    def _signal_flow(self, signal: str, data: object) -> Flow[str]:
        """POST the signal with each signing key in turn, retrying transport errors and 5xx."""
        url = f"{self.settings.api_origin}v1/signals"
        return (
            yield from self.api_post_flow(
                url,
                signal_body(signal, data),
                lambda response: signal_outcome(signal, response),
                lambda why: SendSignalError(f"sending signal {signal!r} {why}"),
            )
        )

    def api_post_flow(
        self,
        url: str,
        body: bytes,
        outcome: Callable[[httpx.Response], T | None],
        failed: Callable[[str], Exception],
        fallback_on: tuple[int, ...] = (401, 403),
    ) -> Flow[T]:
        """POST JSON ``body`` to the API with each signing key in turn (the next key on a
        ``fallback_on`` answer), retrying transport errors and answers ``outcome`` gives None
        for (it raises for a final refusal) with backoff. After the last attempt it raises what
        ``failed`` makes of "failed after N attempts: <the last reason>"."""
        keys = keys_or_none(self.settings.signing_keys)
        last = "no attempt made"
        for attempt in range(_SEND_ATTEMPTS):
            for index, key in enumerate(keys):
                headers = self.outbound_headers(key)
                headers[Header.CONTENT_TYPE] = "application/json"
                try:
                    response = yield _Post(self, url, body, headers)
                except httpx.HTTPError as exc:
                    last = self._transport_failure(exc, url)
                    break
                if response.status_code in fallback_on and index + 1 < len(keys):
                    continue  # the fallback key may be the one the server holds now
                result = outcome(response)
                if result is not None:
                    return result
                last = f"the API answered {response.status_code}"
                break
            if attempt + 1 < _SEND_ATTEMPTS:
                yield _Sleep(self._backoff(attempt))
        raise failed(f"failed after {_SEND_ATTEMPTS} attempts: {last}")

    # -- run metadata --------------------------------------------------------------------

    async def update_metadata(
        self,
        run_id: str,
        values: Mapping[str, Any],
        kind: str = "default",
        *,
        op: MetadataOp = "merge",
        step_id: str | None = None,
        step_index: int = 0,
    ) -> None:
        """Attach metadata to a run (or one of its steps) from outside it; inside a function use
        ``ctx.metadata``. Raises ``MetadataError`` for a bad update, ``UpdateMetadataError`` when
        the API refuses it."""
        await adrive(
            self._metadata_flow(*api_request(run_id, values, kind, op, step_id, step_index))
        )

    def update_metadata_sync(
        self,
        run_id: str,
        values: Mapping[str, Any],
        kind: str = "default",
        *,
        op: MetadataOp = "merge",
        step_id: str | None = None,
        step_index: int = 0,
    ) -> None:
        """Blocking ``update_metadata``."""
        drive(self._metadata_flow(*api_request(run_id, values, kind, op, step_id, step_index)))

    async def _update_metadata(self, run_id: str, body: bytes) -> None:
        await adrive(self._metadata_flow(run_id, body))

    def _update_metadata_sync(self, run_id: str, body: bytes) -> None:
        drive(self._metadata_flow(run_id, body))

    def _metadata_flow(self, run_id: str, body: bytes) -> Flow[None]:
        """POST one metadata update with each signing key in turn, retrying transport errors and
        5xx answers."""
        url = f"{self.settings.api_origin}v1/runs/{quote(run_id, safe='')}/metadata"
        yield from self.api_post_flow(
            url,
            body,
            lambda response: True if metadata_outcome(run_id, response) else None,
            lambda why: UpdateMetadataError(f"updating metadata of run {run_id} {why}"),
            fallback_on=(401,),
        )

    # -- HTTP ----------------------------------------------------------------------------

    def sync_http(self) -> httpx.Client:
        if self._sync_http is None:
            self._sync_http = _Client(verify=_tls_context(), limits=_POOL)
        return self._sync_http


class _Post(Effect):
    """One HTTP POST to the API, with the client's sync client or the loop's async one."""

    __slots__ = ("body", "client", "headers", "url")

    def __init__(self, client: Inngest, url: str, body: bytes, headers: dict[str, str]) -> None:
        self.client, self.url, self.body, self.headers = client, url, body, headers

    def run(self) -> httpx.Response:
        http = self.client.sync_http()
        return http.post(
            self.url, content=self.body, headers=self.headers, timeout=self.client.request_timeout
        )

    async def arun(self) -> httpx.Response:
        http = await loop_http()
        return await http.post(
            self.url, content=self.body, headers=self.headers, timeout=self.client.request_timeout
        )


class _Sleep(Effect):
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self) -> None:
        time.sleep(self.seconds)

    async def arun(self) -> None:
        await asyncio.sleep(self.seconds)
