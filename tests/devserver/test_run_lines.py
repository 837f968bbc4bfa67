"""How retries and failures read in a run's timeline (``inngest-mw run``, ``dev``'s log, the web UI).

A retry line says the delay is still to come and which attempt of how many is next; a final failure
names its error once; one failed attempt is "1 attempt". Proven on real runs over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engine_support import AppServer, runs_for_event, send, sync, wait_run
from inngest_mw_asgi import serve
from inngest_mw_dev import EngineThread
from inngest_mw_dev.cli import print_run
from inngest_mw_dev.render import describe, format_ms

import inngest_mw
from inngest_mw import ContextSync, NonRetriableError, TriggerEvent


def _timeline(run: dict[str, Any]) -> list[str]:
    return [
        describe(
            e["type"], e["step"], {k: v for k, v in e.items() if k not in ("at", "type", "step")}
        )
        for e in run["history"]
    ]


@pytest.fixture
def failed_runs(engine: EngineThread) -> Iterator[dict[str, dict[str, Any]]]:
    """One event, three failing functions: a retried step, a NonRetriableError, one attempt only."""
    client = inngest_mw.Inngest(
        app_id="lines", is_production=False, api_base_url=engine.url, event_api_base_url=engine.url
    )
    trigger = TriggerEvent(event="lines/go")

    def flaky() -> None:
        raise ValueError("flaky")

    @client.create_function(fn_id="retried", trigger=trigger, retries=2)
    def retried(ctx: ContextSync) -> None:
        ctx.step.run("charge", flaky)

    @client.create_function(fn_id="refused", trigger=trigger, retries=3)
    def refused(ctx: ContextSync) -> None:
        raise NonRetriableError("card expired")

    @client.create_function(fn_id="once", trigger=trigger, retries=0)
    def once(ctx: ContextSync) -> None:
        raise ValueError("no retries")

    with AppServer(serve(client, [retried, refused, once])) as app:
        sync(app)
        [event_id] = send(engine.url, {"name": "lines/go"})
        runs = runs_for_event(engine.url, event_id, count=3)
        yield {r["function_id"]: wait_run(engine.url, r["run_id"]) for r in runs}


def test_a_retry_line_says_the_delay_is_to_come_and_which_attempt_of_how_many(
    failed_runs: dict[str, dict[str, Any]],
) -> None:
    run = failed_runs["lines-retried"]
    delays = [e["delay_ms"] for e in run["history"] if e["type"] == "retry_scheduled"]
    assert len(delays) == 2
    retries = [line for line in _timeline(run) if "retrying" in line]
    assert retries == [
        f'step "charge" failed: ValueError: flaky; retrying in {format_ms(delays[0])} (attempt 2 of 3)',
        f'step "charge" failed: ValueError: flaky; retrying in {format_ms(delays[1])} (attempt 3 of 3)',
    ]


def test_a_retry_delay_over_a_second_reads_in_seconds() -> None:
    detail = {"reason": "HTTP 500: boom", "attempt": 1, "max_attempts": 4, "delay_ms": 1250}
    assert describe("retry_scheduled", None, detail) == (
        "run failed: HTTP 500: boom; retrying in 1.25s (attempt 2 of 4)"
    )


def test_a_non_retriable_error_is_named_once(failed_runs: dict[str, dict[str, Any]]) -> None:
    run = failed_runs["lines-refused"]
    assert run["history"][-1]["reason"] == "HTTP 400 (not retriable)"
    assert (
        _timeline(run)[-1] == "FAILED: NonRetriableError: card expired [HTTP 400 (not retriable)]"
    )


def test_a_single_failed_attempt_is_one_attempt(failed_runs: dict[str, dict[str, Any]]) -> None:
    run = failed_runs["lines-once"]
    assert _timeline(run)[-1] == "FAILED: ValueError: no retries [HTTP 500 (1 attempt failed)]"


def test_a_reason_that_is_the_error_message_is_not_repeated() -> None:
    detail = {"error": {"name": "Error", "message": "too many steps"}, "reason": "too many steps"}
    assert describe("failed", None, detail) == "FAILED: Error: too many steps"


def test_the_run_command_prints_the_same_lines(
    failed_runs: dict[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    run = failed_runs["lines-refused"]
    print_run(run)
    out = capsys.readouterr().out
    assert "  FAILED: NonRetriableError: card expired [HTTP 400 (not retriable)]\n" in out
