"""The checkout flow served by FastAPI (under uvicorn).

Run ``python examples/fastapi_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastapi
import inngest_mw_fastapi
import uvicorn
from checkout_flow import async_functions

import inngest_mw


def create_app(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> fastapi.FastAPI:
    app = fastapi.FastAPI()
    inngest_mw_fastapi.serve(app, client, functions)
    return app


if __name__ == "__main__":
    client = inngest_mw.Inngest(app_id="shop", is_production=False)
    uvicorn.run(create_app(client, async_functions(client)), host="127.0.0.1", port=8000)
