"""The checkout flow served by Tornado on its own IOLoop.

Run ``python examples/tornado_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import inngest_mw_tornado
import tornado.web
from checkout_flow import async_functions

import inngest_mw


def create_app(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> tornado.web.Application:
    app = tornado.web.Application()
    inngest_mw_tornado.serve(app, client, functions)
    return app


async def main() -> None:
    client = inngest_mw.Inngest(app_id="shop", is_production=False)
    create_app(client, async_functions(client)).listen(8000, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
