"""The engine's HTTP surface (Starlette): the Inngest Dev Server paths an SDK and the CLI use.

Every response carries ``X-Inngest-Server-Kind``; with a signing key, all routes except
``/health`` and ``/e/{key}`` require ``Authorization: Bearer`` with the plain or hashed key
(``signkey-<env>-`` prefix or not). Bodies are read under the server's size limits and parsed
depth-safely (``bodies``). Bad input always gets a 4xx JSON body with a reason.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inngest_mw.signature import hash_signing_key, strip_key_prefix
from inngest_mw_dev.bodies import BodyError, read_json
from inngest_mw_dev.checkpoints import checkpoint_routes
from inngest_mw_dev.connect_http import connect_routes, is_connect_url
from inngest_mw_dev.ingest import EventError, normalize_events
from inngest_mw_dev.limits import MAX_INGEST_BODY, MAX_REGISTER_BODY
from inngest_mw_dev.realtime import realtime_routes
from inngest_mw_dev.registration import RegistrationError, parse_registration
from inngest_mw_dev.signals import signal_routes
from inngest_mw_dev.store import RunRow, Store
from inngest_mw_dev.syncs import SyncError
from inngest_mw_dev.timing import iso_time
from inngest_mw_dev.uiauth import Denied, UiAuth
from inngest_mw_dev.v1apis import v1_routes

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["create_app", "normalize_events", "run_json"]

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def run_json(store: Store, run: RunRow, *, detail: bool = True) -> dict[str, Any]:
    """The public JSON shape of a run (``GET /v1/runs/{id}``)."""
    out: dict[str, Any] = {
        "run_id": run.id,
        "function_id": run.function_id,
        "app_id": run.app_id,
        "status": run.status,
        "output": run.output,
        "error": run.error,
        "event_id": run.event_id,
        "queued_at": iso_time(run.queued_at),
        "run_started_at": iso_time(run.started_at or run.queued_at),
        "ended_at": iso_time(run.ended_at),
    }
    if not detail:
        return out
    steps = []
    for step in store.steps(run.id):
        item: dict[str, Any] = {
            "id": step.hash,
            "name": step.name,
            "op": step.op,
            "status": step.status,
            "attempts": step.attempts,
            "started_at": iso_time(step.started_at),
            "ended_at": iso_time(step.ended_at),
            "duration_ms": round((step.ended_at - step.started_at) * 1000)
            if step.ended_at and step.started_at
            else None,
        }
        memo = step.memo
        if isinstance(memo, dict) and set(memo) == {"error"}:
            item["error"] = memo["error"]
        elif step.memoized:
            item["output"] = (
                memo["data"] if isinstance(memo, dict) and set(memo) == {"data"} else memo
            )
        elif step.error is not None:
            item["error"] = step.error
        steps.append(item)
    out["steps"] = steps
    out["history"] = [
        {"at": iso_time(h.ts), "type": h.kind, "step": h.step, **h.detail}
        for h in store.history(run.id)
    ]
    return out


class _ServerKindHeader:
    """ASGI middleware adding ``X-Inngest-Server-Kind`` to every response."""

    def __init__(self, app: ASGIApp, kind: str) -> None:
        self.app, self.kind = app, kind.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-inngest-server-kind", self.kind),
                ]
            await send(message)

        await self.app(scope, receive, send_with_header)


class _Api:
    """Route handlers bound to one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        key = engine.signing_key
        self._bearers: list[bytes] = []
        if key:
            # As the server does (pkg/authn/signing_key_strategy.go): the ``signkey-<env>-``
            # prefix is stripped from both sides, so an app holding ``signkey-test-<hex>`` and an
            # engine given ``<hex>`` (or the other way round) agree; the app may send the key
            # or its hash.
            bare = strip_key_prefix(key)
            self._bearers = [c.encode() for c in (bare, hash_signing_key(bare))]
        self.ui = UiAuth(key, engine.sign_in_code) if key else None

    def _bearer_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        supplied = strip_key_prefix(token.strip()).encode()
        ok = False
        for candidate in self._bearers:  # check all: constant time per candidate
            ok = hmac.compare_digest(candidate, supplied) or ok
        return scheme.lower() == "bearer" and bool(supplied) and ok

    def authed(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if self._bearers and not self._bearer_ok(request):
                return JSONResponse(
                    {"error": "Unauthorized: missing or invalid signing key", "status": 401},
                    status_code=401,
                )
            return await handler(request)

        return guarded

    def authed_ui(
        self, handler: Handler, page: Callable[[Request, Denied], Response] | None = None
    ) -> Handler:
        """``authed``, and for a browser also a signed-in session (``uiauth``); a refused page
        gets ``page(request, denied)`` (the sign-in form), a refused API call JSON."""
        ui = self.ui

        async def guarded(request: Request) -> Response:
            if ui is None or self._bearer_ok(request):
                return await handler(request)
            denied = ui.check(request)
            if denied is None:
                return await handler(request)
            if page is not None:
                return page(request, denied)
            if "authorization" in request.headers:
                reason = "missing or invalid signing key"
            else:
                reason = denied.reason
            return JSONResponse(
                {
                    "error": f"Unauthorized: {reason}" if denied.status == 401 else denied.reason,
                    "status": denied.status,
                },
                status_code=denied.status,
            )

        return guarded

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": 200, "message": "OK"})

    async def ingest(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not key or (self.engine.event_keys and key not in self.engine.event_keys):
            return JSONResponse(
                {"status": 401, "message": "", "error": "Event key not found"}, status_code=401
            )
        try:
            body = await read_json(request, MAX_INGEST_BODY)
            events = normalize_events(
                body,
                seed=request.headers.get("x-inngest-event-id-seed"),
                now_ms=int(time.time() * 1000),
            )
        except BodyError as exc:
            return JSONResponse(
                {"ids": [], "status": exc.status_code, "error": exc.message},
                status_code=exc.status_code,
            )
        except EventError as exc:
            # As the server does: the events before the refused one are taken, and their IDs
            # come back with the error.
            ids = await self._take(exc.accepted)
            return JSONResponse(
                {"ids": ids, "status": exc.status, "error": str(exc)}, status_code=exc.status
            )
        return JSONResponse({"ids": await self._take(events), "status": 200})

    async def _take(self, events: list[dict[str, Any]]) -> list[str]:
        """Ingest ``events`` (valid ones): the durable insert on the store thread, then the ack;
        their IDs."""
        ids = [e["id"] for e in events]
        if events:
            await self.engine.db(self.engine.machine.ingest, events)
            self.engine.wake()
            self.engine.feed.publish("event", ids=ids)
        return ids

    async def register(self, request: Request) -> Response:
        expected = request.headers.get("x-inngest-expected-server-kind")
        if expected and expected != self.engine.server_kind:
            return _error(400, f"Expected server kind {expected}, got {self.engine.server_kind}")
        body = await read_json(request, MAX_REGISTER_BODY)
        try:
            registration = parse_registration(body)
        except RegistrationError as exc:
            return _error(400, str(exc))
        return JSONResponse(await self.engine.db(self.engine.register, registration))

    async def sync(self, request: Request) -> Response:
        """``POST /fn/sync[?url=APP_URL]``: re-sync one app, or every known app URL."""
        url = request.query_params.get("url")
        # A connect app syncs itself each time a worker connects: there is no URL to ask.
        apps = await self.engine.db(self.engine.store.list_apps)
        known = (a.url for a in apps if not is_connect_url(a.url))
        urls = [url] if url else sorted({*self.engine.app_urls, *known})
        results = []
        for target in urls:
            try:
                status, text = await self.engine.sync_app(target)
            except SyncError as exc:
                if url and exc.malformed:
                    return _error(400, f"cannot sync {target!r}: {exc.reason}")
                results.append({"url": target, "ok": False, "error": exc.reason})
                continue
            results.append({"url": target, "ok": status == 200, "status": status, "body": text})
        ok = all(r["ok"] for r in results)
        return JSONResponse({"ok": ok, "results": results}, status_code=200 if ok else 502)

    def _run_or_410(self, run_id: str) -> RunRow:
        run = self.engine.store.get_run(run_id)
        if run is None:
            raise HTTPException(410, f"runtime state is no longer available for runID: {run_id}")
        return run

    async def batch(self, request: Request) -> Response:
        run = await self.engine.db(self._run_or_410, request.path_params["run_id"])
        return JSONResponse(run.events)

    def _memos(self, run_id: str) -> dict[str, Any]:
        steps, _ = self.engine.store.memos(self._run_or_410(run_id).id)
        return steps

    async def actions(self, request: Request) -> Response:
        return JSONResponse(await self.engine.db(self._memos, request.path_params["run_id"]))

    def _envelope(self, data: object) -> JSONResponse:
        return JSONResponse({"data": data, "metadata": {"fetched_at": iso_time(time.time())}})

    async def event_runs(self, request: Request) -> Response:
        store = self.engine.store
        runs = await self.engine.db(store.runs_for_event, request.path_params["event_id"])
        return self._envelope([run_json(store, r, detail=False) for r in runs])

    async def event(self, request: Request) -> Response:
        event = await self.engine.db(self.engine.store.get_event, request.path_params["event_id"])
        if event is None:
            return _error(404, "event not found")
        return self._envelope(event)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _error(exc.status_code, str(exc.detail))
    return _error(500, "internal error")


def create_app(engine: Engine) -> ASGIApp:
    """The ASGI app serving ``engine``."""
    from inngest_mw_dev.control_api import ApiData, control_routes
    from inngest_mw_dev.ui import ui_routes

    api = _Api(engine)
    data = ApiData(engine)
    authed = api.authed
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/e/{key}", api.ingest, methods=["POST"]),
        Route("/fn/register", authed(api.register), methods=["POST"]),
        Route("/fn/sync", api.authed_ui(api.sync), methods=["POST"]),  # the UI's Resync
        Route("/v0/runs/{run_id}/batch", authed(api.batch), methods=["GET"]),
        Route("/v0/runs/{run_id}/actions", authed(api.actions), methods=["GET"]),
        Route("/v1/events/{event_id}/runs", authed(api.event_runs), methods=["GET"]),
        Route("/v1/events/{event_id}", authed(api.event), methods=["GET"]),
        *signal_routes(engine, authed),
        *realtime_routes(engine, authed),
        *checkpoint_routes(engine, authed),
        *connect_routes(engine, authed),
        *v1_routes(engine, authed),
        *control_routes(data, api.authed_ui),
        *ui_routes(data, api.authed_ui, api.ui),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    return _ServerKindHeader(app, engine.server_kind)
