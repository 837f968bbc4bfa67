"""pytest plugin (registered by the ``inngest-mw`` distribution): the ``inngest_tester`` fixture.

``inngest_tester.run(fn, event=..., mocks=...)`` (await it) or ``.run_sync(...)``; see
``inngest_mw.testing``. Loaded only by pytest, so the core itself never imports pytest.
"""

from __future__ import annotations

from typing import Final

import pytest

from inngest_mw import testing


class Tester:
    """The testing toolkit as a fixture value."""

    TIMEOUT: Final = testing.TIMEOUT
    run = staticmethod(testing.run)
    run_sync = staticmethod(testing.run_sync)


@pytest.fixture
def inngest_tester() -> Tester:
    return Tester()
