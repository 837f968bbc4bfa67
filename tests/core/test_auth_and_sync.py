"""Cloud-mode authentication, signed responses, introspection bodies and PUT sync (both kinds)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from inngest_mw_asgi import serve
from support import Caller, call_body, send_json, serve_asgi

import inngest_mw
from inngest_mw import TriggerEvent, signature
from inngest_mw.errors import SigningKeyMissingError

KEY = "signkey-test-1111111111111111111111111111111111111111111111111111111111111111"
FALLBACK = "signkey-test-2222222222222222222222222222222222222222222222222222222222222222"


class RegisterPeer:
    """Stands in for the Inngest API's ``/fn/register``: records each sync, answers ``reply``."""

    def __init__(self, status: int = 200, reply: dict[str, Any] | None = None) -> None:
        self.status = status
        self.reply = reply or {"ok": True, "modified": True}
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        path = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )
        self.requests.append((path, headers, json.loads(message.get("body") or b"null")))
        await send_json(send, self.status, self.reply)


def make_fn(client: inngest_mw.Inngest) -> inngest_mw.Function[Any]:
    @client.create_function(fn_id="f", trigger=TriggerEvent(event="e/x"), retries=2)
    async def f(ctx: inngest_mw.Context) -> str:
        return "ok"

    return f


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[RegisterPeer, str]]:
    registry = RegisterPeer()
    with serve_asgi(registry) as url:
        yield registry, url


@pytest.fixture(scope="module")
def cloud(peer: tuple[RegisterPeer, str]) -> Iterator[str]:
    client = inngest_mw.Inngest(
        app_id="app", signing_key=KEY, event_key="ek", api_base_url=peer[1], env="branch-1"
    )
    with serve_asgi(serve(client, [make_fn(client)])) as url:
        yield url + "/api/inngest"


def test_cloud_mode_without_signing_key_refuses_to_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INNGEST_SIGNING_KEY", raising=False)
    monkeypatch.delenv("INNGEST_DEV", raising=False)
    client = inngest_mw.Inngest(app_id="app")
    with pytest.raises(SigningKeyMissingError, match="INNGEST_SIGNING_KEY"):
        serve(client, [make_fn(client)])


def test_signed_call_is_answered_and_the_response_is_signed(cloud: str) -> None:
    res = Caller(cloud, KEY).call("app-f", call_body())
    assert (res.status_code, res.json()) == (200, "ok")
    assert signature.verify(res.content, res.headers["x-inngest-signature"], [KEY]) == KEY


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-inngest-signature": "t=1&s=00"},
        {"x-inngest-signature": "nonsense"},
    ],
    ids=["unsigned", "stale", "malformed"],
)
def test_unsigned_or_bad_signature_is_refused_without_leaking(
    cloud: str, headers: dict[str, str]
) -> None:
    body = json.dumps(call_body()).encode()
    res = httpx.post(
        cloud, params={"fnId": "app-f", "stepId": "step"}, content=body, headers=headers
    )
    assert res.status_code == 401
    assert res.json()["message"] == "Unauthorized"
    assert KEY[-20:] not in res.text


def test_signature_for_another_body_is_refused(cloud: str) -> None:
    body = json.dumps(call_body()).encode()
    header = signature.sign(body + b" ", KEY)
    res = httpx.post(
        cloud, params={"fnId": "app-f"}, content=body, headers={"x-inngest-signature": header}
    )
    assert res.status_code == 401


def test_fallback_signing_key_is_accepted(
    peer: tuple[RegisterPeer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INNGEST_SIGNING_KEY_FALLBACK", FALLBACK)
    client = inngest_mw.Inngest(app_id="app", signing_key=KEY, api_base_url=peer[1])
    with serve_asgi(serve(client, [make_fn(client)])) as url:
        res = Caller(url + "/api/inngest", FALLBACK).call("app-f", call_body())
        assert res.status_code == 200
        assert signature.verify(res.content, res.headers["x-inngest-signature"], [FALLBACK])
        rotated_out = (
            "signkey-test-3333333333333333333333333333333333333333333333333333333333333333"
        )
        assert (
            Caller(url + "/api/inngest", rotated_out).call("app-f", call_body()).status_code == 401
        )


def test_unsigned_introspection_shows_only_unauthenticated_fields(cloud: str) -> None:
    res = httpx.get(cloud)
    assert res.status_code == 200
    assert res.json() == {
        "schema_version": "2024-05-24",
        "authentication_succeeded": None,
        "function_count": 1,
        "has_event_key": True,
        "has_signing_key": True,
        "has_signing_key_fallback": False,
        "mode": "cloud",
    }


def test_signed_introspection_is_authenticated(cloud: str) -> None:
    res = httpx.get(cloud, headers={"x-inngest-signature": signature.sign(b"", KEY)})
    body = res.json()
    assert body["authentication_succeeded"] is True
    assert body["app_id"] == "app"
    assert body["env"] == "branch-1"
    assert body["sdk_language"] == "py"
    assert body["event_key_hash"] == signature.hash_event_key("ek")
    assert body["capabilities"] == {"in_band_sync": "v1", "trust_probe": "v1"}
    assert signature.verify(res.content, res.headers["x-inngest-signature"], [KEY])


def test_badly_signed_introspection_reports_failure(cloud: str) -> None:
    res = httpx.get(cloud, headers={"x-inngest-signature": f"t={int(time.time())}&s=00"})
    assert res.json()["authentication_succeeded"] is False
    assert "app_id" not in res.json()


def test_out_of_band_sync_registers_with_hashed_key_and_forwards_deploy_id(
    cloud: str, peer: tuple[RegisterPeer, str]
) -> None:
    registry, _ = peer
    registry.requests.clear()
    res = httpx.put(
        cloud,
        params={"deployId": "d-1"},
        headers={"x-inngest-server-kind": "cloud", "x-inngest-signature": signature.sign(b"", KEY)},
    )
    assert (res.status_code, res.json()) == (
        200,
        {"message": "Successfully synced.", "modified": True},
    )
    [(path, headers, body)] = registry.requests
    assert path == "/fn/register?deployId=d-1"
    assert headers["authorization"] == "Bearer " + signature.hash_signing_key(KEY)
    assert headers["x-inngest-expected-server-kind"] == "cloud"
    assert headers["x-inngest-env"] == "branch-1"
    assert headers["x-inngest-sdk"].startswith("inngest-mw:v")
    assert body["url"] == cloud
    assert body["appName"] == "app"
    assert body["deployType"] == "ping"
    assert body["functions"] == [
        {
            "id": "app-f",
            "name": "f",
            "triggers": [{"event": "e/x"}],
            "steps": {
                "step": {
                    "id": "step",
                    "name": "step",
                    "runtime": {"type": "http", "url": f"{cloud}?fnId=app-f&stepId=step"},
                    "retries": {"attempts": 2},
                }
            },
        }
    ]


def test_unsigned_put_with_a_forged_host_registers_nothing_in_cloud_mode(
    cloud: str, peer: tuple[RegisterPeer, str]
) -> None:
    registry, _ = peer
    registry.requests.clear()
    res = httpx.put(cloud, headers={"host": "attacker.example.com"})
    assert res.status_code == 400
    assert res.json()["code"] == "serve_origin_required"
    assert "INNGEST_SERVE_ORIGIN" in res.json()["message"]
    assert registry.requests == []


def test_with_a_serve_origin_the_host_header_never_chooses_the_url(
    peer: tuple[RegisterPeer, str],
) -> None:
    registry, api = peer
    client = inngest_mw.Inngest(app_id="app", signing_key=KEY, api_base_url=api)
    app = serve(client, [make_fn(client)], serve_origin="https://app.example.com")
    with serve_asgi(app) as url:
        registry.requests.clear()
        res = httpx.put(url + "/api/inngest", headers={"host": "attacker.example.com"})
    assert res.status_code == 200
    [(_, _, body)] = registry.requests
    assert body["url"] == "https://app.example.com/api/inngest"


def test_cloud_mode_without_a_serve_origin_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    client = inngest_mw.Inngest(app_id="app", signing_key=KEY)
    with caplog.at_level("WARNING", logger="inngest_mw"):
        serve(client, [make_fn(client)])
    [record] = [r for r in caplog.records if r.name == "inngest_mw"]
    assert "without serve_origin" in record.getMessage()
    assert "INNGEST_SERVE_ORIGIN" in record.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="inngest_mw"):
        serve(client, [make_fn(client)], serve_origin="https://app.example.com")
    assert [r for r in caplog.records if r.name == "inngest_mw"] == []


def test_failed_registration_answers_500_with_the_server_error() -> None:
    registry = RegisterPeer(status=400, reply={"error": "triggers: invalid cron"})
    with serve_asgi(registry) as api:
        client = inngest_mw.Inngest(app_id="app", is_production=False, api_base_url=api)
        with serve_asgi(serve(client, [make_fn(client)])) as url:
            res = httpx.put(url + "/api/inngest")
    assert res.status_code == 500
    assert res.json() == {"message": "sync failed: triggers: invalid cron", "modified": False}


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "wrong-key"])
def test_a_refused_registration_says_what_to_set(key: str | None) -> None:
    registry = RegisterPeer(status=401, reply={"error": "unauthorized"})
    with serve_asgi(registry) as api:
        client = inngest_mw.Inngest(
            app_id="app", is_production=False, api_base_url=api, signing_key=key
        )
        with serve_asgi(serve(client, [make_fn(client)])) as url:
            res = httpx.put(url + "/api/inngest")
    assert res.status_code == 500
    message = res.json()["message"]
    assert message.startswith(f"sync failed: Inngest at {api}/ refused")
    assert "set INNGEST_SIGNING_KEY" in message
    if key is None:
        assert "without a signing key (401)" in message
        assert "leave INNGEST_DEV unset" in message
    else:
        assert "refused the signing key (401)" in message


def test_in_band_sync_answers_with_the_registration(cloud: str) -> None:
    body = json.dumps({"url": "https://public.example.com/api/inngest"}).encode()
    headers = {"x-inngest-sync-kind": "in_band", "x-inngest-signature": signature.sign(body, KEY)}
    res = httpx.put(cloud, content=body, headers=headers)
    assert res.status_code == 200
    assert res.headers["x-inngest-sync-kind"] == "in_band"
    reply = res.json()
    assert reply["url"] == "https://public.example.com/api/inngest"
    assert reply["app_id"] == "app"
    assert reply["functions"][0]["steps"]["step"]["runtime"]["url"].startswith(
        "https://public.example.com/api/inngest?fnId=app-f"
    )
    assert reply["inspection"]["authentication_succeeded"] is True
    assert signature.verify(res.content, res.headers["x-inngest-signature"], [KEY])


def test_in_band_sync_without_signature_is_refused(cloud: str) -> None:
    res = httpx.put(
        cloud, content=b'{"url":"https://x"}', headers={"x-inngest-sync-kind": "in_band"}
    )
    assert res.status_code == 401


def test_on_failure_registers_a_failure_function() -> None:
    client = inngest_mw.Inngest(app_id="app", is_production=False)

    async def failed(ctx: inngest_mw.Context) -> None:
        return None

    @client.create_function(fn_id="f", trigger=TriggerEvent(event="e/x"), on_failure=failed)
    async def f(ctx: inngest_mw.Context) -> None:
        return None

    [_, failure] = f.get_config("http://h/api/inngest")
    assert failure["id"] == "app-f-failure"
    assert failure["name"] == "f (failure)"
    assert failure["triggers"] == [
        {"event": "inngest/function.failed", "expression": "event.data.function_id == 'app-f'"}
    ]
    # Like the official SDK: the failure handler is not retried.
    assert failure["steps"]["step"]["retries"] == {"attempts": 0}


@pytest.mark.parametrize("keyed", [False, True])
def test_dev_mode_answers_an_in_band_sync_in_band_and_registers_nothing(keyed: bool) -> None:
    registry = RegisterPeer()
    body = json.dumps({"url": "http://127.0.0.1:9/api/inngest"}).encode()
    with serve_asgi(registry) as api:
        client = inngest_mw.Inngest(
            app_id="app", is_production=False, api_base_url=api, signing_key=KEY if keyed else None
        )
        with serve_asgi(serve(client, [make_fn(client)])) as url:
            headers = {"x-inngest-sync-kind": "in_band"}
            if keyed:
                forged = httpx.put(
                    url + "/api/inngest",
                    content=body,
                    headers={**headers, "x-inngest-signature": signature.sign(body, KEY + "0")},
                )
                assert forged.status_code == 401
                headers["x-inngest-signature"] = signature.sign(body, KEY)
            res = httpx.put(url + "/api/inngest", content=body, headers=headers)
    assert res.status_code == 200
    assert res.headers["x-inngest-sync-kind"] == "in_band"
    reply = res.json()
    assert reply["url"] == "http://127.0.0.1:9/api/inngest"
    assert reply["functions"][0]["id"] == "app-f"
    assert registry.requests == []
    if keyed:
        assert signature.verify(res.content, res.headers["x-inngest-signature"], [KEY])
