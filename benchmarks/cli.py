"""``python -m benchmarks``: run the sections, print the markdown, write JSON, markdown and a plot."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import (
    engine_throughput,
    floor,
    framework,
    hooks,
    middleware_overhead,
    request_overhead,
)
from benchmarks.output import add_out_options, out_dir
from benchmarks.report import Results, to_json, to_markdown
from benchmarks.timing import Config

__all__ = ["SECTIONS", "main", "run"]

SECTIONS = ("requests", "framework", "hooks", "overhead", "engine")
README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _meta(cfg: Config) -> dict[str, Any]:
    import inngest_mw

    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "inngest_version": _version("inngest"),
        "inngest_mw_version": inngest_mw.__version__,
        "fastapi_version": _version("fastapi"),
        "opentelemetry_sdk_version": _version("opentelemetry-sdk"),
        "sentry_sdk_version": _version("sentry-sdk"),
        "httpx_version": _version("httpx"),
        "quick": cfg.quick,
        "repeat": cfg.repeat,
        "target_ms": round(cfg.target_s * 1000, 3),
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(cfg: Config, sections: Sequence[str] = SECTIONS) -> Results:
    """Measure the chosen sections; the rows land in one ``Results``."""
    results = Results(meta=_meta(cfg))
    started = time.perf_counter()

    def section(name: str) -> float:
        _log(f"benchmarks: {name} ...")
        return time.perf_counter()

    def done(t0: float) -> None:
        _log(f"benchmarks:   done in {time.perf_counter() - t0:.1f} s")

    if "requests" in sections:
        t0 = section("1. request overhead, no framework")
        results.requests = request_overhead.run(cfg)
        done(t0)
    if "framework" in sections:
        t0 = section("2. through FastAPI (httpx.ASGITransport)")
        results.framework = framework.run(cfg)
        done(t0)
    if "hooks" in sections:
        t0 = section("3. physical floor, per-hook cost, N middlewares")
        results.floor = floor.run(cfg)
        results.hooks = hooks.run_hooks(cfg)
        results.middleware = hooks.run_middleware_counts(cfg)
        done(t0)
    if "overhead" in sections:
        t0 = section("4. OTel, Sentry, logging, encryption middleware overhead")
        results.overhead = middleware_overhead.run(cfg)
        done(t0)
    if "engine" in sections:
        t0 = section("5. engine throughput (events -> runs, per-step latency)")
        results.engine = engine_throughput.run(cfg)
        done(t0)
    results.meta["sections"] = list(sections)
    results.meta["duration_s"] = round(time.perf_counter() - started, 1)
    return results


def write(results: Results, out: Path, *, plot: bool) -> dict[str, Path]:
    """Write ``latest.json``, ``latest.md`` and (with ``plot``) ``latest.png`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "latest.json", "md": out / "latest.md"}
    paths["json"].write_text(json.dumps(to_json(results), indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(to_markdown(results) + "\n", encoding="utf-8")
    if plot:
        from benchmarks.plot import render

        paths["png"] = render(results, out / "latest.png")
    return paths


def update_readme(markdown: str, readme: Path = README) -> None:
    """Put ``markdown`` (headings demoted two levels) between the README's results markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    body = "\n".join(
        "##" + line if line.startswith("#") else line for line in markdown.splitlines()
    )
    readme.write_text(text[:start] + "\n" + body.strip() + "\n" + text[end:], encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="inngest-mw benchmarks: request overhead vs the official SDK, through a "
        "framework, hook overhead, shipped middleware overhead and engine throughput. Results "
        "are medians; targets are ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts (seconds): checks the suite runs"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip latest.png (no matplotlib)")
    add_out_options(parser)
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this section (repeatable; default: all)",
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="also paste the results into benchmarks/README.md (between its results markers)",
    )
    parser.add_argument("--repeat", type=int, help="repeats per case (default 11, quick 3)")
    parser.add_argument(
        "--target-ms", type=float, help="duration of one repeat of a case (default 100, quick 3)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = Config.quick_run() if args.quick else Config.full()
    if args.repeat is not None or args.target_ms is not None:
        cfg = Config(
            repeat=args.repeat if args.repeat is not None else cfg.repeat,
            target_s=args.target_ms / 1000 if args.target_ms is not None else cfg.target_s,
            warmup=cfg.warmup,
            quick=cfg.quick,
        )
    results = run(cfg, args.only or SECTIONS)
    paths = write(results, out_dir(args), plot=not args.no_plot)
    markdown = to_markdown(results)
    if args.update_readme:
        update_readme(markdown)
    print(markdown)
    print()
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return 0
