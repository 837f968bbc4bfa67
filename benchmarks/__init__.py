"""Benchmarks for inngest-mw: request overhead against the official ``inngest`` SDK, the same
through a framework, the cost of hooks and of the shipped middleware, and engine throughput.
Run ``python -m benchmarks``; the load test is ``python -m benchmarks.load``."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks``. The suite is imported here, not at package import, because it
    imports ``benchmarks.load``, and ``python -m benchmarks.load`` must find that module not yet
    imported by its package (runpy warns otherwise)."""
    from benchmarks import cli

    return cli.main(argv)
