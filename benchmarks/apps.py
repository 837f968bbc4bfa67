"""The function under test, in both SDKs, and the call bodies the benchmarks send it.

One function per SDK and colour runs steps ``s0, s1, ...`` in a loop. A request carrying ``n``
memoized steps therefore replays ``s0 .. s<n-1>`` from the body and executes ``s<n>`` as the one new
step, answering 206 with a single ``StepRun``. Both SDKs hash step IDs the same way (SHA-1 of the
user ID), so the very same body bytes drive both, and ``check_*`` verify they did the same work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import inngest_mw
from inngest_mw.pipeline import MiddlewareFactory

__all__ = [
    "APP_ID",
    "FN_ASYNC",
    "FN_SYNC",
    "HEADERS",
    "MAX_STEPS",
    "AsyncCall",
    "SyncCall",
    "call_body",
    "check_official",
    "check_ours",
    "new_step_id",
    "official_client",
    "official_dump",
    "official_functions",
    "official_handler",
    "official_request",
    "ours_client",
    "ours_functions",
    "ours_handler",
    "url",
]

APP_ID = "bench"
FN_ASYNC = "steps"
FN_SYNC = "steps-sync"
MAX_STEPS = 1000
EVENT = "bench/event"
HEADERS: dict[str, str] = {"content-type": "application/json"}
MEMO_PAD = "x" * 80  # each memoized value is about 100 bytes of JSON, as in the reference numbers


def _hash(step_id: str) -> str:
    return hashlib.sha1(step_id.encode()).hexdigest()


def new_step_id(memoized: int) -> str:
    """The hashed ID of the step a request with ``memoized`` memos executes."""
    return _hash(f"s{memoized}")


def call_body(memoized: int, seal: Callable[[object], object] | None = None) -> bytes:
    """A dev-mode call body (protocol v2) with ``memoized`` completed ``step.run`` results.

    ``seal`` replaces each memoized value as it goes on the wire (e.g. encrypts it).
    """
    event = {"name": EVENT, "data": {"x": 1}, "id": "01BENCHEVT", "ts": 1700000000000}
    values = ({"i": i, "pad": MEMO_PAD} for i in range(memoized))
    steps = {
        _hash(f"s{i}"): {"data": value if seal is None else seal(value)}
        for i, value in enumerate(values)
    }
    body = {
        "event": event,
        "events": [event],
        "steps": steps,
        "ctx": {
            "run_id": "01BENCHRUN",
            "attempt": 0,
            "max_attempts": 4,
            "stack": {"stack": list(steps), "current": memoized},
            "disable_immediate_execution": False,
            "use_api": False,
        },
        "version": 2,
        "use_api": False,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def url(fn_id: str) -> str:
    return f"http://bench.local/api/inngest?fnId={APP_ID}-{fn_id}&stepId=step"


def _step_value(i: int) -> dict[str, int]:
    return {"i": i}


# -- ours ---------------------------------------------------------------------------------------


def ours_client(middleware: Sequence[MiddlewareFactory] = ()) -> inngest_mw.Inngest:
    return inngest_mw.Inngest(app_id=APP_ID, is_production=False, middleware=list(middleware))


def ours_functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    trigger = inngest_mw.TriggerEvent(event=EVENT)

    async def steps(ctx: inngest_mw.Context) -> str:
        for i in range(MAX_STEPS + 1):
            await ctx.step.run(f"s{i}", _step_value, i)
        return "done"

    def steps_sync(ctx: inngest_mw.ContextSync) -> str:
        for i in range(MAX_STEPS + 1):
            ctx.step.run(f"s{i}", _step_value, i)
        return "done"

    return [
        client.create_function(fn_id=FN_ASYNC, trigger=trigger)(steps),
        client.create_function(fn_id=FN_SYNC, trigger=trigger)(steps_sync),
    ]


def ours_handler(middleware: Sequence[MiddlewareFactory] = ()) -> inngest_mw.CommHandler:
    """Our framework-agnostic handler serving both functions, with client-level ``middleware``."""
    client = ours_client(middleware)
    return inngest_mw.CommHandler(client, ours_functions(client))


def check_ours(response: inngest_mw.CommResponse, memoized: int) -> None:
    ops = response.json()
    if response.status != 206 or ops[0]["id"] != new_step_id(memoized) or len(ops) != 1:
        raise AssertionError(f"inngest-mw answered {response.status}: {response.body[:300]!r}")


# -- the official SDK (``inngest``), driven through its internal CommHandler -----------------------


def official_functions(client: Any) -> list[Any]:
    import inngest

    trigger = inngest.TriggerEvent(event=EVENT)

    async def steps(ctx: Any) -> str:
        for i in range(MAX_STEPS + 1):
            await ctx.step.run(f"s{i}", _step_value, i)
        return "done"

    def steps_sync(ctx: Any) -> str:
        for i in range(MAX_STEPS + 1):
            ctx.step.run(f"s{i}", _step_value, i)
        return "done"

    return [
        client.create_function(fn_id=FN_ASYNC, trigger=trigger)(steps),
        client.create_function(fn_id=FN_SYNC, trigger=trigger)(steps_sync),
    ]


def official_client() -> Any:
    import inngest

    return inngest.Inngest(app_id=APP_ID, is_production=False)


def official_handler() -> Any:
    """The official SDK's ``comm_lib.CommHandler`` (what its framework adapters wrap)."""
    from inngest._internal import comm_lib, server_lib

    client = official_client()
    return comm_lib.CommHandler(
        client=client,
        enable_unauthed_sync=None,
        framework=server_lib.Framework.FAST_API,
        functions=official_functions(client),
        streaming=None,
    )


def official_request(fn_id: str, body: bytes) -> Callable[[], Any]:
    """A factory of the official ``CommRequest`` for one call, built as its adapters build it."""
    from inngest._internal import comm_lib

    query = {"fnId": f"{APP_ID}-{fn_id}", "stepId": "step"}
    request_url = url(fn_id)

    def make() -> Any:
        return comm_lib.CommRequest(
            body=body,
            headers=dict(HEADERS),
            public_path=None,
            query_params=dict(query),
            raw_request=None,
            request_url=request_url,
            serve_origin=None,
            serve_path=None,
        )

    return make


def official_dump() -> Callable[[Any], str]:
    """How the official adapters turn a ``CommResponse`` body into the bytes they send."""
    from inngest._internal import transforms

    def dump(response: Any) -> str:
        out = transforms.dump_json(response.body)
        if isinstance(out, Exception):
            raise out
        return str(out)

    return dump


def check_official(status: int, body: str, memoized: int) -> None:
    ops = json.loads(body)
    if status != 206 or len(ops) != 1 or ops[0]["id"] != new_step_id(memoized):
        raise AssertionError(f"inngest answered {status}: {body[:300]}")


AsyncCall = Callable[[], Awaitable[object]]
SyncCall = Callable[[], object]
