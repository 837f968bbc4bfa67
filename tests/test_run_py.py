"""``run.py``, the checkout's entry point: an unknown command is named, and installs show progress.

The progress lines are read from a real pip installing a real (tiny, local) package, so a change in
pip's output that the reader no longer understands fails here, not silently on a fresh machine.
"""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _run_py() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_py", ROOT / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unknown_command_is_named_with_the_commands_and_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "foo"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INNGEST_MW_VENV": str(venv)},
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "unknown command 'foo'; use one of: demo, test, lint, docs, bench, lock\n"
    )
    assert not venv.exists()


def test_help_prints_the_commands_and_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INNGEST_MW_VENV": str(venv)},
    )
    assert result.returncode == 0
    assert result.stdout.startswith(
        "One entry point for a fresh checkout: ``python3 run.py demo | test | lint | docs | bench"
    )
    assert not venv.exists()


def _tiny_package(root: Path) -> Path:
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        '[project]\nname = "tiny"\nversion = "0.1"\n'
    )
    return root


def test_an_install_shows_one_line_per_phase_from_pips_real_output(tmp_path: Path) -> None:
    run_py = _run_py()
    package = _tiny_package(tmp_path / "src")
    out = io.StringIO()
    code = run_py.pip_install(
        "--no-index",
        "--no-build-isolation",
        "--target",
        str(tmp_path / "site"),
        str(package),
        python=Path(sys.executable),
        out=out,
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "  pip: preparing local packages: 1 ...",
        "  pip: building 1 wheel(s) ...",
        "  pip: installing 1 package(s) ...",
    ]
    assert lines[3].startswith("  pip: installed 1 package(s) in ")
    assert len(lines) == 4
    assert (tmp_path / "site" / "tiny" / "__init__.py").exists()


def test_a_count_is_repeated_in_a_log_as_packages_come() -> None:
    out = io.StringIO()
    progress = _run_py().PipProgress(out, every=2)
    for name in ("a", "b", "c", "d", "e"):
        progress.feed(f"Collecting {name}>=1\n")
        progress.feed(f"  Downloading {name}-1.0-py3-none-any.whl (10 kB)\n")
    progress.feed("Installing collected packages: a, b, c, d, e\n")
    assert out.getvalue().splitlines() == [
        "  pip: resolving and downloading requirements: 1 ...",
        "  pip: resolving and downloading requirements: 2 ...",
        "  pip: resolving and downloading requirements: 4 ...",
        "  pip: installing 5 package(s) ...",
    ]


def test_a_failed_install_shows_pips_reason(tmp_path: Path) -> None:
    out = io.StringIO()
    code = _run_py().pip_install(
        "--no-index", str(tmp_path / "missing"), python=Path(sys.executable), out=out
    )
    assert code != 0
    text = out.getvalue()
    assert f"ERROR: Invalid requirement: '{tmp_path / 'missing'}'" in text
    assert text.endswith(f"error: pip install failed (exit {code}); see its output above\n")
