"""Section 1: one call request straight into each SDK's framework-agnostic handler.

Both SDKs get the same body bytes and answer with the same single ``StepRun`` op. The timed call
includes what any adapter must do per request: build the handler's request object, run it, and
(for the official SDK, whose handler returns a Python body) dump the JSON the adapter sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import apps
from benchmarks.timing import Config, Stats, measure_async, measure_sync
from inngest_mw import CommHandler, CommRequest, CommResponse

__all__ = ["STEP_COUNTS", "VARIANTS", "RequestRow", "run"]

STEP_COUNTS = (0, 10, 100, 1000)

VARIANTS: dict[str, str] = {
    "async": "async function, async entry (ours `handle`, official `post`)",
    "sync": "sync function, sync entry (ours `handle_sync`, official `post_sync`)",
    "sync-in-async": "sync function, async entry: the thread-pool hop (`handle` / `post`)",
}


@dataclass(frozen=True, slots=True)
class RequestRow:
    variant: str
    memoized: int
    body_bytes: int
    ours: Stats
    official: Stats

    @property
    def ratio(self) -> float:
        return self.ours.median_us / self.official.median_us


OursAsync = Callable[[], Awaitable[CommResponse]]
OursSync = Callable[[], CommResponse]
OfficialAsync = Callable[[], Awaitable[tuple[int, str]]]
OfficialSync = Callable[[], tuple[int, str]]


def _ours_async(handler: CommHandler, fn_id: str, body: bytes) -> OursAsync:
    target = apps.url(fn_id)
    headers = apps.HEADERS

    async def call() -> CommResponse:
        return await handler.handle(CommRequest("POST", target, headers, body))

    return call


def _ours_sync(handler: CommHandler, fn_id: str, body: bytes) -> OursSync:
    target = apps.url(fn_id)
    headers = apps.HEADERS

    def call() -> CommResponse:
        return handler.handle_sync(CommRequest("POST", target, headers, body))

    return call


def _official_async(handler: Any, fn_id: str, body: bytes) -> OfficialAsync:
    make, dump = apps.official_request(fn_id, body), apps.official_dump()

    async def call() -> tuple[int, str]:
        response = await handler.post(make())
        return response.status_code, dump(response)

    return call


def _official_sync(handler: Any, fn_id: str, body: bytes) -> OfficialSync:
    make, dump = apps.official_request(fn_id, body), apps.official_dump()

    def call() -> tuple[int, str]:
        response = handler.post_sync(make())
        return response.status_code, dump(response)

    return call


async def _check_async(ours: OursAsync, official: OfficialAsync, memoized: int) -> None:
    apps.check_ours(await ours(), memoized)
    apps.check_official(*await official(), memoized)


def _check_sync(ours: OursSync, official: OfficialSync, memoized: int) -> None:
    apps.check_ours(ours(), memoized)
    apps.check_official(*official(), memoized)


async def _measure_async_variant(
    variant: str,
    ours_handler: CommHandler,
    official_handler: Any,
    cfg: Config,
    counts: tuple[int, ...],
) -> dict[tuple[str, int], Stats]:
    fn_id = apps.FN_ASYNC if variant == "async" else apps.FN_SYNC
    cases: dict[str, apps.AsyncCall] = {}
    for n in counts:
        body = apps.call_body(n)
        ours = _ours_async(ours_handler, fn_id, body)
        official = _official_async(official_handler, fn_id, body)
        await _check_async(ours, official, n)
        cases[f"ours/{n}"] = ours
        cases[f"official/{n}"] = official
    stats = await measure_async(cases, cfg)
    await asyncio.sleep(0)  # let the official SDK's cancelled timing tasks finish
    return {(key.split("/")[0], int(key.split("/")[1])): s for key, s in stats.items()}


def _measure_sync_variant(
    ours_handler: CommHandler, official_handler: Any, cfg: Config, counts: tuple[int, ...]
) -> dict[tuple[str, int], Stats]:
    cases: dict[str, apps.SyncCall] = {}
    for n in counts:
        body = apps.call_body(n)
        ours = _ours_sync(ours_handler, apps.FN_SYNC, body)
        official = _official_sync(official_handler, apps.FN_SYNC, body)
        _check_sync(ours, official, n)
        cases[f"ours/{n}"] = ours
        cases[f"official/{n}"] = official
    stats = measure_sync(cases, cfg)
    return {(key.split("/")[0], int(key.split("/")[1])): s for key, s in stats.items()}


def run(cfg: Config, counts: tuple[int, ...] = STEP_COUNTS) -> list[RequestRow]:
    """Every variant at every memoized-step count, ours and official interleaved."""
    ours_handler = apps.ours_handler()
    official_handler = apps.official_handler()
    rows: list[RequestRow] = []
    for variant in VARIANTS:
        if variant == "sync":
            stats = _measure_sync_variant(ours_handler, official_handler, cfg, counts)
        else:
            stats = asyncio.run(
                _measure_async_variant(variant, ours_handler, official_handler, cfg, counts)
            )
        for n in counts:
            rows.append(
                RequestRow(
                    variant=variant,
                    memoized=n,
                    body_bytes=len(apps.call_body(n)),
                    ours=stats[("ours", n)],
                    official=stats[("official", n)],
                )
            )
    return rows
