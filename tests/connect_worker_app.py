"""A connect worker process for the connect tests.

``python connect_worker_app.py ENGINE_URL MARKS_DIR INSTANCE_ID``: serves the ``procs`` app over
connect until SIGTERM. Each ``hold`` step leaves ``MARKS_DIR/<key>.<pid>.started`` when it starts
and finishes once ``MARKS_DIR/release`` exists, so a test can tell which worker holds which call
and let them all go at a moment of its choosing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import inngest_mw_connect

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

ENGINE_URL, MARKS, INSTANCE = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

client = inngest_mw.Inngest(
    app_id="procs", is_production=False, api_base_url=ENGINE_URL, event_api_base_url=ENGINE_URL
)


def _started(key: str) -> None:
    (MARKS / f"{key}.{os.getpid()}.started").touch()


def _held() -> int:
    """Block until the test releases the calls (another process: a file is the signal)."""
    while not (MARKS / "release").exists():
        time.sleep(0.02)
    return os.getpid()


@client.create_function(fn_id="hold", trigger=TriggerEvent(event="procs/hold"))
async def hold(ctx: Context) -> dict[str, int]:
    key = ctx.event.data["key"]

    async def work() -> int:
        _started(key)
        return await asyncio.to_thread(_held)

    pid = await ctx.step.run("work", work)
    return {"pid": pid}


@client.create_function(fn_id="hold-sync", trigger=TriggerEvent(event="procs/hold-sync"))
def hold_sync(ctx: ContextSync) -> dict[str, int]:
    key = ctx.event.data["key"]

    def work() -> int:
        _started(key)
        return _held()

    pid = ctx.step.run("work", work)
    return {"pid": pid}


if __name__ == "__main__":
    inngest_mw_connect.run(client, [hold, hold_sync], instance_id=INSTANCE)
    print(f"worker {INSTANCE} drained and stopped", flush=True)
