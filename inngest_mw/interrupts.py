"""Control flow of the step engine: how a step call ends the handler (or a parallel branch) early.

They derive from ``BaseException`` so that ``except Exception`` in user code cannot swallow them.
"""

from __future__ import annotations

__all__ = ["PlannedInterrupt", "ResponseInterrupt", "SkipInterrupt"]


class _Interrupt(BaseException):
    """Control flow of the step engine; derives from BaseException so ``except Exception`` in user
    code cannot swallow it."""


class ResponseInterrupt(_Interrupt):
    """The request is over: respond with the ops collected on the ``StepCore``."""


class PlannedInterrupt(_Interrupt):
    """A parallel branch reached a new step; the group collects it and moves to the next branch."""


class SkipInterrupt(_Interrupt):
    """A new step that is not the targeted one; the branch stops here."""
