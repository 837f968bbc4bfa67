"""Request signatures and key hashing, exactly as the Inngest server computes them.

The MAC key is the signing key *text* with its ``signkey-<env>-`` prefix removed (not hex-decoded);
the message is the raw body bytes followed by the decimal unix timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Final

from inngest_mw.errors import SignatureError

__all__ = [
    "SIGNATURE_WINDOW_SECONDS",
    "bearer_token",
    "check_header",
    "hash_event_key",
    "hash_signing_key",
    "sign",
    "strip_key_prefix",
    "verify",
]

SIGNATURE_WINDOW_SECONDS = 300
_PREFIX = re.compile(r"^signkey-\w+-")


def strip_key_prefix(key: str) -> str:
    """``signkey-test-abcd`` -> ``abcd``; a bare key is returned unchanged."""
    return _PREFIX.sub("", key, count=1)


def _mac(body: bytes, key: str, ts: str) -> str:
    return hmac.new(strip_key_prefix(key).encode(), body + ts.encode(), hashlib.sha256).hexdigest()


def sign(body: bytes, signing_key: str, unix_ts: int | None = None) -> str:
    """The ``X-Inngest-Signature`` header value for ``body``: ``t=<ts>&s=<hex mac>``."""
    ts = str(int(time.time()) if unix_ts is None else unix_ts)
    return f"t={ts}&s={_mac(body, signing_key, ts)}"


def hash_signing_key(key: str) -> str:
    """The key as sent in ``Authorization: Bearer``: prefix kept, hex key replaced by sha256 of its bytes."""
    bare = strip_key_prefix(key)
    prefix = key[: len(key) - len(bare)]
    try:
        raw = bytes.fromhex(bare)
    except ValueError:
        raw = bare.encode()
    return prefix + hashlib.sha256(raw).hexdigest()


def bearer_token(key: str) -> str:
    return f"Bearer {hash_signing_key(key)}"


def hash_event_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


_TS: Final = re.compile(r"[0-9]{1,12}")
_MAC: Final = re.compile(r"[0-9a-fA-F]{1,128}")


def _parse_header(header: str) -> tuple[str, str]:
    fields: dict[str, str] = {}
    for part in header.split("&"):
        name, sep, value = part.partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    ts, mac = fields.get("t", ""), fields.get("s", "")
    # ASCII digits of a plausible Unix time and a hex digest only: ``str.isdigit`` also accepts
    # "²", ``int`` of 400 digits overflows the window check, and non-ASCII breaks compare_digest.
    if not _TS.fullmatch(ts) or not _MAC.fullmatch(mac):
        raise SignatureError(
            "malformed X-Inngest-Signature header: expected t=<unix seconds>&s=<hex>"
        )
    return ts, mac


def check_header(
    header: str | None, *, now: float | None = None, window: int = SIGNATURE_WINDOW_SECONDS
) -> tuple[str, str]:
    """The header's ``(timestamp, mac)``, checked for everything that needs no body.

    Raises ``SignatureError`` when the header is missing, malformed or outside the window, so an
    adapter can refuse such a request before it reads (and holds) the body.
    """
    if not header:
        raise SignatureError("missing X-Inngest-Signature header")
    ts, mac = _parse_header(header)
    current = time.time() if now is None else now
    if abs(current - int(ts)) > window:
        raise SignatureError("signature timestamp is outside the allowed window")
    return ts, mac


def verify(
    body: bytes,
    header: str | None,
    keys: Sequence[str],
    *,
    now: float | None = None,
    window: int = SIGNATURE_WINDOW_SECONDS,
) -> str:
    """Check ``header`` against ``body`` with each key in turn; return the key that matched.

    Raises ``SignatureError`` (never naming key material) when the header is missing, malformed,
    outside the +/- ``window`` seconds, or matches no key.
    """
    ts, mac = check_header(header, now=now, window=window)
    for key in keys:
        if key and hmac.compare_digest(_mac(body, key, ts), mac.lower()):
            return key
    raise SignatureError("signature does not match")
