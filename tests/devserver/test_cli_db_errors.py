"""An unusable ``--db`` stops ``inngest-mw dev`` and ``inngest-mw demo`` with one line, no traceback.

Each case runs the real CLI in a child process and checks the exact sentence: the file, what is
wrong with it, what to do.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from inngest_mw_dev.migrations import SCHEMA_VERSION
from inngest_mw_dev.store import Store

_PICK = "pick another --db"
_DAMAGED = "restore it from a backup, or move it away to start with an empty database, or pick another --db"


def _real_database(path: Path) -> None:
    """A database of several pages, checkpointed so the main file holds everything."""
    store = Store(path)
    with store.tx():
        events = [{"id": f"e{i}", "name": "x", "data": {"pad": "y" * 200}} for i in range(500)]
        store.insert_events(events, 1.0)
    store.write("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


def _text(path: Path) -> Path:
    path.write_text("just some notes\n")
    return path


def _random(path: Path) -> Path:
    path.write_bytes(bytes(range(256)) * 40)
    return path


def _truncated(path: Path) -> Path:
    _real_database(path)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2 + 100)  # mid-page
    return path


def _under_a_file(path: Path) -> Path:
    path.write_text("a file, not a directory")
    return path / "sub" / "engine.db"


def _newer(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    return path


_CASES: dict[str, tuple[Callable[[Path], Path], Callable[[Path], str]]] = {
    "directory": (
        _directory,
        lambda p: f"it is a directory; pass a file path such as {p}/engine.db",
    ),
    "text file": (
        _text,
        lambda p: (
            f"the file is not an SQLite database; {_PICK}, or move the file"
            " away to start with an empty database"
        ),
    ),
    "random bytes": (
        _random,
        lambda p: (
            f"the file is not an SQLite database; {_PICK}, or move the"
            " file away to start with an empty database"
        ),
    ),
    "truncated database": (
        _truncated,
        lambda p: f"the file is damaged (it was cut short); {_DAMAGED}",
    ),
    "directory that cannot be created": (
        _under_a_file,
        lambda p: f"its directory {p.parent} cannot be created (Not a directory); {_PICK}",
    ),
    "newer schema": (
        _newer,
        lambda p: (
            f"it was written by a newer inngest-mw (schema version"
            f" {SCHEMA_VERSION + 1}; this engine knows versions up to {SCHEMA_VERSION});"
            f" upgrade inngest-mw or {_PICK}"
        ),
    ),
}
_COMMANDS = {"dev": ["dev", "--port", "0", "--connect-port", "0"], "demo": ["demo"]}


def _cli(args: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(
        [sys.executable, "-m", "inngest_mw_dev", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **options,
    )
    return done


@pytest.mark.parametrize("command", sorted(_COMMANDS))
@pytest.mark.parametrize("case", list(_CASES))
def test_an_unusable_db_is_one_line_saying_what_to_do(
    tmp_path: Path, case: str, command: str
) -> None:
    make, remedy = _CASES[case]
    db = make(tmp_path / "engine.db")
    done = _cli([*_COMMANDS[command], "--db", str(db)])
    assert done.returncode == 1
    assert done.stderr == f"error: cannot use {db} as the engine database: {remedy(db)}\n"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_database_with_a_garbled_page_is_one_line_saying_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    _real_database(db)
    with db.open("r+b") as handle:  # page 3 of 4,096 bytes: a b-tree page of the events table
        handle.seek(2 * 4096)
        handle.write(bytes(range(256)) * 16)
    done = _cli(["dev", "--port", "0", "--connect-port", "0", "--db", str(db)])
    assert done.returncode == 1
    head = f"error: cannot use {db} as the engine database: the file is damaged ("
    assert done.stderr.startswith(head), done.stderr
    assert done.stderr.endswith(f"); {_DAMAGED}\n")
    assert done.stderr.count("\n") == 1
    assert "cut short" not in done.stderr  # found by the page check, not the size check
    assert "Traceback" not in done.stdout + done.stderr


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's own temporary directories are private)."""
    path = Path(tempfile.mkdtemp(prefix="inngest-mw-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_a_read_only_db_is_one_line_saying_what_to_do(shared_dir: Path, command: str) -> None:
    db = shared_dir / "engine.db"
    _real_database(db)
    db.chmod(0o444)
    # root may write any file: run the CLI as an unprivileged user then, so read-only means so.
    as_user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    done = _cli([*_COMMANDS[command], "--db", str(db)], cwd=shared_dir, **as_user)
    assert done.returncode == 1
    assert done.stderr == (
        f"error: cannot use {db} as the engine database: the file is read-only; make it writable"
        f" or {_PICK}\n"
    )
    assert "Traceback" not in done.stdout + done.stderr
