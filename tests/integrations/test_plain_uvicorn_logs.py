"""Under a plain ``uvicorn module:app`` (no logging configured), the SDK's warnings and errors reach
stderr: the start-up warning of a cloud app without a serve origin, a middleware that raised, and a
function's final failure, each with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import IO

import httpx
import pytest
from support import call_body, free_port

from inngest_mw import signature

KEY = "signkey-test-" + "7" * 64
APP = textwrap.dedent(
    """
    import inngest_mw
    from inngest_mw_asgi import serve


    class Noisy(inngest_mw.MiddlewareSync):
        def on_run_start(self, ctx):
            raise RuntimeError("noisy middleware broke")


    client = inngest_mw.Inngest(app_id="plain", signing_key=KEY, middleware=[Noisy])


    @client.create_function(
        fn_id="fails", trigger=inngest_mw.TriggerEvent(event="plain/go"), retries=0
    )
    def fails(ctx):
        raise inngest_mw.NonRetriableError("the order is gone")


    app = serve(client, [fails])
    """
).replace("KEY", repr(KEY))


class Lines:
    """The child's stderr, line by line, read in a thread; ``wait_for`` returns the first match."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: Queue[str] = Queue()
        assert proc.stderr is not None
        threading.Thread(target=self._pump, args=(proc.stderr,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        while True:
            for line in self.seen:
                if text in line:
                    return line
            try:
                self.seen.append(self._queue.get(timeout=timeout))
            except Empty:
                raise AssertionError(f"{text!r} never appeared in: {self.seen}") from None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Lines]]:
    (tmp_path / "plain_app.py").write_text(APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "plain_app:app", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(proc)
        lines.wait_for("Uvicorn running on")
        yield f"http://127.0.0.1:{port}/api/inngest", lines
    finally:
        proc.terminate()
        proc.wait(10)


def test_warnings_and_errors_reach_stderr_without_any_logging_setup(
    served: tuple[str, Lines],
) -> None:
    url, lines = served
    assert "INNGEST_SERVE_ORIGIN" in lines.wait_for("cloud mode without serve_origin")
    raw = json.dumps(call_body(event={"name": "plain/go", "data": {}, "id": "e", "ts": 1})).encode()
    response = httpx.post(
        url,
        params={"fnId": "plain-fails", "stepId": "step"},
        content=raw,
        headers={"x-inngest-signature": signature.sign(raw, KEY)},
        timeout=30,
    )
    assert response.status_code == 400
    lines.wait_for("middleware Noisy.on_run_start raised; ignored")
    lines.wait_for("RuntimeError: noisy middleware broke")
    assert "the order is gone" in lines.wait_for("function failed: NonRetriableError")
