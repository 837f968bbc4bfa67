"""The engine's vocabularies: queue item kinds, run and step statuses, pause kinds and opcodes.

``StrEnum`` members are ``str``s equal to the values stored in SQLite and sent on the wire, so rows
written before these enums existed (and rows read back as plain strings) compare equal to them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DISCOVERY", "Opcode", "PauseKind", "QueueKind", "RunStatus", "StepStatus"]

DISCOVERY = "step"
"""The ``stepId`` of a call that asks the function what to do next (no step targeted)."""


class QueueKind(StrEnum):
    """What a queue item does when it falls due."""

    EVENT = "event"
    """Apply a stored event: resume waits, cancel runs, start the runs it triggers."""
    CALL = "call"
    """Call the app: discovery, or one targeted step."""
    SLEEP = "sleep"
    WAIT_TIMEOUT = "wait_timeout"
    INVOKE_TIMEOUT = "invoke_timeout"
    RUN_TIMEOUT = "run_timeout"
    CRON = "cron"
    DEBOUNCE = "debounce"
    BATCH = "batch"
    GATEWAY = "gateway"
    """Make a ``step.fetch`` or ``step.ai.infer`` request for a run (see ``gateway``)."""


class RunStatus(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"


class StepStatus(StrEnum):
    PLANNED = "Planned"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SLEEPING = "Sleeping"
    WAITING = "Waiting"
    INVOKING = "Invoking"
    COMPLETED = "Completed"
    FAILED = "Failed"


class PauseKind(StrEnum):
    """What a stored pause waits for."""

    CANCEL = "cancel"
    """A ``cancelOn`` event for the run."""
    WAIT = "wait"
    """The event of a ``step.waitForEvent``."""
    INVOKE = "invoke"
    """The ``inngest/function.finished`` of an invoked run."""
    SIGNAL = "signal"
    """A ``step.waitForSignal``: resumed by ``POST /v1/signals``."""


class Opcode(StrEnum):
    """The generator opcodes an SDK reports in a 206 response."""

    STEP_RUN = "StepRun"
    STEP = "Step"
    STEP_ERROR = "StepError"
    STEP_FAILED = "StepFailed"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    RUN_COMPLETE = "RunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    NONE = "None"
