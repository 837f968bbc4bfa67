"""Benchmarks write to an untracked folder by default; only ``--record`` rewrites the tracked results."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "benchmarks" / "results"
SCRATCH = ROOT / "benchmarks" / "out"


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_writes_the_untracked_folder_and_leaves_the_recorded_results_alone() -> None:
    before = _snapshot(RECORDED)
    started = time.time()
    result = _bench("--quick", "--no-plot", "--only", "hooks")
    assert result.returncode == 0, result.stderr
    assert f"wrote json: {SCRATCH / 'latest.json'}" in result.stdout.splitlines()
    assert (SCRATCH / "latest.json").stat().st_mtime >= started - 1
    assert _snapshot(RECORDED) == before


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="no git checkout"
)
def test_the_default_folder_is_ignored_by_git_and_the_recorded_one_is_tracked() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", str(SCRATCH / "latest.json")], cwd=ROOT)
    assert ignored.returncode == 0
    tracked = subprocess.run(
        ["git", "ls-files", "benchmarks/results/latest.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert tracked == "benchmarks/results/latest.json\n"


@pytest.mark.parametrize(
    "module", ["benchmarks", "benchmarks.load", "benchmarks.ui_render", "benchmarks.engine_cpu"]
)
def test_record_and_out_together_are_refused_in_one_line(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--record", "--out", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        "error: argument --out: not allowed with argument --record"
    )
    assert "Traceback" not in result.stderr
