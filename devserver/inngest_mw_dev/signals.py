"""``POST /v1/signals``: resume the run waiting for a signal, as the server does
(``pkg/api/apiv1/signals.go``): 200 ``{"data": {"run_id"}}``, 404 when no run is waiting."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inngest_mw_dev.bodies import read_json
from inngest_mw_dev.limits import MAX_STEP_OUTPUT_BYTES

if TYPE_CHECKING:
    from inngest_mw_dev.engine import Engine

__all__ = ["signal_routes"]

Handler = Callable[[Request], Awaitable[Response]]


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def signal_routes(engine: Engine, authed: Callable[[Handler], Handler]) -> list[Route]:
    async def receive(request: Request) -> Response:
        body = await read_json(request, MAX_STEP_OUTPUT_BYTES)
        signal = body.get("signal") if isinstance(body, dict) else None
        if not isinstance(signal, str) or not signal:
            return _refused(400, "Invalid signal data: 'signal' must be a non-empty string")
        run_id = await engine.db(engine.machine.resume_signal, signal, body.get("data"))
        if run_id is None:
            return _refused(404, f"No signal found: no run is waiting for signal {signal!r}")
        engine.wake()
        fetched = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return JSONResponse({"data": {"run_id": run_id}, "metadata": {"fetched_at": fetched}})

    return [Route("/v1/signals", authed(receive), methods=["POST"])]
