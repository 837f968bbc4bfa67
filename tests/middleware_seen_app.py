"""An app whose middleware the engine reports on (the run page's Middleware panel, ``inngest-mw
run``, ``GET /v1/runs/{id}``): a sync and an async middleware around an async and a sync function,
with an observer that fails on the ``charge`` step (logged by the SDK, never failing the run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from inngest_mw_asgi import serve

import inngest_mw
from inngest_mw import Context, ContextSync, Middleware, MiddlewareSync, TriggerEvent
from inngest_mw.pipeline import StepInfo

FUNCTIONS = {"async": "seen-checkout", "sync": "seen-checkout-sync"}
EVENTS = {"async": "seen/checkout", "sync": "seen/checkout-sync"}


class AuditLog(MiddlewareSync):
    name = "audit-log"

    def transform_input(self, ctx: Any, function: Any, steps: Any) -> None:
        ctx.set("audited", True)

    def on_step_complete(self, info: StepInfo, output: Any) -> None:
        if info.id == "charge":
            raise ConnectionError("audit log unavailable")


class StepTimer(Middleware):
    async def wrap_step_handler(
        self, call_next: Callable[[], Awaitable[Any]], info: StepInfo
    ) -> Any:
        await asyncio.sleep(0)
        return await call_next()


def build_app(engine_url: str, signing_key: str | None = None) -> Any:
    """The app for an engine at ``engine_url``; with ``signing_key``, in cloud mode."""
    client = inngest_mw.Inngest(
        app_id="seen",
        is_production=signing_key is not None,
        signing_key=signing_key,
        event_key="seen-key" if signing_key else None,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        middleware=[AuditLog, StepTimer],
    )

    @client.create_function(
        fn_id="checkout", trigger=TriggerEvent(event=EVENTS["async"]), retries=0
    )
    async def checkout(ctx: Context) -> dict[str, Any]:
        reserved = await ctx.step.run("reserve", lambda: 2)
        charged = await ctx.step.run("charge", lambda: {"charged": reserved * 2.5})
        return {"reserved": reserved, **charged}

    @client.create_function(
        fn_id="checkout-sync", trigger=TriggerEvent(event=EVENTS["sync"]), retries=0
    )
    def checkout_sync(ctx: ContextSync) -> dict[str, Any]:
        reserved = ctx.step.run("reserve", lambda: 2)
        charged = ctx.step.run("charge", lambda: {"charged": reserved * 2.5})
        return {"reserved": reserved, **charged}

    return serve(client, [checkout, checkout_sync])


class Around(MiddlewareSync):
    """A wrap hook around the function: the other hooks of the request run inside it."""

    def wrap_function(self, call_next: Callable[[], Any], ctx: Any) -> Any:
        self.entered = True
        return call_next()


def build_flaky_app(engine_url: str, failures: dict[str, int]) -> Any:
    """One request per step (no checkpointing) and a step that fails on its first attempt."""
    client = inngest_mw.Inngest(
        app_id="flaky",
        is_production=False,
        api_base_url=engine_url,
        event_api_base_url=engine_url,
        checkpointing=False,
        middleware=[AuditLog],
    )

    def charge() -> str:
        failures["charge"] = failures.get("charge", 0) + 1
        if failures["charge"] == 1:
            raise TimeoutError("the card network timed out")
        return "charged"

    @client.create_function(
        fn_id="pay", trigger=TriggerEvent(event="seen/pay"), retries=1, middleware=[Around]
    )
    def pay(ctx: ContextSync) -> str:
        ctx.step.run("reserve", lambda: 2)
        return ctx.step.run("charge", charge)

    return serve(client, [pay])
