"""Each framework's example app under its real server on a free 127.0.0.1 port, in a thread.

``FRAMEWORKS[name](client, functions)`` is a context manager yielding the app's base URL; it stops
the server on exit. The example modules and their checkout flow (``FLAVOURS``) are imported from
``examples/``, so the tests prove the examples themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import aiohttp_app
import checkout_flow
import django
import django_app
import fastapi_app
import flask_app
import starlette_app
import tornado.httpserver
import tornado.netutil
import tornado_app
from aiohttp import web
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.wsgi import WSGIHandler
from django.urls import clear_url_caches
from support import serve_asgi
from werkzeug.serving import make_server

from inngest_mw import Function, Inngest
from integrations import django_urls

if not settings.configured:
    settings.configure(
        ROOT_URLCONF="integrations.django_urls",
        ALLOWED_HOSTS=["127.0.0.1"],
        SECRET_KEY="inngest-mw-tests",
        # CSRF on, to prove the view is exempt from it.
        MIDDLEWARE=["django.middleware.csrf.CsrfViewMiddleware"],
    )
    django.setup()

T = TypeVar("T")
Functions = Sequence[Function[Any]]
Flavour = Callable[[Inngest], list[Function[Any]]]
Served = Callable[[Inngest, Functions], AbstractContextManager[str]]
START_TIMEOUT = 10.0


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Werkzeug's threaded WSGI server."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(START_TIMEOUT)
        server.server_close()


class LoopThread:
    """An asyncio loop running forever in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)
        self.loop.close()


@contextlib.contextmanager
def serve_tornado(app: Any) -> Iterator[str]:
    """Tornado's HTTPServer on its IOLoop (asyncio) in a thread."""
    loop = LoopThread()
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")

    async def start() -> tornado.httpserver.HTTPServer:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        return server

    server = loop.run(start())
    try:
        yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    finally:
        server.stop()
        loop.run(server.close_all_connections())
        loop.close()


@contextlib.contextmanager
def serve_aiohttp(app: web.Application) -> Iterator[str]:
    """aiohttp's AppRunner and TCPSite on a loop in a thread."""
    loop = LoopThread()
    runner = web.AppRunner(app)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        return port

    port = loop.run(start())
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.run(runner.cleanup())
        loop.close()


def _django_urls(client: Inngest, functions: Functions) -> None:
    # One Django app is served at a time: the URLconf is process-wide.
    django_urls.urlpatterns[:] = django_app.inngest_urls(client, functions)
    clear_url_caches()


def serve_django_wsgi(client: Inngest, functions: Functions) -> AbstractContextManager[str]:
    _django_urls(client, functions)
    return serve_wsgi(WSGIHandler())


def serve_django_asgi(client: Inngest, functions: Functions) -> AbstractContextManager[str]:
    _django_urls(client, functions)
    return serve_asgi(get_asgi_application())


FRAMEWORKS: dict[str, Served] = {
    "fastapi": lambda client, fns: serve_asgi(fastapi_app.create_app(client, fns)),
    "starlette": lambda client, fns: serve_asgi(starlette_app.create_app(client, fns)),
    "flask": lambda client, fns: serve_wsgi(flask_app.create_app(client, fns)),
    "django-wsgi": serve_django_wsgi,
    "django-asgi": serve_django_asgi,
    "tornado": lambda client, fns: serve_tornado(tornado_app.create_app(client, fns)),
    "aiohttp": lambda client, fns: serve_aiohttp(aiohttp_app.create_app(client, fns)),
}

# The checkout flow written with sync and with async functions.
FLAVOURS: dict[str, Flavour] = {
    "sync": checkout_flow.sync_functions,
    "async": checkout_flow.async_functions,
}
