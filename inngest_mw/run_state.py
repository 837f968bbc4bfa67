"""``use_api``: when a call body was too large, the events and memoized steps come from the API."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from inngest_mw.errors import Error
from inngest_mw.event import Event
from inngest_mw.memo import parse_memos

if TYPE_CHECKING:
    from inngest_mw.client import Inngest
    from inngest_mw.execution import CallRequest

__all__ = ["keys_or_none", "load_from_api"]


class _ApiError(Error):
    """Fetching run state failed; its stack is its message, not the SDK's own frames and paths."""

    code = "api_fetch_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.stack = f"ApiFetchError: {message}"


async def load_from_api(client: Inngest, call: CallRequest) -> None:
    """``use_api``: the body was too large, so fetch events and memoized steps from the API."""
    base = f"{client.settings.api_origin}v0/runs/{call.run_id}"
    from inngest_mw.client import loop_http  # client imports this module

    http = await loop_http()  # the loop's one client, kept alive for its next request

    async def fetch(path: str) -> Any:
        for key in keys_or_none(client.settings.signing_keys):
            response = await http.get(
                f"{base}/{path}", headers=client.outbound_headers(key), timeout=30
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


def keys_or_none(keys: list[str]) -> list[str | None]:
    """Keys to try in turn for outbound auth; one unauthenticated attempt when there are none."""
    return list(keys) if keys else [None]
