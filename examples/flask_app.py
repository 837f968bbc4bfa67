"""The checkout flow served by Flask, as sync functions from a sync view.

Run ``INNGEST_DEV=1 python examples/flask_app.py`` and, next to it, ``inngest-mw dev -u
http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event. Serving async functions
instead makes the view async (needs ``flask[async]``).
The mode comes from the environment, as in Inngest's own SDKs: ``INNGEST_DEV`` for a dev server;
without it the app runs against Inngest Cloud, or a self-hosted Inngest at ``INNGEST_BASE_URL``,
with ``INNGEST_SIGNING_KEY`` and ``INNGEST_EVENT_KEY`` (see the README, "Running on Inngest").
``PORT`` changes the port.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import flask
import inngest_mw_flask
from checkout_flow import sync_functions

import inngest_mw


def create_app(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> flask.Flask:
    app = flask.Flask(__name__)
    inngest_mw_flask.serve(app, client, functions)
    return app


if __name__ == "__main__":
    client = inngest_mw.Inngest(app_id="shop")  # mode, URLs, keys: from INNGEST_*
    create_app(client, sync_functions(client)).run(
        host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True
    )
