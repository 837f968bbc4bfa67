"""The web UI benchmark runs end to end on a small history and reports every page (never timed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.ui_render import main


def test_the_ui_benchmark_loads_every_page_and_writes_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--runs", "40", "--repeat", "2", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "ui_render.json").read_text())
    assert result["runs"] == 40
    pages = result["results"]
    assert {
        "runs page (50 newest)",
        "run detail page (200 steps)",
        "events page (50 newest)",
    } <= set(pages)
    assert all(cell["bytes"] > 0 for name, cell in pages.items() if "page" in name)
    assert "| runs page (50 newest) |" in capsys.readouterr().out
