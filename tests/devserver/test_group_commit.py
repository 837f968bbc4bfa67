"""Group commit: a transition that raises sets only its item aside; the rest of its tick lands.

The fault is injected into the engine's real machine (one event's processing raises once); the
app, the HTTP calls and the SQLite file are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_support import AppServer, run_for_event, send, sync
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.store import QueueItem

import inngest_mw
from inngest_mw import Context, TriggerEvent


def test_an_event_whose_processing_raises_is_retried_and_the_others_in_its_tick_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, tick=0.02) as engine:
        client = inngest_mw.Inngest(
            app_id="group",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="echo", trigger=TriggerEvent(event="group/*"))
        async def echo(ctx: Context) -> Any:
            return await ctx.step.run("echo", lambda: ctx.event.data["n"])

        machine = engine.engine.machine
        process_event = machine.process_event
        failed: list[int] = []

        def flaky(item: QueueItem) -> None:
            event = machine.store.get_event(str(item.payload.get("event_id")))
            # Raises in the grouped tick and again when redone alone; the retry 5 s later succeeds.
            if event is not None and event["name"] == "group/boom" and len(failed) < 2:
                failed.append(item.id)
                raise RuntimeError("injected fault")
            process_event(item)

        machine.process_event = flaky  # type: ignore[method-assign]
        with AppServer(serve(client, [echo])) as app:
            sync(app)
            events = [{"name": "group/ok", "data": {"n": n}} for n in range(5)]
            ids = send(
                engine.url, [*events[:2], {"name": "group/boom", "data": {"n": 9}}, *events[2:]]
            )
            runs = [run_for_event(engine.url, event_id) for event_id in ids]
    assert [(r["status"], r["output"]) for r in runs] == [
        ("Completed", 0),
        ("Completed", 1),
        ("Completed", 9),
        ("Completed", 2),
        ("Completed", 3),
        ("Completed", 4),
    ]
    assert len(failed) == 2
    assert "redoing it one item at a time" in caplog.text
    assert f"queue item {failed[0]} (event) failed; retrying in 5s" in caplog.text
