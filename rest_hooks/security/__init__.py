"""Webhook signing and verification, usable without Django.

Importing this package must not import Django, so that receivers which are not
Django projects, and code running before settings are configured, can verify
deliveries. Everything public lives in :mod:`rest_hooks.security.signing`.
"""

from rest_hooks.security.signing import (
    InvalidSecretError,
    MalformedBodyError,
    MalformedHeaderError,
    MissingHeaderError,
    NoMatchingSignatureError,
    SignatureError,
    TimestampError,
    TimestampTooNewError,
    TimestampTooOldError,
    decode_secret,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

__all__ = [
    "InvalidSecretError",
    "MalformedBodyError",
    "MalformedHeaderError",
    "MissingHeaderError",
    "NoMatchingSignatureError",
    "SignatureError",
    "TimestampError",
    "TimestampTooNewError",
    "TimestampTooOldError",
    "decode_secret",
    "generate_secret",
    "sign",
    "signature_headers",
    "verify",
]
