"""The checkout flow served by Django: a one-file project whose URLconf is this module.

Run ``python examples/django_app.py`` (the development server, WSGI) and, next to it,
``inngest-mw dev -u http://127.0.0.1:8000/api/inngest``; then send a ``shop/checkout`` event.
In a real project, put ``inngest_mw_django.serve(client, functions)`` in ``urlpatterns``.
"""

from __future__ import annotations

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
    shop = inngest_mw.Inngest(app_id="shop", is_production=False)
    urlpatterns = inngest_urls(shop, sync_functions(shop))
    execute_from_command_line([sys.argv[0], "runserver", "127.0.0.1:8000", "--noreload"])
