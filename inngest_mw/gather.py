"""``asyncio.gather`` of step calls: the branches' new steps are planned together, deterministically.

Only async functions have branches: a step call made from a task other than the handler's (and
outside ``group.parallel``) is a gathered branch. Each such call passes a ``Gate`` while it runs
towards its decision (a wrap hook may take it through a worker thread and back). The first branch
to reach a new step waits until no gated call is still on its way and the loop has turned a few
times without news, then speaks for all: it runs its step alone if it is the only one, or reports
every branch's step, in the order the branches first called a step, as ``group.parallel`` would.
The other branches park; when the handler's task ends, every branch task still alive is cancelled
and collected, so a request leaves no task behind.

A branch that awaits other I/O before its first step call is invisible until it calls it; if the
response is decided before then, its step is planned by a later request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, NoReturn

from inngest_mw.interrupts import ResponseInterrupt
from inngest_mw.memo import Decision

if TYPE_CHECKING:
    from inngest_mw.pipeline import StepInfo
    from inngest_mw.wire import Op

__all__ = ["Gate", "GatherState", "release"]

_QUIET_TURNS = 8
"""Loop turns without a new branch step call before the first branch decides for all."""


class GatherState:
    """One request's gathered branches: their order, the calls on their way, the parked ones."""

    __slots__ = ("branches", "found", "idle", "inflight", "parked", "progress")

    def __init__(self) -> None:
        self.branches: dict[asyncio.Task[Any], int] = {}
        """Every branch task seen, with the order it first called a step in."""
        self.found: list[tuple[int, int, StepInfo, Decision]] = []
        self.inflight = 0
        self.progress = 0
        self.idle: asyncio.Future[None] | None = None
        self.parked: list[asyncio.Task[Any]] = []

    def order_of(self, task: asyncio.Task[Any]) -> int:
        order = self.branches.get(task)
        if order is None:
            order = self.branches[task] = len(self.branches)
        return order

    async def settle(self) -> None:
        """Return once no gated call is on its way and ``_QUIET_TURNS`` turns brought nothing."""
        quiet, seen = 0, self.progress
        while quiet < _QUIET_TURNS:
            if self.inflight:
                self.idle = asyncio.get_running_loop().create_future()
                await self.idle
            await asyncio.sleep(0)
            if self.inflight or self.progress != seen:
                quiet, seen = 0, self.progress
            else:
                quiet += 1


class Gate:
    """One branch step call on its way to its decision; counted until it closes."""

    __slots__ = ("open", "order", "state", "task")

    def __init__(self, state: GatherState, task: asyncio.Task[Any]) -> None:
        self.state = state
        self.task = task
        self.order = state.order_of(task)
        self.open = True
        state.inflight += 1
        state.progress += 1

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        state = self.state
        state.inflight -= 1
        state.progress += 1
        if not state.inflight and state.idle is not None and not state.idle.done():
            state.idle.set_result(None)

    async def decide(
        self,
        info: StepInfo,
        decision: Decision,
        targeted: bool,
        announce: Any,
        add: Any,
    ) -> Decision:
        """The decision for this branch's new step (``announce(info, decision) -> Op``)."""
        state = self.state
        state.parked.append(_current())
        state.found.append((self.order, len(state.found), info, decision))
        first = len(state.found) == 1
        self.close()
        if decision is Decision.SKIP or (not targeted and not first):
            await _park()
        if targeted:
            return decision
        await state.settle()
        if len(state.found) == 1:
            return decision
        for _, _, other, other_decision in sorted(state.found, key=lambda f: (f[0], f[1])):
            op: Op = announce(other, other_decision)
            add(op)
        raise ResponseInterrupt()


def _current() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def _park() -> NoReturn:
    """Wait until the request ends (the handler's task cancels the branches)."""
    await asyncio.get_running_loop().create_future()
    raise AssertionError("a parked step branch was resumed")


async def release(state: GatherState) -> None:
    """Cancel and collect every branch task still alive when the handler's task ends."""
    current = asyncio.current_task()
    tasks = [*state.parked, *state.branches]
    state.parked, state.branches = [], {}
    alive = [task for task in dict.fromkeys(tasks) if task is not current and not task.done()]
    for task in alive:
        task.cancel()
    if alive:
        await asyncio.gather(*alive, return_exceptions=True)
