"""The checkout flow served by Starlette, mounting the pure ASGI app (Litestar and Quart alike).

Run ``python examples/starlette_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
"""

from __future__ import annotations

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
    client = inngest_mw.Inngest(app_id="shop", is_production=False)
    uvicorn.run(create_app(client, async_functions(client)), host="127.0.0.1", port=8000)
