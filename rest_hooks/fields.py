"""A model field that keeps hook secrets encrypted in the database."""

from __future__ import annotations

from typing import Any

from django.db import models

from rest_hooks.conf import secret_box
from rest_hooks.security.encryption import DecryptionError, is_token


class EncryptedSecretField(models.TextField):  # type: ignore[type-arg]
    """Plain text in Python, a Fernet token in the database and in dumps.

    A value that is not a token is taken as a plain secret from before encryption (a
    database upgraded from django-rest-hooks, or a row not yet migrated) and is encrypted
    the next time it is saved.

    A token that no configured key decrypts (a key removed too early) is kept as it is, so
    that reading hooks never fails because of one of them: that hook's deliveries fail on
    their own, when they need the secret (``AbstractHook.signing_secrets``), and retry
    until the key is back or the secret is rotated.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return self.to_python(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and is_token(value):
            try:
                return secret_box().decrypt(value)
            except DecryptionError:
                return value
        return value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value or is_token(value):
            return value
        return secret_box().encrypt(value)

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata: the token, never the secret (loaddata decrypts it in to_python).
        return str(self.get_prep_value(self.value_from_object(obj)) or "")
