"""The connect benchmark runs both transports on a few runs and reports both (never timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.connect import main


def test_the_connect_benchmark_measures_both_transports_and_writes_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--runs", "5", "--rounds", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "connect.json").read_text())
    assert result["runs_per_round"] == 5
    assert len(result["rounds_http"]) == len(result["rounds_connect"]) == 1
    assert result["http_calls_per_s"] > 0
    assert result["connect_calls_per_s"] > 0
    assert isinstance(result["ratio_connect_to_http"], float)
    assert "| ratio connect / HTTP |" in capsys.readouterr().out
