"""Section 2: the same call requests through FastAPI, in process, over ``httpx.ASGITransport``.

Four apps, each driven by its own ``httpx.AsyncClient`` with the same body bytes:

* ``floor``: FastAPI with one trivial POST route returning ``{"ok": true}``: framework + httpx.
* ``official``: FastAPI with the official SDK's ``inngest.fast_api.serve``.
* ``ours``: FastAPI with ``inngest_mw_fastapi.serve``, as an app serves it.
* ``ours-bare``: our ASGI app on its own, no framework.

The SDK's own cost is the row minus the floor (same body, same transport).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks import apps
from benchmarks.timing import Config, Stats, measure_async

__all__ = ["FRAMEWORK_COUNTS", "FrameworkRow", "run"]

FRAMEWORK_COUNTS = (0, 10, 100)
PATH = "/api/inngest"


@dataclass(frozen=True, slots=True)
class FrameworkRow:
    function: str  # "async" | "sync" (a sync function behind an async framework: thread hop)
    memoized: int
    floor: Stats
    official: Stats
    ours: Stats
    ours_bare: Stats

    @property
    def ratio(self) -> float:
        return self.ours.median_us / self.official.median_us

    @property
    def net_ratio(self) -> float | None:
        """Ours over official, each minus the framework floor (``None`` if a net is not positive)."""
        ours = self.ours.median_us - self.floor.median_us
        official = self.official.median_us - self.floor.median_us
        if ours <= 0 or official <= 0:
            return None
        return ours / official


def _apps() -> dict[str, Any]:
    import fastapi
    import inngest.fast_api
    import inngest_mw_fastapi
    from inngest_mw_asgi import serve

    floor = fastapi.FastAPI()

    @floor.post(PATH)
    async def trivial() -> dict[str, bool]:
        return {"ok": True}

    official = fastapi.FastAPI()
    official_client = apps.official_client()
    inngest.fast_api.serve(official, official_client, apps.official_functions(official_client))

    ours_client = apps.ours_client()
    ours_asgi = serve(ours_client, apps.ours_functions(ours_client), serve_path=PATH)
    ours = fastapi.FastAPI()
    inngest_mw_fastapi.serve(ours, ours_client, apps.ours_functions(ours_client), serve_path=PATH)
    return {"floor": floor, "official": official, "ours": ours, "ours-bare": ours_asgi}


Post = Callable[[], Awaitable[httpx.Response]]


def _post(client: httpx.AsyncClient, fn_id: str, body: bytes) -> Post:
    params = {"fnId": f"{apps.APP_ID}-{fn_id}", "stepId": "step"}

    def call() -> Awaitable[httpx.Response]:
        return client.post(PATH, params=params, content=body, headers=apps.HEADERS)

    return call


async def _check(kind: str, response: httpx.Response, memoized: int) -> None:
    if kind == "floor":
        if response.status_code != 200:
            raise AssertionError(f"floor answered {response.status_code}")
        return
    apps.check_official(response.status_code, response.text, memoized)


async def _run(cfg: Config, counts: tuple[int, ...]) -> list[FrameworkRow]:
    clients = {
        kind: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
        for kind, app in _apps().items()
    }
    rows: list[FrameworkRow] = []
    try:
        for n in counts:
            body = apps.call_body(n)
            cases: dict[str, Post] = {}
            for function, fn_id in (("async", apps.FN_ASYNC), ("sync", apps.FN_SYNC)):
                for kind, client in clients.items():
                    if kind == "floor" and function == "sync":
                        continue
                    call = _post(client, fn_id, body)
                    await _check(kind, await call(), n)
                    cases[f"{kind}/{function}"] = call
            stats = await measure_async(cases, cfg)
            for function in ("async", "sync"):
                rows.append(
                    FrameworkRow(
                        function=function,
                        memoized=n,
                        floor=stats["floor/async"],
                        official=stats[f"official/{function}"],
                        ours=stats[f"ours/{function}"],
                        ours_bare=stats[f"ours-bare/{function}"],
                    )
                )
    finally:
        for client in clients.values():
            await client.aclose()
        await asyncio.sleep(0)
    return rows


def run(cfg: Config, counts: tuple[int, ...] = FRAMEWORK_COUNTS) -> list[FrameworkRow]:
    return asyncio.run(_run(cfg, counts))
