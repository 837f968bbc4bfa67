"""One engine per database file: a second engine is refused, naming the holder's PID.

Real processes and a real ``kill -9``: the lock must not outlive its holder.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from engine_support import START_TIMEOUT, dev_command, engine_healthy, free_port, poll
from inngest_mw_dev import EngineThread
from inngest_mw_dev.dblock import DatabaseInUseError


@contextmanager
def engine_process(db: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``inngest-mw dev`` in a child process, yielded once ``/health`` answers."""
    port = free_port()
    proc = subprocess.Popen(
        dev_command(port, db, "--connect-port", "0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        poll(
            lambda: engine_healthy(port) or proc.poll() is not None,
            bool,
            timeout=START_TIMEOUT,
            what="engine to start",
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def _second_engine(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        dev_command(free_port(), db, "--connect-port", "0"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_engine_on_the_same_file_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    with engine_process(db) as (first, port):
        second = _second_engine(db)
        assert second.returncode == 1
        assert second.stderr == (
            f"error: {db} is in use by another engine (PID {first.pid}); stop that engine or"
            " start this one with another --db\n"
        )
        assert "Traceback" not in second.stdout + second.stderr
        assert engine_healthy(port)  # the first engine carries on


def test_the_lock_of_an_engine_killed_with_sigkill_does_not_block_the_next(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    with engine_process(db) as (first, _):
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    with engine_process(db) as (again, port):
        assert engine_healthy(port)
        assert (tmp_path / "engine.db.lock").read_text() == f"{again.pid}\n"


def test_an_engine_that_stopped_releases_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    with engine_process(db) as (first, _):
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    with engine_process(db) as (_, port):
        assert engine_healthy(port)


def test_two_engines_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    db = tmp_path / "engine.db"
    with EngineThread(db, port=0) as first:
        with pytest.raises(DatabaseInUseError) as refused:
            EngineThread(db, port=0).start()
        assert refused.value.pid == os.getpid()
        assert str(refused.value) == (
            f"{db} is in use by another engine (PID {os.getpid()}); stop that engine or start"
            " this one with another --db"
        )
        assert httpx.get(f"{first.url}/health", timeout=5).status_code == 200
    with EngineThread(db, port=0) as after:
        assert httpx.get(f"{after.url}/health", timeout=5).status_code == 200
