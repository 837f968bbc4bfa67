"""The load test's senders, in a process of their own:
``python -m benchmarks.load_sender URL N S OUT``. Sends events ``load/work`` number 0 to N-1 to the
engine at ``URL`` over S concurrent HTTP senders (one ``httpx.AsyncClient``), the way separate
clients would. It prints ``ready`` once imported, waits for a line on stdin, sends, writes to the
file ``OUT`` one JSON object of each event number's event ID and the wall-clock time its send
began, then prints ``sent``. Kept out of the load test's process so that the senders' CPU and
connections are not charged to the engine and app being measured; the IDs go to a file so that
the load test reads them once the runs are done, not while it measures its peak memory.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

__all__ = ["EVENT", "main", "send_all"]

EVENT = "load/work"


async def send_all(url: str, count: int, senders: int) -> tuple[dict[int, str], dict[int, float]]:
    """Send ``count`` events over ``senders`` concurrent senders; their IDs and send times."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)
    ids: dict[int, str] = {}
    sent_at: dict[int, float] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def sender() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                event = {"name": EVENT, "data": {"n": n}}
                sent_at[n] = time.time()
                response = await http.post("/e/load-key", json=event)
                response.raise_for_status()
                [ids[n]] = response.json()["ids"]

        await asyncio.gather(*(sender() for _ in range(senders)))
    return ids, sent_at


def main(argv: Sequence[str] | None = None) -> int:
    url, count, senders, out = argv if argv is not None else sys.argv[1:]
    print("ready", flush=True)
    sys.stdin.readline()
    ids, sent_at = asyncio.run(send_all(url, int(count), int(senders)))
    Path(out).write_text(json.dumps({"ids": ids, "sent_at": sent_at}))
    print("sent", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
