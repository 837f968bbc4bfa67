"""What kind of step a step call is (``StepInfo.kind``), and which kinds run in the app."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["RUNS_IN_APP", "StepKind"]


class StepKind(enum.StrEnum):
    """The kind of a step call, as step hooks see it in ``StepInfo.kind``.

    Values are plain strings, so ``info.kind == "run"`` keeps working.
    """

    RUN = "run"
    SEND_EVENT = "send_event"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    INVOKE = "invoke"
    FETCH = "fetch"
    """``step.fetch``: an HTTP request the server makes."""
    AI_INFER = "ai.infer"
    """``step.ai.infer``: a model request the server makes."""
    AI_WRAP = "ai.wrap"
    """``step.ai.wrap``: a ``run`` step recorded as an AI call."""
    WAIT_FOR_SIGNAL = "wait_for_signal"
    REALTIME_PUBLISH = "realtime.publish"
    """``step.realtime.publish``: a message published once per run, by the app."""


RUNS_IN_APP: Final = frozenset(
    {StepKind.RUN, StepKind.SEND_EVENT, StepKind.AI_WRAP, StepKind.REALTIME_PUBLISH}
)
"""Kinds whose work the app does itself (a handler runs in the request); the others are reported
to the server with an opcode of their own and resolved there."""
