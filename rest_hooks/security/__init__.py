"""Webhook signing and verification, usable without Django.

Importing this package must not import Django, so that receivers which are not
Django projects, and code running before settings are configured, can verify
deliveries. Everything public lives in :mod:`rest_hooks.security.signing`; the view
decorator for Django receivers is in :mod:`rest_hooks.security.django`, which is not
imported here.
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
    decode_public_key,
    decode_secret,
    decode_signing_key,
    generate_secret,
    generate_signing_key,
    public_key_for,
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
    "decode_public_key",
    "decode_secret",
    "decode_signing_key",
    "generate_secret",
    "generate_signing_key",
    "public_key_for",
    "sign",
    "signature_headers",
    "verify",
]
