"""The checkout flow every framework example serves, written once async and once sync.

Steps run once each, a ``sleep`` pauses the run, and ``wait_for_event`` parks it until the payment
for the same order is confirmed; the code is plain inngest-mw and runs unchanged on Inngest.
"""

from __future__ import annotations

from typing import Any

import inngest_mw
from inngest_mw import Context, ContextSync, TriggerEvent

CHECKOUT = TriggerEvent(event="shop/checkout")
PAYMENT = "shop/payment.confirmed"
SAME_ORDER = "event.data.order == async.data.order"


def async_functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    """The checkout flow as an ``async def`` function."""

    @client.create_function(fn_id="checkout", trigger=CHECKOUT)
    async def checkout(ctx: Context) -> dict[str, Any]:
        order = ctx.event.data
        reserved = await ctx.step.run("reserve-stock", lambda: {"sku": order["sku"], "qty": 1})
        await ctx.step.sleep("cool-off", "1s")
        paid = await ctx.step.wait_for_event(
            "payment", event=PAYMENT, if_exp=SAME_ORDER, timeout="1h"
        )
        if paid is None:
            return {"order": order["order"], "status": "expired"}
        receipt = await ctx.step.run("email-receipt", lambda: f"receipt for {order['order']}")
        return {"order": order["order"], "reserved": reserved, "receipt": receipt}

    return [checkout]


def sync_functions(client: inngest_mw.Inngest) -> list[inngest_mw.Function[Any]]:
    """The same checkout flow as a plain ``def`` function."""

    @client.create_function(fn_id="checkout", trigger=CHECKOUT)
    def checkout(ctx: ContextSync) -> dict[str, Any]:
        order = ctx.event.data
        reserved = ctx.step.run("reserve-stock", lambda: {"sku": order["sku"], "qty": 1})
        ctx.step.sleep("cool-off", "1s")
        paid = ctx.step.wait_for_event("payment", event=PAYMENT, if_exp=SAME_ORDER, timeout="1h")
        if paid is None:
            return {"order": order["order"], "status": "expired"}
        receipt = ctx.step.run("email-receipt", lambda: f"receipt for {order['order']}")
        return {"order": order["order"], "reserved": reserved, "receipt": receipt}

    return [checkout]
