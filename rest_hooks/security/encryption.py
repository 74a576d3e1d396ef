"""Hook secrets encrypted at rest: Fernet tokens, several keys for rotation.

A database dump, a backup or a read-only SQL injection must not hand out the secrets that
sign every delivery. Each secret is stored as a Fernet token (AES-128-CBC + HMAC-SHA256)
made with the first of the configured keys; every key decrypts, so keys are rotated by
putting the new one first, re-encrypting (``manage.py rest_hooks_rotate_keys``), then
dropping the old one.

No Django here: the keys arrive as plain values (``rest_hooks.conf`` reads the settings).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["TOKEN_PREFIX", "DecryptionError", "SecretBox", "derive_key", "is_token"]

#: Every Fernet token starts with its version byte 0x80, "gA" in base64.
TOKEN_PREFIX = "gAAAAA"  # noqa: S105 (a format marker, not a password)


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def derive_key(secret: str) -> str:
    """A Fernet key derived from a passphrase (Django's SECRET_KEY) with HKDF-SHA256.

    Deriving, rather than using SECRET_KEY itself, keeps the encryption key separate from
    the key Django signs cookies with.
    """
    raw = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"rest_hooks.secret-encryption",
        info=b"rest_hooks hook secrets v1",
    ).derive(secret.encode())
    return base64.urlsafe_b64encode(raw).decode()


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


class SecretBox:
    """Encrypts with the first key, decrypts with any."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError(
                "A hook secret cannot be decrypted with any key in REST_HOOKS['SECRET_KEYS'] "
                "(or derived from SECRET_KEY / SECRET_KEY_FALLBACKS): was a key removed "
                "before rest_hooks_rotate_keys re-encrypted the secrets?"
            ) from None

    def rotate(self, token: str) -> str:
        """The same secret, encrypted with the first key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError("A hook secret cannot be decrypted with any key.") from None
