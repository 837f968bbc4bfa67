#!/usr/bin/env python3
"""One entry point for a fresh checkout: ``python3 run.py demo | test | lint | bench``.

Creates ``.venv`` on first use and installs the workspace (re-installs when requirements change),
so the only prerequisites are Python 3.11+ and pip; ``test`` also installs Debian's ``chromium``
package (apt-get, as root) for the web UI's browser tests when it is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("INNGEST_MW_VENV", ROOT / ".venv"))
REQUIREMENTS = ROOT / "requirements-dev.txt"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
CHROMIUM = "/usr/bin/chromium"  # the browser tests' browser: Debian's package, never a download


def ensure_env() -> None:
    if not PYTHON.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    for pyproject in sorted(ROOT.glob("**/pyproject.toml")):
        if ".venv" not in pyproject.parts:
            digest += hashlib.sha256(pyproject.read_bytes()).hexdigest()
    stamp = VENV / ".inngest-mw-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print("installing inngest-mw and its test tools ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], cwd=ROOT, check=True)
    stamp.write_text(digest)


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when it is missing (we run as root)."""
    if Path(CHROMIUM).exists():
        return
    print(f"installing chromium for the browser tests ({CHROMIUM} is missing) ...", flush=True)
    apt = shutil.which("apt-get")
    if apt is None:
        raise SystemExit(f"error: {CHROMIUM} is missing and there is no apt-get to install it;"
                         " install Chromium there, then run the tests again")  # fmt: skip
    for step in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "chromium"]):
        if subprocess.run(step, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}).returncode:
            raise SystemExit(f"error: `{' '.join(step)}` failed, so the browser tests cannot run;"
                             " install the chromium package (as root), then run them again")  # fmt: skip
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"error: the chromium package installed no {CHROMIUM}")


def run(*args: str) -> int:
    return subprocess.run([str(PYTHON), *args], cwd=ROOT).returncode


def main() -> int:
    command, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("help", [])
    if command not in ("demo", "test", "lint", "bench"):
        print(__doc__)
        return 0 if command == "help" else 2
    ensure_env()
    if command == "demo":
        return run("-m", "inngest_mw_dev", "demo", *rest)
    if command == "test":
        ensure_chromium()
        return run("-m", "pytest", *rest)
    if command == "bench":
        extra = ROOT / "benchmarks" / "requirements.txt"
        pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(extra)], cwd=ROOT, check=True)
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
