"""Tests of delivery signing and verification (`rest_hooks.security.signing`).

The property-based tests exist because verification parses attacker-controlled
input: example tests alone would not convince us that *every* malformed delivery
raises a `SignatureError` (and nothing else), or that every tampering is caught.
The `standardwebhooks` cross-checks pin the wire format to the specification's
reference implementation, since compatibility is the reason for the format. The
Ed25519 (`v1a`) signatures are checked against `cryptography` directly, because the
Python `standardwebhooks` package implements HMAC (`v1`) only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from rest_hooks.security import (
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
from rest_hooks.security import signing as signing_module

REPO_ROOT = Path(__file__).resolve().parent.parent
TS = 1_700_000_000
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
BODY = b'{"hook": "book.added", "data": {"id": 1}}'
# RFC 8032, section 7.1, TEST 1: a seed and the public key it must give.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
SIGNING_KEY = "whsk_" + base64.b64encode(RFC8032_SEED).decode()
PUBLIC_KEY = "whpk_" + base64.b64encode(RFC8032_PUBLIC).decode()
#: (what signs, what verifies) for each scheme: the tampering properties hold for both.
SCHEMES = [
    pytest.param(SECRET, SECRET, id="v1-hmac"),
    pytest.param(SIGNING_KEY, PUBLIC_KEY, id="v1a-ed25519"),
]
OTHER_SIGNING_KEY = "whsk_" + base64.b64encode(bytes(range(200, 232))).decode()
OTHER_PUBLIC_KEY = public_key_for(OTHER_SIGNING_KEY)
STANDARD_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")
HOOK_NAMES = ("X-Hook-Id", "X-Hook-Timestamp", "X-Hook-Signature")

# --- strategies -------------------------------------------------------------------

secrets_st = st.binary(min_size=24, max_size=64).map(
    lambda raw: "whsec_" + base64.b64encode(raw).decode()
)
signing_keys_st = st.binary(min_size=32, max_size=32).map(
    lambda raw: "whsk_" + base64.b64encode(raw).decode()
)
# Anything a sender signs with: an HMAC secret or an Ed25519 signing key.
sender_keys_st = secrets_st | signing_keys_st
# `sign` only accepts ids that survive an HTTP header unchanged: visible ASCII.
msg_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)
timestamps = st.integers(min_value=0, max_value=10**18 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
header_names = st.sampled_from(STANDARD_NAMES + HOOK_NAMES).flatmap(
    lambda name: st.sampled_from([name, name.lower(), name.upper(), name.title()])
)
garbage = (
    st.text()
    | st.binary()
    | st.integers()
    | st.floats()
    | st.none()
    | st.booleans()
    | st.lists(st.text(), max_size=3)
)


def _json_body(value: Any, ensure_ascii: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ensure_ascii).encode()


def _only(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: headers[name] for name in names}


def _verify_never_crashes(body: Any, headers: Any, secret: Any = SECRET) -> None:
    """Call `verify`; anything other than a result or a SignatureError fails the test."""
    message = ""
    try:
        verify(body, headers, secret, now=TS)
    except SignatureError as exc:
        message = str(exc)
    assert SECRET.removeprefix("whsec_") not in message
    assert PUBLIC_KEY.removeprefix("whpk_") not in message


def _receiver_key(sender_key: str) -> str:
    """What the receiver verifies with: the secret itself, or the signing key's public key."""
    return public_key_for(sender_key) if sender_key.startswith("whsk_") else sender_key


def _ed25519_ok(public_key: str, signature: bytes, message: bytes) -> bool:
    """Verify with `cryptography` directly, independently of our `verify`."""
    try:
        Ed25519PublicKey.from_public_bytes(decode_public_key(public_key)).verify(signature, message)
    except Exception:
        return False
    return True


# --- round trips ------------------------------------------------------------------


@given(
    value=json_values,
    ensure_ascii=st.booleans(),
    secret=secrets_st,
    msg_id=msg_ids,
    timestamp=timestamps,
)
def test_round_trip(
    value: Any, ensure_ascii: bool, secret: str, msg_id: str, timestamp: int
) -> None:
    body = _json_body(value, ensure_ascii)
    headers = signature_headers(secret, msg_id, timestamp, body)
    assert verify(body, headers, secret, now=timestamp) == value
    assert verify(body.decode(), headers, secret, now=timestamp) == value
    assert verify(body, _only(headers, STANDARD_NAMES), secret, now=timestamp) == value
    assert verify(body, _only(headers, HOOK_NAMES), secret, now=timestamp) == value
    assert verify(body, list(headers.items()), [secret], now=timestamp) == value
    upper = {name.upper(): val for name, val in headers.items()}
    assert verify(body, upper, (secret,), now=timestamp) == value


@given(body=st.binary(), secret=secrets_st, msg_id=msg_ids, timestamp=timestamps)
def test_round_trip_of_arbitrary_bytes(
    body: bytes, secret: str, msg_id: str, timestamp: int
) -> None:
    """Any body authenticates; only then is it rejected if it isn't JSON."""
    headers = signature_headers(secret, msg_id, timestamp, body)
    try:
        parsed = verify(body, headers, secret, now=timestamp)
    except MalformedBodyError:
        return
    # Compare serialised forms: JSON allows NaN, which is unequal to itself.
    assert json.dumps(parsed) == json.dumps(json.loads(body.decode("utf-8")))


def test_signature_headers_shape() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    assert set(headers) == set(STANDARD_NAMES + HOOK_NAMES)
    assert headers["webhook-id"] == headers["X-Hook-Id"] == "msg_1"
    assert headers["webhook-timestamp"] == headers["X-Hook-Timestamp"] == str(TS)
    assert (
        headers["webhook-signature"]
        == headers["X-Hook-Signature"]
        == sign(SECRET, "msg_1", TS, BODY)
    )
    version, _, payload = headers["webhook-signature"].partition(",")
    assert version == "v1"
    assert len(base64.b64decode(payload, validate=True)) == 32


def test_known_answer() -> None:
    """Pin the exact bytes covered by the HMAC, independently of our own code."""
    import hashlib
    import hmac

    expected = hmac.new(bytes(range(32)), b"msg_1.%d.%s" % (TS, BODY), hashlib.sha256).digest()
    assert sign(SECRET, "msg_1", TS, BODY) == "v1," + base64.b64encode(expected).decode()


# --- tampering --------------------------------------------------------------------


@pytest.mark.parametrize(("signer", "verifier"), SCHEMES)
@given(body=st.binary(min_size=1), data=st.data())
def test_any_body_change_is_rejected(
    signer: str, verifier: str, body: bytes, data: st.DataObject
) -> None:
    headers = signature_headers(signer, "msg_1", TS, body)
    index = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(body)
    flipped[index] ^= 1 << bit
    with pytest.raises(NoMatchingSignatureError):
        verify(bytes(flipped), headers, verifier, now=TS)
    other = data.draw(st.binary())
    assume(other != body)
    with pytest.raises(NoMatchingSignatureError):
        verify(other, headers, verifier, now=TS)


@pytest.mark.parametrize(("signer", "verifier"), SCHEMES)
@given(msg_id=msg_ids, other_id=st.text())
def test_any_id_change_is_rejected(signer: str, verifier: str, msg_id: str, other_id: str) -> None:
    assume(other_id != msg_id)
    headers = signature_headers(signer, msg_id, TS, BODY)
    tampered = {**headers, "webhook-id": other_id, "X-Hook-Id": other_id}
    with pytest.raises(SignatureError):
        verify(BODY, tampered, verifier, now=TS)


@given(msg_id=msg_ids, other_id=msg_ids)
def test_any_valid_looking_id_change_is_a_signature_mismatch(msg_id: str, other_id: str) -> None:
    assume(other_id != msg_id)
    headers = signature_headers(SECRET, msg_id, TS, BODY)
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, {**headers, "webhook-id": other_id}, SECRET, now=TS)


@pytest.mark.parametrize(("signer", "verifier"), SCHEMES)
@given(timestamp=timestamps, other=timestamps)
def test_any_timestamp_change_is_rejected(
    signer: str, verifier: str, timestamp: int, other: int
) -> None:
    assume(other != timestamp)
    headers = signature_headers(signer, "msg_1", timestamp, BODY)
    tampered = {**headers, "webhook-timestamp": str(other)}
    with pytest.raises(NoMatchingSignatureError):
        verify(
            BODY, tampered, verifier, now=other
        )  # in the window: only the signature can catch it
    with pytest.raises(SignatureError):
        verify(BODY, tampered, verifier, now=timestamp)


@pytest.mark.parametrize(("signer", "verifier"), SCHEMES)
@given(msg_id=msg_ids, data=st.data())
def test_any_signature_change_is_rejected(
    signer: str, verifier: str, msg_id: str, data: st.DataObject
) -> None:
    headers = signature_headers(signer, msg_id, TS, BODY)
    signature = headers["webhook-signature"]
    index = data.draw(st.integers(0, len(signature) - 1))
    char = data.draw(st.characters())
    assume(char != signature[index])
    tampered = signature[:index] + char + signature[index + 1 :]
    with pytest.raises(SignatureError):
        verify(BODY, {**headers, "webhook-signature": tampered}, verifier, now=TS)


def test_non_canonical_base64_of_the_right_digest_is_rejected() -> None:
    """Several base64 spellings of one digest would let a changed header verify."""
    signature = sign(SECRET, "msg_1", TS, BODY)
    payload = signature.removeprefix("v1,")
    assert payload.endswith("=")
    assert len(payload) == 44
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(payload[-2])
    sibling = alphabet[last ^ 1]  # differs only in the 2 padding bits
    forged = f"v1,{payload[:-2]}{sibling}="
    assert base64.b64decode(forged[3:]) == base64.b64decode(payload)
    with pytest.raises(MalformedHeaderError):
        verify(
            BODY,
            {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": forged},
            SECRET,
            now=TS,
        )


def test_wrong_secret_is_rejected() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, headers, OTHER_SECRET, now=TS)


# --- malformed input --------------------------------------------------------------


@given(headers=st.dictionaries(header_names | st.text() | st.binary(), garbage), body=garbage)
def test_garbage_headers_only_raise_signature_error(headers: dict[Any, Any], body: Any) -> None:
    with pytest.raises(SignatureError):
        verify(body, headers, SECRET, now=TS)
    with pytest.raises(SignatureError):
        verify(body, list(headers.items()), SECRET, now=TS)


@given(name=header_names, value=garbage, body=garbage | st.just(BODY))
def test_garbage_in_valid_headers_never_crashes(name: str, value: Any, body: Any) -> None:
    headers: dict[str, Any] = signature_headers(SECRET, "msg_1", TS, BODY)
    headers[name] = value
    _verify_never_crashes(body, headers)
    _verify_never_crashes(body, [*headers.items(), (name.upper(), value)])


@given(headers=garbage | st.lists(garbage | st.tuples(garbage, garbage) | st.tuples(garbage)))
def test_non_header_objects_only_raise_signature_error(headers: Any) -> None:
    with pytest.raises(SignatureError):
        verify(BODY, headers, SECRET, now=TS)


@given(secret=garbage | st.lists(garbage, max_size=3) | st.text().map(lambda s: "whsec_" + s))
def test_bad_secrets_raise_invalid_secret_error(secret: Any) -> None:
    try:
        decode_secret(secret)
    except InvalidSecretError:
        pass
    else:
        assume(False)  # hypothesis happened to build a valid secret
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(InvalidSecretError):
        verify(BODY, headers, secret, now=TS)


@given(
    raw=st.binary(min_size=12, max_size=64),
    corruption=st.sampled_from(["", "*", " ", "-", "\n", "\u00e9"]),
    where=st.integers(min_value=0),
)
def test_secret_never_appears_in_error_messages(raw: bytes, corruption: str, where: int) -> None:
    """Short or corrupted secrets are rejected without echoing them into logs."""
    encoded = base64.b64encode(raw).decode()
    where %= len(encoded)
    encoded = encoded[:where] + corruption + encoded[where:]
    assume(corruption or len(raw) < 24)
    secret = "whsec_" + encoded
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    for call in (
        lambda: decode_secret(secret),
        lambda: sign(secret, "msg_1", TS, BODY),
        lambda: verify(BODY, headers, secret, now=TS),
        lambda: verify(BODY, headers, [SECRET, secret], now=TS),
    ):
        with pytest.raises(InvalidSecretError) as excinfo:
            call()
        message = str(excinfo.value)
        for start in range(0, len(encoded) - 8):
            assert encoded[start : start + 8] not in message


def test_headers_iterable_that_raises_is_malformed() -> None:
    def explode() -> Any:
        yield ("webhook-id", "msg_1")
        raise RuntimeError("boom")

    with pytest.raises(MalformedHeaderError):
        verify(BODY, explode(), SECRET, now=TS)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " 1700000000",
        "1700000000 ",
        "+1700000000",
        "01700000000",
        "1700000000.0",
        "1.7e9",
        "-1",
        "0x10",
        "1_700_000_000",
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",  # Arabic-Indic digits
        "1700000000\n",
        "9" * 19,
        "9" * 5000,
        "NaN",
        "inf",
    ],
)
def test_malformed_timestamps(raw: str) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(MalformedHeaderError):
        verify(BODY, {**headers, "webhook-timestamp": raw}, SECRET, now=TS)


def test_huge_timestamp_within_range_is_too_new() -> None:
    ts = 10**18 - 1
    headers = signature_headers(SECRET, "msg_1", ts, BODY)
    with pytest.raises(TimestampTooNewError):
        verify(BODY, headers, SECRET, now=TS)


@pytest.mark.parametrize("missing", STANDARD_NAMES)
def test_missing_standard_header(missing: str) -> None:
    headers = _only(signature_headers(SECRET, "msg_1", TS, BODY), STANDARD_NAMES)
    del headers[missing]
    with pytest.raises(MissingHeaderError, match=missing):
        verify(BODY, headers, SECRET, now=TS)


@pytest.mark.parametrize("headers", [{}, {"content-type": "application/json"}, []])
def test_no_signing_headers(headers: Any) -> None:
    with pytest.raises(MissingHeaderError):
        verify(BODY, headers, SECRET, now=TS)


def test_families_are_never_mixed() -> None:
    full = signature_headers(SECRET, "msg_1", TS, BODY)
    mixed = {
        "webhook-id": "msg_1",
        "X-Hook-Timestamp": str(TS),
        "X-Hook-Signature": full["X-Hook-Signature"],
    }
    with pytest.raises(MissingHeaderError, match="webhook-timestamp"):
        verify(BODY, mixed, SECRET, now=TS)


def test_standard_family_wins_when_both_present() -> None:
    good = signature_headers(SECRET, "msg_1", TS, BODY)
    bad = signature_headers(OTHER_SECRET, "msg_1", TS, BODY)
    assert verify(BODY, {**bad, **_only(good, STANDARD_NAMES)}, SECRET, now=TS) == json.loads(BODY)
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, {**good, **_only(bad, STANDARD_NAMES)}, SECRET, now=TS)


def test_conflicting_duplicate_headers_are_malformed() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    pairs = [*headers.items(), ("Webhook-Id", "msg_2")]
    with pytest.raises(MalformedHeaderError, match="duplicate"):
        verify(BODY, pairs, SECRET, now=TS)
    # An identical repeat is harmless.
    assert verify(BODY, [*headers.items(), ("Webhook-Id", "msg_1")], SECRET, now=TS) == json.loads(
        BODY
    )


@pytest.mark.parametrize(
    "extra",
    ["", "v1a,c29tZSBlZDI1NTE5IHNpZ25hdHVyZQ==", "v2,whatever", "nocomma", "v1,not*base64", "v1,"],
)
def test_signature_entries_beside_a_good_one(extra: str) -> None:
    """Unknown versions are skipped and garbled entries cannot mask a good one."""
    good = sign(SECRET, "msg_1", TS, BODY)
    for value in (f"{extra} {good}", f"{good} {extra}", f"{extra}  {good}\t"):
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": value}
        assert verify(BODY, headers, SECRET, now=TS) == json.loads(BODY)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        # A v1a entry must be 64 bytes, the size of any Ed25519 signature.
        ("v1a,c29tZSBlZDI1NTE5IHNpZ25hdHVyZQ==", MalformedHeaderError),
        ("v1a," + base64.b64encode(bytes(64)).decode(), NoMatchingSignatureError),
        ("v2,whatever", NoMatchingSignatureError),
        ("v1,AAAA", NoMatchingSignatureError),
        ("nocomma", MalformedHeaderError),
        ("v1,not*base64", MalformedHeaderError),
        ("v1,AAA", MalformedHeaderError),
        (",AAAA", MalformedHeaderError),
        ("v1,", MalformedHeaderError),
        ("   ", MalformedHeaderError),
        ("", MalformedHeaderError),
    ],
)
def test_signature_header_without_a_good_entry(value: str, error: type[Exception]) -> None:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": value}
    with pytest.raises(error):
        verify(BODY, headers, SECRET, now=TS)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe{}", b"", b"\xef\xbb\xbf{}", b"[" * 100_000, b'{"a": 1'],
)
def test_authentic_but_malformed_body(body: bytes) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, body)
    with pytest.raises(MalformedBodyError):
        verify(body, headers, SECRET, now=TS)


@pytest.mark.parametrize("body", [None, 42, ["x"], {"a": 1}, "\ud800"])
def test_body_of_the_wrong_kind(body: Any) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(MalformedBodyError):
        verify(body, headers, SECRET, now=TS)


def test_unencodable_id_is_malformed() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(MalformedHeaderError):
        verify(BODY, {**headers, "webhook-id": "\udcff"}, SECRET, now=TS)


# --- timestamps -------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [0, 1, 300, 3600])
def test_timestamp_tolerance_edges(tolerance: int) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    for now in (TS, TS - tolerance, TS + tolerance):
        assert verify(BODY, headers, SECRET, tolerance=tolerance, now=now) == json.loads(BODY)
    with pytest.raises(TimestampTooOldError):
        verify(BODY, headers, SECRET, tolerance=tolerance, now=TS + tolerance + 0.001)
    with pytest.raises(TimestampTooNewError):
        verify(BODY, headers, SECRET, tolerance=tolerance, now=TS - tolerance - 0.001)


def test_default_tolerance_is_five_minutes() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    verify(BODY, headers, SECRET, now=TS + 300)
    with pytest.raises(TimestampTooOldError):
        verify(BODY, headers, SECRET, now=TS + 301)
    with pytest.raises(TimestampTooNewError):
        verify(BODY, headers, SECRET, now=TS - 301)
    assert issubclass(TimestampTooOldError, TimestampError)
    assert issubclass(TimestampTooNewError, TimestampError)


def test_timestamp_is_checked_against_the_clock_by_default() -> None:
    now = int(time.time())
    assert verify(BODY, signature_headers(SECRET, "m", now, BODY), SECRET) == json.loads(BODY)
    with pytest.raises(TimestampTooOldError):
        verify(BODY, signature_headers(SECRET, "m", now - 3600, BODY), SECRET)


@given(timestamp=timestamps, offset=st.integers(-(10**6), 10**6), tolerance=st.integers(0, 10**5))
def test_timestamp_window_property(timestamp: int, offset: int, tolerance: int) -> None:
    headers = signature_headers(SECRET, "msg_1", timestamp, BODY)
    now = timestamp + offset
    if offset > tolerance:
        with pytest.raises(TimestampTooOldError):
            verify(BODY, headers, SECRET, tolerance=tolerance, now=now)
    elif offset < -tolerance:
        with pytest.raises(TimestampTooNewError):
            verify(BODY, headers, SECRET, tolerance=tolerance, now=now)
    else:
        assert verify(BODY, headers, SECRET, tolerance=tolerance, now=now) == json.loads(BODY)


# --- the caller's own mistakes: TypeError / ValueError, checked before the request ------

WRONG_TOLERANCES = [
    pytest.param(True, TypeError, id="True"),
    pytest.param(False, TypeError, id="False"),
    pytest.param(1.5, TypeError, id="float"),
    pytest.param("300", TypeError, id="str"),
    pytest.param(None, TypeError, id="None"),
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(10**18, ValueError, id="10**18"),
    pytest.param(10**400, ValueError, id="10**400"),
]
WRONG_NOWS = [
    pytest.param(True, TypeError, id="True"),
    pytest.param("1700000000", TypeError, id="str"),
    pytest.param(b"1700000000", TypeError, id="bytes"),
    pytest.param(float("nan"), ValueError, id="nan"),
    pytest.param(float("inf"), ValueError, id="inf"),
    pytest.param(float("-inf"), ValueError, id="-inf"),
    pytest.param(10**400, ValueError, id="10**400"),
    pytest.param(-(10**400), ValueError, id="-10**400"),
]


@pytest.mark.parametrize(("tolerance", "error"), WRONG_TOLERANCES)
def test_a_wrong_tolerance_is_the_callers_error(tolerance: Any, error: type[Exception]) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    for request in ((BODY, headers), (None, None)):  # checked before the request is read
        with pytest.raises(error, match="tolerance") as excinfo:
            verify(*request, SECRET, tolerance=tolerance, now=TS)
        assert not isinstance(excinfo.value, SignatureError)


@pytest.mark.parametrize(("now", "error"), WRONG_NOWS)
def test_a_wrong_now_is_the_callers_error(now: Any, error: type[Exception]) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    for request in ((BODY, headers), (None, None)):
        with pytest.raises(error, match="now") as excinfo:
            verify(*request, SECRET, now=now)
        assert not isinstance(excinfo.value, SignatureError)


@pytest.mark.parametrize("secret", [None, b"whsec_" + bytes(32), 42, "not-a-key", SIGNING_KEY])
def test_a_wrong_secret_is_the_callers_error_checked_first(secret: Any) -> None:
    # A ValueError, and a SignatureError too, so that a receiver's one `except` answers.
    with pytest.raises(InvalidSecretError) as excinfo:
        verify(None, None, secret, now=TS)
    assert isinstance(excinfo.value, ValueError)


def test_extreme_but_valid_tolerance_and_now() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    largest = 10**18 - 1
    assert verify(BODY, headers, SECRET, tolerance=largest, now=largest) == json.loads(BODY)
    for now in (1e300, 10**300):
        with pytest.raises(TimestampTooOldError):
            verify(BODY, headers, SECRET, tolerance=largest, now=now)
    with pytest.raises(TimestampTooNewError):
        verify(BODY, headers, SECRET, tolerance=largest, now=-1e300)


# --- any request: a payload or a SignatureError, nothing else ----------------------


def _released(raw: bytes) -> memoryview:
    view = memoryview(raw)
    view.release()
    return view


#: The forms a receiver may pass a body in; the str form keeps undecodable bytes as
#: lone surrogates, which no UTF-8 encoder takes.
BODY_FORMS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "released memoryview": _released,
    "non-contiguous memoryview": lambda raw: memoryview(raw + raw)[::2],
    "str": lambda raw: raw.decode("utf-8", "surrogateescape"),
}


def test_a_released_memoryview_body_is_malformed() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(MalformedBodyError):
        verify(_released(BODY), headers, SECRET, now=TS)


@given(
    raw=st.binary() | json_values.map(lambda value: _json_body(value, ensure_ascii=False)),
    form=st.sampled_from(sorted(BODY_FORMS)),
    signer=st.sampled_from([SECRET, OTHER_SECRET, SIGNING_KEY, OTHER_SIGNING_KEY]),
    changes=st.dictionaries(header_names | st.text(max_size=12), garbage, max_size=3),
    dropped=st.sets(header_names, max_size=3),
    as_pairs=st.booleans(),
)
def test_any_request_gives_a_payload_or_a_signature_error(
    raw: bytes,
    form: str,
    signer: str,
    changes: dict[str, Any],
    dropped: set[str],
    as_pairs: bool,
) -> None:
    signed = signature_headers(signer, "msg_1", TS, raw)
    headers = {k: v for k, v in signed.items() if k not in dropped} | changes
    body = BODY_FORMS[form](raw)
    try:
        payload = verify(
            body, list(headers.items()) if as_pairs else headers, [SECRET, PUBLIC_KEY], now=TS
        )
    except SignatureError:
        return
    assert json.dumps(payload) == json.dumps(json.loads(raw))


# --- rotation ---------------------------------------------------------------------


@given(secrets=st.lists(secrets_st, min_size=1, max_size=4, unique=True), data=st.data())
def test_rotation(secrets: list[str], data: st.DataObject) -> None:
    signer = data.draw(st.sampled_from(secrets))
    # A delivery signed by any one secret verifies against the receiver's whole list ...
    headers = signature_headers(signer, "msg_1", TS, BODY)
    assert verify(BODY, headers, secrets, now=TS) == json.loads(BODY)
    # ... and one signed by the whole list verifies with any single secret.
    headers = signature_headers(secrets, "msg_1", TS, BODY)
    assert len(headers["webhook-signature"].split(" ")) == len(secrets)
    assert verify(BODY, headers, signer, now=TS) == json.loads(BODY)
    stranger = data.draw(secrets_st)
    assume(stranger not in secrets)
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, headers, stranger, now=TS)


def test_rotation_keeps_the_given_order() -> None:
    combined = sign([SECRET, OTHER_SECRET], "msg_1", TS, BODY)
    assert combined == f"{sign(SECRET, 'msg_1', TS, BODY)} {sign(OTHER_SECRET, 'msg_1', TS, BODY)}"


def test_one_bad_secret_in_a_rotation_list_is_reported_by_position() -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(InvalidSecretError, match="#1") as excinfo:
        verify(BODY, headers, [SECRET, "whsec_c2hvcnQ="], now=TS)
    assert "c2hvcnQ" not in str(excinfo.value)
    with pytest.raises(InvalidSecretError):
        verify(BODY, headers, [], now=TS)


# --- secrets ----------------------------------------------------------------------


def test_generate_secret() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(decode_secret(secret)) == 32
    assert secret == "whsec_" + base64.b64encode(decode_secret(secret)).decode()
    assert len({generate_secret() for _ in range(50)}) == 50


@given(raw=st.binary(min_size=24, max_size=128))
def test_decode_secret_round_trip(raw: bytes) -> None:
    encoded = base64.b64encode(raw).decode()
    assert decode_secret("whsec_" + encoded) == raw
    assert decode_secret("whsec_" + encoded.rstrip("=")) == raw  # unpadded is tolerated


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La*aSw", "base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La_aSw", "base64"),  # URL-safe alphabet
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", "base64"),
        ("whsec_MfKQ9r8GKYqrTwjU\u00e9PD8ILPZIo2LaLaSw", "base64"),
        ("whsec_" + "A" * 33, "base64"),  # 4n+1 characters can't be base64 at all
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "24 bytes"),  # 23 bytes once padded
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La", "24 bytes"),
        ("whsec_", "24 bytes"),
    ],
)
def test_decode_secret_rejects(secret: str, message: str) -> None:
    with pytest.raises(InvalidSecretError) as excinfo:
        decode_secret(secret)
    assert isinstance(excinfo.value, ValueError)
    assert message in str(excinfo.value)
    body = secret.removeprefix("whsec_").removeprefix("WHSEC_")
    if len(body) > 8:
        assert body[:8] not in str(excinfo.value)


def test_decode_secret_rejects_non_str() -> None:
    with pytest.raises(InvalidSecretError):
        decode_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")  # type: ignore[arg-type]


# --- sign() arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "body", "error"),
    [
        ("", TS, BODY, ValueError),
        ("has space", TS, BODY, ValueError),
        ("line\r\nX-Injected: 1", TS, BODY, ValueError),
        ("caf\u00e9", TS, BODY, ValueError),
        (1, TS, BODY, TypeError),
        ("msg_1", -1, BODY, ValueError),
        ("msg_1", 10**18, BODY, ValueError),
        ("msg_1", True, BODY, TypeError),
        ("msg_1", 1.5, BODY, TypeError),
        ("msg_1", str(TS), BODY, TypeError),
        ("msg_1", TS, BODY.decode(), TypeError),
    ],
)
def test_sign_rejects_what_verify_could_not_accept(
    msg_id: Any, timestamp: Any, body: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        sign(SECRET, msg_id, timestamp, body)


def test_sign_rejects_bad_secrets() -> None:
    with pytest.raises(InvalidSecretError):
        sign("not-a-secret", "msg_1", TS, BODY)
    with pytest.raises(InvalidSecretError):
        sign([], "msg_1", TS, BODY)


# --- Ed25519 (v1a) ----------------------------------------------------------------


@given(
    value=json_values,
    ensure_ascii=st.booleans(),
    signing_key=signing_keys_st,
    msg_id=msg_ids,
    timestamp=timestamps,
)
def test_v1a_round_trip(
    value: Any, ensure_ascii: bool, signing_key: str, msg_id: str, timestamp: int
) -> None:
    body = _json_body(value, ensure_ascii)
    public_key = public_key_for(signing_key)
    headers = signature_headers(signing_key, msg_id, timestamp, body)
    version, _, payload = headers["webhook-signature"].partition(",")
    assert version == "v1a"
    signature = base64.b64decode(payload, validate=True)
    assert len(signature) == 64
    assert _ed25519_ok(public_key, signature, f"{msg_id}.{timestamp}.".encode() + body)
    assert verify(body, headers, public_key, now=timestamp) == value
    assert verify(body.decode(), _only(headers, HOOK_NAMES), [public_key], now=timestamp) == value
    stranger = PUBLIC_KEY if public_key == OTHER_PUBLIC_KEY else OTHER_PUBLIC_KEY
    with pytest.raises(NoMatchingSignatureError):
        verify(body, headers, stranger, now=timestamp)


def test_v1a_known_answer() -> None:
    """Pin the key format (RFC 8032 vector) and the exact bytes that are signed."""
    assert public_key_for(SIGNING_KEY) == PUBLIC_KEY
    assert decode_signing_key(SIGNING_KEY) == RFC8032_SEED
    assert decode_public_key(PUBLIC_KEY) == RFC8032_PUBLIC
    expected = Ed25519PrivateKey.from_private_bytes(RFC8032_SEED).sign(b"msg_1.%d.%s" % (TS, BODY))
    assert sign(SIGNING_KEY, "msg_1", TS, BODY) == "v1a," + base64.b64encode(expected).decode()


@given(data=st.data())
def test_v1a_any_bit_of_the_signature_matters(data: st.DataObject) -> None:
    """Flip bits of the decoded signature (not just characters): always rejected."""
    headers = signature_headers(SIGNING_KEY, "msg_1", TS, BODY)
    raw = bytearray(base64.b64decode(headers["webhook-signature"].removeprefix("v1a,")))
    raw[data.draw(st.integers(0, 63))] ^= 1 << data.draw(st.integers(0, 7))
    forged = "v1a," + base64.b64encode(bytes(raw)).decode()
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, {**headers, "webhook-signature": forged}, PUBLIC_KEY, now=TS)


def test_v1a_non_canonical_base64_is_rejected() -> None:
    payload = sign(SIGNING_KEY, "msg_1", TS, BODY).removeprefix("v1a,")
    assert payload.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(payload[-3]) ^ 1]  # differs only in padding bits
    forged = f"v1a,{payload[:-3]}{sibling}=="
    assert base64.b64decode(forged[4:]) == base64.b64decode(payload)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": forged}
    with pytest.raises(MalformedHeaderError):
        verify(BODY, headers, PUBLIC_KEY, now=TS)


def test_scheme_mismatch_is_explained() -> None:
    hmac_only = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(NoMatchingSignatureError, match=r"no v1a .*whpk_"):
        verify(BODY, hmac_only, PUBLIC_KEY, now=TS)
    ed_only = signature_headers(SIGNING_KEY, "msg_1", TS, BODY)
    with pytest.raises(NoMatchingSignatureError, match=r"no v1 .*whsec_"):
        verify(BODY, ed_only, SECRET, now=TS)


@given(
    keys=st.lists(sender_keys_st, min_size=1, max_size=4, unique=True),
    msg_id=msg_ids,
    data=st.data(),
)
def test_mixed_rotation(keys: list[str], msg_id: str, data: st.DataObject) -> None:
    """Any mix of whsec_/whsk_ signs; each receiver key alone, or any list, verifies."""
    receiver_keys = [_receiver_key(key) for key in keys]
    headers = signature_headers(keys, msg_id, TS, BODY)
    entries = headers["webhook-signature"].split(" ")
    assert [entry.split(",")[0] for entry in entries] == [
        "v1a" if key.startswith("whsk_") else "v1" for key in keys
    ]
    for receiver_key in receiver_keys:
        assert verify(BODY, headers, receiver_key, now=TS) == json.loads(BODY)
    # A delivery signed by one key verifies against the receiver's whole mixed list ...
    signer = data.draw(st.sampled_from(keys))
    single = signature_headers(signer, msg_id, TS, BODY)
    shuffled = data.draw(st.permutations(receiver_keys))
    assert verify(BODY, single, shuffled, now=TS) == json.loads(BODY)
    # ... but not against keys that did not sign it.
    strangers = data.draw(st.lists(sender_keys_st, min_size=1, max_size=3))
    assume(not set(strangers) & set(keys))
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, headers, [_receiver_key(key) for key in strangers], now=TS)


def test_header_with_v1_and_v1a_verifies_with_either_key() -> None:
    headers = signature_headers([SECRET, SIGNING_KEY], "msg_1", TS, BODY)
    assert headers["webhook-signature"] == (
        f"{sign(SECRET, 'msg_1', TS, BODY)} {sign(SIGNING_KEY, 'msg_1', TS, BODY)}"
    )
    expected = json.loads(BODY)
    assert verify(BODY, headers, SECRET, now=TS) == expected
    assert verify(BODY, headers, PUBLIC_KEY, now=TS) == expected
    assert verify(BODY, headers, [SECRET, PUBLIC_KEY], now=TS) == expected
    assert verify(BODY, headers, [OTHER_SECRET, PUBLIC_KEY], now=TS) == expected
    assert verify(BODY, headers, [SECRET, OTHER_PUBLIC_KEY], now=TS) == expected
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, headers, [OTHER_SECRET, OTHER_PUBLIC_KEY], now=TS)

    # An entry is only ever checked by the scheme its version names: relabelled, the
    # Ed25519 signature is not taken for an HMAC, nor the HMAC for an Ed25519 signature.
    hmac_entry, ed25519_entry = headers["webhook-signature"].split(" ")
    relabelled = {
        "v1," + ed25519_entry.removeprefix("v1a,"): NoMatchingSignatureError,
        "v1a," + hmac_entry.removeprefix("v1,"): MalformedHeaderError,  # 32 bytes, not 64
    }
    for value, error in relabelled.items():
        for keys in (SECRET, PUBLIC_KEY, [SECRET, PUBLIC_KEY]):
            with pytest.raises(error):
                verify(BODY, {**headers, "webhook-signature": value}, keys, now=TS)


@given(
    headers=st.dictionaries(header_names | st.text() | st.binary(), garbage),
    body=garbage,
    keys=st.sampled_from([PUBLIC_KEY, [SECRET, PUBLIC_KEY], [PUBLIC_KEY, OTHER_PUBLIC_KEY]]),
)
def test_v1a_garbage_headers_only_raise_signature_error(
    headers: dict[Any, Any], body: Any, keys: Any
) -> None:
    with pytest.raises(SignatureError):
        verify(body, headers, keys, now=TS)


@given(
    entries=st.lists(
        st.tuples(
            st.sampled_from(["v1a", "v1", "V1A", "v1a ", ""]),
            st.text()
            | st.binary(min_size=0, max_size=80).map(lambda b: base64.b64encode(b).decode()),
        ),
        max_size=4,
    ),
    keep_good=st.booleans(),
    body=garbage | st.just(BODY),
)
def test_v1a_garbage_entries_never_crash(
    entries: list[tuple[str, str]], keep_good: bool, body: Any
) -> None:
    good = sign([SECRET, SIGNING_KEY], "msg_1", TS, BODY)
    value = " ".join([f"{v},{p}" for v, p in entries] + ([good] if keep_good else []))
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(TS), "webhook-signature": value}
    for keys in (PUBLIC_KEY, [SECRET, PUBLIC_KEY]):
        _verify_never_crashes(body, headers, keys)
        if keep_good and body == BODY:
            assert verify(body, headers, keys, now=TS) == json.loads(BODY)


def test_signing_key_given_to_verify_is_refused() -> None:
    headers = signature_headers(SIGNING_KEY, "msg_1", TS, BODY)
    encoded = SIGNING_KEY.removeprefix("whsk_")
    for keys, match in ((SIGNING_KEY, "public key"), ([SECRET, SIGNING_KEY], "#1.*public key")):
        with pytest.raises(InvalidSecretError, match=match) as excinfo:
            verify(BODY, headers, keys, now=TS)
        message = str(excinfo.value)
        assert "whpk_" in message
        for start in range(0, len(encoded) - 8):
            assert encoded[start : start + 8] not in message


def test_public_key_cannot_sign() -> None:
    with pytest.raises(InvalidSecretError, match="cannot sign"):
        sign(PUBLIC_KEY, "msg_1", TS, BODY)
    with pytest.raises(InvalidSecretError, match="#1"):
        signature_headers([SECRET, PUBLIC_KEY], "msg_1", TS, BODY)


@given(
    key=garbage
    | st.text().map(lambda s: "whpk_" + s)
    | st.binary(max_size=64).map(lambda b: "whpk_" + base64.b64encode(b).decode())
)
def test_bad_public_keys_raise_invalid_secret_error(key: Any) -> None:
    try:
        decode_public_key(key)
    except InvalidSecretError:
        pass
    else:
        assume(False)  # hypothesis happened to build a valid public key
    headers = signature_headers(SIGNING_KEY, "msg_1", TS, BODY)
    with pytest.raises(InvalidSecretError):
        verify(BODY, headers, key, now=TS)
    with pytest.raises(InvalidSecretError, match="#1"):
        verify(BODY, headers, [PUBLIC_KEY, key], now=TS)


@given(
    raw=st.binary(min_size=12, max_size=64),
    prefix=st.sampled_from(["whsk_", "whpk_"]),
    corruption=st.sampled_from(["", "*", " ", "-", "\n", "\u00e9"]),
    where=st.integers(min_value=0),
)
def test_ed25519_keys_never_appear_in_error_messages(
    raw: bytes, prefix: str, corruption: str, where: int
) -> None:
    encoded = base64.b64encode(raw).decode()
    where %= len(encoded)
    encoded = encoded[:where] + corruption + encoded[where:]
    assume(corruption or len(raw) != 32)
    key = prefix + encoded
    headers = signature_headers(SIGNING_KEY, "msg_1", TS, BODY)
    calls = [
        lambda: sign(key, "msg_1", TS, BODY),
        lambda: sign([SECRET, key], "msg_1", TS, BODY),
        lambda: verify(BODY, headers, key, now=TS),
        lambda: verify(BODY, headers, [PUBLIC_KEY, key], now=TS),
    ]
    if prefix == "whsk_":
        calls += [lambda: public_key_for(key), lambda: decode_signing_key(key)]
    else:
        calls += [lambda: decode_public_key(key)]
    for call in calls:
        with pytest.raises(InvalidSecretError) as excinfo:
            call()
        message = str(excinfo.value)
        for start in range(0, len(encoded) - 8):
            assert encoded[start : start + 8] not in message


def test_generate_signing_key() -> None:
    key = generate_signing_key()
    assert key.startswith("whsk_")
    seed = decode_signing_key(key)
    assert len(seed) == 32
    assert key == "whsk_" + base64.b64encode(seed).decode()
    public_key = public_key_for(key)
    assert public_key.startswith("whpk_")
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    assert decode_public_key(public_key) == expected
    assert len({generate_signing_key() for _ in range(50)}) == 50
    headers = signature_headers(key, "msg_1", TS, BODY)
    assert verify(BODY, headers, public_key, now=TS) == json.loads(BODY)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (PUBLIC_KEY, "whsk_"),
        (SECRET, "whsk_"),
        ("WHSK_" + SIGNING_KEY.removeprefix("whsk_"), "whsk_"),
        (SIGNING_KEY[:-4] + "*AAA", "base64"),
        (SIGNING_KEY + "\n", "base64"),
        ("whsk_" + base64.b64encode(bytes(31)).decode(), "32 bytes"),
        ("whsk_" + base64.b64encode(bytes(33)).decode(), "32 bytes"),
        ("whsk_" + base64.b64encode(bytes(64)).decode(), "32 bytes"),  # libsodium-style
        ("whsk_", "32 bytes"),
        (None, "str"),
        (["whsk_"], "str"),
    ],
)
def test_public_key_for_rejects(key: Any, message: str) -> None:
    with pytest.raises(InvalidSecretError) as excinfo:
        public_key_for(key)
    assert message in str(excinfo.value)
    if isinstance(key, str) and len(key) > 13:
        assert key[5:13] not in str(excinfo.value)


def test_ed25519_keys_tolerate_missing_padding() -> None:
    assert SIGNING_KEY.endswith("=")
    assert decode_signing_key(SIGNING_KEY.rstrip("=")) == RFC8032_SEED
    assert decode_public_key(PUBLIC_KEY.rstrip("=")) == RFC8032_PUBLIC


def test_signing_keys_are_loaded_once() -> None:
    """Signing every delivery of an Ed25519 hook must not parse its key every time."""
    key = generate_signing_key()
    load = signing_module._load_signing_key
    sign(key, "msg_1", TS, BODY)
    before = load.cache_info()
    for n in range(5):
        sign([key, SECRET], f"msg_{n}", TS, BODY)
    after = load.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5


# --- interoperability with the reference implementation ----------------------------


@given(
    value=json_values,
    ensure_ascii=st.booleans(),
    secrets=st.lists(secrets_st, min_size=1, max_size=3),
    msg_id=msg_ids,
)
def test_standardwebhooks_accepts_our_deliveries(
    value: Any, ensure_ascii: bool, secrets: list[str], msg_id: str
) -> None:
    body = _json_body(value, ensure_ascii)
    headers = signature_headers(secrets, msg_id, int(time.time()), body)
    for secret in secrets:
        assert Webhook(secret).verify(body, headers) == value
        assert Webhook(secret).verify(body, _only(headers, STANDARD_NAMES)) == value


@given(value=json_values, ensure_ascii=st.booleans(), secret=secrets_st, msg_id=msg_ids)
def test_we_accept_standardwebhooks_signatures(
    value: Any, ensure_ascii: bool, secret: str, msg_id: str
) -> None:
    body = _json_body(value, ensure_ascii)
    now = int(time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    assert signature == sign(secret, msg_id, now, body)
    assert verify(body, headers, secret) == value
    assert verify(body, headers, [OTHER_SECRET, secret]) == value


def test_standardwebhooks_accepts_a_generated_secret() -> None:
    secret = generate_secret()
    headers = signature_headers(secret, "msg_1", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


@given(
    value=json_values,
    secret=secrets_st,
    signing_keys=st.lists(signing_keys_st, min_size=1, max_size=2),
    hmac_first=st.booleans(),
)
def test_standardwebhooks_skips_our_v1a_entries(
    value: Any, secret: str, signing_keys: list[str], hmac_first: bool
) -> None:
    """The reference verifier (HMAC only) ignores v1a entries beside our v1 one."""
    body = _json_body(value, ensure_ascii=False)
    keys = [secret, *signing_keys] if hmac_first else [*signing_keys, secret]
    headers = signature_headers(keys, "msg_1", int(time.time()), body)
    assert "v1a," in headers["webhook-signature"]
    assert Webhook(secret).verify(body, headers) == value


def test_standardwebhooks_rejects_a_v1a_only_delivery_cleanly() -> None:
    """With no v1 entry the reference verifier reports no match (it does not crash)."""
    headers = signature_headers(SIGNING_KEY, "msg_1", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(SECRET).verify(BODY, headers)


# --- no Django --------------------------------------------------------------------


def test_importing_security_does_not_import_django() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import rest_hooks.security, sys; assert 'django' not in sys.modules;"
            " assert 'rest_hooks.security.django' not in sys.modules",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
