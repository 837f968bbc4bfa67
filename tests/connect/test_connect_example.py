"""The example connect worker runs the demo's checkout flow (sleep and wait included) on the
engine, in dev mode and against an engine that requires signing keys, async and sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from connect_support import end
from engine_support import get_run, poll, runs_for_event, send, wait_run
from inngest_mw_dev import EngineThread

from inngest_mw.signature import hash_signing_key

ROOT = Path(__file__).resolve().parents[2]
KEY = "signkey-test-" + "7a" * 32


@pytest.mark.parametrize("cloud", [False, True], ids=["dev", "cloud"])
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_the_example_worker_runs_the_checkout_flow(tmp_path: Path, cloud: bool, sync: bool) -> None:
    key = KEY if cloud else None
    auth = {"Authorization": f"Bearer {hash_signing_key(KEY)}"} if cloud else None
    with EngineThread(tmp_path / "e.db", port=0, connect_port=0, signing_key=key) as engine:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
        env = {**clean, "WORKER_ID": "example", "SYNC": "1" if sync else ""}
        if cloud:
            env |= {"INNGEST_BASE_URL": engine.url, "INNGEST_SIGNING_KEY": KEY}
        else:
            env |= {"INNGEST_DEV": engine.url}
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "connect_worker.py")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            gateway = engine.engine.connect
            assert gateway is not None
            poll(lambda: gateway.workers("shop"), bool, timeout=20, what="the worker to connect")
            order = {"order": "A-1", "sku": "tea"}
            (event_id,) = send(engine.url, {"name": "shop/checkout", "data": order})
            (run,) = runs_for_event(engine.url, event_id, headers=auth)
            poll(
                lambda: _waiting(engine.url, run["run_id"], auth),
                bool,
                timeout=30,
                what="the run to wait for the payment",
            )
            send(engine.url, {"name": "shop/payment.confirmed", "data": {"order": "A-1"}})
            done = wait_run(engine.url, run["run_id"], headers=auth, timeout=30)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            end(worker)
            log.close()
    assert done["status"] == "Completed", (done, (tmp_path / "worker.log").read_text())
    assert done["output"] == {
        "order": "A-1",
        "reserved": {"sku": "tea", "qty": 1},
        "receipt": "receipt for A-1",
    }
    assert [s["name"] for s in done["steps"]] == [
        "reserve-stock",
        "cool-off",
        "payment",
        "email-receipt",
    ]


def _waiting(url: str, run_id: str, auth: dict[str, str] | None) -> bool:
    run = get_run(url, run_id, auth)
    return any(s["name"] == "payment" and s["status"] == "Waiting" for s in run["steps"])
