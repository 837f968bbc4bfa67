"""Call bodies spliced from stored JSON are the canonical bodies, byte for byte."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jcs
from hypothesis import given
from hypothesis import strategies as st
from inngest_mw_dev.canonical import canonical_text
from inngest_mw_dev.executor import MAX_REQUEST_BODY, build_body, first_event_json, splice_body
from inngest_mw_dev.store import Store
from store_rows import running_run

EVENT = {"name": "shop/é", "id": "e1", "data": {"z": 1, "a": [True, None, "\u2028"]}, "ts": 5}
MEMOS = {
    "b": {"data": {"y": "ü", "x": 2}},
    "a": {"error": {"name": "E", "message": "m"}},
    "\U0001f600": {"data": None},
    "\uffff": {"data": 3},
}


def _expected(
    steps: dict[str, Any],
    stack: list[str],
    *,
    step_id: str = 's"1',
    attempt: int = 2,
    immediate: bool = True,
    qi_id: str | None = None,
    use_api: bool = False,
) -> bytes:
    """The canonical body (JCS) of a call of run ``r`` of function ``f`` (``max_attempts`` 4)."""
    ctx: dict[str, Any] = {
        "fn_id": "f",
        "run_id": "r",
        "env": "",
        "step_id": step_id,
        "attempt": attempt,
        "max_attempts": 4,
        "stack": {"stack": stack, "current": len(stack)},
        "disable_immediate_execution": immediate,
        "use_api": use_api,
    }
    if qi_id is not None:
        ctx["qi_id"] = qi_id
    body = {
        "event": EVENT,
        "events": [] if use_api else [EVENT],
        "steps": {} if use_api else steps,
        "ctx": ctx,
        "version": 2,
        "use_api": use_api,
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


# Past the BMP, UTF-16 order differs from code-point order (a surrogate pair sorts below U+E000).
_KEYS = st.text(st.sampled_from('a"\u00e9\ue000\uffff\U0001f600'), max_size=3) | st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6
)
_MEMOS = st.dictionaries(
    _KEYS,
    st.one_of(
        st.builds(lambda v: {"data": v}, st.none() | st.integers() | st.text(max_size=4)),
        st.builds(lambda m: {"error": {"name": "E", "message": m}}, st.text(max_size=4)),
    ),
    max_size=6,
)


@given(
    memos=_MEMOS,
    ascii_keys=st.booleans(),
    step_id=_KEYS,
    attempt=st.integers(0, 5),
    immediate=st.booleans(),
    qi_id=st.none() | _KEYS,
)
def test_a_spliced_body_is_the_canonical_body_for_any_step_ids(
    memos: dict[str, Any],
    ascii_keys: bool,
    step_id: str,
    attempt: int,
    immediate: bool,
    qi_id: str | None,
) -> None:
    """Step IDs are hashes in practice (ASCII), but any text orders as JCS says (UTF-16)."""
    if ascii_keys:
        memos = {key.encode("unicode_escape").decode(): memo for key, memo in memos.items()}
    stack = list(memos)
    body = splice_body(
        events_json=canonical_text([EVENT]),
        first_event_json=canonical_text(EVENT),
        steps_json=[(step, canonical_text(memos[step])) for step in stack],
        fn_uuid="f",
        run_id="r",
        step_id=step_id,
        attempt=attempt,
        max_attempts=4,
        disable_immediate_execution=immediate,
        qi_id=qi_id,
    )
    expected = _expected(
        memos, stack, step_id=step_id, attempt=attempt, immediate=immediate, qi_id=qi_id
    )
    assert body == expected


def test_a_body_past_the_limit_leaves_events_and_steps_to_the_api() -> None:
    body = build_body(
        events=[EVENT],
        steps={"h": {"data": "x" * MAX_REQUEST_BODY}},
        stack=["h"],
        fn_uuid="f",
        run_id="r",
        step_id="step",
        attempt=0,
        max_attempts=4,
        disable_immediate_execution=False,
    )
    assert body == _expected({}, ["h"], step_id="step", attempt=0, immediate=False, use_api=True)
