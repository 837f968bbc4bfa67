"""The hook-trace benchmark runs, checks every response it times, and writes its results (its
timings are never asserted: they are ratios to read, not to test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.hook_trace import COPIES, main


def test_the_hook_trace_benchmark_runs_and_writes_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "hook_trace.json").read_text())
    assert [row["colour"] for row in result["rows"]] == ["async", "sync"]
    for row in result["rows"]:
        assert row["middlewares"] == COPIES
        assert row["traced_calls"] > COPIES  # every middleware's hooks, counted from the trace
        assert set(row["median_us"]) == {"none", "none asked", "middleware", "middleware asked"}
        assert isinstance(row["added_per_call_us"], float)
    assert isinstance(result["not_asked_lookup_ns"], float)
    assert "| async |" in capsys.readouterr().out
