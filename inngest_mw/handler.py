"""The framework-agnostic HTTP handler: routes GET (introspection), PUT (sync) and POST (call).

A call reads straight through: verify the signature on the raw bytes (``signature``), parse the
body once (``execution.parse_call``), drive the request flow inside ``wrap_request``
(``execution.request_flow``), encode the outcome (``responses``). Syncing lives in ``syncing``,
fetching run state for ``use_api`` in ``run_state``, the request and response types in ``comm``.
No error escapes as a traceback: each becomes a JSON response with a reason.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import urllib.parse
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from typing import Any, cast

from inngest_mw import hooktrace, signature, syncing
from inngest_mw._const import (
    CAPABILITIES,
    DEFAULT_SERVE_PATH,
    LANGUAGE,
    MAX_BODY_BYTES,
    SCHEMA_VERSION,
    VERSION,
    Header,
)
from inngest_mw._drive import Await, Flow, InThread, adrive, drive
from inngest_mw.client import Inngest
from inngest_mw.comm import CommRequest, CommResponse, respond
from inngest_mw.errors import (
    Error,
    SignatureError,
    SigningKeyMissingError,
)
from inngest_mw.execution import (
    BodyError,
    CallRequest,
    CallResult,
    RequestMeta,
    parse_call,
    request_flow,
)
from inngest_mw.function import Function, Handler
from inngest_mw.hooks import HOOKS
from inngest_mw.hooktrace import HookTrace
from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw.pipeline import PipelineSpec
from inngest_mw.responses import call_response, error_response
from inngest_mw.run_state import load_from_api

__all__ = ["CommHandler", "CommRequest", "CommResponse", "resolve_serve_path"]

_CHUNK = 64 * 1024
# No NullHandler on this logger, on purpose: when the application configures no logging (a plain
# ``uvicorn module:app``), Python's last-resort handler prints warnings and errors to stderr, so
# the reason for a 500 is never silent. Logging the application configures takes over as usual.
_log = logging.getLogger("inngest_mw")


def resolve_serve_path(client: Inngest, serve_path: str | None = None) -> str:
    """The path an adapter mounts: the argument, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``."""
    return serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH


class CommHandler:
    """Serves one client's functions at one path; shared by every framework adapter."""

    #: The largest request body read, in bytes. The server sends at most 4 MiB (it switches to
    #: ``use_api`` beyond that), so 8 MiB leaves room while keeping an unauthenticated client from
    #: making the app hold arbitrary amounts of memory per request.
    max_body_bytes: int = MAX_BODY_BYTES

    def __init__(
        self,
        client: Inngest,
        functions: Sequence[Function[Any]],
        *,
        framework: str = "asgi",
        serve_origin: str | None = None,
        serve_path: str | None = None,
        public_path: str | None = None,
    ) -> None:
        self.client = client
        self.framework = framework
        self.serve_origin = serve_origin or client.settings.serve_origin
        self.serve_path = serve_path or client.settings.serve_path
        self.public_path = public_path
        if not client.is_dev and not client.settings.signing_key:
            raise SigningKeyMissingError(
                "cloud mode needs a signing key to verify requests: pass Inngest(signing_key=...) or "
                "set INNGEST_SIGNING_KEY (or use dev mode: is_production=False / INNGEST_DEV=1)"
            )
        self.functions: dict[str, tuple[Function[Any], Handler]] = {}
        for fn in functions:
            if not isinstance(fn, Function):
                raise TypeError(f"serve() expects functions made by create_function, got {fn!r}")
            for fn_id, handler in ((fn.id, fn.handler), (fn.on_failure_id, fn.on_failure)):
                if fn_id is None or handler is None:
                    continue
                if fn_id in self.functions:
                    raise ValueError(f"function ID {fn_id!r} is served twice")
                self.functions[fn_id] = (fn, handler)
        self.function_list = list(functions)
        if not client.is_dev and not self.serve_origin:
            _log.warning(
                "inngest-mw: cloud mode without serve_origin: an unsigned PUT cannot sync the app, "
                "because its URL would come from the request's Host header; pass "
                "serve_origin=... or set INNGEST_SERVE_ORIGIN to your app's public origin"
            )
        self._specs: dict[str, tuple[PipelineSpec, PipelineSpec]] = {}

    # -- entry points ----------------------------------------------------------------------

    async def handle(self, request: CommRequest) -> CommResponse:
        """Answer one request (async frameworks); sync functions run in a worker thread."""
        return await adrive(self._serve(request, async_face=True))

    def handle_sync(self, request: CommRequest) -> CommResponse:
        """Answer one request (sync frameworks); async functions are refused with a clear error."""
        return drive(self._serve(request, async_face=False))

    async def receive(
        self, method: str, headers: Mapping[str, str], chunks: AsyncIterable[bytes]
    ) -> bytes | CommResponse:
        """Read a request body for an async adapter, or the response that refuses it.

        The refusal comes before any byte is read when the headers are enough to decide
        (``refuse_early``), else as soon as the body passes ``max_body_bytes``.
        """
        early = self.refuse_early(method, headers)
        if early is not None:
            return early
        return await self.read_capped(chunks)

    async def read_capped(self, chunks: AsyncIterable[bytes]) -> bytes | CommResponse:
        """The body from ``chunks``, or a 413 as soon as it passes ``max_body_bytes`` (for an
        adapter that has already asked ``refuse_early``)."""
        body = bytearray()
        async for chunk in chunks:
            body += chunk
            if len(body) > self.max_body_bytes:
                return self.too_large()
        return bytes(body)

    def receive_sync(
        self, method: str, headers: Mapping[str, str], read: Callable[[int], bytes]
    ) -> bytes | CommResponse:
        """``receive`` for a sync adapter; ``read(n)`` returns up to ``n`` bytes, ``b""`` at end."""
        early = self.refuse_early(method, headers)
        if early is not None:
            return early
        body = bytearray()
        while chunk := read(_CHUNK):
            body += chunk
            if len(body) > self.max_body_bytes:
                return self.too_large()
        return bytes(body)

    def refuse_early(self, method: str, headers: Mapping[str, str]) -> CommResponse | None:
        """The answer to a request that its headers alone condemn, before its body is read.

        A ``Content-Length`` over ``max_body_bytes`` is a 413; in cloud mode, a call whose
        signature header is missing, malformed or stale is a 401 (only the MAC needs the body).
        """
        length = headers.get(Header.CONTENT_LENGTH, "")
        if length.isascii() and length.isdigit() and int(length) > self.max_body_bytes:
            return self.too_large()
        if method.upper() == "POST" and not self.client.is_dev:
            try:
                signature.check_header(headers.get(Header.SIGNATURE))
            except SignatureError as exc:
                return self.unauthorized(exc)
        return None

    def too_large(self) -> CommResponse:
        return respond(
            413,
            {
                "name": "BodyTooLargeError",
                "message": f"request body is larger than the limit of {self.max_body_bytes} bytes",
            },
            {Header.NO_RETRY: "true"},
        )

    def _serve(self, request: CommRequest, *, async_face: bool) -> Flow[CommResponse]:
        try:
            if len(request.body) > self.max_body_bytes:
                return self.too_large()
            method = request.method.upper()
            if method == "POST":
                return (yield from self._post(request, async_face))
            if method == "GET":
                return self.introspect(request)
            if method == "PUT":
                return cast(CommResponse, (yield Await(self._put(request))))
            return respond(405, {"message": f"method {request.method} not allowed"})
        except Exception as exc:  # the last line of defence: a JSON 500, never a traceback
            _log.exception("inngest-mw: unhandled error while serving %s", request.method)
            return respond(500, {"message": f"internal error: {type(exc).__name__}"})

    # -- shared pieces -----------------------------------------------------------------------

    def verify(self, request: CommRequest) -> str | None:
        """The key that signed the request, ``None`` in dev mode without a signature.

        Raises ``SignatureError`` in cloud mode (always) and in dev mode (when a header is present
        and a key is configured) if the signature is wrong.
        """
        header = request.headers.get(Header.SIGNATURE)
        keys = self.client.settings.signing_keys
        if self.client.is_dev and (not header or not keys):
            return None
        return signature.verify(request.body, header, keys)

    def unauthorized(self, exc: SignatureError) -> CommResponse:
        return respond(401, {"message": "Unauthorized", "reason": exc.message})

    def serve_url(self, request: CommRequest, override: str | None = None) -> str:
        parts = urllib.parse.urlsplit(override or request.url)
        scheme, netloc, path = parts.scheme, parts.netloc, parts.path
        if self.serve_origin:
            origin = (
                self.serve_origin if "://" in self.serve_origin else "https://" + self.serve_origin
            )
            o = urllib.parse.urlsplit(origin)
            scheme, netloc = o.scheme, o.netloc
        path = self.public_path or self.serve_path or path or DEFAULT_SERVE_PATH
        return urllib.parse.urlunsplit((scheme, netloc, path, "", ""))

    # -- GET -----------------------------------------------------------------------------

    def introspect(self, request: CommRequest) -> CommResponse:
        settings = self.client.settings
        body: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "authentication_succeeded": None,
            "function_count": len(self.functions),
            "has_event_key": settings.event_key is not None,
            "has_signing_key": settings.signing_key is not None,
            "has_signing_key_fallback": settings.signing_key_fallback is not None,
            "mode": settings.mode,
        }
        key = None
        if request.headers.get(Header.SIGNATURE) and settings.signing_keys:
            try:
                key = signature.verify(
                    request.body, request.headers.get(Header.SIGNATURE), settings.signing_keys
                )
            except SignatureError:
                body["authentication_succeeded"] = False
        if key is None:
            return respond(200, body)
        body.update(
            authentication_succeeded=True,
            capabilities=CAPABILITIES,
            api_origin=settings.api_origin,
            app_id=self.client.app_id,
            env=settings.env,
            event_api_origin=settings.event_api_origin,
            event_key_hash=signature.hash_event_key(settings.event_key)
            if settings.event_key
            else None,
            framework=self.framework,
            sdk_language=LANGUAGE,
            sdk_version=VERSION,
            serve_origin=self.serve_origin,
            serve_path=self.serve_path,
            signing_key_hash=_key_hash(settings.signing_key),
            signing_key_fallback_hash=_key_hash(settings.signing_key_fallback),
        )
        return respond(200, body, sign_with=key)

    # -- PUT -----------------------------------------------------------------------------

    def registration(self, url: str) -> dict[str, Any]:
        """The sync payload: the app and every function's config."""
        return syncing.registration(self, url)

    async def _put(self, request: CommRequest) -> CommResponse:
        if request.headers.get(Header.SYNC_KIND) == "in_band":  # answered in-band whenever asked
            return syncing.in_band(self, request)
        if not self.client.is_dev and not self.serve_origin:
            # The URL would come from the Host header, which anyone can forge: only a request
            # signed with our key (so sent by Inngest) may choose it.
            try:
                self.verify(request)
            except SignatureError:
                return respond(
                    400,
                    {
                        "code": "serve_origin_required",
                        "message": "cannot sync from an unsigned PUT in cloud mode without a serve "
                        "origin: pass serve_origin=... or set INNGEST_SERVE_ORIGIN to the app's "
                        "public origin",
                    },
                )
        return await syncing.out_of_band(self, request)

    # -- POST ----------------------------------------------------------------------------

    def _prepare_post(
        self, request: CommRequest
    ) -> CommResponse | tuple[str | None, Function[Any], Handler, Any, RequestMeta]:
        """Everything before the function runs; a response when the request stops here."""
        try:
            key = self.verify(request)
        except SignatureError as exc:
            return self.unauthorized(exc)
        query = request.query
        if query.get("probe") == "trust":
            return respond(200, None, sign_with=key)
        if "probe" in query:
            return respond(400, {"message": f"unsupported probe {query['probe']!r}"}, sign_with=key)
        fn_id = query.get("fnId")
        if not fn_id:
            return respond(
                400,
                {"name": "QueryParamMissingError", "message": "missing fnId query parameter"},
                {Header.NO_RETRY: "true"},
                sign_with=key,
            )
        found = self.functions.get(fn_id) or self.functions.get(f"{self.client.app_id}-{fn_id}")
        if found is None:
            return respond(
                500,
                {
                    "name": "FunctionNotFoundError",
                    "message": f"function {fn_id!r} is not served here",
                },
                {Header.NO_RETRY: "false"},
                sign_with=key,
            )
        try:
            body = parse_json(request.body)
        except JSONBodyError as exc:
            return respond(
                400,
                {"name": "BodyInvalidError", "message": f"call body is {exc.reason}"},
                {Header.NO_RETRY: "true"},
                sign_with=key,
            )
        meta = RequestMeta(
            step_id=query.get("stepId") or "step",
            request_id=request.headers.get(Header.REQUEST_ID) or None,
            job_id=request.headers.get(Header.JOB_ID) or None,
            generation_id=request.headers.get(Header.GENERATION_ID) or None,
        )
        return key, found[0], found[1], body, meta

    def _call(self, body: Any) -> CallRequest | CommResponse:
        try:
            return parse_call(body)
        except BodyError as exc:
            return respond(
                400, {"name": "BodyInvalidError", "message": exc.message}, {Header.NO_RETRY: "true"}
            )

    def _post(self, request: CommRequest, async_face: bool) -> Flow[CommResponse]:
        prepared = self._prepare_post(request)
        if isinstance(prepared, CommResponse):
            return prepared
        key, fn, handler, body, meta = prepared
        if fn.is_async and not async_face:
            return respond(
                500,
                {
                    "message": f"function {fn.id!r} is async but is served by a sync "
                    "framework view; serve it from an async view"
                },
                {Header.NO_RETRY: "true"},
                sign_with=key,
            )
        flow = self._call_flow(request, key, fn, handler, body, meta)
        if fn.is_async:
            return (yield from flow)
        return cast(CommResponse, (yield InThread(flow)))

    def _call_flow(
        self,
        request: CommRequest,
        key: str | None,
        fn: Function[Any],
        handler: Handler,
        body: Any,
        meta: RequestMeta,
    ) -> Flow[CommResponse]:
        """Parse the call, build the request's hooks, run the function inside ``wrap_request``."""
        call = self._call(body)
        if isinstance(call, CommResponse):
            return call
        trace = HookTrace() if hooktrace.requested(request.headers) else None
        try:
            hooks = self._pipeline(fn).build(
                self.client, request.raw, async_path=fn.is_async, trace=trace
            )
            if call.use_api:
                yield Await(load_from_api(self.client, call))

            flow = request_flow(self.client, fn, handler, call, hooks, meta, async_path=fn.is_async)
            if HOOKS.WRAP_REQUEST in hooks.hooks:
                answer = functools.partial(_answered, flow, key)
                response = yield from hooks.wrap(HOOKS.WRAP_REQUEST, request, answer)
            else:  # (the same, without the onion's flow)
                response = call_response((yield from flow), key)
        except Error as exc:
            response = error_response(exc, key)
        if trace is not None and (trace.entries or trace.dropped):
            response.headers[Header.MW_TRACE] = trace.encode()
        return response

    def _pipeline(self, fn: Function[Any]) -> PipelineSpec:
        """Client then function middleware, combined once per function (again if the client's
        middleware list is replaced by ``add_middleware``)."""
        cached = self._specs.get(fn.id)
        if cached is None or cached[0] is not self.client.middleware:
            cached = (self.client.middleware, self.client.middleware + fn.middleware)
            self._specs[fn.id] = cached
        return cached[1]


def _answered(flow: Flow[CallResult], key: str | None) -> Flow[CommResponse]:
    """The response to a call: its request flow run to the end, inside ``wrap_request``."""
    return call_response((yield from flow), key)


def _key_hash(key: str | None) -> str | None:
    if not key:
        return None
    return hashlib.sha256(signature.strip_key_prefix(key).encode()).hexdigest()
