"""The checkpointing benchmark runs both apps, proves its runs exact and writes its results.

Tiny counts: only the structure and the request counts are checked, never a timing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import checkpointing  # noqa: E402


def test_with_checkpointing_a_run_is_one_request_and_without_one_per_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert checkpointing.main(["--runs", "2", "--steps", "3", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "checkpointing.json").read_text())
    assert results["exact"] is True
    assert (results["on_requests_per_run"], results["off_requests_per_run"]) == (1.0, 4.0)
    assert isinstance(results["ratio"], float)
    assert "on_p50_ms" in capsys.readouterr().out
