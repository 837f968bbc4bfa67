#!/usr/bin/env python3
"""One entry point for a fresh checkout: ``python3 run.py demo | test | lint | docs | bench | lock``.

Creates ``.venv`` on first use and installs the workspace (re-installs when requirements change),
so the only prerequisites are Python 3.11+ and pip; ``test`` also installs Debian's ``chromium``
package (apt-get, as root) for the web UI's browser tests when it is missing. Third-party versions
are pinned by ``requirements-lock.txt``; ``lock`` regenerates it after a requirement changes.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("INNGEST_MW_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements-dev.txt"
BENCH_REQUIREMENTS = ROOT / "benchmarks" / "requirements.txt"
LOCK = ROOT / "requirements-lock.txt"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
COMMANDS = ("demo", "test", "lint", "docs", "bench", "lock")
CHROMIUM = "/usr/bin/chromium"  # the browser tests' browser: Debian's package, never a download


def ensure_env() -> None:
    if not PYTHON.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + _read(LOCK)).hexdigest()
    for pyproject in _pyprojects():
        digest += hashlib.sha256(pyproject.read_bytes()).hexdigest()
    stamp = VENV / ".inngest-mw-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("installing inngest-mw and its test tools (a few minutes the first time) ...", flush=True)
    if code := pip_install("-r", str(REQUIREMENTS)):
        raise SystemExit(code)
    stamp.write_text(digest)


class PipProgress:
    """Reads pip's output and shows one line per phase, with a running count of packages.

    pip's own log is hundreds of lines and ``--quiet`` is minutes of silence; this is neither. On
    a terminal the count updates in place; in a log it is repeated every ``every`` packages.
    """

    # pip's lines that each add one package to a phase's count (pip interleaves "Collecting" and
    # "Downloading", so downloads are part of resolving, not a phase of their own)
    COUNTED = (
        ("Obtaining ", "preparing the workspace's packages"),
        ("Processing ", "preparing local packages"),
        ("Collecting ", "resolving and downloading requirements"),
        ("Requirement already satisfied", "resolving and downloading requirements"),
    )
    # pip's lines that name every package of a phase at once: one line each
    LISTED = (
        ("Building wheels for collected packages:", "building {} wheel(s) ..."),
        ("Installing collected packages:", "installing {} package(s) ..."),
    )

    def __init__(self, out: TextIO, *, every: int = 25) -> None:
        self.out, self.every = out, every
        self.tty = out.isatty()
        self.phase: str | None = None
        self.counts: dict[str, int] = {}
        self.started = time.monotonic()

    def feed(self, line: str) -> None:
        text = line.strip()
        if text.startswith("Successfully installed"):
            self._line(f"installed {len(text.split()) - 2} package(s) in {self._elapsed()}")
            return
        for prefix, message in self.LISTED:
            if text.startswith(prefix):
                self._line(message.format(len(text.removeprefix(prefix).split(","))))
                return
        phase = next((name for prefix, name in self.COUNTED if text.startswith(prefix)), None)
        if phase is None:
            return
        # pip may come back to a phase (an editable's dependencies): its count carries on.
        count = self.counts[phase] = self.counts.get(phase, 0) + 1
        if phase != self.phase and self.tty and self.phase:
            self.out.write("\n")  # keep the finished phase's count on screen
        self.phase = phase
        if self.tty:
            self.out.write(f"\r  pip: {phase}: {count} ...")
            self.out.flush()
        elif count == 1 or count % self.every == 0:
            self.out.write(f"  pip: {phase}: {count} ...\n")
            self.out.flush()

    def _line(self, message: str) -> None:
        if self.tty and self.phase:
            self.out.write("\n")
        self.phase = None
        self.out.write(f"  pip: {message}\n")
        self.out.flush()

    def _elapsed(self) -> str:
        seconds = round(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def pip_install(*args: str, python: Path | None = None, out: TextIO | None = None) -> int:
    """``pip install`` with the lock as constraints, its progress shown by ``PipProgress``.

    On failure pip's last lines are printed, since they say what went wrong.
    """
    command = [
        str(python or PYTHON),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        *args,
    ]
    out = out or sys.stdout
    progress = PipProgress(out)
    tail: collections.deque[str] = collections.deque(maxlen=30)
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=_locked_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line)
            progress.feed(line)
    if process.returncode:
        out.write("".join(tail))
        out.write(f"error: pip install failed (exit {process.returncode}); see its output above\n")
    return process.returncode


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when it is missing (we run as root)."""
    if Path(CHROMIUM).exists():
        return
    print(f"installing chromium for the browser tests ({CHROMIUM} is missing) ...", flush=True)
    apt = shutil.which("apt-get")
    if apt is None:
        raise SystemExit(
            f"error: {CHROMIUM} is missing and there is no apt-get to install it;"
            " install Chromium there, then run the tests again"
        )
    for step in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        if subprocess.run(step, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}).returncode:
            raise SystemExit(
                f"error: `{' '.join(step)}` failed, so the browser tests cannot run;"
                " install the chromium package (as root), then run them again"
            )
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"error: the chromium package installed no {CHROMIUM}")


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def _locked_env() -> dict[str, str]:
    # As an environment variable the lock also pins what pip builds the workspace with (hatchling).
    # Without a lock (deleted to re-resolve from scratch) the ranges alone decide.
    return {**os.environ, "PIP_CONSTRAINT": str(LOCK)} if LOCK.exists() else dict(os.environ)


def _pyprojects() -> list[Path]:
    return [p for p in sorted(ROOT.glob("**/pyproject.toml")) if ".venv" not in p.parts]


def lock() -> int:
    """Re-resolve every requirement for all platforms and Python 3.11+ into ``LOCK``."""
    workspace = [tomllib.loads(p.read_text())["project"]["name"] for p in _pyprojects()]
    return run(
        "-m",
        "uv",
        "pip",
        "compile",
        "--quiet",
        "--universal",
        "--python-version",
        "3.11",
        "--custom-compile-command",
        "python3 run.py lock",
        "--output-file",
        str(LOCK),
        *(arg for name in workspace for arg in ("--no-emit-package", name)),
        str(REQUIREMENTS),
        str(BENCH_REQUIREMENTS),
    )


def xdist_workers() -> int:
    """pytest-xdist workers: two per core, since most tests wait on HTTP, timers and subprocesses
    rather than compute; ``--dist loadscope`` keeps a module's tests (and fixtures) on one worker."""
    return min(8, 2 * (os.cpu_count() or 1))


def run(*args: str) -> int:
    return subprocess.run([str(PYTHON), *args], cwd=ROOT).returncode


def main() -> int:
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command in ("help", "-h", "--help"):
        print(__doc__)
        return 0
    if command not in COMMANDS:
        print(f"unknown command {command!r}; use one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    ensure_env()
    if command == "demo":
        return run("-m", "inngest_mw_dev", "demo", *rest)
    if command == "test":
        ensure_chromium()
        # Later arguments win, so `python3 run.py test tests/x.py -n 0` runs serially.
        return run("-m", "pytest", "-n", str(xdist_workers()), "--dist", "loadscope", *rest)
    if command == "lock":
        return lock()
    if command == "docs":
        # --strict: a warning (a broken reference or link) fails the build. The variable only
        # silences Material's end-of-life notice, which is printed, not raised as a warning.
        os.environ["NO_MKDOCS_2_WARNING"] = "1"
        return run("-m", "mkdocs", "build", "--strict", *rest)
    if command == "bench":
        if code := pip_install("-r", str(BENCH_REQUIREMENTS)):
            return code
        return run("-m", "benchmarks", *rest)
    for step in (
        ("-m", "ruff", "check", "."),
        ("-m", "ruff", "format", "--check", "."),
        (
            "-m",
            "mypy",
            "inngest_mw",
            "integrations",
            "devserver",
            "middleware/encryption",
            "middleware/otel",
            "middleware/sentry",
            "middleware/logging",
            "benchmarks",
            "examples",
            "tests",
            "run.py",
        ),
    ):
        print("$", " ".join(step), flush=True)
        if code := run(*step):
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
