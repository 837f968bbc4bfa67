"""The checkout flow served by aiohttp.

Run ``python examples/aiohttp_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import inngest_mw_aiohttp
from aiohttp import web
from checkout_flow import async_functions

import inngest_mw


def create_app(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> web.Application:
    app = web.Application()
    inngest_mw_aiohttp.serve(app, client, functions)
    return app


if __name__ == "__main__":
    client = inngest_mw.Inngest(app_id="shop", is_production=False)
    web.run_app(create_app(client, async_functions(client)), host="127.0.0.1", port=8000)
