"""Run control end to end over real HTTP: the ``inngest-mw`` CLI against a running engine and app.

send, invoke, cancel (one run by ID prefix, or many by function and time), rerun (optionally from
a step, proving the earlier steps' code is not called again), run filters, readable errors, and
the live log of ``inngest-mw dev`` (app synced, sync failed, event matched no function).
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import inngest
import pytest
from engine_support import (
    AppServer,
    dev_command,
    free_port,
    get_run,
    poll,
    run_for_event,
    runs_for_event,
    send,
    serve_functions,
    sync,
    wait_run,
    wait_step,
)
from inngest_mw_dev import EngineThread
from inngest_mw_dev.cli import build_parser, main
from inngest_mw_dev.store import RunRow
from run_control_app import Calls, build_app

ROOT = Path(__file__).resolve().parents[2]


class Shop:
    """An engine with the run-control app synced, and the CLI pointed at it."""

    def __init__(self, engine: EngineThread, calls: Calls) -> None:
        self.engine, self.calls, self.url = engine, calls, engine.url

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main([*args, "--url", self.url])
        out, err = capsys.readouterr()
        return code, out, err

    def order(self, **data: Any) -> dict[str, Any]:
        [event_id] = send(self.url, {"name": "ctl/order", "data": data})
        run: dict[str, Any] = run_for_event(self.url, event_id)
        return run


@pytest.fixture
def shop(engine: EngineThread) -> Iterator[Shop]:
    calls = Calls()
    with AppServer(build_app(engine.url, calls)) as app:
        sync(app)
        yield Shop(engine, calls)


def _runs_for_event(shop: Shop, event_id: str) -> list[RunRow]:
    engine = shop.engine.engine
    return engine.db_sync(engine.store.runs_for_event, event_id)


def _run_id(line: str) -> str:
    return line.split(" run ")[1].split()[0]


def test_send_starts_the_runs_its_event_triggers(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = shop.cli(capsys, "send", "ctl/order", "--data", '{"qty": 4}')
    assert code == 0
    event_id = out.split("event ")[1].strip()
    run = run_for_event(shop.url, event_id)
    assert run["status"] == "Completed"
    assert run["output"]["reserved"] == 4


def test_invoke_runs_a_function_with_the_payload(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = shop.cli(capsys, "invoke", "order", "--data", '{"qty": 3}')
    assert code == 0
    run = wait_run(shop.url, _run_id(out))
    assert run["status"] == "Completed"
    assert run["output"]["reserved"] == 3
    assert run["events"][0]["data"]["qty"] == 3


def test_invoke_of_an_unknown_function_names_the_known_ones(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = shop.cli(capsys, "invoke", "nope")
    assert code == 1
    assert err == "error: no function nope (known: ctl-approval, ctl-hold, ctl-nap, ctl-order)\n"


def test_cancel_by_id_prefix_stops_a_sleeping_run(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    [event_id] = send(shop.url, {"name": "ctl/nap"})
    run_id = poll(
        lambda: _runs_for_event(shop, event_id), lambda runs: bool(runs), what="a nap run"
    )[0].id
    poll(
        lambda: get_run(shop.url, run_id)["steps"],
        lambda steps: bool(steps) and steps[0]["status"] == "Sleeping",
        what="the run to sleep",
    )
    code, out, _ = shop.cli(capsys, "cancel", run_id[:12])
    assert (code, out) == (0, f"cancelled run {run_id}\n")
    assert get_run(shop.url, run_id)["status"] == "Cancelled"
    code, _, err = shop.cli(capsys, "cancel", run_id[:12])
    assert (code, err) == (1, f"error: run {run_id} has already ended\n")


def test_bulk_cancel_stops_a_functions_running_runs_in_the_time_range(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    finished = shop.order(qty=1)
    naps = send(shop.url, [{"name": "ctl/nap"}, {"name": "ctl/nap"}])
    poll(
        lambda: [r for e in naps for r in _runs_for_event(shop, e)],
        lambda runs: len(runs) == 2,
        what="two nap runs",
    )
    code, out, _ = shop.cli(capsys, "cancel", "--function", "nap", "--since", "10m")
    assert code == 0
    assert out.startswith("cancelled 2 running run(s) of nap")
    code, out, _ = shop.cli(capsys, "runs", "--status", "cancelled")
    assert out.count("ctl-nap") == 2
    assert get_run(shop.url, finished["run_id"])["status"] == "Completed"
    code, out, _ = shop.cli(capsys, "cancel", "--function", "nap", "--until", "1h")
    assert out.startswith("cancelled 0 running run(s)")


def test_rerun_of_a_failed_run_starts_a_new_run_with_the_same_event(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    shop.calls.fail_charge = True
    failed = shop.order(qty=2)
    assert failed["status"] == "Failed"
    shop.calls.fail_charge = False
    code, out, _ = shop.cli(capsys, "rerun", failed["run_id"][:14])
    assert code == 0
    rerun = wait_run(shop.url, _run_id(out))
    assert rerun["status"] == "Completed"
    assert rerun["event_id"] == failed["event_id"]
    assert rerun["rerun_of"]["run_id"] == failed["run_id"]
    assert shop.calls.of(rerun["run_id"], "reserve") == 1


def test_rerun_from_a_step_replays_the_steps_before_it_without_calling_them(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    original = shop.order(qty=5)
    assert original["status"] == "Completed"
    code, out, _ = shop.cli(capsys, "rerun", original["run_id"], "--from-step", "ship")
    assert code == 0
    assert "(2 earlier step(s) replayed from memory)" in out
    rerun = wait_run(shop.url, _run_id(out))
    assert rerun["status"] == "Completed"
    assert rerun["output"] == original["output"]
    new = rerun["run_id"]
    assert (shop.calls.of(new, "reserve"), shop.calls.of(new, "charge")) == (0, 0)
    assert shop.calls.of(new, "ship") == 1
    replayed = {s["name"] for s in rerun["steps"] if s["replayed"]}
    assert replayed == {"reserve", "charge"}


def test_rerun_from_an_unknown_step_lists_the_steps(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shop.order(qty=1)
    code, _, err = shop.cli(capsys, "rerun", run["run_id"], "--from-step", "pack")
    assert (code, err) == (1, "error: the run has no step pack (steps: reserve, charge, ship)\n")


def test_runs_filters_by_status_and_function(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    shop.order(qty=1)
    shop.calls.fail_charge = True
    failed = shop.order(qty=1)
    _, out, _ = shop.cli(capsys, "runs", "--status", "failed", "--function", "order")
    lines = out.splitlines()[1:]
    assert [line.split()[0] for line in lines] == [failed["run_id"]]
    assert "CardDeclinedError: card declined" in lines[0]
    _, out, _ = shop.cli(capsys, "runs", "--function", "nap")
    assert out == "no runs match\n"


def test_runs_limit_zero_is_rejected_with_a_sentence(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "--limit", "0", "--url", shop.url])
    assert exit_info.value.code == 2
    assert "give a number of runs from 1 to 500, not 0" in capsys.readouterr().err


def test_run_ids_may_be_prefixes_and_an_ambiguous_one_is_one_line(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = shop.order(qty=1), shop.order(qty=1)
    a, b = first["run_id"], second["run_id"]
    common = a[: next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)]
    code, out, _ = shop.cli(capsys, "run", first["run_id"][: len(common) + 1].lower())
    assert code == 0
    assert out.startswith(f"run {first['run_id']}")
    code, _, err = shop.cli(capsys, "run", common)
    assert code == 1
    assert (
        err == f"error: run ID prefix {common} is ambiguous: several runs match; give more of it\n"
    )
    code, _, err = shop.cli(capsys, "run", "ZZZZ")
    assert err == "error: no run has an ID starting with ZZZZ\n"


def test_a_failed_run_prints_the_users_frame_first_as_lines(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    shop.calls.fail_charge = True
    failed = shop.order(qty=2)
    _, out, _ = shop.cli(capsys, "run", failed["run_id"])
    tail = out[out.index("\nerror: ") + 1 :].splitlines()
    assert tail[0] == "error: CardDeclinedError: card declined for 5.0"
    assert tail[1].startswith("  at ")
    assert "run_control_app.py:" in tail[1]
    assert tail[1].endswith("in charge_card  (your code)")
    assert "raise CardDeclinedError" in tail[2]
    assert "\\n" not in out
    sdk_frames = [line for line in tail if "inngest_mw/" in line]
    assert sdk_frames
    assert all(not line.startswith("  >") for line in sdk_frames)


def test_the_engine_unreachable_is_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["runs", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the engine at {url}")
    assert err.count("\n") == 1


def test_signal_resumes_the_run_waiting_for_it_with_the_data(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    [event_id] = send(shop.url, {"name": "ctl/approval", "data": {"ticket": 7}})
    (run,) = runs_for_event(shop.url, event_id)
    wait_step(shop.url, run["run_id"], "approve", "Waiting")
    code, out, _ = shop.cli(capsys, "signal", "approve-7", "--data", '{"ok": true}')
    assert code == 0
    assert out == f"signal approve-7 resumed run {run['run_id']}\n"
    done = wait_run(shop.url, run["run_id"])
    assert (done["status"], done["output"]) == ("Completed", {"ok": True})


def test_a_signal_nobody_waits_for_is_one_sentence(
    shop: Shop, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = shop.cli(capsys, "signal", "approve-nobody")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "no run is waiting for signal 'approve-nobody'" in err
    with pytest.raises(SystemExit):
        main(["signal", "approve-7", "--data", "{not json"])
    assert "not valid JSON" in capsys.readouterr().err


def test_client_commands_reach_the_engine_inngest_dev_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INNGEST_DEV", "http://127.0.0.1:8402/")
    assert build_parser().parse_args(["runs"]).api == "http://127.0.0.1:8402"
    monkeypatch.setenv("INNGEST_DEV", "1")  # dev mode, no address: the default port
    assert build_parser().parse_args(["signal", "s"]).api == "http://127.0.0.1:8288"


def test_every_subcommand_has_a_description_and_shows_its_defaults() -> None:
    subparsers = next(a for a in build_parser()._actions if isinstance(a.choices, dict))
    assert isinstance(subparsers.choices, dict)
    assert set(subparsers.choices) == {
        "dev",
        "runs",
        "workers",
        "run",
        "send",
        "invoke",
        "cancel",
        "rerun",
        "signal",
        "demo",
    }
    for name, sub in subparsers.choices.items():
        assert sub.description, name
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            shown = action.default not in (None, False, [], "==SUPPRESS==")
            if shown and "key" not in action.dest:
                assert f"(default: {action.default})" in text, (name, action.dest)
    assert "(default: 20)" in subparsers.choices["runs"].format_help()
    assert "(default: None)" not in subparsers.choices["rerun"].format_help()


class _Lines:
    """The stdout of a process, line by line, read in a thread so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout

        def pump() -> None:
            for line in stdout:
                self.queue.put(line)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """The first line so far or to come that contains ``text`` (lines may come in any order)."""
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in: {''.join(self.seen)}")


def test_the_live_log_tells_syncs_sync_failures_and_events_nothing_took(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Port 1 refuses every connection (nothing may listen there unprivileged); a port picked free
    # now could be taken by a parallel test's server by the time the engine syncs it.
    dead = "http://127.0.0.1:1/api/inngest"
    official = inngest.Inngest(
        app_id="peer", is_production=False, api_base_url="http://127.0.0.1:1"
    )

    @official.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="peer/x"))
    def noop(ctx: inngest.ContextSync) -> None:
        return None

    with (
        EngineThread(tmp_path / "other.db", port=0) as other,
        AppServer(build_app(url, Calls())) as here,
        AppServer(build_app(other.url, Calls())) as elsewhere,
        serve_functions(official, [noop]) as out_of_band,
    ):
        process = subprocess.Popen(
            dev_command(
                port,
                tmp_path / "engine.db",
                "--connect-port",
                "0",
                "-u",
                here.url,
                "-u",
                elsewhere.url,
                "-u",
                out_of_band.url,
                "-u",
                dead,
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines = _Lines(process)
            lines.wait_for(f"apps reach this engine with INNGEST_DEV={url}")
            synced = lines.wait_for(f"synced from {here.url}")
            assert synced.rstrip().endswith("app ctl synced from " + here.url + ": 4 functions")
            # An inngest-mw app configured for another server answers the in-band sync: it
            # registers here all the same.
            lines.wait_for(f"app ctl synced from {elsewhere.url}: 4 functions")
            # An SDK that answers out of band registers where it is configured to, and is told.
            lines.wait_for(f"sync of {out_of_band.url} failed: HTTP 500")
            assert any(f"start it with INNGEST_DEV={url}" in line for line in lines.seen)
            lines.wait_for(f"sync of {dead} failed: cannot reach the app")
            [held] = send(url, {"name": "ctl/hold"})
            (run,) = poll(
                lambda: httpx.get(f"{url}/v1/events/{held}/runs").json()["data"],
                bool,
                what="the hold run",
            )
            poll(
                lambda: get_run(url, run["run_id"])["steps"],
                lambda steps: bool(steps) and steps[0]["status"] == "Waiting",
                what="the run to wait",
            )
            send(url, {"name": "ctl/release"})
            assert wait_run(url, run["run_id"])["output"] is True
            send(url, {"name": "nobody/listens"})
            lines.wait_for("event nobody/listens (")
            assert not [line for line in lines.seen if "event ctl/release" in line]
        finally:
            process.terminate()
            process.wait(10)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/runs?limit=0", "limit must be between 1 and 500, got 0"),
        ("/v1/runs?limit=many", "limit must be a whole number, got 'many'"),
        (
            "/v1/runs?status=Sleeping",
            "unknown status Sleeping: use one of Running, Completed, Failed, Cancelled, Skipped",
        ),
        (
            "/v1/runs?since=yesterday",
            "since: 'yesterday' is not a time: give an ISO 8601 time"
            " (2026-05-01T12:00:00Z), epoch seconds or milliseconds, or an age such as 30s, 15m,"
            " 2h, 7d",
        ),
        ("/v1/runs?cursor=NOPE", "cursor NOPE names no run"),
        ("/v1/events?limit=501", "limit must be between 1 and 500, got 501"),
    ],
)
def test_listing_parameters_that_cannot_be_used_get_a_400_with_the_reason(
    engine: EngineThread, path: str, message: str
) -> None:
    response = httpx.get(engine.url + path)
    assert response.status_code == 400
    assert response.json() == {"error": message, "status": 400}


def test_run_control_bodies_that_cannot_be_used_get_a_400_with_the_reason(shop: Shop) -> None:
    run = shop.order(qty=1)
    bad = [
        ("/v1/runs/cancel", {}, 'bulk cancel needs "function" (and optionally "since", "until")'),
        (
            f"/v1/runs/{run['run_id']}/rerun",
            {"from_step": 3},
            "from_step must be a step ID or name",
        ),
        ("/v1/functions/ctl-order/invoke", {"data": [1]}, "invoke data must be a JSON object"),
        ("/v1/events", {"data": {}}, "event #0: name must be a non-empty string"),
    ]
    for path, body, message in bad:
        response = httpx.post(shop.url + path, json=body)
        assert (response.status_code, response.json()["error"]) == (400, message), path
    broken = httpx.post(shop.url + "/v1/events", content=b"{nope")
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("request body is not valid JSON")


def test_runs_pages_follow_the_cursor_newest_first(shop: Shop) -> None:
    made = [shop.order(qty=1)["run_id"] for _ in range(3)]
    first = httpx.get(f"{shop.url}/v1/runs?limit=2").json()
    cursor = first["metadata"]["next_cursor"]
    second = httpx.get(f"{shop.url}/v1/runs?limit=2&cursor={cursor}").json()
    listed = [r["run_id"] for r in first["data"] + second["data"]]
    assert listed == made[::-1]
    assert second["metadata"]["next_cursor"] is None
