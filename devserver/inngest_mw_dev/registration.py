"""Parse and validate a ``POST /fn/register`` payload into app and function definitions.

Rules follow the server's function validation (protocol notes §1b.3); every problem is reported
as ``function "<id>": <field>: <reason>`` so the SDK user sees what to fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from inngest_mw_dev.cron import parse_cron
from inngest_mw_dev.expr import ExpressionError, compile_expression
from inngest_mw_dev.flow import FlowConfig
from inngest_mw_dev.timing import parse_seconds

__all__ = [
    "DEFAULT_RETRIES",
    "CancelRule",
    "FunctionDef",
    "Registration",
    "RegistrationError",
    "Trigger",
    "event_name_matches",
    "parse_registration",
]

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_TRIGGERS = 10
MAX_CANCELS = 5
MAX_CONCURRENCY = 2
DEFAULT_CANCEL_TIMEOUT = 365 * 86_400.0
_DAY = 86_400.0


class RegistrationError(ValueError):
    """The payload or one of its functions is invalid; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class Trigger:
    event: str | None = None
    expression: str | None = None
    cron: str | None = None
    jitter: float = 0.0  # cron only: each tick is delayed by a random [0, jitter] seconds


@dataclass(frozen=True, slots=True)
class CancelRule:
    event: str
    condition: str | None
    timeout: float


@dataclass(slots=True)
class FunctionDef:
    """One function as the engine needs it; ``config`` keeps the raw JSON as registered."""

    id: str
    name: str
    triggers: list[Trigger]
    retries: int
    cancel: list[CancelRule]
    config: dict[str, object]
    flow: FlowConfig = field(default_factory=FlowConfig)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> FunctionDef:
        """Rebuild a stored (already validated) function; raises RegistrationError otherwise."""
        problems: list[str] = []
        fn = _function(dict(config), problems)
        if fn is None or problems:
            raise RegistrationError("; ".join(problems) or "invalid function config")
        return fn


@dataclass(slots=True)
class Registration:
    app_name: str
    url: str
    sdk: str
    framework: str
    functions: list[FunctionDef] = field(default_factory=list)
    checksum: str = ""


def event_name_matches(pattern: str, name: str) -> bool:
    """Exact match, or a trailing ``*`` wildcard after ``/`` or ``.`` (``app/*``, ``app/user.*``)."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def parse_registration(body: object) -> Registration:
    """Validate a sync payload (JS ``appName``/``deployType`` or Python ``appname``/``deploy_type``)."""
    if not isinstance(body, dict):
        raise RegistrationError("request body must be a JSON object")
    app_name = body.get("appName", body.get("appname"))
    if not isinstance(app_name, str) or not app_name.strip():
        raise RegistrationError("appName: must be a non-empty string")
    url = body.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "ws", "wss"):
        raise RegistrationError("url: must be an absolute http(s) URL")
    functions = body.get("functions", [])
    if not isinstance(functions, list):
        raise RegistrationError("functions: must be a list")
    problems: list[str] = []
    parsed: list[FunctionDef] = []
    seen: set[str] = set()
    for index, raw in enumerate(functions):
        if not isinstance(raw, dict):
            problems.append(f"functions[{index}]: must be an object")
            continue
        fn = _function(raw, problems)
        if fn is None:
            continue
        if fn.id in seen:
            problems.append(f'function "{fn.id}": id: duplicate function id in app')
        seen.add(fn.id)
        parsed.append(fn)
    if problems:
        raise RegistrationError("; ".join(problems))
    checksum_source = {k: v for k, v in body.items() if k != "featureObservations"}
    checksum = hashlib.sha256(
        json.dumps(checksum_source, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    sdk, framework = body.get("sdk", ""), body.get("framework", "")
    return Registration(
        app_name=app_name,
        url=url,
        sdk=sdk if isinstance(sdk, str) else "",
        framework=framework if isinstance(framework, str) else "",
        functions=parsed,
        checksum=checksum,
    )


class _Problems:
    """Collects problems for one function, prefixing each with the function and field."""

    def __init__(self, fn_id: str, sink: list[str]) -> None:
        self.fn_id, self.sink = fn_id, sink

    def add(self, where: str, reason: str) -> None:
        self.sink.append(f'function "{self.fn_id}": {where}: {reason}')

    def expression(self, where: str, source: object, *, restrictive: bool = False) -> None:
        if source is None:
            return
        if not isinstance(source, str):
            self.add(where, "must be a string expression")
            return
        try:
            compile_expression(source, restrictive=restrictive)
        except ExpressionError as exc:
            self.add(where, f"invalid expression: {exc}")

    def duration(self, where: str, value: object, *, required: bool = False) -> float | None:
        if value is None or value == "":
            if required:
                self.add(where, "is required")
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, str):
            self.add(where, "must be a duration string like '30s'")
            return None
        try:
            return parse_seconds(value)
        except ValueError as exc:
            self.add(where, str(exc))
            return None


def _function(raw: dict[str, object], sink: list[str]) -> FunctionDef | None:
    fn_id = raw.get("id")
    if not isinstance(fn_id, str) or not fn_id.strip():
        sink.append("functions: every function needs a non-empty string id")
        return None
    p = _Problems(fn_id, sink)
    name = raw.get("name") or fn_id
    if not isinstance(name, str):
        p.add("name", "must be a string")
        name = fn_id
    triggers = _triggers(raw.get("triggers"), p)
    retries = _retries(raw, p)
    cancel = _cancel(raw.get("cancel"), p)
    _flow_control(raw, p)
    return FunctionDef(
        id=fn_id,
        name=name,
        triggers=triggers,
        retries=retries,
        cancel=cancel,
        config=raw,
        flow=FlowConfig.from_config(raw),
    )


def _triggers(value: object, p: _Problems) -> list[Trigger]:
    if not isinstance(value, list) or not value:
        p.add("triggers", "must be a non-empty list")
        return []
    if len(value) > MAX_TRIGGERS:
        p.add("triggers", f"at most {MAX_TRIGGERS} triggers are allowed, got {len(value)}")
    out: list[Trigger] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        where = f"triggers[{index}]"
        if not isinstance(item, dict):
            p.add(where, "must be an object")
            continue
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            p.add(where, "duplicate trigger")
        seen.add(key)
        event, cron = item.get("event"), item.get("cron")
        if (event is None) == (cron is None):
            p.add(where, "must have exactly one of 'event' or 'cron'")
            continue
        if event is not None:
            if not isinstance(event, str) or not event.strip():
                p.add(f"{where}.event", "must be a non-empty string")
                continue
            if len(event) > 255:
                p.add(f"{where}.event", "event name is longer than 255 characters")
            if "*" in event[:-1] or (event.endswith("*") and event[-2:-1] not in ("/", ".")):
                p.add(f"{where}.event", "a wildcard '*' may only end the name after '/' or '.'")
            expression = item.get("expression")
            p.expression(f"{where}.expression", expression)
            out.append(
                Trigger(event=event, expression=expression if isinstance(expression, str) else None)
            )
            continue
        if not isinstance(cron, str):
            p.add(f"{where}.cron", "must be a string")
            continue
        try:
            parse_cron(cron)
        except ValueError as exc:
            p.add(f"{where}.cron", str(exc))
            continue
        jitter = p.duration(f"{where}.jitter", item.get("jitter"))
        if jitter is not None and jitter != 0 and not 1 <= jitter <= 300:
            p.add(f"{where}.jitter", "must be 0 or between 1s and 5m")
        out.append(Trigger(cron=cron, jitter=jitter or 0.0))
    return out


def _retries(raw: Mapping[str, object], p: _Problems) -> int:
    steps = raw.get("steps")
    attempts: object = None
    if isinstance(steps, dict):
        for step_id, step in steps.items():
            if not isinstance(step, dict):
                p.add(f"steps.{step_id}", "must be an object")
                continue
            runtime = step.get("runtime")
            if isinstance(runtime, dict) and isinstance(runtime.get("url"), str):
                scheme = urlsplit(str(runtime["url"])).scheme
                if scheme not in ("http", "https", "ws", "wss"):
                    p.add(f"steps.{step_id}.runtime.url", "scheme must be http, https, ws or wss")
            retries = step.get("retries")
            if isinstance(retries, dict) and "attempts" in retries:
                attempts = retries["attempts"]
    elif steps is not None:
        p.add("steps", "must be an object")
    if attempts is None:
        attempts = raw.get("retries")
    if attempts is None:
        return DEFAULT_RETRIES
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        p.add("steps.step.retries.attempts", "must be a non-negative integer")
        return DEFAULT_RETRIES
    return min(attempts, MAX_RETRIES)


def _cancel(value: object, p: _Problems) -> list[CancelRule]:
    if value is None:
        return []
    if not isinstance(value, list):
        p.add("cancel", "must be a list")
        return []
    if len(value) > MAX_CANCELS:
        p.add("cancel", f"at most {MAX_CANCELS} cancellation rules are allowed, got {len(value)}")
    rules: list[CancelRule] = []
    for index, item in enumerate(value):
        where = f"cancel[{index}]"
        if not isinstance(item, dict):
            p.add(where, "must be an object")
            continue
        event = item.get("event")
        if not isinstance(event, str) or not event.strip():
            p.add(f"{where}.event", "must be a non-empty string")
            continue
        condition = item.get("if")
        p.expression(f"{where}.if", condition, restrictive=True)
        timeout = p.duration(f"{where}.timeout", item.get("timeout"))
        rules.append(
            CancelRule(
                event=event,
                condition=condition if isinstance(condition, str) and condition else None,
                timeout=timeout if timeout else DEFAULT_CANCEL_TIMEOUT,
            )
        )
    return rules


def _concurrency(value: object, p: _Problems) -> None:
    limits: list[object]
    if value is None:
        return
    if isinstance(value, dict) and ("fn" in value or "step" in value):
        limits = []
        for scope in ("fn", "step"):
            group = value.get(scope) or []
            limits.extend(group if isinstance(group, list) else [group])
    elif isinstance(value, list):
        limits = value
    else:
        limits = [value]
    if len(limits) > MAX_CONCURRENCY:
        p.add("concurrency", f"at most {MAX_CONCURRENCY} limits are allowed, got {len(limits)}")
    fn_level = 0
    for index, item in enumerate(limits):
        where = f"concurrency[{index}]"
        if isinstance(item, int) and not isinstance(item, bool):
            item = {"limit": item}
        if not isinstance(item, dict):
            p.add(where, "must be a number or an object")
            continue
        limit = item.get("limit")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            p.add(f"{where}.limit", "must be a non-negative integer")
        scope = item.get("scope") or "fn"
        if scope not in ("fn", "env", "account"):
            p.add(f"{where}.scope", "must be one of 'fn', 'env', 'account'")
        if scope in ("env", "account") and not item.get("key"):
            p.add(f"{where}.key", f"is required for scope '{scope}'")
        if scope == "fn" and not item.get("key"):
            fn_level += 1
        p.expression(f"{where}.key", item.get("key"))
    if fn_level > 1:
        p.add("concurrency", "only one function-level limit without a key is allowed")


def _flow_control(raw: Mapping[str, object], p: _Problems) -> None:
    _concurrency(raw.get("concurrency"), p)
    p.expression("idempotency", raw.get("idempotency"))

    batch = raw.get("batchEvents")
    if batch is not None:
        if not isinstance(batch, dict):
            p.add("batchEvents", "must be an object")
        else:
            size = batch.get("maxSize")
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                p.add("batchEvents.maxSize", "must be a positive integer")
            elif size > 1:
                timeout = p.duration("batchEvents.timeout", batch.get("timeout"), required=True)
                if timeout is not None and timeout < 1:
                    p.add("batchEvents.timeout", "must be at least 1s")
                for other in ("cancel", "debounce", "singleton"):
                    if raw.get(other):
                        p.add("batchEvents", f"cannot be combined with {other}")
                priority = raw.get("priority")
                if isinstance(priority, dict) and priority.get("run"):
                    p.add("batchEvents", "cannot be combined with priority.run")
            p.expression("batchEvents.key", batch.get("key"))
            p.expression("batchEvents.if", batch.get("if"))

    debounce = raw.get("debounce")
    if debounce is not None:
        if not isinstance(debounce, dict):
            p.add("debounce", "must be an object")
        else:
            period = p.duration("debounce.period", debounce.get("period"), required=True)
            if period is not None and not 1 <= period <= 7 * _DAY:
                p.add("debounce.period", "must be between 1s and 7d")
            p.duration("debounce.timeout", debounce.get("timeout"))
            p.expression("debounce.key", debounce.get("key"))

    rate = raw.get("rateLimit")
    if rate is not None:
        if not isinstance(rate, dict):
            p.add("rateLimit", "must be an object")
        else:
            limit = rate.get("limit")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                p.add("rateLimit.limit", "must be a positive integer")
            period = p.duration("rateLimit.period", rate.get("period"), required=True)
            if period is not None and not 0 < period <= _DAY:
                p.add("rateLimit.period", "must be greater than 0 and at most 24h")
            p.expression("rateLimit.key", rate.get("key"))

    throttle = raw.get("throttle")
    if throttle is not None:
        if not isinstance(throttle, dict):
            p.add("throttle", "must be an object")
        else:
            period = p.duration("throttle.period", throttle.get("period"), required=True)
            if period is not None and period <= 0:
                p.add("throttle.period", "must be greater than 0")
            for key in ("limit", "burst"):
                value = throttle.get(key)
                if value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 0
                ):
                    p.add(f"throttle.{key}", "must be a non-negative integer")

    priority = raw.get("priority")
    if priority is not None:
        if not isinstance(priority, dict):
            p.add("priority", "must be an object")
        else:
            p.expression("priority.run", priority.get("run"))

    singleton = raw.get("singleton")
    if singleton is not None:
        if not isinstance(singleton, dict):
            p.add("singleton", "must be an object")
        elif singleton.get("mode") not in ("skip", "cancel"):
            p.add("singleton.mode", "must be 'skip' or 'cancel'")
