"""The SDK's HTTP clients free a response as soon as it is dropped.

httpx sends each response in a reference cycle (its stream refers back to it), so a response,
with its request, headers and URL, stays in memory until the cycle collector runs; an app that
checkpoints every step made one such cycle per step. The SDK's sync and async clients break it
once the body is read. Each case runs with the collector off, over a real socket, and measures
httpx's own client the same way, so the check can tell the difference."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import read_asgi_body, send_json, serve_asgi

import inngest_mw
from inngest_mw import client as client_module


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await read_asgi_body(receive)
    await send_json(send, 200, {"got": body.decode()})


@pytest.fixture
def url() -> Iterator[str]:
    with serve_asgi(_echo) as base:
        yield base


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _sync_ref(http: httpx.Client, url: str, body: bytes) -> weakref.ref[httpx.Response]:
    """POST ``body``, check the answer, and keep only a weak reference to the response."""
    response = http.post(url, content=body)
    assert response.json() == {"got": body.decode()}
    assert response.read() == response.content  # still readable, from the body itself
    return weakref.ref(response)


async def _async_ref(http: httpx.AsyncClient, url: str, body: bytes) -> weakref.ref[httpx.Response]:
    response = await http.post(url, content=body)
    assert response.json() == {"got": body.decode()}
    assert await response.aread() == response.content
    await response.aclose()
    return weakref.ref(response)


@pytest.mark.usefixtures("no_collector")
def test_a_response_of_the_sync_client_is_freed_when_dropped(url: str) -> None:
    http = inngest_mw.Inngest(app_id="responses", is_production=False).sync_http()
    assert _sync_ref(http, url, b"sync")() is None
    with httpx.Client() as stock:
        assert _sync_ref(stock, url, b"stock")() is not None  # httpx's own: left in its cycle


@pytest.mark.usefixtures("no_collector")
def test_a_response_of_the_async_client_is_freed_when_dropped(url: str) -> None:
    async def main() -> tuple[bool, bool]:
        ours = await _async_ref(await client_module.loop_http(), url, b"async")
        async with httpx.AsyncClient() as stock:
            theirs = await _async_ref(stock, url, b"stock")
        return ours() is None, theirs() is None

    assert asyncio.run(main()) == (True, False)


def test_a_streamed_response_is_left_to_stream(url: str) -> None:
    async def main() -> bytes:
        http = await client_module.loop_http()
        async with http.stream("POST", url, content=b"streamed") as response:
            return b"".join([chunk async for chunk in response.aiter_bytes()])

    assert asyncio.run(main()) == b'{"got": "streamed"}'
    http = inngest_mw.Inngest(app_id="responses", is_production=False).sync_http()
    with http.stream("POST", url, content=b"sync streamed") as response:
        assert b"".join(response.iter_bytes()) == b'{"got": "sync streamed"}'
