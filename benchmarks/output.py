"""Where a benchmark writes its results: a gitignored scratch folder, unless ``--record`` is given.

``benchmarks/results/`` holds the recorded figures the READMEs quote; a run writes there only when
asked, so benchmarking never leaves the checkout dirty by accident.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["RECORDED", "SCRATCH", "add_out_options", "out_dir"]

RECORDED = Path(__file__).resolve().parent / "results"
SCRATCH = Path(__file__).resolve().parent / "out"


def add_out_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        default=SCRATCH,
        help=f"output folder (default {SCRATCH}, not tracked by git)",
    )
    where.add_argument(
        "--record",
        action="store_true",
        help=f"write the recorded results in {RECORDED} (tracked by git)",
    )


def out_dir(args: argparse.Namespace) -> Path:
    path: Path = RECORDED if args.record else args.out
    return path
