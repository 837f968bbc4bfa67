"""Errors of the encryption middleware. Messages name what could not be processed and why, but
never carry key material, ciphertext or plaintext, so they are safe to log and to send to the
server as a run's error."""

from __future__ import annotations

from inngest_mw import Error

__all__ = ["DecryptionError", "EncryptionError"]


class EncryptionError(Error):
    """A value could not be encrypted or decrypted."""

    code = "encryption_failed"


class DecryptionError(EncryptionError):
    """An encrypted value matches no configured strategy or key, or is not a valid ciphertext.

    Retriable: during a key roll-out a retry may land on a process that has the new key.
    """

    code = "decryption_failed"
