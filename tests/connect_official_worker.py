"""A connect worker written with the official ``inngest`` package (a test-only peer).

``python connect_official_worker.py ENGINE_URL``: serves the ``official`` app over the official
SDK's connect until SIGTERM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

import inngest
from inngest.connect import connect

ENGINE_URL = sys.argv[1]

client = inngest.Inngest(
    app_id="official", is_production=False, api_base_url=ENGINE_URL, event_api_base_url=ENGINE_URL
)


@client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="official/greet"))
async def greet(ctx: inngest.Context) -> str:
    async def name() -> str:
        return str(ctx.event.data["name"])

    who = await ctx.step.run("name", name)
    await ctx.step.sleep("nap", dt.timedelta(seconds=1))
    return f"hello {who}"


if __name__ == "__main__":
    asyncio.run(connect([(client, [greet])], instance_id="official-1").start())
