"""The CLI's side of connect: ``inngest-mw workers`` lists connected workers, and a gateway port
in use is one sentence naming ``--connect-port``."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from connect_support import WorkerThread, wait_workers
from engine_support import dev_command, free_port
from inngest_mw_dev import EngineThread
from inngest_mw_dev.cli import main

import inngest_mw
from inngest_mw import Context, TriggerEvent

ROOT = Path(__file__).resolve().parents[2]


def test_inngest_mw_workers_lists_each_connected_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with EngineThread(tmp_path / "e.db", port=0, connect_port=0) as engine:
        assert main(["workers", "--url", engine.url]) == 0
        assert capsys.readouterr().out == "no connect workers are connected\n"
        client = inngest_mw.Inngest(
            app_id="shop",
            is_production=False,
            api_base_url=engine.url,
            event_api_base_url=engine.url,
        )

        @client.create_function(fn_id="noop", trigger=TriggerEvent(event="shop/noop"))
        async def noop(ctx: Context) -> None:
            return None

        with (
            WorkerThread(client, [noop], instance_id="box-1"),
            WorkerThread(client, [noop], instance_id="box-2"),
        ):
            wait_workers(engine.url, "shop", 2)
            assert main(["workers", "--url", engine.url]) == 0
            lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "APP",
        "INSTANCE",
        "CONNECTION",
        "STATUS",
        "IN",
        "FLIGHT",
        "SERVED",
        "CONNECTED",
    ]
    rows = sorted(line.split()[:4] for line in lines[1:])
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("shop", "box-1", "READY"),
        ("shop", "box-2", "READY"),
    ]


def test_a_connect_port_in_use_is_one_sentence_naming_the_option(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = subprocess.run(
            dev_command(free_port(), tmp_path / "e.db", "--connect-port", str(busy)),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (result.returncode, result.stderr) == (
        1,
        (
            f"error: port {busy} on 127.0.0.1 is already in use (another engine?); stop what holds it"
            " or give another port with --connect-port (0 picks a free one)\n"
        ),
    )
    assert "Traceback" not in result.stdout


def test_inngest_mw_dev_prints_where_the_gateway_listens(tmp_path: Path) -> None:
    port, gateway = free_port(), free_port()
    process = subprocess.Popen(
        dev_command(port, tmp_path / "e.db", "--connect-port", str(gateway)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = process.stdout
    assert out is not None
    try:
        # The start-up lines come at once; the gateway's is among the first few.
        lines = [out.readline() for _ in range(3)]
    finally:
        process.terminate()
        process.wait(10)
    assert lines[-1] == f"connect gateway: ws://127.0.0.1:{gateway}/v0/connect\n"
