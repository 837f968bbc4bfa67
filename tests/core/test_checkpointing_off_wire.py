"""With checkpointing off, an app answers exactly as it did before checkpointing existed.

A call request the Inngest server (or ``inngest-mw dev``) sends names the function's internal ID
(``ctx.fn_id``) and the queue item (``ctx.qi_id``): the two facts a checkpoint needs. A request
without them cannot be checkpointed, so the SDK answers it on the one-request-per-step path, the
one the differential test holds to the official SDK's replies. Here every differential case is
sent twice, byte-identical but for those two facts, and an app with checkpointing off (by
``checkpointing=False`` or by ``INNGEST_CHECKPOINTING=0``) must answer the server-shaped request
with the same status, the same headers and the same body bytes as that path.

The last test shows the comparison can fail: the same server-shaped request to an app with
checkpointing on (pointed at a local checkpoint route) is answered differently, after a POST to
that route.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from core.differential_apps import APP_ID, our_app
from core.test_differential import CASES
from support import read_asgi_body, send_json, serve_asgi

Raw = tuple[int, list[tuple[str, str]], bytes]
"""A response as sent: status, headers (but the date, which is the clock's), body bytes."""


def server_shaped(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with the function and queue-item IDs a server puts in ``ctx``."""
    shaped = copy.deepcopy(body)
    shaped["ctx"]["fn_id"] = "7b9a5d2e-6c1f-4e58-9a3b-2f0d8c4e6a11"
    shaped["ctx"]["qi_id"] = "01QUEUEITEM"
    return shaped


class CheckpointRoute:
    """A server's checkpoint route (``POST /v1/checkpoint/{run}/async``) that takes every step."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_asgi_body(receive)
        self.posts.append((scope["path"], json.loads(body)))
        await send_json(send, 200, {})


@dataclass
class Apps:
    default: str
    off_by_option: str
    off_by_environment: str
    on: str
    route: CheckpointRoute
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def post(self, url: str, fn: str, body: dict[str, Any], step_id: str) -> Raw:
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        res = self.http.post(
            url,
            params={"fnId": f"{APP_ID}-{fn}", "stepId": step_id},
            content=raw,
            headers={"content-type": "application/json"},
        )
        headers = [(k, v) for k, v in res.headers.multi_items() if k.lower() != "date"]
        return res.status_code, headers, res.content


def _off_by_environment() -> Any:
    previous = os.environ.get("INNGEST_CHECKPOINTING")
    os.environ["INNGEST_CHECKPOINTING"] = "0"
    try:
        return our_app()
    finally:
        if previous is None:
            del os.environ["INNGEST_CHECKPOINTING"]
        else:
            os.environ["INNGEST_CHECKPOINTING"] = previous


@pytest.fixture(scope="module")
def apps() -> Iterator[Apps]:
    route = CheckpointRoute()
    with (
        serve_asgi(route) as route_url,
        serve_asgi(our_app()) as default,
        serve_asgi(our_app(checkpointing=False)) as off_by_option,
        serve_asgi(_off_by_environment()) as off_by_environment,
        serve_asgi(our_app(checkpointing=True, api_base_url=route_url)) as on,
    ):
        both = Apps(
            default + "/api/inngest",
            off_by_option + "/api/inngest",
            off_by_environment + "/api/inngest",
            on + "/api/inngest",
            route,
        )
        yield both
        both.http.close()


@pytest.mark.parametrize("switch", ["off_by_option", "off_by_environment"])
@pytest.mark.parametrize("name", list(CASES))
def test_checkpointing_off_answers_byte_for_byte_as_the_path_without_it(
    apps: Apps, variant: str, name: str, switch: str
) -> None:
    case = CASES[name]
    fn = case.fn + variant
    before = apps.post(apps.default, fn, case.body, case.step_id)
    after = apps.post(getattr(apps, switch), fn, server_shaped(case.body), case.step_id)
    assert after == before


def test_the_same_request_with_checkpointing_on_is_checkpointed_and_answered_otherwise(
    apps: Apps, variant: str
) -> None:
    case = CASES["discovery-runs-the-first-new-step-immediately"]
    fn = case.fn + variant
    before = apps.post(apps.default, fn, case.body, case.step_id)
    posts = len(apps.route.posts)
    checkpointed = apps.post(apps.on, fn, server_shaped(case.body), case.step_id)
    assert checkpointed != before
    path, payload = apps.route.posts[posts]
    assert path == f"/v1/checkpoint/{case.body['ctx']['run_id']}/async"
    assert payload["qi_id"] == "01QUEUEITEM"
