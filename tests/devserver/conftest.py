"""Fixtures for the engine tests: a fresh engine (port 0, temp DB, fast retries) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inngest_mw_dev import EngineThread


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(tmp_path / "engine.db", port=0, retry_base=0.05, tick=0.02) as running:
        yield running
