"""The run-control and listing API (``/v1/...``): what the CLI, the web UI and scripts all use.

``ApiData`` builds every JSON body; the HTTP handlers only parse parameters and wrap it, and the
web UI renders the very same dictionaries, so the UI can show nothing a script could not fetch.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from inngest_mw_dev.api import run_json
from inngest_mw_dev.bodies import parse_body, read_body
from inngest_mw_dev.connect_http import is_connect_url
from inngest_mw_dev.control import RunControl
from inngest_mw_dev.hooks_view import requests_view
from inngest_mw_dev.ingest import EventError
from inngest_mw_dev.limits import MAX_INGEST_BODY
from inngest_mw_dev.queries import (
    MAX_PAGE,
    RUN_STATUSES,
    RefError,
    RunFilter,
    find_runs,
    list_events,
    parse_time,
    resolve_run_id,
)
from inngest_mw_dev.runmeta import run_extras
from inngest_mw_dev.stacks import marked_lines, read_error
from inngest_mw_dev.store import RunRow
from inngest_mw_dev.timeline import waterfall
from inngest_mw_dev.timing import iso_time

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["ApiData", "Handler", "ParamError", "control_routes"]

Handler = Callable[[Request], Awaitable[Response]]
_FLOW_KEYS = (
    "concurrency",
    "throttle",
    "rateLimit",
    "debounce",
    "batchEvents",
    "idempotency",
    "priority",
    "singleton",
    "timeouts",
    "cancel",
)
_KEEPALIVE_SECONDS = 15.0


class ParamError(ValueError):
    """A parameter the API cannot use; the message says what to give instead."""


def error_view(error: object) -> dict[str, Any] | None:
    """An error object as the UI shows it: headline, the user's frame, every frame marked."""
    if error is None:
        return None
    readable = read_error(error)
    frame = readable.user_frame
    return {
        "headline": readable.headline,
        "user_frame": None if frame is None else {"where": frame.where, "code": frame.code},
        "frames": [{"where": f.where, "code": f.code, "user": f.user} for f in readable.frames],
        "stack": readable.stack,
        "lines": [{"text": text, "user": mine} for text, mine in marked_lines(readable)],
    }


def _limit(text: str | None, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"limit must be a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_PAGE:
        raise ParamError(f"limit must be between 1 and {MAX_PAGE}, got {value}")
    return value


def _time(params: dict[str, str], key: str, now: float) -> float | None:
    text = params.get(key)
    if not text:
        return None
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise ParamError(f"{key}: {exc}") from None


def run_filter(params: dict[str, str], now: float, *, default_limit: int = 20) -> RunFilter:
    """A RunFilter from query parameters: status (comma list), function, since, until, limit."""
    statuses = tuple(
        s.strip().capitalize() for s in params.get("status", "").split(",") if s.strip()
    )
    unknown = [s for s in statuses if s not in RUN_STATUSES]
    if unknown:
        raise ParamError(f"unknown status {unknown[0]}: use one of {', '.join(RUN_STATUSES)}")
    return RunFilter(
        statuses=statuses,
        function_id=params.get("function") or None,
        since=_time(params, "since", now),
        until=_time(params, "until", now),
        limit=_limit(params.get("limit"), default_limit),
        after=params.get("cursor") or None,
    )


class ApiData:
    """The JSON bodies of the listing and run-control API, built from one engine.

    Its methods, and ``RunControl``'s, read and write the store: each is a store thread job
    (``await engine.db(data.runs, params)``).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.control = RunControl(engine)

    def run_summary(self, run: RunRow) -> dict[str, Any]:
        """A run as listings show it: ``GET /v1/runs/{id}``'s shape without steps, with its
        event's name and its duration."""
        out = run_json(self.engine.store, run, detail=False)
        out["event_name"] = run.events[0].get("name") if run.events else None
        out["duration_ms"] = (
            None if run.ended_at is None else round((run.ended_at - run.queued_at) * 1000)
        )
        return out

    def runs(self, params: dict[str, str]) -> dict[str, Any]:
        flt = run_filter(params, time.time())
        if flt.function_id:
            flt = RunFilter(
                flt.statuses,
                self.control.resolve_function(flt.function_id),
                flt.since,
                flt.until,
                flt.limit,
                flt.after,
            )
        page = find_runs(self.engine.store, flt)
        return {
            "data": [self.run_summary(r) for r in page.runs],
            "metadata": {"next_cursor": page.next_cursor, "fetched_at": iso_time(time.time())},
        }

    def run(self, ref: str) -> dict[str, Any]:
        store = self.engine.store
        run = store.get_run(resolve_run_id(store, ref))
        assert run is not None
        out = run_json(store, run)
        out.update(self.run_summary(run))
        now = time.time()
        fall = waterfall(run, store.steps(run.id), store.history(run.id), now)
        out["waterfall"] = {
            "total_ms": fall.total_ms,
            "spans": [
                {
                    "id": s.id,
                    "name": s.name,
                    "kind": s.kind.value,
                    "status": s.status,
                    "offset_ms": s.offset_ms,
                    "duration_ms": s.duration_ms,
                    "attempts": [
                        {"offset_ms": a.offset_ms, "duration_ms": a.duration_ms, "failed": a.failed}
                        for a in s.attempts
                    ],
                }
                for s in fall.spans
            ],
        }
        lineage = self.control.lineage(run.id)
        out["rerun_of"] = (
            None
            if lineage is None
            else {
                "run_id": lineage.source_run_id,
                "from_step": lineage.from_step,
                "replayed": lineage.replayed,
            }
        )
        out["reruns"] = self.control.reruns_of(run.id)
        out["events"] = run.events
        out["middleware"] = requests_view(
            store.request_hooks(run.id), {s["id"]: s["name"] for s in out["steps"]}, run.queued_at
        )
        out.update(run_extras(store, run.id))  # metadata and userland spans (v1 APIs)
        out["error_view"] = error_view(run.error)
        for step in out["steps"]:
            step["error_view"] = error_view(step.get("error"))
            step["replayed"] = lineage is not None and step["id"] in lineage.replayed
        return {"data": out}

    def events(self, params: dict[str, str]) -> dict[str, Any]:
        internal = params.get("internal", "").lower() in ("1", "true", "yes", "on")
        events, cursor = list_events(
            self.engine.store,
            limit=_limit(params.get("limit"), 50),
            before=params.get("cursor") or None,
            internal=internal,
        )
        data = [
            {
                "id": e.id,
                "name": e.name,
                "received_at": iso_time(e.received_at),
                "data": e.body.get("data"),
                "user": e.body.get("user"),
                "ts": e.body.get("ts"),
                "runs": e.runs,
            }
            for e in events
        ]
        return {"data": data, "metadata": {"next_cursor": cursor}}

    def apps(self) -> dict[str, Any]:
        store = self.engine.store
        syncs = {s.url: s for s in self.engine.syncs.all()}
        functions: dict[str, list[str]] = {}
        for fn_id, app_id in sorted(self.engine.machine.function_apps.items()):
            functions.setdefault(app_id, []).append(fn_id)
        data: list[dict[str, Any]] = []
        for app in store.list_apps():
            sync = syncs.pop(app.url, None)
            data.append(
                {
                    "id": app.id,
                    "name": app.name,
                    "url": app.url,
                    "sdk": app.sdk,
                    "framework": app.framework,
                    "synced_at": iso_time(app.synced_at),
                    "status": sync.status.value if sync else "synced",
                    "error": sync.error if sync else None,
                    "last_attempt_at": iso_time(sync.attempted_at if sync else app.synced_at),
                    "functions": functions.get(app.id, []),
                    "workers": self._workers(app.name, app.url),
                }
            )
        for url in sorted({*syncs, *(u for u in self.engine.app_urls if u not in syncs)}):
            sync = syncs.get(url)
            if any(a["url"] == url for a in data):
                continue
            data.append(
                {
                    "id": None,
                    "name": sync.app_name if sync else None,
                    "url": url,
                    "sdk": None,
                    "framework": None,
                    "synced_at": None,
                    "status": sync.status.value if sync else "not synced yet",
                    "error": sync.error if sync else None,
                    "last_attempt_at": iso_time(sync.attempted_at) if sync else None,
                    "functions": [],
                }
            )
        return {"data": data}

    def _workers(self, app_name: str, url: str) -> list[dict[str, Any]]:
        """The connect workers serving the app (none for an app reached over HTTP)."""
        gateway = self.engine.connect
        if gateway is None or not is_connect_url(url):
            return []
        return [
            {**w.info(), "connected_at": iso_time(w.connected_at)}
            for w in gateway.workers(app_name)
        ]

    def function_json(self, fn_id: str) -> dict[str, Any]:
        fn = self.engine.machine.functions[fn_id]
        triggers = [
            {"event": t.event, "expression": t.expression, "cron": t.cron} for t in fn.triggers
        ]
        flow = {k: fn.config[k] for k in _FLOW_KEYS if k in fn.config}
        return {
            "id": fn.id,
            "name": fn.name,
            "app_id": self.engine.machine.function_apps.get(fn.id),
            "triggers": triggers,
            "retries": fn.retries,
            "flow_control": flow,
        }

    def functions(self) -> dict[str, Any]:
        return {"data": [self.function_json(f) for f in sorted(self.engine.machine.functions)]}

    def function(self, ref: str) -> dict[str, Any]:
        fn_id = self.control.resolve_function(ref)
        out = self.function_json(fn_id)
        page = find_runs(self.engine.store, RunFilter(function_id=fn_id, limit=10))
        out["recent_runs"] = [self.run_summary(r) for r in page.runs]
        return {"data": out}


async def _json_body(request: Request) -> Any:
    """The request's JSON body ({} when empty), under the ingest size limit, depth-safe."""
    raw = await read_body(request, MAX_INGEST_BODY)
    return parse_body(raw) if raw.strip() else {}


def _object(body: object, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ParamError(f"{what} must be a JSON object")
    return body


class _Handlers:
    def __init__(self, data: ApiData) -> None:
        self.data = data
        self.control = data.control
        self.db = data.engine.db

    @staticmethod
    def guard(handler: Handler) -> Handler:
        """Turn lookups and bad parameters into 4xx JSON with the reason."""

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except RefError as exc:
                return JSONResponse(
                    {"error": exc.message, "status": exc.status}, status_code=exc.status
                )
            except EventError as exc:  # sent events are taken all or none here
                return JSONResponse(
                    {"error": str(exc), "status": exc.status}, status_code=exc.status
                )
            except (ParamError, ValueError) as exc:
                return JSONResponse({"error": str(exc), "status": 400}, status_code=400)

        return guarded

    async def runs(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.runs, dict(request.query_params)))

    async def run(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.run, request.path_params["run_id"]))

    async def cancel(self, request: Request) -> Response:
        run_id = await self.db(
            self.control.cancel, request.path_params["run_id"], "cancelled via the API"
        )
        return JSONResponse({"data": {"run_id": run_id, "status": "Cancelled"}})

    async def cancel_many(self, request: Request) -> Response:
        body = _object(await _json_body(request), "the body")
        params = {k: str(v) for k, v in body.items() if v is not None}
        if not params.get("function"):
            raise ParamError('bulk cancel needs "function" (and optionally "since", "until")')
        flt = run_filter(params, time.time())
        return JSONResponse({"data": {"cancelled": await self.db(self.control.cancel_many, flt)}})

    async def rerun(self, request: Request) -> Response:
        body = _object(await _json_body(request), "the body")
        from_step = body.get("from_step")
        if from_step is not None and not isinstance(from_step, str):
            raise ParamError("from_step must be a step ID or name")
        result = await self.db(self.control.rerun, request.path_params["run_id"], from_step or None)
        return JSONResponse({"data": {"run_id": result.run_id, "replayed": result.replayed}})

    async def events(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.events, dict(request.query_params)))

    async def send(self, request: Request) -> Response:
        ids = await self.db(self.control.send, await _json_body(request))
        return JSONResponse({"data": {"ids": ids}})

    async def apps(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.apps))

    async def functions(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.functions))

    async def function(self, request: Request) -> Response:
        return JSONResponse(await self.db(self.data.function, request.path_params["fn_id"]))

    async def invoke(self, request: Request) -> Response:
        body = _object(await _json_body(request), "the body")
        data = body.get("data", {})
        event_id, run_id = await self.db(self.control.invoke, request.path_params["fn_id"], data)
        return JSONResponse({"data": {"event_id": event_id, "run_id": run_id}})

    async def stream(self, request: Request) -> Response:
        """Server-Sent Events: one ``data:`` JSON line per history entry, event, sync, notice."""
        feed = self.data.engine.feed

        async def messages() -> AsyncIterator[str]:
            with feed.subscribe() as queue:
                yield ": connected\n\n"
                while True:
                    try:
                        async with asyncio.timeout(_KEEPALIVE_SECONDS):
                            message = await queue.get()
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield f"data: {json.dumps(message, default=str)}\n\n"

        return StreamingResponse(
            messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )


def control_routes(data: ApiData, authed: Callable[[Handler], Handler]) -> list[Route]:
    h = _Handlers(data)

    def route(path: str, handler: Handler, method: str) -> Route:
        return Route(path, authed(h.guard(handler)), methods=[method])

    return [
        route("/v1/apps", h.apps, "GET"),
        route("/v1/functions", h.functions, "GET"),
        route("/v1/functions/{fn_id}", h.function, "GET"),
        route("/v1/functions/{fn_id}/invoke", h.invoke, "POST"),
        route("/v1/events", h.events, "GET"),
        route("/v1/events", h.send, "POST"),
        route("/v1/runs", h.runs, "GET"),
        route("/v1/runs/cancel", h.cancel_many, "POST"),
        route("/v1/runs/{run_id}", h.run, "GET"),
        route("/v1/runs/{run_id}", h.cancel, "DELETE"),
        route("/v1/runs/{run_id}/cancel", h.cancel, "POST"),
        route("/v1/runs/{run_id}/rerun", h.rerun, "POST"),
        route("/v0/runs/{run_id}", h.cancel, "DELETE"),
        route("/v1/stream", h.stream, "GET"),
    ]
