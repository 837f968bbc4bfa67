"""The demo's example app: a checkout flow with sequential, sleeping, parallel and event steps.

Run it yourself with ``uvicorn inngest_mw_dev.demo_app:app --port 8000`` next to ``inngest-mw dev
-u http://127.0.0.1:8000/api/inngest``; the code is plain inngest-mw and runs unchanged on Inngest's
Dev Server. It is always in dev mode, so that importing it needs no key; the framework examples
in ``examples/`` take their mode from the environment instead.
"""

from __future__ import annotations

from typing import Any

from inngest_mw_asgi import serve

import inngest_mw
from inngest_mw import Context, ContextSync, Event, TriggerEvent

client = inngest_mw.Inngest(app_id="shop", is_production=False)
# The step that sends shop/order.completed; its output is the IDs of the events it sent, which
# start the follow-on thank-you run.
ORDER_COMPLETED = "order-completed"


@client.create_function(
    fn_id="checkout", name="Checkout", trigger=TriggerEvent(event="shop/checkout"), retries=2
)
async def checkout(ctx: Context) -> dict[str, Any]:
    order = ctx.event.data
    reserved = await ctx.step.run(
        "reserve-stock", lambda: {"sku": order["sku"], "qty": order["qty"]}
    )
    charge = await ctx.step.run(
        "charge-card", lambda: {"charged": order["qty"] * order["price"], "currency": "EUR"}
    )
    await ctx.step.sleep("cool-off", "1s")
    receipt, points = await ctx.group.parallel(
        (
            lambda: ctx.step.run("email-receipt", lambda: f"receipt sent to {order['email']}"),
            lambda: ctx.step.run("loyalty-points", lambda: order["qty"] * 10),
        )
    )
    await ctx.step.send_event(
        ORDER_COMPLETED, Event(name="shop/order.completed", data={"order": order["id"]})
    )
    return {
        "order": order["id"],
        "reserved": reserved,
        "charge": charge,
        "receipt": receipt,
        "points": points,
    }


@client.create_function(
    fn_id="thank-you", name="Thank you", trigger=TriggerEvent(event="shop/order.completed")
)
def thank_you(ctx: ContextSync) -> str:
    return ctx.step.run("write-note", lambda: f"thanks for order {ctx.event.data['order']}")


functions = [checkout, thank_you]
app = serve(client, functions)
