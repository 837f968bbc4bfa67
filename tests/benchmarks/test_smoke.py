"""The benchmark suite runs end to end with tiny counts and writes well-formed results.

Only the structure is checked (rows present, numbers positive, responses verified by the suite
itself); timings are never asserted.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def _benchmarks() -> ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    args = ["--quick", "--out", str(out)]
    if not HAS_MATPLOTLIB:
        args.append("--no-plot")  # the plot is optional; JSON and markdown are always written
    code = _benchmarks().main(args)
    assert code == 0
    return out


@pytest.fixture(scope="module")
def results(out_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out_dir / "latest.json").read_text(encoding="utf-8"))
    return data


def _positive(stats: dict[str, Any]) -> None:
    assert stats["median_us"] > 0
    assert stats["number"] >= 1
    assert stats["repeat"] >= 1


def test_writes_json_and_markdown(out_dir: Path) -> None:
    assert (out_dir / "latest.json").is_file()
    assert (out_dir / "latest.md").is_file()


def test_meta(results: dict[str, Any]) -> None:
    meta = results["meta"]
    assert meta["quick"] is True
    assert meta["sections"] == ["requests", "framework", "hooks", "overhead", "engine"]
    assert meta["inngest_version"] == "0.5.19"
    assert meta["duration_s"] > 0


def test_request_rows_cover_every_variant_and_step_count(results: dict[str, Any]) -> None:
    rows = results["requests"]
    cells = {(r["variant"], r["memoized"]) for r in rows}
    assert cells == {
        (variant, n) for variant in ("async", "sync", "sync-in-async") for n in (0, 10, 100, 1000)
    }
    for row in rows:
        _positive(row["ours"])
        _positive(row["official"])
        assert row["ratio"] > 0
        assert row["body_bytes"] > 0
    sizes = sorted({(r["memoized"], r["body_bytes"]) for r in rows})
    assert [b for _, b in sizes] == sorted(b for _, b in sizes)  # more memos, bigger body


def test_linearity_rows(results: dict[str, Any]) -> None:
    rows = results["linearity"]
    assert {(r["variant"], r["sdk"]) for r in rows} == {
        (v, sdk) for v in ("async", "sync", "sync-in-async") for sdk in ("ours", "official")
    }
    for row in rows:
        assert set(row["per_step_us"]) == {"100", "1000"}
        # A difference of two timings: under load a quick run's may be negative, so only its type.
        assert all(isinstance(v, int | float) for v in row["per_step_us"].values())


def test_framework_rows(results: dict[str, Any]) -> None:
    rows = results["framework"]
    assert {(r["function"], r["memoized"]) for r in rows} == {
        (f, n) for f in ("async", "sync") for n in (0, 10, 100)
    }
    for row in rows:
        for key in ("floor", "official", "ours", "ours_bare"):
            _positive(row[key])
        assert row["ratio"] > 0


def test_floor_and_hook_rows(results: dict[str, Any]) -> None:
    assert len(results["floor"]) == 3
    # Net of an empty loop: in a quick run on a loaded machine the difference may be <= 0.
    assert all(isinstance(row["ns"], int | float) for row in results["floor"])
    hooks = results["hooks"]
    assert {(h["hook"], h["colour"]) for h in hooks} == {
        (hook, colour)
        for hook in ("on_step_start", "transform_input", "wrap_step")
        for colour in ("async", "sync", "sync-on-async", "async-on-sync")
    }
    calls = {h["hook"]: h["calls_per_request"] for h in hooks}
    assert calls == {"on_step_start": 1, "transform_input": 1, "wrap_step": 11}
    for row in hooks:
        for key in ("base", "without_hook", "with_hook"):
            _positive(row[key])
        assert isinstance(row["per_call_us"], float)


def test_middleware_count_rows(results: dict[str, Any]) -> None:
    rows = results["middleware"]
    assert {(m["colour"], m["overrides"], m["count"]) for m in rows} == {
        (c, o, n)
        for c in ("async", "sync")
        for o in ("none", "all", "trivial")
        for n in (1, 10, 50)
    }
    for row in rows:
        _positive(row["stats"])
        assert row["ratio"] > 0
        if row["overrides"] == "trivial":  # the floor of calling the same hooks directly
            _positive(row["direct"])
            assert row["floor_ratio"] > 1
            assert isinstance(row["dispatch_us_per_call"], float)
        else:
            assert row["direct"] is None
            assert row["floor_ratio"] is None


def test_middleware_overhead_rows(results: dict[str, Any]) -> None:
    rows = results["overhead"]
    assert {(o["middleware"], o["function"]) for o in rows} == {
        (m, f) for m in ("otel", "sentry", "logging", "encryption") for f in ("async", "sync")
    }
    for row in rows:
        _positive(row["base"])
        _positive(row["stats"])
        assert row["ratio"] > 0
        assert row["per_step_us"] == pytest.approx(row["added_us"] / 11, abs=0.01)


def test_engine_row(results: dict[str, Any]) -> None:
    engine = results["engine"]
    assert (engine["runs"], engine["steps"]) == (50, 3)
    assert engine["exact"] is True
    assert engine["completed"] == 50
    assert engine["events_per_second"] > 0
    assert engine["runs_per_second"] > 0
    assert engine["peak_rss_mib"] > 0
    samples = {"run": 50, "first_step": 50, "step_gap": 100, "step_engine": 150}
    for key, count in samples.items():
        assert engine[key]["count"] == count
        assert 0 <= engine[key]["p50_ms"] <= engine[key]["p99_ms"]


def test_targets_are_reported(results: dict[str, Any]) -> None:
    names = [t["name"] for t in results["targets"]]
    # requests (6), FastAPI net (1, when the net is positive), crossings (6), no-op per call (2),
    # 10 middlewares none / all / trivial (6)
    assert len(names) in (6 + 6 + 2 + 6, 6 + 1 + 6 + 2 + 6)
    assert all(isinstance(t["met"], bool) and t["value"] is not None for t in results["targets"])


def test_markdown_has_every_section(out_dir: Path) -> None:
    text = (out_dir / "latest.md").read_text(encoding="utf-8")
    for heading in (
        "## Targets",
        "## 1. Request overhead, no framework",
        "## 2. Through a framework",
        "## 3. Hook overhead",
        "**Cost per memoized step**",
        "**N middlewares**",
        "## 4. Middleware overhead",
        "## 5. Engine throughput",
        "**Latency distribution**",
    ):
        assert heading in text


def test_plot(out_dir: Path) -> None:
    pytest.importorskip("matplotlib")
    png = out_dir / "latest.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_plot_still_writes_json_and_markdown(tmp_path: Path) -> None:
    _benchmarks()
    cli = importlib.import_module("benchmarks.cli")
    report = importlib.import_module("benchmarks.report")
    paths = cli.write(report.Results(meta={"quick": True}), tmp_path, plot=False)
    assert set(paths) == {"json", "md"}
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert (data["requests"], data["overhead"], data["engine"]) == ([], [], None)
    assert paths["md"].read_text(encoding="utf-8").startswith("# inngest-mw benchmark results")
    assert not (tmp_path / "latest.png").exists()
