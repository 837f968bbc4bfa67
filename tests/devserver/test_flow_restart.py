"""Flow-control state lives in SQLite: a pending batch, a debounce and a rate limit survive a restart."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from engine_support import AppServer, poll, runs_for_event, send, sync, wait_run
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread

import inngest_mw
from inngest_mw import Context, TriggerEvent


def build(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    create = client.create_function

    @create(
        fn_id="batched",
        trigger=TriggerEvent(event="r/batch"),
        batch_events=inngest_mw.Batch(max_size=10, timeout="1s"),
    )
    async def batched(ctx: Context) -> Any:
        return [e.data["i"] for e in ctx.events]

    @create(
        fn_id="debounced",
        trigger=TriggerEvent(event="r/debounce"),
        debounce=inngest_mw.Debounce(period="1s"),
    )
    async def debounced(ctx: Context) -> Any:
        return ctx.event.data["i"]

    @create(
        fn_id="rated",
        trigger=TriggerEvent(event="r/rate"),
        rate_limit=inngest_mw.RateLimit(limit=1, period="1h"),
    )
    async def rated(ctx: Context) -> str:
        return "ok"

    return [batched, debounced, rated]


def held(db: Path) -> int:
    """Open debounce/batch buffers, read from the database file as a restart would see it."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM buffers").fetchone()[0]
        return count


def engine(db: Path) -> EngineThread:
    return EngineThread(db, port=0, retry_base=0.05, tick=0.02)


def test_held_events_and_limits_survive_an_engine_restart(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    with engine(db) as first:
        client = inngest_mw.Inngest(
            app_id="restart",
            is_production=False,
            api_base_url=first.url,
            event_api_base_url=first.url,
        )
        with AppServer(serve(client, build(client))) as app:
            sync(app)
            [rated] = send(first.url, {"name": "r/rate", "data": {}})
            (run,) = runs_for_event(first.url, rated)
            assert wait_run(first.url, run["run_id"])["status"] == "Completed"
            batch = send(first.url, [{"name": "r/batch", "data": {"i": i}} for i in range(3)])
            debounce = send(first.url, [{"name": "r/debounce", "data": {"i": i}} for i in range(2)])
            poll(lambda: held(db), lambda n: n == 2, what="the batch and debounce to be held")
            first.stop()  # before either timer (1s) fires

            with engine(db) as second:
                (run,) = runs_for_event(second.url, batch[0])
                assert wait_run(second.url, run["run_id"])["output"] == [0, 1, 2]
                (run,) = runs_for_event(second.url, debounce[-1])
                assert wait_run(second.url, run["run_id"])["output"] == 1
                [again] = send(second.url, {"name": "r/rate", "data": {}})
                (run,) = runs_for_event(second.url, again)
                assert run["status"] == "Skipped"
