"""Encryption strategies: the pluggable interface and the default, libsodium's secretbox.

``LibsodiumStrategy`` produces exactly what ``inngest-encryption`` (PyNaCl) and
``@inngest/middleware-encryption`` (libsodium-wrappers) produce, so either side decrypts the
other's values: key = BLAKE2b-256(UTF-8 key), data = base64(nonce(24) || MAC || ciphertext).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Final, Protocol

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret

from inngest_mw import ConfigError
from inngest_mw_encryption.errors import DecryptionError

__all__ = ["EncryptionStrategy", "LibsodiumStrategy", "derive_key"]


class EncryptionStrategy(Protocol):
    """An algorithm with its keys. ``encrypt`` takes a JSON-ready value and returns text;
    ``decrypt`` reverses it or raises ``DecryptionError`` with a message free of secrets.
    ``identifier`` is written into every value it encrypts and selects it for decryption."""

    @property
    def identifier(self) -> str: ...

    def encrypt(self, value: object) -> str: ...

    def decrypt(self, data: str) -> object: ...


def derive_key(key: str | bytes) -> bytes:
    """The 32-byte secretbox key for a key string: unkeyed BLAKE2b-256 of its UTF-8 bytes.

    ``bytes`` are hashed like the string they encode (``b"k"`` and ``"k"`` are the same key).
    ``inngest-encryption`` instead reads a ``bytes`` key as the hex of a raw key; keys given there
    as strings, the documented form, are interchangeable with ours. Keys are not trimmed (the
    Python package does not trim; the TypeScript one does).
    """
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not raw:
        raise ConfigError("encryption key must not be empty")
    return nacl.hash.blake2b(
        raw, digest_size=nacl.secret.SecretBox.KEY_SIZE, encoder=nacl.encoding.RawEncoder
    )


class LibsodiumStrategy:
    """XSalsa20-Poly1305 secretbox; encrypts with the first key, decrypts with any (rotation)."""

    identifier: Final = "inngest/libsodium"

    __slots__ = ("_boxes",)

    def __init__(self, key: str | bytes, fallback_keys: Sequence[str | bytes] = ()) -> None:
        if isinstance(fallback_keys, str | bytes):
            raise ConfigError("fallback_decryption_keys must be a list of keys, not one key")
        self._boxes = [nacl.secret.SecretBox(derive_key(k)) for k in (key, *fallback_keys)]

    def encrypt(self, value: object) -> str:
        # Compact separators, as JSON.stringify writes; both sides only parse the plaintext.
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        sealed = self._boxes[0].encrypt(plaintext)  # nonce || MAC || ciphertext
        return base64.b64encode(bytes(sealed)).decode("ascii")

    def decrypt(self, data: str) -> object:
        try:
            sealed = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("the ciphertext is not valid base64") from None
        min_size = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES
        if len(sealed) < min_size:
            raise DecryptionError("the ciphertext is too short") from None
        for box in self._boxes:
            try:
                plaintext = box.decrypt(sealed)
            except nacl.exceptions.CryptoError:
                continue
            try:
                return json.loads(plaintext)
            except ValueError:
                raise DecryptionError("the decrypted value is not JSON") from None
        raise DecryptionError("no configured key matches")
