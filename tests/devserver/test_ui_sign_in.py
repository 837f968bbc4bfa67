"""Signing in to the web UI of an engine with a signing key, over real HTTP.

The form takes the key (any of its forms) or the start-up sign-in code, never from a URL; the
session cookies are HttpOnly (the session) and SameSite=Strict (both); a change made with the
session alone (no CSRF header, or from another origin) is refused with a sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from inngest_mw_dev import EngineThread
from inngest_mw_dev.uiauth import SESSION_SECONDS, UiAuth

from inngest_mw.signature import hash_signing_key

BARE = "3c" * 32
KEY = f"signkey-test-{BARE}"
CSRF = "x-inngest-mw-csrf"


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[EngineThread]:
    with EngineThread(tmp_path / "e.db", port=0, signing_key=KEY) as running:
        yield running


def _sign_in(url: str, credential: str, target: str = "/") -> httpx.Response:
    return httpx.post(f"{url}/login", data={"credential": credential, "next": target}, timeout=10)


def test_without_a_session_pages_and_the_api_are_refused_with_401_and_a_sentence(
    signed: EngineThread,
) -> None:
    for path in ("/", "/events", "/runs/01ABC", "/functions", "/apps"):
        page = httpx.get(signed.url + path, timeout=10)
        assert page.status_code == 401, path
        assert "This engine runs with a signing key." in page.text
        assert '<form method="post" action="/login">' in page.text
    api = httpx.get(f"{signed.url}/v1/runs", timeout=10)
    assert api.status_code == 401
    assert api.json()["error"].startswith("Unauthorized: this engine runs with a signing key")
    stream = httpx.get(f"{signed.url}/v1/stream", timeout=10)
    assert stream.status_code == 401
    assert httpx.get(f"{signed.url}/login", timeout=10).status_code == 200
    assert httpx.get(f"{signed.url}/static/app.js", timeout=10).status_code == 200


@pytest.mark.parametrize("form", ["key", "bare", "hash", "code", "code-spaced"])
def test_the_key_in_any_form_or_the_code_signs_in(signed: EngineThread, form: str) -> None:
    code = signed.engine.sign_in_code
    assert code is not None
    credential = {
        "key": KEY,
        "bare": BARE,
        "hash": hash_signing_key(KEY),
        "code": code,
        "code-spaced": f"  {code.upper().replace('-', '')} ",
    }[form]
    answer = _sign_in(signed.url, credential, "/events?internal=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/events?internal=1"
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("inngest_mw_session="))
    csrf = next(c for c in cookies if c.startswith("inngest_mw_csrf="))
    assert "HttpOnly" in session
    assert "SameSite=strict" in session
    assert "SameSite=strict" in csrf
    assert "HttpOnly" not in csrf  # the UI's script reads it to send the header
    with httpx.Client(base_url=signed.url, cookies=answer.cookies, timeout=10) as browser:
        assert browser.get("/events").status_code == 200
        assert browser.get("/v1/runs").status_code == 200
        assert browser.get("/login").status_code == 303  # already signed in


@pytest.mark.parametrize("credential", ["", "nope", BARE[:-1], "signkey-test-", "0000-0000-0000"])
def test_anything_else_is_refused_with_the_form_again(
    signed: EngineThread, credential: str
) -> None:
    answer = _sign_in(signed.url, credential)
    assert answer.status_code == 401
    assert "set-cookie" not in answer.headers
    expected = "That is neither" if credential else "Enter the signing key or the sign-in code"
    assert expected in answer.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "evil", "/\\evil"])
def test_signing_in_only_ever_goes_back_to_a_page_of_this_engine(
    signed: EngineThread, target: str
) -> None:
    answer = _sign_in(signed.url, KEY, target)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_a_change_needs_the_csrf_header_and_this_origin(signed: EngineThread) -> None:
    answer = _sign_in(signed.url, KEY)
    token = answer.cookies["inngest_mw_csrf"]
    with httpx.Client(base_url=signed.url, cookies=answer.cookies, timeout=10) as browser:
        bare = browser.post("/v1/events", json={"name": "t/x"})
        assert bare.status_code == 403
        assert "must carry its x-inngest-mw-csrf header" in bare.json()["error"]
        resync = browser.post("/fn/sync", params={"url": "http://127.0.0.1:9/api/inngest"})
        assert resync.status_code == 403  # the Resync button is a change too
        forged = token[:-1] + ("1" if token.endswith("0") else "0")  # never the real one
        wrong = browser.post(
            "/v1/events", json={"name": "t/x"}, headers={"x-inngest-mw-csrf": forged}
        )
        assert wrong.status_code == 403
        foreign = browser.post(
            "/v1/events",
            json={"name": "t/x"},
            headers={"x-inngest-mw-csrf": token, "origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        assert "from another site" in foreign.json()["error"]
        own = browser.post(
            "/v1/events",
            json={"name": "t/x"},
            headers={"x-inngest-mw-csrf": token, "origin": signed.url},
        )
        assert own.status_code == 200, own.text
        events = browser.get("/v1/events").json()["data"]
        assert [e["name"] for e in events] == ["t/x"]
    cross = httpx.post(
        f"{signed.url}/login",
        data={"credential": KEY},
        headers={"origin": "http://evil.example"},
        timeout=10,
    )
    assert cross.status_code == 403


def test_a_forged_or_foreign_session_is_refused(tmp_path: Path, signed: EngineThread) -> None:
    session = _sign_in(signed.url, KEY).cookies["inngest_mw_session"]
    expiry, _, mac = session.partition(".")
    for forged in (f"{int(expiry) + 10}.{mac}", f"{expiry}.{'0' * 64}", "x", "1." + mac):
        page = httpx.get(signed.url + "/", cookies={"inngest_mw_session": forged}, timeout=10)
        assert page.status_code == 401
        assert "(signed out or expired) or belongs to another signing key" in page.text
    with EngineThread(
        tmp_path / "other.db", port=0, signing_key="signkey-test-" + "4d" * 32
    ) as other:
        refused = httpx.get(other.url + "/", cookies={"inngest_mw_session": session}, timeout=10)
        assert refused.status_code == 401
    with EngineThread(tmp_path / "same.db", port=0, signing_key=BARE) as same:
        kept = httpx.get(same.url + "/", cookies={"inngest_mw_session": session}, timeout=10)
        assert kept.status_code == 200  # the same key, restarted: the session holds


def test_a_session_ends_when_it_expires() -> None:
    now = [1_000_000.0]
    auth = UiAuth(KEY, "abcd-ef01", clock=lambda: now[0])
    session, csrf = auth.new_session()
    assert auth.session_ok(session)
    assert auth.csrf_for(session) == csrf
    now[0] += SESSION_SECONDS + 1
    assert not auth.session_ok(session)
    assert auth.accepts("ABCD EF01")
    assert not auth.accepts("abcd-ef02")


def test_a_revoked_session_is_refused_and_forgotten_once_it_has_expired() -> None:
    now = [1_000_000.0]
    auth = UiAuth(KEY, None, clock=lambda: now[0])
    first, _ = auth.new_session()
    now[0] += 60
    second, _ = auth.new_session()
    for junk in (None, "", "not-a-session", "9" * 12 + ".00"):
        auth.revoke(junk)  # no session: nothing to revoke, nothing kept
    assert auth.session_ok(first)
    assert auth.session_ok(second)
    auth.revoke(first)
    assert not auth.session_ok(first)
    assert auth.session_ok(second)
    assert auth._revoked.keys() == {first}
    now[0] += SESSION_SECONDS - 30  # the first has expired, the second not yet
    auth.revoke(second)
    assert auth._revoked.keys() == {second}
    assert not auth.session_ok(second)


def test_without_a_signing_key_there_is_nothing_to_sign_in_to(tmp_path: Path) -> None:
    with EngineThread(tmp_path / "open.db", port=0) as open_engine:
        assert open_engine.engine.sign_in_code is None
        assert httpx.get(open_engine.url + "/", timeout=10).status_code == 200
        assert httpx.get(open_engine.url + "/login", timeout=10).status_code == 404
        sent = httpx.post(f"{open_engine.url}/v1/events", json={"name": "t/open"}, timeout=10)
        assert sent.status_code == 200
