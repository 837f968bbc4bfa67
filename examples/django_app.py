"""The checkout flow served by Django: a one-file project whose URLconf is this module.

Run ``INNGEST_DEV=1 python examples/django_app.py`` (the development server, WSGI) and, next to it,
``inngest-mw dev -u http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
In a real project, put ``inngest_mw_django.serve(client, functions)`` in ``urlpatterns``.
The mode comes from the environment, as in Inngest's own SDKs: ``INNGEST_DEV`` for a dev server;
without it the app runs against Inngest Cloud, or a self-hosted Inngest at ``INNGEST_BASE_URL``,
with ``INNGEST_SIGNING_KEY`` and ``INNGEST_EVENT_KEY`` (see the README, "Running on Inngest").
``PORT`` changes the port.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import inngest_mw_django
from checkout_flow import sync_functions
from django.urls import URLPattern

import inngest_mw


def inngest_urls(
    client: inngest_mw.Inngest, functions: Sequence[inngest_mw.Function[Any]]
) -> list[URLPattern]:
    return [inngest_mw_django.serve(client, functions)]


if __name__ == "__main__":
    from django.conf import settings
    from django.core.management import execute_from_command_line

    settings.configure(DEBUG=True, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1", "localhost"])
    shop = inngest_mw.Inngest(app_id="shop")  # mode, URLs, keys: from INNGEST_*
    urlpatterns = inngest_urls(shop, sync_functions(shop))
    execute_from_command_line(
        [sys.argv[0], "runserver", f"127.0.0.1:{os.environ.get('PORT', '8000')}", "--noreload"]
    )
