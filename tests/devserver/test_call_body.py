"""Call bodies spliced from stored JSON are the canonical bodies, byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jcs
from inngest_mw_dev.executor import build_body, first_event_json, splice_body
from inngest_mw_dev.store import Store
from store_rows import running_run

EVENT = {"name": "shop/é", "id": "e1", "data": {"z": 1, "a": [True, None, "\u2028"]}, "ts": 5}
MEMOS = {
    "b": {"data": {"y": "ü", "x": 2}},
    "a": {"error": {"name": "E", "message": "m"}},
    "\U0001f600": {"data": None},
    "\uffff": {"data": 3},
}


def _expected(steps: dict[str, Any], stack: list[str]) -> bytes:
    body = {
        "event": EVENT,
        "events": [EVENT],
        "steps": steps,
        "ctx": {
            "fn_id": "f",
            "run_id": "r",
            "env": "",
            "step_id": 's"1',
            "attempt": 2,
            "max_attempts": 4,
            "stack": {"stack": stack, "current": len(stack)},
            "disable_immediate_execution": True,
            "use_api": False,
        },
        "version": 2,
        "use_api": False,
    }
    encoded: bytes = jcs.canonicalize(body)
    return encoded


def test_a_body_spliced_from_the_store_equals_the_canonical_encoding(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.db")
    run = running_run("r", events=[EVENT], function_id="f", app_id="a", max_attempts=4)
    with store.tx():
        store.insert_run(run)
        for step, memo in MEMOS.items():
            store.memoize_step("r", step, memo, name=step, op="StepRun", status="Completed", now=1)
    stored = store.get_run("r")
    assert stored is not None
    body = splice_body(
        events_json=stored.events_json,
        first_event_json=first_event_json(stored.events_json, stored.events),
        steps_json=store.memo_texts("r"),
        fn_uuid="f",
        run_id="r",
        step_id='s"1',
        attempt=2,
        max_attempts=4,
        disable_immediate_execution=True,
    )
    assert body == _expected(MEMOS, list(MEMOS))
    decoded = build_body(
        events=[EVENT],
        steps=MEMOS,
        stack=list(MEMOS),
        fn_uuid="f",
        run_id="r",
        step_id='s"1',
        attempt=2,
        max_attempts=4,
        disable_immediate_execution=True,
    )
    assert decoded == body
    store.close()


def test_a_memo_is_saved_once_and_a_reused_item_starts_afresh(tmp_path: Path) -> None:
    store = Store(tmp_path / "e.db")
    with store.tx():
        assert store.memoize_step(
            "r", "h", {"data": 1}, name="h", op="StepRun", status="Completed", now=1
        )
        assert not store.memoize_step(
            "r", "h", {"data": 2}, name="h", op="StepRun", status="Completed", now=2
        )
        item_id = store.enqueue(
            "call", 1.0, run_id="r", step="step", attempt=3, payload={"held": True}
        )
    [leased] = store.lease_due(1.0, 30, 10)
    with store.tx():
        store.requeue(leased.id, 5.0)
    assert store.memo_texts("r") == [("h", '{"data":1}')]
    item = store.get_item(item_id)
    assert item is not None
    assert (item.run_at, item.attempt, item.payload) == (5.0, 0, {})
    assert [i.id for i in store.lease_due(5.0, 30, 10)] == [item_id]
    store.close()
