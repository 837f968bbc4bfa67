"""The enums are the strings stored in SQLite: old rows and new rows read back alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from inngest_mw_dev.kinds import Opcode, QueueKind, RunStatus
from inngest_mw_dev.store import Store


def test_an_enum_is_stored_as_its_plain_string_and_a_plain_string_reads_back_equal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "e.db"
    store = Store(path)
    with store.tx():
        new = store.enqueue(QueueKind.WAIT_TIMEOUT, 1.0, run_id="r", step="s")
        old = store.enqueue("wait_timeout", 1.0, run_id="r", step="t")
    store.close()
    raw = sqlite3.connect(path)
    kinds = raw.execute("SELECT kind, typeof(kind) FROM queue ORDER BY id").fetchall()
    raw.close()
    assert kinds == [("wait_timeout", "text"), ("wait_timeout", "text")]
    store = Store(path)
    items = store.lease_due(1.0, 30, 10)
    store.close()
    assert [(i.id, i.kind) for i in items] == [(new, QueueKind.WAIT_TIMEOUT), (old, "wait_timeout")]
    assert all(i.kind == QueueKind.WAIT_TIMEOUT for i in items)


def test_the_values_are_the_protocol_and_api_spellings() -> None:
    assert [s.value for s in RunStatus] == [
        "Running",
        "Completed",
        "Failed",
        "Cancelled",
        "Skipped",
    ]
    assert Opcode("StepRun") is Opcode.STEP_RUN
    assert Opcode("None") is Opcode.NONE
