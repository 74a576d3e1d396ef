"""Signing and verification of hook deliveries, in the Standard Webhooks wire format.

We sign exactly the way https://www.standardwebhooks.com/ specifies, over the text
``"{id}.{timestamp}.{body}"``, so that receivers can verify our deliveries with the
off-the-shelf ``standardwebhooks`` or ``svix`` libraries instead of trusting
hand-written code. Two schemes, told apart by the key's prefix:

- symmetric: a ``whsec_`` secret shared with the receiver, HMAC-SHA256, ``v1,<base64>``
  signature entries;
- asymmetric: a ``whsk_`` Ed25519 signing key that only we hold, ``v1a,<base64>``
  entries, verified by the receiver with the matching ``whpk_`` public key (see
  :func:`public_key_for`), so a receiver's leaked key cannot forge deliveries.

The same values are also sent under ``X-Hook-*`` names for receivers written against
those names.

This module deliberately imports nothing from Django: receivers that are not Django
projects (or that verify before settings are configured) can use :func:`verify`.

Verification treats every input as hostile. Whatever the caller passes as body or
headers, :func:`verify` either returns the parsed JSON body or raises a
:class:`SignatureError` subclass, so a receiver can map that one exception family to
an HTTP 4xx answer. No exception message ever contains a secret, because these
messages end up in logs and error trackers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from secrets import token_bytes
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 -- a format prefix, not a secret
#: Prefix of an Ed25519 signing (private) key: base64 of its 32-byte seed.
SIGNING_KEY_PREFIX: Final = "whsk_"
#: Prefix of an Ed25519 public key: base64 of its 32 raw bytes.
PUBLIC_KEY_PREFIX: Final = "whpk_"
#: Bytes of an Ed25519 seed and of an Ed25519 public key.
ED25519_KEY_BYTES: Final = 32
ED25519_SIGNATURE_BYTES: Final = 64
#: Bytes of randomness in a secret made by :func:`generate_secret`.
SECRET_BYTES: Final = 32
#: Shortest key accepted; the Standard Webhooks specification asks for 24 to 64 bytes.
MIN_SECRET_BYTES: Final = 24
#: Default clock skew accepted by :func:`verify`, in seconds (the specification's 5 min).
DEFAULT_TOLERANCE: Final = 300
SIGNATURE_VERSION: Final = "v1"
#: The signature version of Ed25519 (asymmetric) entries.
ASYMMETRIC_SIGNATURE_VERSION: Final = "v1a"
# Loaded Ed25519 keys kept per key string, so that signing every delivery of a hook
# (and verifying every request of a receiver) does not parse the key again.
_KEY_CACHE_SIZE: Final = 256

HEADER_ID: Final = "webhook-id"
HEADER_TIMESTAMP: Final = "webhook-timestamp"
HEADER_SIGNATURE: Final = "webhook-signature"
HOOK_HEADER_ID: Final = "X-Hook-Id"
HOOK_HEADER_TIMESTAMP: Final = "X-Hook-Timestamp"
HOOK_HEADER_SIGNATURE: Final = "X-Hook-Signature"

# Header families in order of preference: (id, timestamp, signature), lower-cased
# because HTTP header names are case-insensitive.
_STANDARD_FAMILY: Final = (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)
_HOOK_FAMILY: Final = tuple(
    name.lower() for name in (HOOK_HEADER_ID, HOOK_HEADER_TIMESTAMP, HOOK_HEADER_SIGNATURE)
)
_WANTED_HEADERS: Final = frozenset(_STANDARD_FAMILY + _HOOK_FAMILY)

# Timestamps travel as canonical non-negative decimal integers. Being strict (ASCII
# digits only, no sign, no leading zeros, no whitespace) means one timestamp has
# exactly one accepted spelling, so the signed text cannot be altered without
# breaking the signature, and `int()` is never fed Unicode digits or 4300-digit
# strings. 18 digits is far beyond any clock, yet keeps the value comfortably finite.
_MAX_TIMESTAMP_DIGITS: Final = 18
_MAX_TIMESTAMP: Final = 10**_MAX_TIMESTAMP_DIGITS - 1
_TIMESTAMP_RE: Final = re.compile(rf"0|[1-9][0-9]{{0,{_MAX_TIMESTAMP_DIGITS - 1}}}")

# Message ids we sign must survive an HTTP header unchanged: visible ASCII only, so
# no whitespace that proxies strip and no CR/LF that could inject headers.
_MSG_ID_RE: Final = re.compile(r"[\x21-\x7e]+")


class SignatureError(ValueError):
    """A delivery failed verification; receivers should answer it with HTTP 4xx.

    It subclasses :class:`ValueError` so code that already treats bad input as a
    ``ValueError`` keeps working.
    """


class MissingHeaderError(SignatureError):
    """A required ``webhook-*`` / ``X-Hook-*`` header is absent."""


class MalformedHeaderError(SignatureError):
    """The headers are present but cannot be parsed (wrong type, bad timestamp, ...)."""


class TimestampError(SignatureError):
    """The delivery's timestamp is outside the accepted window (replay protection)."""


class TimestampTooOldError(TimestampError):
    """The delivery was signed longer ago than the tolerance: possibly a replay."""


class TimestampTooNewError(TimestampError):
    """The delivery claims to be signed in the future: a clock skew or a forgery."""


class NoMatchingSignatureError(SignatureError):
    """No ``v1`` / ``v1a`` signature entry matches any of the receiver's keys."""


class MalformedBodyError(SignatureError):
    """The body is authentic but not UTF-8 JSON, or not bytes/str at all."""


class InvalidSecretError(SignatureError):
    """A key is unusable: not ``whsec_`` + base64 of at least 24 bytes, not ``whsk_`` /
    ``whpk_`` + base64 of 32 bytes, or the wrong kind of key for the job (a public key
    to sign with, a signing key to verify with).

    This is a configuration problem rather than a bad delivery; it is still a
    :class:`SignatureError` (and therefore a :class:`ValueError`) so that
    :func:`verify` keeps its promise of raising nothing else.
    """


def generate_secret() -> str:
    """Return a new random hook secret in the ``whsec_`` format.

    32 bytes from the OS CSPRNG match what Svix issues and exceed the 24-byte minimum.
    """
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def generate_signing_key() -> str:
    """Return a new Ed25519 signing key: ``whsk_`` + base64 of its 32-byte seed.

    Keep it on the sending side; receivers get :func:`public_key_for` of it.
    """
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SIGNING_KEY_PREFIX + base64.b64encode(seed).decode("ascii")


def public_key_for(signing_key: str) -> str:
    """Return the ``whpk_`` public key that verifies what ``signing_key`` signs.

    Raises :class:`InvalidSecretError`, never echoing the key, if it is not ``whsk_`` +
    base64 of 32 bytes.
    """
    if not isinstance(signing_key, str):  # an unhashable argument would upset the cache
        decode_signing_key(signing_key)
    raw = _load_signing_key(signing_key).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def public_jwk(public_key: str) -> dict[str, str]:
    """The ``whpk_`` public key as a JSON Web Key (RFC 8037), for a JWKS document.

    Its ``kid`` is the key's RFC 7638 thumbprint: the same key always has the same id,
    whoever computes it.
    """
    x = base64.urlsafe_b64encode(decode_public_key(public_key)).rstrip(b"=").decode("ascii")
    # RFC 7638: the required members, sorted, no white space.
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    thumbprint = hashlib.sha256(canonical.encode()).digest()
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode("ascii"),
        "use": "sig",
        "alg": "EdDSA",
    }


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key held by a ``whsec_`` secret.

    Missing ``=`` padding is tolerated because some providers print secrets without
    it; anything else that is not standard base64 is rejected rather than silently
    decoded into a different key. Raises :class:`InvalidSecretError` (a
    ``ValueError``) whose message never includes the secret.
    """
    return _decode_hmac_secret(secret)


def decode_signing_key(signing_key: str) -> bytes:
    """Return the 32-byte Ed25519 seed held by a ``whsk_`` signing key.

    Same rules and guarantees as :func:`decode_secret`: :class:`InvalidSecretError`
    whose message never includes the key.
    """
    return _decode_ed25519(signing_key, SIGNING_KEY_PREFIX, "an Ed25519 signing key")


def decode_public_key(public_key: str) -> bytes:
    """Return the 32 raw bytes of a ``whpk_`` Ed25519 public key."""
    return _decode_ed25519(public_key, PUBLIC_KEY_PREFIX, "an Ed25519 public key")


def _decode_prefixed(value: object, prefix: str, what: str) -> bytes:
    """Check the type and prefix of an encoded key and return its base64-decoded bytes."""
    if not isinstance(value, str):
        raise InvalidSecretError(f"{what} must be a str, not {type(value).__name__}")
    if not value.startswith(prefix):
        raise InvalidSecretError(f"{what} must start with {prefix!r}")
    encoded = value[len(prefix) :]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        # `from None`: the original exception is not useful and must not drag the
        # key into tracebacks.
        raise InvalidSecretError(
            f"the part of {what} after {prefix!r} must be standard base64"
            " (alphabet A-Z a-z 0-9 + /, no whitespace)"
        ) from None


def _decode_hmac_secret(value: object) -> bytes:
    key = _decode_prefixed(value, SECRET_PREFIX, "a hook secret")
    if len(key) < MIN_SECRET_BYTES:
        raise InvalidSecretError(
            f"a hook secret must decode to at least {MIN_SECRET_BYTES} bytes, not {len(key)}"
        )
    return key


def _decode_ed25519(value: object, prefix: str, what: str) -> bytes:
    raw = _decode_prefixed(value, prefix, what)
    if len(raw) != ED25519_KEY_BYTES:
        raise InvalidSecretError(
            f"{what} must decode to exactly {ED25519_KEY_BYTES} bytes, not {len(raw)}"
        )
    return raw


# Cached by the key string. Failures are not cached (lru_cache never caches exceptions);
# the cache only ever holds keys the caller holds anyway, and nothing here logs them.
@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _load_signing_key(signing_key: str) -> Ed25519PrivateKey:
    seed = decode_signing_key(signing_key)
    try:
        return Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError:  # not expected for 32 bytes; keep verify()'s promise regardless
        raise InvalidSecretError("not a usable Ed25519 signing key") from None


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _load_public_key(public_key: str) -> Ed25519PublicKey:
    raw = decode_public_key(public_key)
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidSecretError("not a usable Ed25519 public key") from None


def sign(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header value for one delivery.

    Each of ``secrets`` adds one entry, space-separated, in the order given: a
    ``v1,`` HMAC entry for a ``whsec_`` secret, a ``v1a,`` Ed25519 entry for a
    ``whsk_`` signing key. With several (during a rotation, or while moving a hook
    from one scheme to the other) a receiver holding any one of the matching keys
    accepts the delivery.

    Raises :class:`InvalidSecretError` for an undecodable key or a ``whpk_`` public
    key (which cannot sign), ``TypeError`` / ``ValueError`` for arguments that
    :func:`verify` would reject on arrival (an id that is not visible ASCII, a
    negative or oversized timestamp, a non-bytes body): failing loudly here beats
    sending deliveries no receiver can ever verify.
    """
    keys = _signing_keys(secrets)
    if not isinstance(msg_id, str):
        raise TypeError(f"msg_id must be a str, not {type(msg_id).__name__}")
    if not _MSG_ID_RE.fullmatch(msg_id):
        raise ValueError("msg_id must be non-empty visible ASCII (no spaces or controls)")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise TypeError(f"timestamp must be an int, not {type(timestamp).__name__}")
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError(f"timestamp must be between 0 and {_MAX_TIMESTAMP}")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f"body must be bytes, not {type(body).__name__}")
    id_bytes = msg_id.encode("ascii")
    ts_bytes = str(timestamp).encode("ascii")
    message: bytes | None = None  # built once, only if an Ed25519 key needs it
    entries = []
    for key in keys:
        if isinstance(key, Ed25519PrivateKey):
            if message is None:
                message = b"%s.%s.%s" % (id_bytes, ts_bytes, body)
            version, signature = ASYMMETRIC_SIGNATURE_VERSION, key.sign(message)
        else:
            version, signature = SIGNATURE_VERSION, _digest(key, id_bytes, ts_bytes, body)
        entries.append(f"{version},{base64.b64encode(signature).decode('ascii')}")
    return " ".join(entries)


def signature_headers(
    secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Return all six signing headers, ready to merge into a delivery's headers.

    Both the Standard Webhooks names and the ``X-Hook-*`` names carry identical
    values, so every receiver finds the names it expects.
    """
    signature = sign(secrets, msg_id, timestamp, body)
    ts = str(timestamp)
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: ts,
        HEADER_SIGNATURE: signature,
        HOOK_HEADER_ID: msg_id,
        HOOK_HEADER_TIMESTAMP: ts,
        HOOK_HEADER_SIGNATURE: signature,
    }


def verify(
    body: bytes | str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    secret: str | Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Any:
    """Check that a delivery is authentic and fresh, and return its parsed JSON body.

    ``body`` must be the raw request body exactly as received (re-serialised JSON
    will not match). ``headers`` may be any mapping (e.g. Django's
    ``request.headers``) or an iterable of ``(name, value)`` pairs; names are matched
    case-insensitively. If any ``webhook-*`` header is present that family is used,
    otherwise the ``X-Hook-*`` family; the two are never mixed, so a forged header of
    one family cannot stand in for a missing one of the other.

    ``secret`` is a ``whsec_`` secret, which checks the ``v1`` (HMAC) entries, or a
    ``whpk_`` public key, which checks the ``v1a`` (Ed25519) entries; or a list of
    both kinds during a rotation: a delivery passes if any key matches any entry of
    its version. Entries of other versions are skipped so senders can add new schemes
    without breaking this receiver. A ``whsk_`` signing key is refused with
    :class:`InvalidSecretError`: a receiver must only ever hold the public key.

    The timestamp must be within ``tolerance`` seconds of ``now`` (default: the
    current time) in either direction, which bounds how long a captured delivery can
    be replayed; deduplicate on ``webhook-id`` to close the window entirely.

    What it raises is split by whose mistake it is:

    - the request's (``body``, ``headers``, anything in them, whatever their type): a
      :class:`SignatureError` subclass and nothing else, so a receiver can answer 4xx;
    - the caller's (its own arguments, checked before the request is read, so that a
      misconfigured receiver fails on every request): ``TypeError`` or ``ValueError``.
      ``tolerance`` must be an int (not a bool) from 0 to 10**18 - 1 seconds (see
      :func:`check_tolerance`); ``now`` a finite int or float (not a bool); ``secret``
      raises :class:`InvalidSecretError`, a ``ValueError`` that is also a
      :class:`SignatureError`, so that the receiver's one ``except SignatureError``
      still answers (the Django decorator answers 500).
    """
    tolerance = check_tolerance(tolerance)
    now = time.time() if now is None else _check_now(now)

    # Secrets first: a misconfigured receiver should fail on every request, not only
    # on the ones that happen to carry well-formed headers.
    hmac_keys, public_keys = _verifying_keys(secret)

    msg_id, raw_timestamp, raw_signature = _select_headers(_collect_headers(headers))
    try:
        id_bytes = msg_id.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedHeaderError("the webhook-id header is not valid text") from None

    timestamp = _parse_timestamp(raw_timestamp)
    if timestamp < now - tolerance:
        raise TimestampTooOldError(
            f"timestamp {timestamp} is more than {tolerance}s before now ({math.floor(now)})"
        )
    if timestamp > now + tolerance:
        raise TimestampTooNewError(
            f"timestamp {timestamp} is more than {tolerance}s after now ({math.floor(now)})"
        )

    hmac_candidates, ed25519_candidates = _parse_signatures(raw_signature)
    raw_body = _body_bytes(body)
    ts_bytes = raw_timestamp.encode("ascii")
    if not (
        _hmac_matches(hmac_keys, hmac_candidates, id_bytes, ts_bytes, raw_body)
        or _ed25519_matches(public_keys, ed25519_candidates, id_bytes, ts_bytes, raw_body)
    ):
        raise NoMatchingSignatureError(
            _no_match_message(hmac_keys, public_keys, hmac_candidates, ed25519_candidates)
        )

    try:
        return json.loads(raw_body.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, absurdly deep nesting
        raise MalformedBodyError("the body is not valid UTF-8 JSON") from None


def check_tolerance(tolerance: object) -> int:
    """Return ``tolerance`` if it is what :func:`verify` and the ``verify_webhook``
    decorator take: whole seconds (an int, not a bool) from 0 to 10**18 - 1.

    Raises ``TypeError`` or ``ValueError``: a wrong tolerance is the caller's mistake,
    never a bad delivery.
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, int):
        raise TypeError(f"tolerance must be an int of seconds, not {type(tolerance).__name__}")
    if not 0 <= tolerance <= _MAX_TIMESTAMP:
        raise ValueError(f"tolerance must be from 0 to {_MAX_TIMESTAMP} seconds")
    return tolerance


def _check_now(now: object) -> float:
    """``now`` as Unix seconds: an int or float, not a bool, and finite (an int too large
    for a float is not)."""
    if isinstance(now, bool) or not isinstance(now, int | float):
        raise TypeError(f"now must be Unix seconds as an int or float, not {type(now).__name__}")
    try:
        finite = math.isfinite(now)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError("now must be a finite number of Unix seconds")
    return now


def _digest(
    key: bytes, id_bytes: bytes, ts_bytes: bytes, body: bytes | bytearray | memoryview
) -> bytes:
    """HMAC-SHA256 of ``id.timestamp.body``, fed in pieces so a large body is not copied."""
    mac = hmac.new(key, id_bytes, hashlib.sha256)
    mac.update(b".")
    mac.update(ts_bytes)
    mac.update(b".")
    mac.update(body)
    return mac.digest()


def _hmac_matches(
    keys: Sequence[bytes],
    candidates: Sequence[bytes],
    id_bytes: bytes,
    ts_bytes: bytes,
    body: bytes,
) -> bool:
    return any(
        hmac.compare_digest(_digest(key, id_bytes, ts_bytes, body), candidate)
        for key in keys
        for candidate in candidates
    )


def _ed25519_matches(
    keys: Sequence[Ed25519PublicKey],
    candidates: Sequence[bytes],
    id_bytes: bytes,
    ts_bytes: bytes,
    body: bytes,
) -> bool:
    if not keys or not candidates:
        return False
    message = b"%s.%s.%s" % (id_bytes, ts_bytes, body)
    for key in keys:
        for candidate in candidates:
            try:
                key.verify(candidate, message)
            except InvalidSignature:
                continue
            return True
    return False


def _no_match_message(
    hmac_keys: Sequence[bytes],
    public_keys: Sequence[Ed25519PublicKey],
    hmac_candidates: Sequence[bytes],
    ed25519_candidates: Sequence[bytes],
) -> str:
    """Say why nothing matched, pointing out a scheme mismatch (a common setup mistake)."""
    if (hmac_keys and hmac_candidates) or (public_keys and ed25519_candidates):
        return "no signature matches any of the hook secrets"
    wanted = [
        f"{version} (for the {prefix} keys)"
        for keys, version, prefix in (
            (hmac_keys, SIGNATURE_VERSION, SECRET_PREFIX),
            (public_keys, ASYMMETRIC_SIGNATURE_VERSION, PUBLIC_KEY_PREFIX),
        )
        if keys
    ]
    return f"the signature header has no {' or '.join(wanted)} entry"


def _items(secrets: object) -> Iterable[tuple[str, object]]:
    """Yield ``(label, key)`` for one key or each of a non-empty list of keys.

    The label names a culprit in error messages by position only, never by value.
    """
    if isinstance(secrets, str):
        yield "", secrets
        return
    if not isinstance(secrets, Sequence) or isinstance(secrets, (bytes, bytearray)):
        raise InvalidSecretError(
            f"hook secrets must be a str or a sequence of str, not {type(secrets).__name__}"
        )
    if not secrets:
        raise InvalidSecretError("no hook secret given")
    for index, item in enumerate(secrets):
        yield f"hook secret #{index}: ", item


def _signing_keys(secrets: object) -> list[bytes | Ed25519PrivateKey]:
    """Decode what we sign with: HMAC keys (``whsec_``) and Ed25519 keys (``whsk_``)."""
    keys: list[bytes | Ed25519PrivateKey] = []
    for label, item in _items(secrets):
        try:
            if isinstance(item, str) and item.startswith(SIGNING_KEY_PREFIX):
                keys.append(_load_signing_key(item))
            elif isinstance(item, str) and item.startswith(PUBLIC_KEY_PREFIX):
                raise InvalidSecretError(
                    f"a {PUBLIC_KEY_PREFIX!r} public key cannot sign; sign with its"
                    f" {SIGNING_KEY_PREFIX!r} signing key"
                )
            elif isinstance(item, str) and not item.startswith(SECRET_PREFIX):
                raise InvalidSecretError(
                    f"a hook secret must start with {SECRET_PREFIX!r}"
                    f" (or be a {SIGNING_KEY_PREFIX!r} Ed25519 signing key)"
                )
            else:
                keys.append(_decode_hmac_secret(item))
        except InvalidSecretError as exc:
            raise InvalidSecretError(f"{label}{exc}") from None
    return keys


def _verifying_keys(secrets: object) -> tuple[list[bytes], list[Ed25519PublicKey]]:
    """Decode what a receiver verifies with: HMAC keys and Ed25519 public keys."""
    hmac_keys: list[bytes] = []
    public_keys: list[Ed25519PublicKey] = []
    for label, item in _items(secrets):
        try:
            if isinstance(item, str) and item.startswith(PUBLIC_KEY_PREFIX):
                public_keys.append(_load_public_key(item))
            elif isinstance(item, str) and item.startswith(SIGNING_KEY_PREFIX):
                raise InvalidSecretError(
                    f"this is a {SIGNING_KEY_PREFIX!r} signing key, which must stay with the"
                    f" sender; verify with its {PUBLIC_KEY_PREFIX!r} public key instead"
                    " (rest_hooks.security.public_key_for() derives it)"
                )
            elif isinstance(item, str) and not item.startswith(SECRET_PREFIX):
                raise InvalidSecretError(
                    f"a hook secret must start with {SECRET_PREFIX!r}"
                    f" (or be a {PUBLIC_KEY_PREFIX!r} Ed25519 public key)"
                )
            else:
                hmac_keys.append(_decode_hmac_secret(item))
        except InvalidSecretError as exc:
            raise InvalidSecretError(f"{label}{exc}") from None
    return hmac_keys, public_keys


def _collect_headers(headers: object) -> dict[str, object]:
    """Gather the headers we read, keyed by lower-cased name.

    Conflicting duplicates are rejected instead of picking one, because which copy a
    proxy or framework would have kept is unknowable.
    """
    if headers is None or isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise MalformedHeaderError(
            "headers must be a mapping or an iterable of (name, value) pairs, "
            f"not {type(headers).__name__}"
        )
    found: dict[str, object] = {}
    try:
        items: Iterable[object]
        if isinstance(headers, Mapping):
            items = headers.items()
        elif isinstance(headers, Iterable):
            items = headers
        else:
            raise MalformedHeaderError(
                "headers must be a mapping or an iterable of (name, value) pairs, "
                f"not {type(headers).__name__}"
            )
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise MalformedHeaderError("each header must be a (name, value) pair")
            name, value = item
            if not isinstance(name, str):
                raise MalformedHeaderError(f"header names must be str, not {type(name).__name__}")
            lowered = name.lower()
            if lowered not in _WANTED_HEADERS:
                continue
            if lowered in found and found[lowered] != value:
                raise MalformedHeaderError(f"conflicting duplicate {lowered} headers")
            found[lowered] = value
    except SignatureError:
        raise
    except Exception:
        # The headers object is caller-supplied and may be anything; whatever goes
        # wrong while reading it is, by contract, a malformed delivery.
        raise MalformedHeaderError("the headers could not be read") from None
    return found


def _select_headers(found: Mapping[str, object]) -> tuple[str, str, str]:
    """Pick one whole header family and check its values are non-empty strings."""
    family = _STANDARD_FAMILY if any(n in found for n in _STANDARD_FAMILY) else _HOOK_FAMILY
    if not any(n in found for n in family):
        raise MissingHeaderError(
            f"missing {', '.join(_STANDARD_FAMILY)} headers (or their X-Hook-* equivalents)"
        )
    values = []
    for name in family:
        if name not in found:
            raise MissingHeaderError(f"missing {name} header")
        value = found[name]
        if not isinstance(value, str):
            raise MalformedHeaderError(f"the {name} header must be a str")
        if not value:
            raise MalformedHeaderError(f"the {name} header is empty")
        values.append(value)
    return values[0], values[1], values[2]


def _parse_timestamp(raw: str) -> int:
    """Parse the canonical integer timestamp (see ``_TIMESTAMP_RE`` for why strict)."""
    if not _TIMESTAMP_RE.fullmatch(raw):
        raise MalformedHeaderError(
            "the timestamp header must be Unix seconds as a plain decimal integer"
        )
    return int(raw)


def _parse_signatures(raw: str) -> tuple[list[bytes], list[bytes]]:
    """Return the decoded ``v1`` and ``v1a`` signatures from a signature header value.

    A bad entry is merely non-matching, so one garbled entry cannot mask a good one;
    only a header with no well-formed entry at all is malformed. Base64 must be
    canonical: otherwise several spellings would decode to the same signature and a
    modified header could still verify. A ``v1a`` entry must also be 64 bytes long,
    the size of every Ed25519 signature.
    """
    hmac_candidates: list[bytes] = []
    ed25519_candidates: list[bytes] = []
    well_formed = False
    for entry in raw.split():
        version, comma, payload = entry.partition(",")
        if not comma or not version or not payload:
            continue
        if version not in (SIGNATURE_VERSION, ASYMMETRIC_SIGNATURE_VERSION):
            well_formed = True  # a scheme we do not implement; not an error
            continue
        try:
            decoded = base64.b64decode(payload, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            continue
        if base64.b64encode(decoded).decode("ascii") != payload:
            continue
        if version == SIGNATURE_VERSION:
            hmac_candidates.append(decoded)
        elif len(decoded) == ED25519_SIGNATURE_BYTES:
            ed25519_candidates.append(decoded)
        else:
            continue
        well_formed = True
    if not well_formed:
        raise MalformedHeaderError("the signature header has no well-formed entry")
    return hmac_candidates, ed25519_candidates


def _body_bytes(body: object) -> bytes:
    """Return the body as the exact bytes that were signed."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        try:
            return bytes(body)
        except ValueError:  # a released memoryview
            raise MalformedBodyError("the body cannot be read (a released memoryview)") from None
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            raise MalformedBodyError("the body is not valid text") from None
    raise MalformedBodyError(f"the body must be bytes or str, not {type(body).__name__}")
