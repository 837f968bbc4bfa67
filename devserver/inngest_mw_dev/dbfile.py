"""Opening the engine's SQLite file: every way a ``--db`` can be unusable becomes one sentence.

sqlite3 reports a directory, a text file, random bytes, a truncated database or a read-only file
as ``DatabaseError``/``OperationalError`` tracebacks, often only at the first write, long after
start-up. ``open_database`` checks the path first and then the file itself (header, size and
``PRAGMA quick_check``), so a bad path stops the engine before it serves anything, with a
``UnusableDatabaseError`` whose message names the file and what to do. The CLI prints it as one line.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

__all__ = ["UnusableDatabaseError", "check_path", "open_database", "unusable"]

_MAGIC = b"SQLite format 3\x00"
_HEADER = 100


class UnusableDatabaseError(Exception):
    """The engine cannot use its database file; the message says which file and what to do."""


def unusable(path: Path, problem: str, remedy: str) -> UnusableDatabaseError:
    """The error for ``path``: what is wrong with it, then what the user can do."""
    return UnusableDatabaseError(f"cannot use {path} as the engine database: {problem}; {remedy}")


_PICK_ANOTHER = "pick another --db"
_DAMAGED_REMEDY = (
    "restore it from a backup, or move it away to start with an empty database, or " + _PICK_ANOTHER
)


def check_path(path: Path) -> None:
    """Refuse, before SQLite sees it, a path that cannot hold a writable database file.

    A missing directory is created (the default ``--db`` lives in one); one that cannot be is
    refused.
    """
    if path.is_dir():
        raise unusable(path, "it is a directory", f"pass a file path such as {path / 'engine.db'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise unusable(
            path, f"its directory {parent} cannot be created ({reason})", _PICK_ANOTHER
        ) from None
    if not path.exists():
        if not os.access(parent, os.W_OK | os.X_OK):
            raise unusable(
                path,
                f"its directory {parent} is not writable",
                f"make it writable or {_PICK_ANOTHER}",
            )
        return
    if not path.is_file():
        raise unusable(path, "it is not a regular file", _PICK_ANOTHER)
    if not os.access(path, os.R_OK | os.W_OK):
        raise unusable(path, "the file is read-only", f"make it writable or {_PICK_ANOTHER}")
    # WAL mode keeps two files beside the database (-wal, -shm): the directory must take them.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise unusable(
            path,
            f"its directory {parent} is not writable (SQLite keeps its journal there)",
            f"make it writable or {_PICK_ANOTHER}",
        )
    with path.open("rb") as handle:
        header = handle.read(_HEADER)
    if header and not header.startswith(_MAGIC):
        raise unusable(
            path,
            "the file is not an SQLite database",
            f"{_PICK_ANOTHER}, or move the file away to start with an empty database",
        )
    if header and len(header) < _HEADER:
        raise unusable(
            path, "the file is damaged (shorter than a database header)", _DAMAGED_REMEDY
        )
    if header:
        _check_size(path, header)


def _check_size(path: Path, header: bytes) -> None:
    """A file cut short (mid-page, or fewer pages than its header counts) is damaged.

    SQLite would open it and fail only when a query reaches a missing page.
    """
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65_536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid only when the "version valid for" number matches the change counter.
    counted = pages if header[92:96] == header[24:28] else 0
    size = path.stat().st_size
    if page_size < 512 or size % page_size or size < counted * page_size:
        raise unusable(path, "the file is damaged (it was cut short)", _DAMAGED_REMEDY)


def _translate(path: Path, exc: sqlite3.Error) -> UnusableDatabaseError:
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return unusable(path, "the file is read-only", f"make it writable or {_PICK_ANOTHER}")
    if "not a database" in text:
        return unusable(path, "the file is not an SQLite database", _PICK_ANOTHER)
    if "locked" in text or "busy" in text:
        return unusable(
            path,
            "another program holds a write lock on it",
            f"close that program (e.g. an sqlite3 shell) or {_PICK_ANOTHER}",
        )
    return unusable(path, f"the file is damaged ({text})", _DAMAGED_REMEDY)


def _first(problems: list[str]) -> str:
    """The first problem ``quick_check`` reports, as one line (it may report many per row)."""
    lines = [ln.strip() for p in problems for ln in str(p).splitlines()]
    return next((ln for ln in lines if ln and not ln.startswith("***")), "unreadable pages")


def open_database(path: Path) -> sqlite3.Connection:
    """A connection to ``path`` (passed by ``check_path``) in WAL mode, checked whole.

    Raises ``UnusableDatabaseError`` for every file the engine cannot work with.
    """
    memory = str(path) == ":memory:"
    try:
        # The connection is its opening thread's: the engine's lives on its store thread, and
        # sqlite3 refuses any other thread that tries to use it.
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=True)
    except sqlite3.Error as exc:
        raise _translate(path, exc) from None
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only an OS crash can lose
        # the last commits, which a single-machine dev engine accepts for speed.
        db.execute("PRAGMA synchronous=NORMAL")
        if not memory:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise unusable(path, f"the file is damaged ({_first(problems)})", _DAMAGED_REMEDY)
    except sqlite3.Error as exc:
        db.close()
        raise _translate(path, exc) from None
    except UnusableDatabaseError:
        db.close()
        raise
    return db
