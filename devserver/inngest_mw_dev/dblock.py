"""One engine per database file: an exclusive ``flock`` on ``<db>.lock``, which holds the PID.

Why a sidecar file and ``flock`` rather than SQLite's own locking:

- The kernel drops an ``flock`` when its holder exits however it exits (``kill -9`` included), so
  a crashed engine never leaves a stale lock behind, and there is no PID file to clean up.
- ``flock`` locks belong to the open file, not the process: two engines in one process (tests,
  notebooks) exclude each other too, which POSIX ``fcntl`` locks (what SQLite uses) do not.
- SQLite's ``locking_mode=EXCLUSIVE`` would also shut out every reader (an ``sqlite3`` shell, a
  backup) and answer a second engine only with "database is locked", naming nobody; the lock
  file names the holder's PID.
- The lock is on a separate file because SQLite owns the locks on the database file itself.

On Windows, which has no ``flock``, ``msvcrt.locking`` takes a byte-range lock past the PID
text, which the system also drops when its holder dies.

The lock file stays after the engine stops (removing it would race with a starting engine that
has opened it); an unlocked lock file means nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from inngest_mw_dev.dbfile import UnusableDatabaseError

__all__ = ["DatabaseInUseError", "DatabaseLock"]


class DatabaseInUseError(UnusableDatabaseError):
    """Another engine (``pid``, when it could be read) holds the database's lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"another engine (PID {pid})" if pid else "another engine"
        super().__init__(
            f"{path} is in use by {holder}; stop that engine or start this one with another --db"
        )
        self.pid = pid


class DatabaseLock:
    """The exclusive lock on one database file, taken by ``acquire`` and dropped by ``release``."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DatabaseInUseError`` at once (never waits for the holder)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UnusableDatabaseError(
                f"cannot use {self.db_path} as the engine database: its lock file {self.path}"
                f" cannot be opened ({exc.strerror}); make its directory writable or pick"
                " another --db"
            ) from None
        try:
            _lock(fd)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            raise DatabaseInUseError(self.db_path, pid) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the only descriptor drops the lock


if sys.platform == "win32":
    import msvcrt

    _LOCKED_BYTE = 1 << 20  # far past the PID text, which other engines must still read

    def _lock(fd: int) -> None:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_pid(fd: int) -> int | None:
    """The holder's PID from the lock file; None while it has not written it yet."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode("ascii", "replace").strip()
    return int(text) if text.isascii() and text.isdigit() else None
