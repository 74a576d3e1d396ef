"""Tests of delivery signing and verification (`rest_hooks.security.signing`).

The property-based tests exist because verification parses attacker-controlled
input: example tests alone would not convince us that *every* malformed delivery
raises a `SignatureError` (and nothing else), or that every tampering is caught.
The `standardwebhooks` cross-checks pin the wire format to the specification's
reference implementation, since compatibility is the reason for the format.
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
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

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
    decode_secret,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TS = 1_700_000_000
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
BODY = b'{"hook": "book.added", "data": {"id": 1}}'
STANDARD_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")
HOOK_NAMES = ("X-Hook-Id", "X-Hook-Timestamp", "X-Hook-Signature")

# --- strategies -------------------------------------------------------------------

secrets_st = st.binary(min_size=24, max_size=64).map(
    lambda raw: "whsec_" + base64.b64encode(raw).decode()
)
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


@given(body=st.binary(min_size=1), data=st.data())
def test_any_body_change_is_rejected(body: bytes, data: st.DataObject) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, body)
    index = data.draw(st.integers(0, len(body) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(body)
    flipped[index] ^= 1 << bit
    with pytest.raises(NoMatchingSignatureError):
        verify(bytes(flipped), headers, SECRET, now=TS)
    other = data.draw(st.binary())
    assume(other != body)
    with pytest.raises(NoMatchingSignatureError):
        verify(other, headers, SECRET, now=TS)


@given(msg_id=msg_ids, other_id=st.text())
def test_any_id_change_is_rejected(msg_id: str, other_id: str) -> None:
    assume(other_id != msg_id)
    headers = signature_headers(SECRET, msg_id, TS, BODY)
    tampered = {**headers, "webhook-id": other_id, "X-Hook-Id": other_id}
    with pytest.raises(SignatureError):
        verify(BODY, tampered, SECRET, now=TS)


@given(msg_id=msg_ids, other_id=msg_ids)
def test_any_valid_looking_id_change_is_a_signature_mismatch(msg_id: str, other_id: str) -> None:
    assume(other_id != msg_id)
    headers = signature_headers(SECRET, msg_id, TS, BODY)
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, {**headers, "webhook-id": other_id}, SECRET, now=TS)


@given(timestamp=timestamps, other=timestamps)
def test_any_timestamp_change_is_rejected(timestamp: int, other: int) -> None:
    assume(other != timestamp)
    headers = signature_headers(SECRET, "msg_1", timestamp, BODY)
    tampered = {**headers, "webhook-timestamp": str(other)}
    with pytest.raises(NoMatchingSignatureError):
        verify(BODY, tampered, SECRET, now=other)  # in the window: only the HMAC can catch it
    with pytest.raises(SignatureError):
        verify(BODY, tampered, SECRET, now=timestamp)


@given(msg_id=msg_ids, data=st.data())
def test_any_signature_change_is_rejected(msg_id: str, data: st.DataObject) -> None:
    headers = signature_headers(SECRET, msg_id, TS, BODY)
    signature = headers["webhook-signature"]
    index = data.draw(st.integers(0, len(signature) - 1))
    char = data.draw(st.characters())
    assume(char != signature[index])
    tampered = signature[:index] + char + signature[index + 1 :]
    with pytest.raises(SignatureError):
        verify(BODY, {**headers, "webhook-signature": tampered}, SECRET, now=TS)


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
        ("v1a,c29tZSBlZDI1NTE5IHNpZ25hdHVyZQ==", NoMatchingSignatureError),
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


@pytest.mark.parametrize(
    ("tolerance", "now"), [(-1, None), (300, float("nan")), (300, float("inf"))]
)
def test_nonsensical_tolerance_or_now_is_a_caller_bug(tolerance: int, now: float | None) -> None:
    headers = signature_headers(SECRET, "msg_1", TS, BODY)
    with pytest.raises(ValueError, match=r"tolerance|now") as excinfo:
        verify(BODY, headers, SECRET, tolerance=tolerance, now=now)
    assert not isinstance(excinfo.value, SignatureError)


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


# --- no Django --------------------------------------------------------------------


def test_importing_security_does_not_import_django() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import rest_hooks.security, sys; assert 'django' not in sys.modules",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
