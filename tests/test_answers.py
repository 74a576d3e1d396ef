"""Whatever a receiver answers, an attempt ends recorded and gives its gate slot back.

The receivers are real sockets on 127.0.0.1: the bookstore receiver, and a bare TCP
listener that writes the status line, headers and body a test chose, byte for byte.
"""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.delivery.flow import Tally
from rest_hooks.delivery.retry import parse_retry_after
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.worker import gate
from rest_hooks.worker.batch import deliver_batch
from rest_hooks.worker.fanout import fan_out

pytestmark = pytest.mark.django_db

#: One request in flight per target: a slot an attempt kept would hold the next one back.
ONE_IN_FLIGHT = {**settings.REST_HOOKS, "MAX_IN_FLIGHT": 1}


def add_book(user: Any) -> Book:
    return Book.objects.create(user=user, title="T", pages=1, fiction=True)


def test_a_retry_after_with_a_non_ascii_digit_is_no_delay(user, receiver, run_pipeline):
    """``"²".isdigit()`` is true, yet it is no number: the answer is a plain 200, the
    delivery a success, and the next delivery to the target goes out at once."""
    Hook.objects.create(user=user, event="book.added", target=receiver.url("/hook"))
    receiver.answer("/hook", Answer(200, headers={"Retry-After": "\xb2"}))
    with override_settings(REST_HOOKS=ONE_IN_FLIGHT):
        add_book(user)
        assert len(run_pipeline()) == 1
        add_book(user)
        deliveries = run_pipeline()
    assert [(d.status, d.attempts) for d in deliveries] == [(Delivery.Status.SUCCESS, 1)] * 2
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("\xb2", None),  # superscript two
        ("\u0661\u0662\u0660", None),  # Arabic-Indic 120: float() reads it, HTTP does not
        (" 120 ", 120),
        ("-1", None),
        ("1e3", None),
        ("Mon, 0 Jan 0 7642003592:0", None),  # the date parser overflows on it
    ],
)
def test_parse_retry_after_accepts_ascii_digits_only(value, seconds):
    assert parse_retry_after(value, 0) == seconds


# -- any answer at all -------------------------------------------------------------------------

#: Header text as a receiver may write it: latin-1 (obs-text included), on one line.
line_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=30)
header_names = st.sampled_from(["Retry-After", "Content-Length", "Transfer-Encoding"]) | st.text(
    st.characters(codec="latin-1", exclude_characters="\r\n:"), min_size=1, max_size=20
)
#: Values that have tripped parsers: digits that are not ASCII, numbers out of range,
#: dates a date parser overflows on.
ODD_VALUES = [
    "\xb2",
    "\u0661\u0662\u0660",
    "9" * 400,
    "-5",
    "chunked",
    "Mon, 0 Jan 0 7642003592:0",
    "Fri, 31 Dec 9999 23:59:59 GMT",
]
header_values = line_text.map(lambda text: text.encode("latin-1")) | st.sampled_from(
    [value.encode() for value in ODD_VALUES]
)


@given(st.text() | st.sampled_from(ODD_VALUES) | st.from_regex(r"\d+ Jan \d+ \d+:\d+"))
def test_parse_retry_after_reads_a_number_a_date_or_nothing(value):
    seconds = parse_retry_after(value, 1_700_000_000.0)
    assert seconds is None or seconds >= 0


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """A whole HTTP/1.1 response: any status code, reason, headers and body."""
    status = draw(st.integers(100, 999))
    reason = draw(line_text).encode("latin-1")
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    retry_after = draw(st.none() | header_values)
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    body = draw(st.binary(max_size=2000))
    head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    for name, value in headers:
        head += name.encode("latin-1") + b": " + value + b"\r\n"
    if draw(st.booleans()):
        head += b"Content-Length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def answer_with(response: list[bytes]) -> Any:
    """A raw listener's behaviour: read the request whole, write ``response[0]``, close."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(5)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(65536)
        head, body = request.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(response[0])

    return behaviour


def test_whatever_a_receiver_answers_the_attempt_is_recorded(user, raw_listener):
    """Any status line, headers and body: the delivery ends in success, a scheduled retry
    or failed, with one attempt counted, and the target's one in-flight slot is free."""
    response: list[bytes] = [b""]
    raw = raw_listener(answer_with(response))
    hook = Hook.objects.create(
        user=user, event="book.added", target=f"http://127.0.0.1:{raw.port}/hook"
    )
    # Pauses (429, 503, Retry-After) of zero seconds and a breaker that never opens: the
    # only thing that could hold the next request back is a slot an attempt kept.
    overrides = {
        **ONE_IN_FLIGHT,
        "THROTTLE_PAUSE": 0,
        "RETRY_AFTER_MIN": 0,
        "RETRY_AFTER_MAX": 0,
        "BREAKER_FAILURES": 10**9,
        "BREAKER_MIN_CALLS": 10**9,
        "DEADLINE": 5,
    }

    @hypothesis_settings(
        max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(answers())
    @example(b"HTTP/1.1 200 OK\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n")
    @example(b"HTTP/1.1 503 No\r\nRetry-After: Mon, 0 Jan 0 7642003592:0\r\n\r\n")
    @example(b"HTTP/1.1 500 NUL\r\nContent-Length: 3\r\n\r\na\x00b")
    def attempt(answer: bytes) -> None:
        response[0] = answer
        Hook.objects.filter(pk=hook.pk).update(is_active=True)  # after a 410
        add_book(user)
        (event_id,) = Event.objects.filter(status=Event.Status.PENDING).values_list("pk", flat=True)
        fan_out(event_id)
        delivery = Delivery.objects.get(event_id=event_id)
        deliver_batch([str(delivery.pk)])

        delivery.refresh_from_db()
        assert delivery.attempts == 1
        assert delivery.last_attempt_at is not None
        if delivery.status == Delivery.Status.PENDING:  # a retry, scheduled
            assert delivery.next_attempt_at < timezone.now() + timedelta(seconds=60)
        else:
            assert delivery.status in (Delivery.Status.SUCCESS, Delivery.Status.FAILED)
            assert delivery.finished_at is not None
        admission = gate.admit(hook)
        assert isinstance(admission, gate.Admission), admission
        gate.report(admission, Tally(), None)

    with override_settings(REST_HOOKS=overrides):
        attempt()
