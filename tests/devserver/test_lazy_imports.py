"""Modules only some engines use are imported with their first use, not at start-up.

Each case runs in a fresh interpreter (another test may have imported them already): an engine
serving events and runs loads none of them; the feature that needs one still works, and loads it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_HEAVY = ("jinja2", "jwt", "cryptography", "croniter", "google.protobuf", "websockets.asyncio")

_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    import httpx
    from inngest_mw_dev import EngineThread

    def loaded():
        return sorted(m for m in {heavy!r} if m in sys.modules)

    seen = {{}}
    with tempfile.TemporaryDirectory() as tmp, EngineThread(Path(tmp) / "e.db", port=0) as engine:
        with httpx.Client(base_url=engine.url, timeout=30) as http:
            [event_id] = http.post("/e/key", json={{"name": "a/b", "data": {{}}}}).json()["ids"]
            http.get(f"/v1/events/{{event_id}}/runs").raise_for_status()
            http.get("/health").raise_for_status()
            seen["serving"] = loaded()
            seen["ui"] = http.get("/").status_code
            topics = [{{"channel": "c", "name": "t"}}]
            seen["token"] = http.post("/v1/realtime/token", json=topics).status_code
            seen["after"] = loaded()
    print(json.dumps(seen))
    """
).format(heavy=_HEAVY)


def test_an_engine_serving_runs_loads_none_of_them_and_each_feature_loads_its_own() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["serving"] == []
    assert (seen["ui"], seen["token"]) == (200, 201)
    assert {"jinja2", "jwt"} <= set(seen["after"])
