"""Checkpointing: run the next steps in the same request, reporting each finished step to the
server as it goes, instead of ending the request after every step.

When a call request allows it (the server names the function's internal ID, no step is targeted,
parallel planning is off) a step that ran in the app is POSTed to
``/v1/checkpoint/{run_id}/async`` (the Inngest server's route) before the function goes on, so a
crash mid-request loses at most the step in progress. A step the server must act on (sleep, wait,
invoke, signal, AI, fetch), a failure, parallel steps, or the request's time budget end the request
as without checkpointing. When the server refuses or cannot take a checkpoint, that step is
reported in the response instead, exactly as it would have been; a server without the route is
remembered and not asked again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx

from inngest_mw._const import Header
from inngest_mw._drive import Effect, Flow
from inngest_mw.run_state import keys_or_none

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.wire import Op

__all__ = ["MAX_RUNTIME_S", "Checkpointer", "checkpointing_default"]

MAX_RUNTIME_S: Final = 10.0
"""How long one request goes on running steps before it ends and lets the server call again
(the TypeScript SDK's default for served functions)."""

_unsupported: set[str] = set()
"""API origins that answered as if they had no checkpoint route: not asked again."""
_lock = threading.Lock()


def checkpointing_default(environ: dict[str, str] | None = None) -> bool:
    """``INNGEST_CHECKPOINTING``: on unless ``0``/``false``/``off``/``no``."""
    value = (os.environ if environ is None else environ).get("INNGEST_CHECKPOINTING", "")
    return value.strip().lower() not in ("0", "false", "off", "no")


@dataclass(slots=True)
class Checkpointer:
    """One request's checkpointing state: where to POST and whether it still may."""

    client: Inngest
    run_id: str
    fn_id: str
    qi_id: str | None = None
    request_id: str | None = None
    generation_id: str | None = None
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_RUNTIME_S)
    refused: bool = False
    sent: int = 0

    @property
    def url(self) -> str:
        return f"{self.client.settings.api_origin}v1/checkpoint/{self.run_id}/async"

    def usable(self) -> bool:
        """Whether the step that just ran may be checkpointed rather than end the request."""
        if self.refused or time.monotonic() >= self.deadline:
            return False
        return self.client.settings.api_origin not in _unsupported

    def body(self, op: Op) -> bytes:
        payload: dict[str, Any] = {
            "run_id": self.run_id,
            "fn_id": self.fn_id,
            "request_started_at": self.started_ms,
            "steps": [op.to_wire()],
            "ts": int(time.time() * 1000),
        }
        for key in ("qi_id", "request_id", "generation_id"):
            value = getattr(self, key)
            if value:
                payload[key] = value
        return json.dumps(payload, separators=(",", ":")).encode()

    def send(self, op: Op) -> Flow[bool]:
        """POST the step; True when the server has it. A refusal ends checkpointing for this
        request (and, when the server has no such route, for this process's server)."""
        body = self.body(op)
        keys = keys_or_none(self.client.settings.signing_keys)
        for index, key in enumerate(keys):
            headers = self.client.outbound_headers(key)
            headers[Header.CONTENT_TYPE] = "application/json"
            try:
                response = yield _CheckpointPost(self, body, headers)
            except httpx.HTTPError:
                break
            status = response.status_code
            if status in (401, 403) and index + 1 < len(keys):
                continue
            if 200 <= status < 300:
                self.sent += 1
                return True
            if status in (404, 405) and not _is_json(response):
                with _lock:  # a route the server does not have, not a run it does not know
                    _unsupported.add(self.client.settings.api_origin)
            break
        self.refused = True
        return False


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


class _CheckpointPost(Effect):
    """The checkpoint POST, with the client's sync client or the loop's async one."""

    __slots__ = ("body", "checkpointer", "headers")

    def __init__(self, checkpointer: Checkpointer, body: bytes, headers: dict[str, str]) -> None:
        self.checkpointer, self.body, self.headers = checkpointer, body, headers

    def run(self) -> httpx.Response:
        cp = self.checkpointer
        return cp.client.sync_http().post(
            cp.url, content=self.body, headers=self.headers, timeout=cp.client.request_timeout
        )

    async def arun(self) -> httpx.Response:
        from inngest_mw.client import loop_http

        cp = self.checkpointer
        http = await loop_http()  # the loop's one client: its connection outlives this request
        return await http.post(
            cp.url, content=self.body, headers=self.headers, timeout=cp.client.request_timeout
        )
