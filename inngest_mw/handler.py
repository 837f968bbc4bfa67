"""The framework-agnostic HTTP handler: routes GET (introspection), PUT (sync) and POST (call).

A call reads straight through: verify the signature on the raw bytes (``signature``), parse the
body once (``execution.parse_call``), drive the request flow inside ``wrap_request``
(``execution.request_flow``), encode the outcome (``responses``). Syncing lives in ``syncing``,
fetching run state for ``use_api`` in ``run_state``, the request and response types in ``comm``.
No error escapes as a traceback: each becomes a JSON response with a reason.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Any, cast

from inngest_mw import signature, syncing
from inngest_mw._const import (
    CAPABILITIES,
    DEFAULT_SERVE_PATH,
    LANGUAGE,
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
    RequestMeta,
    parse_call,
    request_flow,
)
from inngest_mw.function import Function, Handler
from inngest_mw.hooks import HOOKS
from inngest_mw.jsonbody import JSONBodyError, parse_json
from inngest_mw.pipeline import PipelineSpec
from inngest_mw.responses import call_response, error_response
from inngest_mw.run_state import load_from_api

__all__ = ["CommHandler", "CommRequest", "CommResponse", "resolve_serve_path"]

_log = logging.getLogger("inngest_mw")


def resolve_serve_path(client: Inngest, serve_path: str | None = None) -> str:
    """The path an adapter mounts: the argument, else ``INNGEST_SERVE_PATH``, else ``/api/inngest``."""
    return serve_path or client.settings.serve_path or DEFAULT_SERVE_PATH


class CommHandler:
    """Serves one client's functions at one path; shared by every framework adapter."""

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
        self._specs: dict[str, tuple[PipelineSpec, PipelineSpec]] = {}

    # -- entry points ----------------------------------------------------------------------

    async def handle(self, request: CommRequest) -> CommResponse:
        """Answer one request (async frameworks); sync functions run in a worker thread."""
        return await adrive(self._serve(request, async_face=True))

    def handle_sync(self, request: CommRequest) -> CommResponse:
        """Answer one request (sync frameworks); async functions are refused with a clear error."""
        return drive(self._serve(request, async_face=False))

    def _serve(self, request: CommRequest, *, async_face: bool) -> Flow[CommResponse]:
        try:
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
        try:
            hooks = self._pipeline(fn).build(self.client, request.raw, async_path=fn.is_async)
            if call.use_api:
                yield Await(load_from_api(self.client, call))

            def run() -> Flow[CommResponse]:
                flow = request_flow(
                    self.client, fn, handler, call, hooks, meta, async_path=fn.is_async
                )
                return call_response((yield from flow), key)

            return (yield from hooks.wrap(HOOKS.WRAP_REQUEST, request, run))
        except Error as exc:
            return error_response(exc, key)

    def _pipeline(self, fn: Function[Any]) -> PipelineSpec:
        """Client then function middleware, combined once per function (again if the client's
        middleware list is replaced by ``add_middleware``)."""
        cached = self._specs.get(fn.id)
        if cached is None or cached[0] is not self.client.middleware:
            cached = (self.client.middleware, self.client.middleware + fn.middleware)
            self._specs[fn.id] = cached
        return cached[1]


def _key_hash(key: str | None) -> str | None:
    if not key:
        return None
    return hashlib.sha256(signature.strip_key_prefix(key).encode()).hexdigest()
