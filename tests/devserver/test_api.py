"""HTTP surface: event ingestion rules, event keys, server kind header, JSON errors everywhere."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from inngest_mw_dev import EngineThread


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"data": {}}, "event #0: name must be a non-empty string"),
        ({"name": ""}, "event #0: name must be a non-empty string"),
        ({"name": "a", "data": [1]}, "event #0: data must be a JSON object"),
        ({"name": "a", "user": "me"}, "event #0: user must be a JSON object"),
        ({"name": "a", "ts": 5}, "event #0: ts must be between 1980 and 2100 (in milliseconds)"),
        ([3, {"name": "a"}], "event #0: must be a JSON object"),
        ([], "no events given"),
        ([{"name": "a"}] * 5001, "too many events: 5,001; the limit is 5,000 per request"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(
    engine: EngineThread, body: object, message: str
) -> None:
    response = httpx.post(f"{engine.url}/e/key", json=body)
    assert response.status_code == 400
    assert response.json() == {"ids": [], "error": message, "status": 400}


def test_events_get_ids_timestamps_and_defaults(engine: EngineThread) -> None:
    response = httpx.post(
        f"{engine.url}/e/key", json=[{"name": "a/b"}, {"name": "a/c", "id": "x1"}]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200
    generated, given = body["ids"]
    assert given == "x1"
    stored = httpx.get(f"{engine.url}/v1/events/{generated}").json()["data"]
    assert stored["data"] == {}
    assert stored["user"] == {}
    assert stored["ts"] > 1_600_000_000_000


def test_the_event_id_seed_header_makes_retried_sends_idempotent(engine: EngineThread) -> None:
    seed = {"x-inngest-event-id-seed": "1700000000000," + base64.b64encode(b"0123456789").decode()}
    first = httpx.post(f"{engine.url}/e/key", json=[{"name": "a"}], headers=seed).json()["ids"]
    again = httpx.post(f"{engine.url}/e/key", json=[{"name": "a"}], headers=seed).json()["ids"]
    assert first == again


def test_unknown_event_keys_are_refused_when_keys_are_configured(tmp_path: Path) -> None:
    with EngineThread(tmp_path / "e.db", port=0, event_keys=["good"]) as eng:
        refused = httpx.post(f"{eng.url}/e/bad", json={"name": "a"})
        assert refused.status_code == 401
        assert refused.json() == {"status": 401, "message": "", "error": "Event key not found"}
        assert httpx.post(f"{eng.url}/e/good", json={"name": "a"}).status_code == 200


def test_every_response_carries_the_server_kind_and_errors_are_json(engine: EngineThread) -> None:
    health = httpx.get(f"{engine.url}/health")
    assert health.headers["x-inngest-server-kind"] == "dev"
    missing = httpx.get(f"{engine.url}/nope")
    assert missing.status_code == 404
    assert missing.headers["x-inngest-server-kind"] == "dev"
    assert missing.json()["status"] == 404
    wrong_method = httpx.get(f"{engine.url}/e/key")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    bad_json = httpx.post(f"{engine.url}/e/key", content=b"{")
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]


def test_run_endpoints_answer_404_410_and_400_for_bad_input(engine: EngineThread) -> None:
    assert httpx.get(f"{engine.url}/v1/runs/unknown").status_code == 404
    assert httpx.delete(f"{engine.url}/v1/runs/unknown").status_code == 404
    assert httpx.delete(f"{engine.url}/v0/runs/unknown").status_code == 404
    assert httpx.get(f"{engine.url}/v0/runs/unknown/batch").status_code == 410
    assert httpx.get(f"{engine.url}/v1/runs?limit=abc").status_code == 400
    listing = httpx.get(f"{engine.url}/v1/runs?limit=5").json()
    assert listing["data"] == []
    assert "fetched_at" in listing["metadata"]
    assert httpx.get(f"{engine.url}/v1/events/none/runs").json()["data"] == []


def test_sync_endpoint_reports_unreachable_apps(engine: EngineThread) -> None:
    response = httpx.post(f"{engine.url}/fn/sync", params={"url": "http://127.0.0.1:9/api"})
    assert response.status_code == 502
    (result,) = response.json()["results"]
    assert result["ok"] is False
