"""``POST /v1/checkpoint/{run_id}/async``: an app reports steps it ran within one call request, as
the Inngest server's route does (``pkg/api/apiv1/checkpoint.go``): only finished steps
(``StepRun``) may be checkpointed; 404 for a run that is not running, 409 from a request the
engine has given up on (a stale dispatch: the app must stop), 413 over a size limit."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inngest_mw_dev.bodies import read_json
from inngest_mw_dev.executor import CallFailed, OpsResponse, parse_ops
from inngest_mw_dev.limits import MAX_REQUEST_BODY

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["checkpoint_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def _refused(status: int, message: str, run_id: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "status": status, "data": {"run_id": run_id}}, status_code=status
    )


def checkpoint_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[Route]:
    async def checkpoint(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        body = await read_json(request, MAX_REQUEST_BODY)
        steps = body.get("steps") if isinstance(body, dict) else None
        if not isinstance(steps, list) or not steps:
            return _refused(400, "the body needs a non-empty 'steps' list", run_id)
        parsed = parse_ops(steps, False, None)
        if not isinstance(parsed, OpsResponse):
            reason = parsed.reason if isinstance(parsed, CallFailed) else "not a list of ops"
            return _refused(400, f"invalid steps: {reason}", run_id)
        started = body.get("request_started_at")
        started_at = started / 1000 if isinstance(started, int | float) else time.time()
        qi_id = body.get("qi_id")
        qi_id = qi_id if isinstance(qi_id, str) and qi_id else None
        refused = await engine.db(engine.machine.checkpoint, run_id, parsed.ops, started_at, qi_id)
        if refused is not None:
            return _refused(refused[0], refused[1], run_id)
        return JSONResponse({"data": {"run_id": run_id}})

    return [Route("/v1/checkpoint/{run_id}/async", authed(checkpoint), methods=["POST"])]
