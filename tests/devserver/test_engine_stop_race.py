"""Stopping the engine as its scheduler is woken still stops it.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result instead of raising when the task
is cancelled in the same loop turn as that result arrives, so a scheduler parked in
``wait_for(wake.wait(), tick)`` swallowed ``stop()``'s cancellation whenever an event had just
woken it (an event accepted right before the engine stopped), and ``stop()`` waited for it
forever. The engine here has a scheduler tick of an hour, so its scheduler is parked on the wake
event when the test wakes it and stops the engine in one step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from inngest_mw_dev import Engine

HOUR = 3600.0


async def _parked(engine: Engine) -> None:
    """Return once the scheduler has finished its first tick and is waiting to be woken."""
    await engine.db(lambda: None)  # the store thread is FIFO: the first tick's job ran before
    for _ in range(10):  # its answer, the scheduler's next wait and that wait's waiter run
        await asyncio.sleep(0)


def test_stop_right_after_a_wake_stops_the_engine(tmp_path: Path) -> None:
    async def scenario(path: Path) -> None:
        engine = Engine(path, port=0, tick=HOUR)
        await engine.start()
        await _parked(engine)
        engine._wake.set()  # as an accepted event does, in the same loop turn as the stop
        async with asyncio.timeout(20):
            await engine.stop()

    for attempt in range(2):
        asyncio.run(scenario(tmp_path / f"e{attempt}.db"))
