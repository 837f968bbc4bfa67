"""Turning values into encrypted markers and back with one strategy, and the same for the
fields of event data. Every operation is told what it handles (``what``) so errors and warnings
can say which value failed without showing the value."""

from __future__ import annotations

import logging
from typing import Any

from inngest_mw_encryption import _marker
from inngest_mw_encryption.errors import DecryptionError
from inngest_mw_encryption.strategy import EncryptionStrategy

_log = logging.getLogger("inngest_mw_encryption")


class Codec:
    __slots__ = ("strategy",)

    def __init__(self, strategy: EncryptionStrategy) -> None:
        self.strategy = strategy

    def seal(self, value: object, what: str) -> object:
        """``value`` (JSON-ready) as an encrypted marker; an already encrypted value is kept."""
        if _marker.is_marker(value):
            _log.warning("inngest-mw-encryption: %s is already encrypted; left as is", what)
            return value
        return _marker.make(self.strategy.identifier, self.strategy.encrypt(value))

    def open(self, marker: dict[str, Any], what: str) -> object:
        """The value inside ``marker``; ``DecryptionError`` naming ``what`` when impossible."""
        strategy = _marker.strategy_of(marker)
        if strategy != self.strategy.identifier:
            raise DecryptionError(
                f"cannot decrypt {what}: it was encrypted with strategy {strategy!r}, but this "
                f"middleware is configured for {self.strategy.identifier!r}"
            )
        try:
            return self.strategy.decrypt(marker[_marker.DATA])
        except DecryptionError as exc:
            raise DecryptionError(f"cannot decrypt {what}: {exc.message}") from None
        except Exception as exc:
            # A custom strategy's message might quote what it failed on; only its type is safe.
            raise DecryptionError(
                f"cannot decrypt {what}: strategy {strategy!r} raised {type(exc).__name__}"
            ) from None

    def open_fields(self, data: dict[str, Any], what: str) -> dict[str, Any] | None:
        """``data`` (event data, a step error) with every encrypted top-level field decrypted, or
        ``None`` if none was.

        Data that is encrypted as a whole is decrypted too; plaintext keys next to the marker
        (``_inngest`` on invoke events) are kept, under the decrypted ones.
        """
        changed = False
        if _marker.is_marker(data):
            inner = self.open(data, what)
            if not isinstance(inner, dict):
                raise DecryptionError(f"cannot decrypt {what}: it does not hold an object")
            rest = {k: v for k, v in data.items() if k not in _marker.KEYS}
            data, changed = {**rest, **inner}, True
        for key, value in list(data.items()):
            if _marker.is_marker(value):
                if not changed:
                    data, changed = dict(data), True
                data[key] = self.open(value, f"field {key!r} of {what}")
        return data if changed else None
