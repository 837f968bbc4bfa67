"""The checkout flow served by Starlette, mounting the pure ASGI app (Litestar and Quart alike).

Run ``INNGEST_DEV=1 python examples/starlette_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
The mode comes from the environment, as in Inngest's own SDKs: ``INNGEST_DEV`` for a dev server;
without it the app runs against Inngest Cloud, or a self-hosted Inngest at ``INNGEST_BASE_URL``,
with ``INNGEST_SIGNING_KEY`` and ``INNGEST_EVENT_KEY`` (see the README, "Running on Inngest").
``PORT`` changes the port.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import inngest_mw_asgi
import uvicorn
from checkout_flow import async_functions
from starlette.applications import Starlette
from starlette.routing import Mount

import inngest_mw


def create_app(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> Starlette:
    # The ASGI app checks the full serve path itself, so it is mounted last, at the root: the app's
    # own routes, listed before it, keep their paths.
    return Starlette(routes=[Mount("/", app=inngest_mw_asgi.serve(client, functions))])


if __name__ == "__main__":
    client = inngest_mw.Inngest(app_id="shop")  # mode, URLs, keys: from INNGEST_*
    uvicorn.run(
        create_app(client, async_functions(client)),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
    )
