"""ULID identifiers for events and runs: sortable by creation time, unique without coordination.

Event IDs may also be derived from the SDK's ``X-Inngest-Event-Id-Seed`` so a retried send
yields the same IDs (and is therefore deduplicated by event-ID idempotency).
"""

from __future__ import annotations

import base64
import functools
import os
import time
import uuid

__all__ = ["deterministic_uuid", "new_ulid", "ulid_from_seed"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_NAMESPACE = uuid.UUID("8a3c6c2e-6d1f-4b7e-9a52-2f1c0c8e5d11")


_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]
"""Every 10-bit value as its two base-32 digits."""
_SHIFTS = range(120, -1, -10)


def _encode(ms: int, entropy: bytes) -> str:
    """26 base-32 digits (Crockford's alphabet) of the 48-bit time and the 80-bit entropy: 130
    bits, read two digits at a time from the top (the first two bits are always zero)."""
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(entropy[:10].rjust(10, b"\0"), "big")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_ulid(ms: int | None = None) -> str:
    """A fresh ULID for ``ms`` (default: now)."""
    return _encode(int(time.time() * 1000) if ms is None else ms, os.urandom(10))


def ulid_from_seed(seed: str, index: int) -> str | None:
    """The ``index``-th event ID of a send carrying ``X-Inngest-Event-Id-Seed: <ms>,<b64>``.

    Returns None when the seed is malformed, so the caller falls back to random IDs.
    """
    millis, sep, b64 = seed.partition(",")
    if not sep or not millis.strip().isdigit():
        return None
    try:
        entropy = base64.b64decode(b64.strip(), validate=True)
    except ValueError:
        return None
    if len(entropy) != 10:
        return None
    bumped = (int.from_bytes(entropy, "big") + index) % (1 << 80)
    return _encode(int(millis), bumped.to_bytes(10, "big"))


@functools.lru_cache(maxsize=4096)
def deterministic_uuid(name: str) -> str:
    """A stable UUID for an app or function slug (the server's app/function IDs are UUIDs);
    remembered, since every call request of a function asks for its own."""
    return str(uuid.uuid5(_NAMESPACE, name))
