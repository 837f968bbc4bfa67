"""WAL checkpoints on a thread of their own, so the engine's loop never waits for them.

In WAL mode every commit appends to the ``-wal`` file; a checkpoint copies those pages back into
the database file and syncs both to disk. SQLite normally runs one inside whichever commit takes
the log past 1,000 pages, which on the engine means on its event loop: a tick that happens to
trigger it waits for the page copies and two ``fsync`` calls, and so does every event POST behind
it. The engine's connection turns that off (``wal_autocheckpoint=0``) and this thread, on its own
connection, runs a ``PASSIVE`` checkpoint every ``interval`` seconds instead: it never blocks a
writer (it copies what no reader still needs and stops), and sqlite3 releases the GIL while it
works. Durability is unchanged: a commit is in the log, which survives ``kill -9``, before the
engine acknowledges it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["Checkpointer"]

log = logging.getLogger("inngest_mw_dev")

INTERVAL_S = 0.5


class Checkpointer:
    """A daemon thread checkpointing ``path``'s WAL every ``interval`` seconds until ``stop``."""

    def __init__(self, path: Path, *, interval: float = INTERVAL_S) -> None:
        self.path, self.interval = path, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name="inngest-mw-checkpoint", daemon=True
        )
        self.checkpoints = 0
        """Checkpoints run so far (for tests)."""

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the checkpoint under way, if any, and end the thread (before the engine's own
        connection closes, so that close can remove the log)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _main(self) -> None:
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            log.warning("WAL checkpoints run on the engine's loop: %s", exc)
            return
        try:
            db.execute("PRAGMA busy_timeout=1000")
            while not self._stopping.wait(self.interval):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next round tries again
                    log.debug("WAL checkpoint skipped: %s", exc)
                else:
                    self.checkpoints += 1
        finally:
            db.close()
