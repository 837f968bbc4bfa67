"""The server's other v1 APIs: run metadata, userland traces and bulk cancellations.

- ``POST /v1/runs/{run_id}/metadata`` (``pkg/api/apiv1/metadata.go``): metadata updates for a run,
  a step (by its user ID and index), a step attempt or a userland span; the kind and size rules
  of ``inngest_mw.metadata``; 413 over 64 KiB for one update or 1 MiB for a run. Apps also send
  updates in-band, on the op of the step they were made in (``metadata`` on a ``StepRun``...);
  ``RunMetadata.inband`` records those as the op is applied.
- ``POST /v1/traces/userland`` (``traces.go``): an OTLP ``ExportTraceServiceRequest``, protobuf or
  (``Content-Type`` with ``json``) OTLP/JSON, at most 8 MiB. A span is kept for the run named by
  its ``sdk.run.id`` attribute when it carries the ``inngest.traceref`` the engine handed the app
  in ``tracestate``; others are counted as rejected in the answer's partial success. Handled by
  ``usertraces``, imported on the first such request (the OTLP protobuf modules are large).
- ``POST/GET /v1/cancellations``, ``DELETE /v1/cancellations/{id}`` (``cancellation.go``): cancel
  the running runs of one function queued in a time range, optionally only those whose event
  matches an ``if`` expression. ``started_before`` is never in the future, so every run a
  cancellation covers exists when it is made: it is applied at once and kept as a record.

Everything is kept in the engine database (migration 2, ``runmeta``) and shown with the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inngest_mw.metadata import MAX_RUN_BYTES, MAX_UPDATE_BYTES, MetadataError, values_size
from inngest_mw_dev.bodies import parse_body, read_body
from inngest_mw_dev.expr import ExpressionError, compile_expression
from inngest_mw_dev.ids import deterministic_uuid, new_ulid
from inngest_mw_dev.kinds import RunStatus
from inngest_mw_dev.runmeta import RunMetadata, checked_update, step_hash
from inngest_mw_dev.timing import iso_time

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine
    from inngest_mw_dev.store import Store

__all__ = ["v1_routes"]

log = logging.getLogger("inngest_mw_dev.v1apis")

Handler = Callable[[Request], Awaitable[Response]]

MAX_METADATA_BODY: Final = 2 * MAX_RUN_BYTES  # one request: a run's whole allowance and then some
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}", re.IGNORECASE)


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _envelope(data: object) -> JSONResponse:
    return JSONResponse({"data": data, "metadata": {"fetched_at": iso_time(time.time())}})


# -- run metadata ---------------------------------------------------------------------------------


def _int_or_none(target: Mapping[str, Any], name: str) -> int | None:
    value = target.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise MetadataError(f"Invalid metadata target: target.{name} must be an integer")
    return value


def _resolve_target(store: Store, run_id: str, raw: object) -> tuple[str, str] | JSONResponse:
    """(scope, target key) for a request's target, or the refusal."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return _refused(400, "Invalid metadata target: target must be an object")
    try:
        index, attempt = _int_or_none(raw, "step_index"), _int_or_none(raw, "step_attempt")
    except MetadataError as exc:
        return _refused(400, str(exc))
    step_id, span_id = raw.get("step_id"), raw.get("span_id")
    for name, value in (("step_id", step_id), ("span_id", span_id)):
        if value is not None and (not isinstance(value, str) or not value):
            return _refused(400, f"Invalid metadata target: target.{name} must be a string")
    if step_id is None:
        for name, value in (("step_index", index), ("step_attempt", attempt), ("span_id", span_id)):
            if value is not None:
                return _refused(
                    400,
                    f"Invalid metadata target: target.step_id must be defined if target.{name} "
                    "is defined",
                )
        return "run", ""
    hashed = step_hash(step_id, index or 0)
    step = store.get_step(run_id, hashed)
    if step is None:
        shown = step_id if not index else f"{step_id} (index {index})"
        return _refused(404, f"Unable to find metadata target: run {run_id} has no step {shown}")
    if attempt is None or span_id is None:
        if attempt is None:
            return "step", hashed
        if attempt < 0:
            attempt = max(step.attempts - 1, 0)
        return "step_attempt", f"{hashed}:{attempt}"
    if not store.read("SELECT 1 FROM user_spans WHERE run_id = ? AND span_id = ?", run_id, span_id):
        return _refused(404, f"Unable to find metadata target: run {run_id} has no span {span_id}")
    return "extended_trace", span_id


def _metadata_route(engine: Engine, authed: Callable[[Handler], Handler]) -> Route:
    store = engine.store
    metadata = RunMetadata(store)

    async def add_metadata(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not _ULID.fullmatch(run_id):
            return _refused(400, f"Invalid run ID: {run_id}")
        body = parse_body(await read_body(request, MAX_METADATA_BODY))
        if not isinstance(body, dict):
            return _refused(400, "Invalid metadata target: the body must be a JSON object")
        return await engine.db(add, run_id, body)

    def add(run_id: str, body: dict[str, Any]) -> Response:
        """``add_metadata``'s store thread job."""
        run = store.get_run(run_id)
        if run is None:
            return _refused(404, f"Unable to find metadata target: no run {run_id}")
        raw_updates = body.get("metadata", [])
        if not isinstance(raw_updates, list):
            return _refused(400, "Invalid metadata: metadata must be a list of updates")
        try:
            updates = [checked_update(item) for item in raw_updates]
        except MetadataError as exc:
            return _refused(400, f"Invalid metadata: {exc}")
        resolved = _resolve_target(store, run_id, body.get("target"))
        if isinstance(resolved, JSONResponse):
            return resolved
        scope, target = resolved
        sizes = [values_size(u["values"]) for u in updates]
        if any(size > MAX_UPDATE_BYTES for size in sizes):
            return _refused(413, "Metadata span exceeds maximum size of 64KB")
        with engine.machine.history.tx():
            if metadata.used(run_id) + sum(sizes) > MAX_RUN_BYTES:
                return _refused(413, "Cumulative metadata size exceeds limit (1 MiB per run)")
            metadata.add(run_id, scope, target, updates, "api")
            label = _step_label(store, run_id, target) if scope != "run" else None
            for update in updates:
                engine.machine.history.record(
                    run,
                    "metadata",
                    label,
                    name=update["kind"],
                    op=update["op"],
                    scope=scope,
                    keys=sorted(update["values"]),
                )
        return _envelope({"run_id": run_id, "updates": len(updates)})

    return Route("/v1/runs/{run_id}/metadata", authed(add_metadata), methods=["POST"])


def _step_label(store: Store, run_id: str, target: str) -> str | None:
    step = store.get_step(run_id, target.split(":")[0])
    return step.name if step is not None else None


# -- userland traces ------------------------------------------------------------------------------


def _traces_route(engine: Engine, authed: Callable[[Handler], Handler]) -> Route:
    async def traces(request: Request) -> Response:
        from inngest_mw_dev.usertraces import accept_traces  # OTLP protobuf, loaded on first use

        return await accept_traces(engine, request)

    return Route("/v1/traces/userland", authed(traces), methods=["POST"])


# -- bulk cancellations ---------------------------------------------------------------------------


def _time(body: Mapping[str, Any], name: str, problems: list[str]) -> float | None:
    raw = body.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        problems.append(f"{name} must be an RFC 3339 time string")
        return None
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        problems.append(f"{name} must be an RFC 3339 time, not {raw[:40]!r}")
        return None
    if parsed.tzinfo is None:
        problems.append(f"{name} needs a time zone (e.g. 2026-01-02T03:04:05Z)")
        return None
    return parsed.timestamp()


def _cancellation_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": iso_time(row["created_at"]),
        "name": None,
        "environment_id": None,
        "app_id": row["app_id"],
        "function_internal_id": deterministic_uuid(row["function_id"]),
        "function_id": row["function_slug"],
        "started_after": iso_time(row["started_after"]),
        "started_before": iso_time(row["started_before"]),
        **({"if": row["expression"]} if row["expression"] else {}),
        "cancelled_run_ids": json.loads(row["cancelled"]),
    }


def _find_function(engine: Engine, app_id: str, function_id: str) -> str | None:
    machine = engine.machine
    for candidate in (function_id, f"{app_id}-{function_id}"):
        if candidate in machine.functions and _app_matches(engine, candidate, app_id):
            return candidate
    return None


def _app_matches(engine: Engine, fn_id: str, app_id: str) -> bool:
    app_uuid = engine.machine.function_apps.get(fn_id)
    app = engine.store.get_app(app_uuid) if app_uuid else None
    return app is not None and app_id in (app.name, app.id)


def _cancellation_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[Route]:
    store = engine.store

    async def create(request: Request) -> Response:
        body = parse_body(await read_body(request, 64 * 1024))
        if not isinstance(body, dict):
            return _refused(400, "Invalid cancellation request: the body must be a JSON object")
        problems: list[str] = []
        app_id, function_id, expression = (
            body.get("app_id"),
            body.get("function_id"),
            body.get("if"),
        )
        for name, value in (("app_id", app_id), ("function_id", function_id)):
            if not isinstance(value, str) or not value:
                problems.append(f"{name} is required")
        if expression is not None and not isinstance(expression, str):
            problems.append("if must be a string expression")
        after, before = (
            _time(body, "started_after", problems),
            _time(body, "started_before", problems),
        )
        now = time.time()
        if before is None and body.get("started_before") is None:
            problems.append("started_before is required")
        if before is not None and before > now:
            problems.append("started_before must be in the past")
        if after is not None and before is not None and after > before:
            problems.append("started_after must be before started_before")
        if problems:
            return _refused(400, "; ".join(problems))
        assert isinstance(app_id, str)
        assert isinstance(function_id, str)
        assert before is not None
        if expression is not None:
            assert isinstance(expression, str)
        return await engine.db(cancel, app_id, function_id, expression, after, before, now)

    def cancel(
        app_id: str,
        function_id: str,
        expression: str | None,
        after: float | None,
        before: float,
        now: float,
    ) -> Response:
        """``create``'s store thread job."""
        fn_id = _find_function(engine, app_id, function_id)
        if fn_id is None:
            return _refused(
                404, f"function not found: no function {function_id!r} in app {app_id!r}"
            )
        matcher = None
        if expression:
            try:
                matcher = compile_expression(expression, restrictive=True)
            except ExpressionError as exc:
                return _refused(400, f"invalid expression: {exc}")
        rows = store.read(
            "SELECT id, events FROM runs WHERE function_id = ? AND status = ? AND queued_at <= ?"
            " AND queued_at > ? ORDER BY queued_at",
            fn_id,
            RunStatus.RUNNING,
            before,
            after if after is not None else -1.0,
        )
        cancelled: list[str] = []
        cancellation_id = new_ulid()
        reason = f"cancelled in bulk by cancellation {cancellation_id}"
        for row in rows:
            if matcher is not None:
                events = json.loads(row["events"])
                if not events or not matcher.matches({"event": events[0]}):
                    continue
            if engine.machine.cancel(row["id"], reason):
                cancelled.append(row["id"])
        record = {
            "id": cancellation_id,
            "created_at": now,
            "app_id": app_id,
            "function_id": fn_id,
            "function_slug": function_id,
            "started_after": after,
            "started_before": before,
            "expression": expression or None,
            "cancelled": json.dumps(cancelled),
        }
        with store.tx():
            store.write("INSERT INTO cancellations VALUES (?,?,?,?,?,?,?,?,?)", *record.values())
        engine.wake()
        return _envelope(_cancellation_json(record))

    async def listing(request: Request) -> Response:
        rows = await engine.db(store.read, "SELECT * FROM cancellations ORDER BY id DESC")
        return _envelope([_cancellation_json(dict(row)) for row in rows])

    def forget(cancellation_id: str) -> int:
        with store.tx():
            return store.write("DELETE FROM cancellations WHERE id = ?", cancellation_id)

    async def delete(request: Request) -> Response:
        cancellation_id = request.path_params["cancellation_id"]
        if not _ULID.fullmatch(cancellation_id):
            return _refused(400, f"Invalid cancellation ID: {cancellation_id}")
        if not await engine.db(forget, cancellation_id.upper()):
            return _refused(404, f"Cancellation not found: {cancellation_id}")
        return _envelope({"ok": True})

    return [
        Route("/v1/cancellations", authed(create), methods=["POST"]),
        Route("/v1/cancellations", authed(listing), methods=["GET"]),
        Route("/v1/cancellations/{cancellation_id}", authed(delete), methods=["DELETE"]),
    ]


# -- mounting and showing -------------------------------------------------------------------------


def v1_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[Route]:
    """The routes above, for ``api.create_app``."""
    return [
        _metadata_route(engine, authed),
        _traces_route(engine, authed),
        *_cancellation_routes(engine, authed),
    ]
