"""The framework-agnostic HTTP handler: GET introspection, PUT sync, POST call.

Adapters turn a framework request into a ``CommRequest`` (raw body bytes, lower-cased headers) and a
``CommResponse`` back. The signature is checked on the raw bytes, the body parsed once, and every
response carries ``X-Inngest-SDK`` and ``X-Inngest-Req-Version``; responses to signed requests are
signed. No error escapes as a traceback: each becomes a JSON response with a reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from inngest_mw import signature
from inngest_mw._const import (
    CAPABILITIES,
    DEFAULT_SERVE_PATH,
    LANGUAGE,
    MAX_STEP_OUTPUT_BYTES,
    REQ_VERSION,
    SCHEMA_VERSION,
    SDK_HEADER,
    VERSION,
    Header,
)
from inngest_mw._drive import Await, Flow, InThread, adrive, drive
from inngest_mw.client import Inngest
from inngest_mw.errors import (
    Error,
    NonRetriableError,
    RetryAfterError,
    SignatureError,
    SigningKeyMissingError,
    StepError,
)
from inngest_mw.event import Event
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
from inngest_mw.memo import Op, Opcode, parse_memos, serialize_error
from inngest_mw.pipeline import PipelineSpec

__all__ = ["CommHandler", "CommRequest", "CommResponse", "resolve_serve_path"]

_log = logging.getLogger("inngest_mw")


@dataclass(slots=True)
class CommRequest:
    """A framework request, normalized. ``raw`` is the framework's own request object."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    raw: object = None

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))


@dataclass(slots=True)
class CommResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


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
        self._function_list = list(functions)
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
                return self._get(request)
            if method == "PUT":
                return cast(CommResponse, (yield Await(self._put(request))))
            return self._respond(405, {"message": f"method {request.method} not allowed"})
        except Exception as exc:  # the last line of defence: a JSON 500, never a traceback
            _log.exception("inngest-mw: unhandled error while serving %s", request.method)
            return self._respond(500, {"message": f"internal error: {type(exc).__name__}"})

    # -- shared pieces -----------------------------------------------------------------------

    def _respond(
        self,
        status: int,
        body: Any,
        headers: Mapping[str, str] | None = None,
        *,
        sign_with: str | None = None,
        raw: bytes | None = None,
    ) -> CommResponse:
        data = raw if raw is not None else _dumps(body)
        out = {
            Header.CONTENT_TYPE: "application/json",
            Header.SDK: SDK_HEADER,
            Header.REQ_VERSION: REQ_VERSION,
        }
        if headers:
            out.update(headers)
        if sign_with:
            out[Header.SIGNATURE] = signature.sign(data, sign_with)
        return CommResponse(status, data, out)

    def _verify(self, request: CommRequest) -> str | None:
        """The key that signed the request, ``None`` in dev mode without a signature.

        Raises ``SignatureError`` in cloud mode (always) and in dev mode (when a header is present
        and a key is configured) if the signature is wrong.
        """
        header = request.headers.get(Header.SIGNATURE)
        keys = self.client.settings.signing_keys
        if self.client.is_dev and (not header or not keys):
            return None
        return signature.verify(request.body, header, keys)

    def _unauthorized(self, exc: SignatureError) -> CommResponse:
        return self._respond(401, {"message": "Unauthorized", "reason": exc.message})

    def _serve_url(self, request: CommRequest, override: str | None = None) -> str:
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

    def _get(self, request: CommRequest) -> CommResponse:
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
            return self._respond(200, body)
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
        return self._respond(200, body, sign_with=key)

    # -- PUT -----------------------------------------------------------------------------

    def registration(self, url: str) -> dict[str, Any]:
        """The sync payload: the app and every function's config."""
        functions: list[dict[str, Any]] = []
        for fn in self._function_list:
            functions.extend(fn.get_config(url))
        body: dict[str, Any] = {
            "url": url,
            "deployType": "ping",
            "appName": self.client.app_id,
            "sdk": SDK_HEADER,
            "v": "0.1",
            "framework": self.framework,
            "capabilities": CAPABILITIES,
            "functions": functions,
        }
        if self.client.app_version:
            body["appVersion"] = self.client.app_version
        return body

    async def _put(self, request: CommRequest) -> CommResponse:
        settings = self.client.settings
        if request.headers.get(Header.SYNC_KIND) == "in_band" and not self.client.is_dev:
            return self._in_band(request)
        query = request.query
        url = self._serve_url(request)
        payload = self.registration(url)
        register = f"{settings.api_origin}fn/register"
        if query.get("deployId"):
            register += "?" + urllib.parse.urlencode({"deployId": query["deployId"]})
        async with self.client.async_http() as http:
            last_error = "no signing key worked"
            for key in _keys_or_none(settings.signing_keys):
                headers = self.client.outbound_headers(key)
                headers[Header.CONTENT_TYPE] = "application/json"
                headers[Header.FRAMEWORK] = self.framework
                if request.headers.get(Header.SERVER_KIND):
                    headers[Header.EXPECTED_SERVER_KIND] = request.headers[Header.SERVER_KIND]
                try:
                    response = await http.post(
                        register, content=_dumps(payload), headers=headers, timeout=30
                    )
                except httpx.HTTPError as exc:
                    return self._respond(
                        500,
                        {"message": f"sync failed: {type(exc).__name__}: {exc}", "modified": False},
                    )
                if response.status_code in (401, 403):
                    last_error = f"Inngest refused the signing key ({response.status_code})"
                    continue
                try:
                    reply = response.json()
                except ValueError:
                    reply = {}
                if response.status_code >= 300:
                    error = reply.get("error") if isinstance(reply, dict) else None
                    message = error or f"Inngest answered {response.status_code}"
                    return self._respond(
                        500,
                        {"message": f"sync failed: {message}", "modified": False},
                        {Header.SYNC_KIND: "out_of_band"},
                    )
                modified = bool(reply.get("modified", False)) if isinstance(reply, dict) else False
                return self._respond(
                    200,
                    {"message": "Successfully synced.", "modified": modified},
                    {Header.SYNC_KIND: "out_of_band"},
                )
            return self._respond(500, {"message": f"sync failed: {last_error}", "modified": False})

    def _in_band(self, request: CommRequest) -> CommResponse:
        try:
            key = self._verify(request)
        except SignatureError as exc:
            return self._unauthorized(exc)
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return self._respond(
                400,
                {"code": "invalid_request", "message": 'in-band sync body must be {"url": string}'},
            )
        url = self._serve_url(request, body["url"])
        payload = self.registration(url)
        inspection = self._get(
            CommRequest("GET", request.url, request.headers, request.body)
        ).json()
        reply = {
            "app_id": self.client.app_id,
            "env": self.client.settings.env,
            "framework": self.framework,
            "functions": payload["functions"],
            "inspection": inspection,
            "capabilities": CAPABILITIES,
            "sdk_author": "inngest-mw",
            "sdk_language": LANGUAGE,
            "sdk_version": VERSION,
            "sdk": SDK_HEADER,
            "url": url,
        }
        if self.client.app_version:
            reply["appVersion"] = self.client.app_version
        return self._respond(200, reply, {Header.SYNC_KIND: "in_band"}, sign_with=key)

    # -- POST ----------------------------------------------------------------------------

    def _prepare_post(
        self, request: CommRequest
    ) -> CommResponse | tuple[str | None, Function[Any], Handler, Any, RequestMeta]:
        """Everything before the function runs; a response when the request stops here."""
        try:
            key = self._verify(request)
        except SignatureError as exc:
            return self._unauthorized(exc)
        query = request.query
        if query.get("probe") == "trust":
            return self._respond(200, None, sign_with=key)
        if "probe" in query:
            return self._respond(
                400, {"message": f"unsupported probe {query['probe']!r}"}, sign_with=key
            )
        fn_id = query.get("fnId")
        if not fn_id:
            return self._respond(
                400,
                {"name": "QueryParamMissingError", "message": "missing fnId query parameter"},
                {Header.NO_RETRY: "true"},
                sign_with=key,
            )
        found = self.functions.get(fn_id) or self.functions.get(f"{self.client.app_id}-{fn_id}")
        if found is None:
            return self._respond(
                500,
                {
                    "name": "FunctionNotFoundError",
                    "message": f"function {fn_id!r} is not served here",
                },
                {Header.NO_RETRY: "false"},
                sign_with=key,
            )
        try:
            body = json.loads(request.body)
        except ValueError:
            return self._respond(
                400,
                {"name": "BodyInvalidError", "message": "call body is not valid JSON"},
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
            return self._respond(
                400, {"name": "BodyInvalidError", "message": exc.message}, {Header.NO_RETRY: "true"}
            )

    def _post(self, request: CommRequest, async_face: bool) -> Flow[CommResponse]:
        prepared = self._prepare_post(request)
        if isinstance(prepared, CommResponse):
            return prepared
        key, fn, handler, body, meta = prepared
        if fn.is_async and not async_face:
            return self._respond(
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
                yield Await(self._load_from_api(call))

            def run() -> Flow[CommResponse]:
                flow = request_flow(
                    self.client, fn, handler, call, hooks, meta, async_path=fn.is_async
                )
                return self._call_response((yield from flow), key)

            return (yield from hooks.wrap(HOOKS.WRAP_REQUEST, request, run))
        except Error as exc:
            return self._error_response(exc, key)

    def _pipeline(self, fn: Function[Any]) -> PipelineSpec:
        """Client then function middleware, combined once per function (again if the client's
        middleware list is replaced by ``add_middleware``)."""
        cached = self._specs.get(fn.id)
        if cached is None or cached[0] is not self.client.middleware:
            cached = (self.client.middleware, self.client.middleware + fn.middleware)
            self._specs[fn.id] = cached
        return cached[1]

    async def _load_from_api(self, call: CallRequest) -> None:
        """``use_api``: the body was too large, so fetch events and memoized steps from the API."""
        base = f"{self.client.settings.api_origin}v0/runs/{call.run_id}"
        async with self.client.async_http() as http:

            async def fetch(path: str) -> Any:
                for key in _keys_or_none(self.client.settings.signing_keys):
                    response = await http.get(
                        f"{base}/{path}", headers=self.client.outbound_headers(key), timeout=30
                    )
                    if response.status_code in (401, 403):
                        continue
                    if response.status_code != 200:
                        raise _ApiError(
                            f"fetching {path} for run {call.run_id} failed: {response.status_code}"
                        )
                    return response.json()
                raise _ApiError(f"fetching {path} for run {call.run_id} failed: unauthorized")

            events, actions = await asyncio.gather(fetch("batch"), fetch("actions"))
            if not isinstance(events, list) or not events:
                raise _ApiError("the API returned no events for this run")
            call.events = [Event.model_validate(e) for e in events]
            call.event = call.events[0]
            call.steps = parse_memos(actions)

    def _call_response(self, result: CallResult, key: str | None) -> CommResponse:
        if result.step_not_found is not None:
            return self._respond(
                500,
                {
                    "error": f"could not find step {result.step_not_found!r} to run; the function "
                    "may have changed since this run started",
                    "requestedStep": result.step_not_found,
                    "foundSteps": result.found_steps,
                },
                {Header.NO_RETRY: "false"},
                sign_with=key,
            )
        if result.ops:
            try:
                raw = _dumps([op.to_wire() for op in result.ops])
            except (TypeError, ValueError) as exc:
                return self._error_response(
                    NonRetriableError(f"step output is not JSON-serializable: {exc}"), key
                )
            if len(raw) > MAX_STEP_OUTPUT_BYTES:
                _fail_oversized(result.ops)
                raw = _dumps([op.to_wire() for op in result.ops])
            headers = {Header.NO_RETRY: "false"}
            if any(op.op == Opcode.STEP_FAILED for op in result.ops):
                headers[Header.NO_RETRY] = "true"
            if result.retry_after:
                headers[Header.RETRY_AFTER] = result.retry_after
            return self._respond(206, None, headers, sign_with=key, raw=raw)
        if result.error is not None:
            return self._error_response(result.error, key)
        try:
            raw = _dumps(result.output)
        except (TypeError, ValueError) as exc:
            return self._error_response(
                NonRetriableError(f"function output is not JSON-serializable: {exc}"), key
            )
        return self._respond(200, None, sign_with=key, raw=raw)

    def _error_response(self, exc: BaseException, key: str | None) -> CommResponse:
        headers = {Header.NO_RETRY: "false"}
        status = 500
        if isinstance(exc, NonRetriableError | StepError) or (
            isinstance(exc, Error) and not exc.retriable
        ):
            status = 400
            headers[Header.NO_RETRY] = "true"
        if isinstance(exc, RetryAfterError):
            headers[Header.RETRY_AFTER] = exc.header_value()
        quiet = getattr(exc, "quiet", False)
        if not quiet and not isinstance(exc, StepError):
            # A retriable failure is routine (the server retries); only a final one is an error.
            level = logging.WARNING if status == 500 else logging.ERROR
            _log.log(level, "inngest-mw: function failed: %s: %s", type(exc).__name__, exc)
        return self._respond(status, serialize_error(exc), headers, sign_with=key)


class _ApiError(Error):
    code = "api_fetch_failed"


def _fail_oversized(ops: list[Op]) -> None:
    """Turn each step whose output is over the protocol's 4 MiB limit into a final failure.

    Measured only when the whole body is over the limit, so outputs are serialized once normally.
    """
    for op in ops:
        if not op.has_data:
            continue
        size = len(_dumps(op.data))
        if size > MAX_STEP_OUTPUT_BYTES:
            error = NonRetriableError(
                f"step {op.user_id!r} output is {size} bytes; the limit is {MAX_STEP_OUTPUT_BYTES} "
                "(store large data elsewhere and return a reference)"
            )
            op.fail(serialize_error(error))


def _key_hash(key: str | None) -> str | None:
    if not key:
        return None
    return hashlib.sha256(signature.strip_key_prefix(key).encode()).hexdigest()


def _keys_or_none(keys: list[str]) -> list[str | None]:
    """Keys to try in turn for outbound auth; one unauthenticated attempt when there are none."""
    return list(keys) if keys else [None]
