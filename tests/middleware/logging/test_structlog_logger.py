"""The structlog logger injected by LoggingMiddleware: run fields bound, silent during replay."""

from __future__ import annotations

from typing import Any

import structlog
from inngest_mw_logging import STRUCTLOG, LoggingMiddleware

import inngest_mw
from inngest_mw import Context, TriggerEvent
from inngest_mw.testing import run


async def test_each_structlog_line_is_logged_once_per_run_with_run_fields() -> None:
    client = inngest_mw.Inngest(
        app_id="logs",
        is_production=False,
        middleware=[LoggingMiddleware.factory(structlog_logger=structlog.get_logger())],
    )

    @client.create_function(fn_id="three", trigger=TriggerEvent(event="t/log"))
    async def three(ctx: Context) -> Any:
        log = ctx[STRUCTLOG]
        log.info("start")
        for i in range(3):
            await ctx.step.run(f"s{i}", lambda i=i: ctx[STRUCTLOG].info("inside", n=i))
            log.info("after", step=i)
        return "done"

    with structlog.testing.capture_logs() as logs:
        result = await run(three)
    assert result.output == "done"
    assert [(e["event"], e.get("n", e.get("step"))) for e in logs] == [
        ("start", None),
        ("inside", 0),
        ("after", 0),
        ("inside", 1),
        ("after", 1),
        ("inside", 2),
        ("after", 2),
    ]
    assert {e["inngest_function_id"] for e in logs} == {"logs-three"}
    assert [e.get("inngest_step_id") for e in logs if e["event"] == "inside"] == ["s0", "s1", "s2"]
