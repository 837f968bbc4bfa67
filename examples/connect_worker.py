"""The checkout flow on a connect worker: no web server, the worker dials out to Inngest.

Run ``inngest-mw dev`` and, next to it, ``INNGEST_DEV=1 python examples/connect_worker.py``; then
send a ``shop/checkout`` event. The mode comes from the environment, as in the other examples:
without ``INNGEST_DEV`` the worker connects to Inngest Cloud, or to a self-hosted Inngest at
``INNGEST_BASE_URL``, with ``INNGEST_SIGNING_KEY``. ``SYNC=1`` serves the ``def`` version of the
flow. SIGTERM or Ctrl-C drains the worker: calls in flight finish, then it exits.
"""

from __future__ import annotations

import os
import socket

import inngest_mw_connect
from checkout_flow import async_functions, sync_functions

import inngest_mw

if __name__ == "__main__":
    client = inngest_mw.Inngest(app_id="shop")  # mode, URLs, keys: from INNGEST_*
    functions = sync_functions(client) if os.environ.get("SYNC") else async_functions(client)
    inngest_mw_connect.run(
        client, functions, instance_id=os.environ.get("WORKER_ID") or socket.gethostname()
    )
