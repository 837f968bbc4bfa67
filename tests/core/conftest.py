"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["", "-sync"], ids=["async", "sync"])
def variant(request: pytest.FixtureRequest) -> str:
    """The function ID suffix of each face: ``""`` for the ``async def`` function of a pair,
    ``"-sync"`` for its ``def`` twin."""
    suffix: str = request.param
    return suffix
