"""Encryption middleware for inngest-mw: sensitive step outputs and event fields never reach the
Inngest server in clear text. Wire-compatible with the official ``inngest-encryption`` (Python)
and ``@inngest/middleware-encryption`` (TypeScript) packages, so apps can share keys and runs."""

from inngest_mw_encryption.errors import DecryptionError, EncryptionError
from inngest_mw_encryption.middleware import EncryptionMiddleware, EncryptionSettings
from inngest_mw_encryption.strategy import EncryptionStrategy, LibsodiumStrategy, derive_key

__all__ = [
    "DecryptionError",
    "EncryptionError",
    "EncryptionMiddleware",
    "EncryptionSettings",
    "EncryptionStrategy",
    "LibsodiumStrategy",
    "derive_key",
]
