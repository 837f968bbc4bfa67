"""The JSON object that stands in for an encrypted value on the wire, shared by the official
Python and TypeScript encryption middleware: ``{"__ENCRYPTED__": true, "__STRATEGY__": id,
"data": ciphertext}``."""

from __future__ import annotations

from typing import Any, Final, TypeGuard

ENCRYPTED: Final = "__ENCRYPTED__"
STRATEGY: Final = "__STRATEGY__"
DATA: Final = "data"
KEYS: Final = frozenset({ENCRYPTED, STRATEGY, DATA})

# @inngest/middleware-encryption v0 (AES via crypto-js) wrote markers without a strategy; naming
# it lets such values fail with a clear message instead of reaching user code as ciphertext.
LEGACY_STRATEGY: Final = "inngest/aes"


def is_marker(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether ``value`` is an encrypted value (extra keys allowed: invoke data keeps ``_inngest``)."""
    return (
        isinstance(value, dict)
        and value.get(ENCRYPTED) is True
        and isinstance(value.get(DATA), str)
    )


def strategy_of(marker: dict[str, Any]) -> str:
    strategy = marker.get(STRATEGY, LEGACY_STRATEGY)
    return strategy if isinstance(strategy, str) else repr(strategy)


def make(strategy: str, data: str) -> dict[str, Any]:
    return {ENCRYPTED: True, STRATEGY: strategy, DATA: data}
