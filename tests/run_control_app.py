"""An app for the run-control tests (CLI and browser): steps that count their calls, a step that
fails on demand, a long sleep to cancel, and a wait for an event.

Counts are per run and step, so a test can prove a replayed step's code was not called again.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from inngest_mw_asgi import serve

import inngest_mw
from inngest_mw import Context, TriggerEvent


class Calls:
    """Which step code ran, per ``run_id:step``; ``fail_charge`` makes the charge step raise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.fail_charge = False

    def hit(self, run_id: str, step: str) -> None:
        with self.lock:
            self.counts[f"{run_id}:{step}"] += 1

    def of(self, run_id: str, step: str) -> int:
        with self.lock:
            return self.counts[f"{run_id}:{step}"]


class CardDeclinedError(Exception):
    pass


def charge_card(calls: Calls, run_id: str, amount: float) -> dict[str, Any]:
    calls.hit(run_id, "charge")
    if calls.fail_charge:
        raise CardDeclinedError(f"card declined for {amount}")
    return {"charged": amount}


def build_app(engine_url: str, calls: Calls) -> Any:
    client = inngest_mw.Inngest(
        app_id="ctl", is_production=False, api_base_url=engine_url, event_api_base_url=engine_url
    )

    @client.create_function(fn_id="order", trigger=TriggerEvent(event="ctl/order"), retries=0)
    async def order(ctx: Context) -> dict[str, Any]:
        qty = int(ctx.event.data.get("qty", 1))

        def reserve() -> int:
            calls.hit(ctx.run_id, "reserve")
            return qty

        def ship() -> str:
            calls.hit(ctx.run_id, "ship")
            return "shipped"

        reserved = await ctx.step.run("reserve", reserve)
        charged = await ctx.step.run("charge", lambda: charge_card(calls, ctx.run_id, qty * 2.5))
        shipped = await ctx.step.run("ship", ship)
        return {"reserved": reserved, "charge": charged, "ship": shipped}

    @client.create_function(fn_id="nap", trigger=TriggerEvent(event="ctl/nap"))
    async def nap(ctx: Context) -> str:
        await ctx.step.sleep("long-nap", "1h")
        return "awake"

    @client.create_function(fn_id="hold", trigger=TriggerEvent(event="ctl/hold"))
    async def hold(ctx: Context) -> bool:
        released = await ctx.step.wait_for_event("release", event="ctl/release", timeout="1h")
        return released is not None

    @client.create_function(fn_id="approval", trigger=TriggerEvent(event="ctl/approval"))
    async def approval(ctx: Context) -> Any:
        signal = f"approve-{ctx.event.data['ticket']}"
        got = await ctx.step.wait_for_signal("approve", signal=signal, timeout="1h")
        return None if got is None else got.data

    return serve(client, [order, nap, hold, approval])
