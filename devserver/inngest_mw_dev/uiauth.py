"""Signing in to the web UI of an engine that runs with a signing key.

Scripts and SDKs send the key as a bearer token; a browser cannot, so the UI has a sign-in form
(``/login``) that takes the signing key, or the sign-in code the engine prints in its start-up
line (new on every start, so the key itself need not be pasted into a browser). Neither ever goes
in a URL: the form is POSTed, and nothing secret reaches an access log or the browser's history.

A successful sign-in sets two cookies, both ``SameSite=Strict`` (a page on another site cannot
make the browser send them):

- ``inngest_mw_session``: ``<expiry>.<HMAC(key, expiry)>``, ``HttpOnly``; valid for
  ``SESSION_SECONDS`` and across engine restarts with the same key (a new key ends every session);
- ``inngest_mw_csrf``: an HMAC of the session, readable by the UI's script, which sends it back as
  the ``X-Inngest-MW-CSRF`` header on every POST. A request that changes something and carries
  only the session cookie is refused unless the header matches and its ``Origin``, when sent, is
  the engine's own (double-submit, as defence in depth behind ``SameSite``).

Signing out (``POST /logout``) clears both cookies and revokes that session on this engine, so a
copy of the cookie is refused too until the engine stops (a restarted engine forgets revocations;
the session still ends at its expiry, and a new signing key ends every session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request

from inngest_mw.signature import hash_signing_key, strip_key_prefix

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "SIGN_IN_REASON",
    "Denied",
    "UiAuth",
    "new_sign_in_code",
]

SESSION_COOKIE: Final = "inngest_mw_session"
CSRF_COOKIE: Final = "inngest_mw_csrf"
CSRF_HEADER: Final = "x-inngest-mw-csrf"
SESSION_SECONDS: Final = 12 * 3600
_UNSAFE: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def new_sign_in_code() -> str:
    """80 random bits as five groups of four hex digits: easy to copy, not to guess."""
    raw = secrets.token_hex(10)
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a browser request is refused: the status and one sentence."""

    status: int
    reason: str


class UiAuth:
    """Checks sign-in credentials and the session cookies of one engine's signing key."""

    def __init__(
        self, signing_key: str, sign_in_code: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        bare = strip_key_prefix(signing_key)
        self._accepted = [c.encode() for c in (bare, hash_signing_key(bare))]
        if sign_in_code:
            self._accepted.append(_code_form(sign_in_code).encode())
        self._secret = hashlib.sha256(b"inngest-mw web UI session\0" + bare.encode()).digest()
        self.clock = clock
        self._revoked: dict[str, int] = {}
        """Sessions signed out of, each with its expiry (after which it is refused anyway)."""

    def accepts(self, credential: str) -> bool:
        """Whether ``credential`` is the signing key (any of its forms) or the sign-in code."""
        supplied = credential.strip()
        if not supplied:
            return False
        forms = {strip_key_prefix(supplied).encode(), _code_form(supplied).encode()}
        ok = False
        for candidate in self._accepted:  # compare with every one: constant time per candidate
            for form in forms:
                ok = hmac.compare_digest(candidate, form) or ok
        return ok

    def new_session(self) -> tuple[str, str]:
        """A fresh session cookie value and its CSRF token."""
        expiry = str(int(self.clock()) + SESSION_SECONDS)
        session = f"{expiry}.{self._mac('session', expiry)}"
        return session, self.csrf_for(session)

    def csrf_for(self, session: str) -> str:
        return self._mac("csrf", session)

    def session_ok(self, session: str | None) -> bool:
        if not session or len(session) > 200:
            return False
        expiry, _, mac = session.partition(".")
        if not expiry.isascii() or not expiry.isdigit() or len(expiry) > 12:
            return False
        if not hmac.compare_digest(mac.encode(), self._mac("session", expiry).encode()):
            return False
        return int(expiry) > self.clock() and session not in self._revoked

    def revoke(self, session: str | None) -> None:
        """Sign ``session`` out: refused from now on (a value that is no session is ignored)."""
        if not self.session_ok(session):
            return
        assert session is not None
        now = self.clock()
        for old in [s for s, expiry in self._revoked.items() if expiry <= now]:
            del self._revoked[old]  # expired: refused by its expiry alone
        self._revoked[session] = int(session.partition(".")[0])

    def check(self, request: Request) -> Denied | None:
        """``None`` when the request's session lets it through, else why not."""
        session = request.cookies.get(SESSION_COOKIE)
        if not self.session_ok(session):
            return Denied(401, _SIGN_IN if session is None else _EXPIRED)
        assert session is not None
        if request.method.upper() not in _UNSAFE:
            return None
        origin = request.headers.get("origin")
        if origin is not None and not _same_origin(origin, request):
            return Denied(403, f"refused: this request comes from another site ({origin[:80]})")
        token = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.csrf_for(session).encode()):
            return Denied(
                403,
                "refused: a change from the web UI must carry its "
                f"{CSRF_HEADER} header (reload the page and try again)",
            )
        return None

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


SIGN_IN_REASON: Final = (
    "this engine runs with a signing key: sign in at /login with the key or the sign-in code "
    "printed when the engine started (scripts send Authorization: Bearer <signing key>)"
)
_SIGN_IN: Final = SIGN_IN_REASON
_EXPIRED: Final = (
    "your web UI session has ended (signed out or expired) or belongs to another signing key: "
    "sign in again at /login"
)


def _code_form(text: str) -> str:
    return text.strip().lower().replace("-", "").replace(" ", "")


def _same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and parts.netloc == host and bool(host)
