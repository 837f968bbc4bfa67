"""Benchmarks for inngest-mw: request overhead against the official ``inngest`` SDK, the same
through a framework, and the cost of hooks and middleware. Run ``python -m benchmarks``."""

from benchmarks.cli import main, run

__all__ = ["main", "run"]
