"""The engine CPU benchmark runs both processes, proves its runs exact and writes its results.

Tiny counts and our own engine as the baseline: only the structure is checked, never a timing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import engine_cpu  # noqa: E402


def test_both_engines_run_every_step_once_and_the_report_has_their_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--runs", "10", "--steps", "2", "--warmup", "2", "--intake", "50", "--repeat", "1"]
    code = engine_cpu.main([*args, "--baseline-engine", sys.executable, "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "engine_cpu.json").read_text())
    assert set(results) == {"baseline", "ours"}
    for [sample] in results.values():
        assert sample["exact"] is True
        # 10 runs of 2 steps: each step executes in its own call, then one call completes the run.
        assert sample["requests"] == 10 * 3
        assert sample["intake_events"] == 50
    printed = capsys.readouterr().out
    assert "| runs/s, ours / baseline |" in printed
    assert (tmp_path / "engine_cpu.md").read_text().strip() in printed


def test_a_baseline_path_without_an_interpreter_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no \.venv/bin/python; run 'python3 run\.py lint' there"):
        engine_cpu.engine_python(str(tmp_path))
