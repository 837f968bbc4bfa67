"""Run metadata and userland spans as the engine keeps them (tables of migration 2): metadata
updates in order, each target's value their combination; spans per run. ``v1apis`` serves the
routes that write them; ``RunMetadata.inband`` records updates an app sent on a step's op."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from inngest_mw.metadata import (
    MAX_RUN_BYTES,
    MAX_UPDATE_BYTES,
    MetadataError,
    check_kind,
    check_op,
    check_values,
    combine,
    values_size,
)
from inngest_mw_dev.timing import iso_time

if TYPE_CHECKING:
    from inngest_mw_dev.executor import Op
    from inngest_mw_dev.history import History
    from inngest_mw_dev.store import RunRow, Store

__all__ = ["RunMetadata", "checked_update", "run_extras", "step_hash", "user_spans"]


def step_hash(step_id: str, index: int) -> str:
    """A step's hashed ID from its user ID and index, as SDKs and the server compute it."""
    text = step_id if index == 0 else f"{step_id}:{index}"
    return hashlib.sha1(text.encode()).hexdigest()


class RunMetadata:
    """Metadata updates, kept in order; a target's value is its updates combined."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def used(self, run_id: str) -> int:
        rows = self.store.read(
            "SELECT COALESCE(SUM(size), 0) AS n FROM run_metadata WHERE run_id = ?", run_id
        )
        return int(rows[0]["n"])

    def add(
        self, run_id: str, scope: str, target: str, updates: list[dict[str, Any]], via: str
    ) -> None:
        now = time.time()
        for update in updates:
            self.store.write(
                "INSERT INTO run_metadata (run_id, ts, scope, target, kind, op, vals, size, via)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                run_id,
                now,
                scope,
                target,
                update["kind"],
                update["op"],
                json.dumps(update["values"], separators=(",", ":")),
                values_size(update["values"]),
                via,
            )

    def inband(self, run: RunRow, op: Op, attempt: int, history: History) -> None:
        """Record the updates an app sent on ``op`` (inside the op's transaction); refused ones
        are noted in the run's history with the reason."""
        raw = op.metadata
        if not isinstance(raw, list) or not raw:
            return
        budget = MAX_RUN_BYTES - self.used(run.id)
        problems: list[str] = []
        for item in raw:
            try:
                update = checked_update(item)
                scope = item.get("scope", "step")
                if scope not in ("run", "step", "step_attempt"):
                    raise MetadataError(f"scope must be run, step or step_attempt, not {scope!r}")
                size = values_size(update["values"])
                if size > MAX_UPDATE_BYTES:
                    raise MetadataError("Metadata span exceeds maximum size of 64KB")
                if size > budget:
                    raise MetadataError("Cumulative metadata size exceeds limit")
            except MetadataError as exc:
                problems.append(str(exc))
                continue
            budget -= size
            target = {"run": "", "step": op.id}.get(scope, f"{op.id}:{attempt}")
            self.add(run.id, scope, target, [update], "op")
            history.record(
                run,
                "metadata",
                None if scope == "run" else op.label,
                name=update["kind"],
                op=update["op"],
                scope=scope,
                keys=sorted(update["values"]),
            )
        if problems:
            history.record(run, "metadata_refused", op.label, reason="; ".join(problems))

    def view(self, run_id: str, step_names: Mapping[str, str]) -> list[dict[str, Any]]:
        """Each (scope, target, kind)'s combined values, in the order first written."""
        rows = self.store.read("SELECT * FROM run_metadata WHERE run_id = ? ORDER BY id", run_id)
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            key = (row["scope"], row["target"], row["kind"])
            entry = out.get(key)
            if entry is None:
                step = row["target"].split(":")[0] if row["scope"] != "extended_trace" else ""
                entry = out[key] = {
                    "scope": row["scope"],
                    "kind": row["kind"],
                    "target": row["target"],
                    "step": step_names.get(step, step) or None,
                    "values": {},
                    "updates": 0,
                    "updated_at": None,
                }
            entry["values"] = combine(entry["values"], json.loads(row["vals"]), row["op"])
            entry["updates"] += 1
            entry["updated_at"] = iso_time(row["ts"])
        return list(out.values())


def checked_update(item: object) -> dict[str, Any]:
    """One ``{kind, op, values}`` checked as the server checks it (any kind prefix allowed)."""
    if not isinstance(item, dict):
        raise MetadataError("each metadata update must be an object")
    op = check_op(item.get("op", "merge"))
    values = item.get("values")
    if isinstance(values, dict) and values_size(values) > MAX_UPDATE_BYTES:
        return {"kind": check_kind(item.get("kind"), prefix=False), "op": op, "values": values}
    return {
        "kind": check_kind(item.get("kind"), prefix=False),
        "op": op,
        "values": check_values(values),
    }


def user_spans(store: Store, run_id: str) -> list[dict[str, Any]]:
    rows = store.read("SELECT * FROM user_spans WHERE run_id = ? ORDER BY start_ns", run_id)
    known = {row["span_id"] for row in rows}
    return [
        {
            "span_id": row["span_id"],
            "trace_id": row["trace_id"],
            "parent_id": row["parent_id"] if row["parent_id"] in known else None,
            "name": row["name"],
            "kind": row["kind"],
            "status": row["status"],
            "step": row["step"],
            "scope": row["scope"],
            "service": row["service"],
            "start": iso_time(row["start_ns"] / 1e9),
            "duration_ms": round((row["end_ns"] - row["start_ns"]) / 1e6, 3),
            "attributes": json.loads(row["attributes"]),
        }
        for row in rows
    ]


def run_extras(store: Store, run_id: str) -> dict[str, Any]:
    """What a run's page and ``inngest-mw run`` show beside its steps: metadata and user spans."""
    names = {s.hash: s.name for s in store.steps(run_id)}
    return {
        "metadata": RunMetadata(store).view(run_id, names),
        "user_spans": user_spans(store, run_id),
    }
