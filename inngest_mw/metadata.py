"""Run metadata: small JSON objects attached to a run, a step or a step attempt, shown beside it.

``ctx.metadata.update({"phase": "charging"}, kind="progress")`` merges ``phase`` into the run's
(or, inside a ``step.run`` handler, the step's) ``userland.progress`` metadata. Inside a step
handler the update travels in-band, on the step's own opcode (``metadata`` on the op, as the
server reads it), so it is recorded exactly once, with the step's result. Anywhere else, or for
another run or step (``ctx.metadata.run(other).update(...)``, ``.step("charge")``), it is a
``POST /v1/runs/{run_id}/metadata`` through the client, with retries and the signing-key
fallback. Outside a step the function body runs again on every request, so an update there is
sent again on each one: use ``merge``/``set`` (idempotent) there, or wrap it in a step.

The rules are the server's (``pkg/tracing/metadata``): a kind is at most 128 characters; a kind
given without a prefix is ``userland.<kind>``; ``inngest.`` kinds only from the server's
allowlist; ops ``merge`` (replace the given keys), ``set`` (replace all), ``delete`` (drop the given
keys), ``add`` (add numbers); one update's values at most 64 KiB (keys plus JSON values), a run's
metadata at most 1 MiB in all.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeAlias

from inngest_mw.errors import Error

if TYPE_CHECKING:
    import httpx

    from inngest_mw.client import Inngest
    from inngest_mw.pipeline import StepInfo

__all__ = [
    "INNGEST_KINDS",
    "MAX_KIND_LENGTH",
    "MAX_RUN_BYTES",
    "MAX_UPDATE_BYTES",
    "Metadata",
    "MetadataError",
    "MetadataOp",
    "MetadataSync",
    "UpdateMetadataError",
    "check_kind",
    "check_op",
    "check_values",
    "combine",
    "values_size",
]

MetadataOp: TypeAlias = Literal["merge", "set", "delete", "add"]
OPS: Final = ("merge", "set", "delete", "add")
SCOPES: Final = ("run", "step", "step_attempt", "extended_trace")
MAX_KIND_LENGTH: Final = 128
MAX_UPDATE_BYTES: Final = 64 * 1024  # MaxMetadataSpanSize
MAX_RUN_BYTES: Final = 1024 * 1024  # MaxRunMetadataSize
USERLAND: Final = "userland."
INNGEST: Final = "inngest."
INNGEST_KINDS: Final = frozenset(
    {
        "inngest.ai",
        "inngest.http",
        "inngest.http.timing",
        "inngest.response_headers",
        "inngest.warnings",
        "inngest.experiment",
        "inngest.score",
    }
)
"""The ``inngest.`` kinds the server lets an SDK write (``allowedInngestKinds``)."""


class MetadataError(Error, ValueError):
    """A metadata update that breaks a rule; the message names the field."""

    code = "invalid_metadata"
    retriable = False


class UpdateMetadataError(Error):
    """The API refused a metadata update or could not be reached."""

    code = "update_metadata_failed"


def check_kind(kind: object, *, prefix: bool = True) -> str:
    """The kind as stored: ``userland.`` added to a bare name (``prefix``), length and
    ``inngest.`` allowlist checked."""
    if not isinstance(kind, str) or not kind:
        raise MetadataError("metadata kind must be a non-empty string")
    if prefix and not kind.startswith((USERLAND, INNGEST)):
        kind = USERLAND + kind
    if len(kind) > MAX_KIND_LENGTH:
        raise MetadataError(
            f"metadata kind {kind[:40]!r}... is {len(kind)} characters; the limit is "
            f"{MAX_KIND_LENGTH}"
        )
    if kind.startswith(INNGEST) and kind not in INNGEST_KINDS:
        allowed = ", ".join(sorted(INNGEST_KINDS))
        raise MetadataError(
            f"metadata kind {kind!r} is reserved: inngest. kinds are limited to {allowed}"
        )
    return kind


def check_op(op: object) -> MetadataOp:
    if op not in OPS:
        raise MetadataError(f"metadata op must be one of {', '.join(OPS)}, not {op!r}")
    return op


def _encoded(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def values_size(values: Mapping[str, Any]) -> int:
    """The server's measure of an update: each key's length plus its JSON value's bytes."""
    return sum(len(k.encode()) + len(_encoded(v).encode()) for k, v in values.items())


def check_values(values: object, op: str = "merge") -> dict[str, Any]:
    """``values`` as a plain dict, refused when it is not a JSON object within 64 KiB."""
    if not isinstance(values, Mapping):
        raise MetadataError(f"metadata values must be an object, not {type(values).__name__}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise MetadataError(f"metadata values: key {key!r} is not a string")
        try:
            _encoded(value)
        except (TypeError, ValueError) as exc:
            raise MetadataError(f"metadata values[{key!r}] is not JSON: {exc}") from None
        if op == "add" and not _is_number(value):
            raise MetadataError(f"metadata values[{key!r}]: op 'add' needs numbers, not {value!r}")
        out[key] = value
    size = values_size(out)
    if size > MAX_UPDATE_BYTES:
        raise MetadataError(
            f"metadata values are {size:,} bytes; one update may hold at most "
            f"{MAX_UPDATE_BYTES:,} bytes (64 KiB)"
        )
    return out


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]  # int or float


def combine(current: dict[str, Any], values: Mapping[str, Any], op: str) -> dict[str, Any]:
    """``current`` after one update, as the server combines updates of one kind and target."""
    if op == "set":
        return dict(values)
    out = dict(current)
    if op == "merge":
        out.update(values)
    elif op == "delete":
        for key in values:
            out.pop(key, None)
    elif op == "add":
        for key, value in values.items():
            if not _is_number(value):
                continue
            base = out.get(key)
            out[key] = base + value if _is_number(base) else value
    return out


# -- the in-band channel: updates made inside a step handler ride on the step's op ------------


@dataclass(slots=True)
class RunningStep:
    """The step whose handler is running in this context, and the updates made in it."""

    info: StepInfo
    updates: list[dict[str, Any]] = field(default_factory=list)


RUNNING: Final[contextvars.ContextVar[RunningStep | None]] = contextvars.ContextVar(
    "inngest_mw_running_step", default=None
)

ApiSink: TypeAlias = "Callable[[str, dict[str, Any]], None]"
API_SINK: Final[contextvars.ContextVar[ApiSink | None]] = contextvars.ContextVar(
    "inngest_mw_metadata_sink", default=None
)
"""Where API updates go instead of HTTP: the testing toolkit, which plays the server, records them."""


@dataclass(frozen=True, slots=True)
class _Target:
    run_id: str | None = None  # None: the current run
    explicit_run: bool = False
    step_id: str | None = None
    step_index: int = 0
    explicit_step: bool = False
    attempt: int | None = None
    explicit_attempt: bool = False
    span_id: str | None = None


_NO_TARGET = _Target()
"""Every request's ``ctx.metadata`` starts here (frozen, so one serves them all)."""


class _MetadataBase:
    """What both faces share: the target, the checks, and where an update goes."""

    __slots__ = ("_attempt", "_client", "_run_id", "_target")

    def __init__(
        self, client: Inngest, run_id: str, attempt: int, target: _Target | None = None
    ) -> None:
        self._client, self._run_id, self._attempt = client, run_id, attempt
        self._target = target or _NO_TARGET

    def _with(self, **changes: Any) -> Self:
        fields = {name: getattr(self._target, name) for name in _Target.__dataclass_fields__}
        fields.update(changes)
        return type(self)(self._client, self._run_id, self._attempt, _Target(**fields))

    def run(self, run_id: str | None = None) -> Self:
        """Target a run: this one (``None``) or another by ID."""
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise MetadataError("metadata run(): run_id must be a non-empty string")
        return self._with(run_id=run_id, explicit_run=True)

    def step(self, step_id: str | None = None, index: int = 0) -> Self:
        """Target a step by its ID (and index, for a repeated ID); ``None``: the running one."""
        if step_id is not None and (not isinstance(step_id, str) or not step_id):
            raise MetadataError("metadata step(): step_id must be a non-empty string")
        if type(index) is not int or index < 0:
            raise MetadataError("metadata step(): index must be a non-negative integer")
        return self._with(step_id=step_id, step_index=index, explicit_step=True)

    def attempt(self, attempt: int | None = None) -> Self:
        """Target one attempt of the targeted step (``None``: the current; -1: the latest)."""
        if attempt is not None and (type(attempt) is not int or attempt < -1):
            raise MetadataError("metadata attempt(): attempt must be an integer >= -1")
        return self._with(attempt=attempt, explicit_attempt=True)

    def span(self, span_id: str) -> Self:
        """Target a span (a userland trace span) of the targeted step attempt."""
        if not isinstance(span_id, str) or not span_id:
            raise MetadataError("metadata span(): span_id must be a non-empty string")
        return self._with(span_id=span_id)

    def _plan(self, values: object, kind: object, op: object) -> tuple[str, dict[str, Any]] | None:
        """Record the update in-band and return None, or return the API request to make."""
        checked_op = check_op(op)
        update = {
            "kind": check_kind(kind),
            "op": checked_op,
            "values": check_values(values, checked_op),
        }
        t = self._target
        running = RUNNING.get()
        run_id = t.run_id or self._run_id
        if running is not None and run_id == self._run_id and t.span_id is None:
            same_step = not t.explicit_step or t.step_id in (None, running.info.id)
            same_attempt = not t.explicit_attempt or t.attempt in (None, running.info.attempt)
            if same_step and same_attempt:
                scope = "run" if t.explicit_run and not t.explicit_step else "step"
                running.updates.append({"scope": scope, **update})
                return None
        target: dict[str, Any] = {}
        if t.explicit_step or t.explicit_attempt or t.span_id is not None:
            step_id, index = t.step_id, t.step_index
            if step_id is None:
                if running is None or run_id != self._run_id:
                    raise MetadataError(
                        "metadata step() without an ID needs a running step: call it inside a "
                        "step.run handler, or name the step"
                    )
                step_id, index = running.info.id, running.info.index
            target["step_id"] = step_id
            if index:
                target["step_index"] = index
            if t.explicit_attempt or t.span_id is not None:
                attempt = t.attempt
                if attempt is None:
                    attempt = running.info.attempt if running is not None else self._attempt
                target["step_attempt"] = attempt
            if t.span_id is not None:
                target["span_id"] = t.span_id
        return run_id, {"target": target, "metadata": [update]}


class Metadata(_MetadataBase):
    """``ctx.metadata`` of an async function."""

    __slots__ = ()

    async def update(
        self, values: Mapping[str, Any], kind: str = "default", *, op: MetadataOp = "merge"
    ) -> None:
        """Attach ``values`` (kind ``userland.<kind>``) to the target; see the module doc."""
        request = self._plan(values, kind, op)
        if request is not None and not _sunk(*request):
            await self._client._update_metadata(request[0], _encoded(request[1]).encode())


class MetadataSync(_MetadataBase):
    """``ctx.metadata`` of a sync function."""

    __slots__ = ()

    def update(
        self, values: Mapping[str, Any], kind: str = "default", *, op: MetadataOp = "merge"
    ) -> None:
        """Attach ``values`` (kind ``userland.<kind>``) to the target; see the module doc."""
        request = self._plan(values, kind, op)
        if request is not None and not _sunk(*request):
            self._client._update_metadata_sync(request[0], _encoded(request[1]).encode())


def _sunk(run_id: str, body: dict[str, Any]) -> bool:
    sink = API_SINK.get()
    if sink is None:
        return False
    sink(run_id, body)
    return True


def api_request(
    run_id: str,
    values: Mapping[str, Any],
    kind: str,
    op: str,
    step_id: str | None,
    step_index: int,
) -> tuple[str, bytes]:
    """The run and body of a ``POST /v1/runs/{run_id}/metadata`` made outside any function."""
    if not isinstance(run_id, str) or not run_id:
        raise MetadataError("update_metadata: run_id must be a non-empty string")
    checked = check_op(op)
    update = {"kind": check_kind(kind), "op": checked, "values": check_values(values, checked)}
    target: dict[str, Any] = {}
    if step_id is not None:
        target["step_id"] = step_id
        if step_index:
            target["step_index"] = step_index
    return run_id, _encoded({"target": target, "metadata": [update]}).encode()


def metadata_outcome(run_id: str, response: httpx.Response) -> bool:
    """True when taken; False to try again (5xx); raises for a final refusal."""
    status = response.status_code
    if status >= 500:
        return False
    if 200 <= status < 300:
        return True
    try:
        body = response.json()
    except ValueError:
        body = None
    reason = body.get("error") if isinstance(body, dict) else None
    raise UpdateMetadataError(
        f"the API refused metadata for run {run_id} ({status}): {reason or response.text[:200]}"
    )
