"""Unit tests of the examples' functions, written with the testing toolkit (no server at all)."""

from __future__ import annotations

from typing import Any

import pytest
from checkout_flow import async_functions, sync_functions

import inngest_mw
from inngest_mw import Event
from inngest_mw.testing import TIMEOUT, run

ORDER = {"name": "shop/checkout", "data": {"order": "o-7", "sku": "mug"}}
PAID = Event(name="shop/payment.confirmed", data={"order": "o-7"})


@pytest.fixture(params=[async_functions, sync_functions], ids=["async", "sync"])
def checkout(request: pytest.FixtureRequest) -> inngest_mw.Function[Any]:
    client = inngest_mw.Inngest(app_id="shop", is_production=False)
    fn: inngest_mw.Function[Any]
    [fn] = request.param(client)
    return fn


async def test_checkout_completes_when_the_payment_arrives(
    checkout: inngest_mw.Function[Any],
) -> None:
    result = await run(checkout, event=ORDER, mocks={"payment": PAID})
    assert result.output == {
        "order": "o-7",
        "reserved": {"sku": "mug", "qty": 1},
        "receipt": "receipt for o-7",
    }
    assert [s.id for s in result.steps] == ["reserve-stock", "cool-off", "payment", "email-receipt"]


async def test_checkout_expires_when_no_payment_arrives(checkout: inngest_mw.Function[Any]) -> None:
    result = await run(checkout, event=ORDER, mocks={"payment": TIMEOUT})
    assert result.output == {"order": "o-7", "status": "expired"}
    assert "email-receipt" not in [s.id for s in result.steps]
