"""A dispatch or a deliver message that fails after it claimed deliveries.

The dispatch actor creates the first batch of an event claimed, to deliver it itself once
the fan-out is done; the deliver actor claims its batch before it reads the batch's hooks
and event. Should anything fail before a request is made, what was claimed must be given
back at once, not kept until its lease ends and the relay sends it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import psycopg
import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from bookstore.models import Book
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.worker import batch, fanout

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.only_on("postgres"),  # a row lock, which SQLite has not
]

CHUNK = 4


@contextlib.contextmanager
def table_locked(model: type) -> Iterator[None]:
    """Another connection holds the table of ``model`` ACCESS EXCLUSIVE until the block
    ends: even a plain SELECT of it waits for the lock."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as other:  # one transaction, committed at the end
        other.execute(f"LOCK TABLE {model._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        yield


@contextlib.contextmanager
def rows_locked(hooks: Iterable[Hook]) -> Iterator[None]:
    """Another connection holds these hooks' rows FOR UPDATE until the block ends: a
    delivery row naming one of them waits for it (its foreign key's check)."""
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as other:  # one transaction, committed at the end
        other.execute(
            f"SELECT 1 FROM {Hook._meta.db_table} WHERE id = ANY(%s) FOR UPDATE",
            [[hook.pk for hook in hooks]],
        )
        yield


def test_a_failed_chunk_gives_the_held_batch_back_at_once(
    user, receiver, start_workers, monkeypatch
):
    # The workers' statements give up on a lock after half a second (libpq reads it).
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=500")
    workers = start_workers(
        processes=1,
        threads=4,
        FANOUT_CHUNK_SIZE=CHUNK,
        RELAY_AFTER=3600,  # nothing may need the relay
        RELAY_INTERVAL=3600,
    )
    hooks = Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{i}")) for i in range(8)
    )

    with rows_locked(hooks[CHUNK:]):  # the second chunk's INSERT times out, again and again
        Book.objects.create(user=user, title="Unfinished Tales", pages=472, fiction=True)
        first = receiver.wait_for(CHUNK)
    everything = receiver.wait_for(len(hooks), timeout=60)

    assert {r.path for r in first} == {f"/{i}" for i in range(CHUNK)}
    assert "canceling statement due to lock timeout" in "".join(workers.output)
    assert sorted(r.path for r in everything) == sorted(f"/{i}" for i in range(len(hooks)))
    # The batch given back did not count the attempt it never made.
    assert {r.headers["x-hook-attempt"] for r in everything} == {"1"}
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}


def test_a_deliver_message_that_fails_before_sending_gives_its_batch_back(user, receiver):
    hook = Hook.objects.create(user=user, event="book.added", target=receiver.url())
    Book.objects.create(user=user, title="The Silmarillion", pages=365, fiction=True)
    fanout.fan_out(Event.objects.get().pk)  # its deliver message waits in Redis
    delivery = Delivery.objects.get(hook=hook)

    with connection.cursor() as cursor:  # an error, not a wait, on the locked event table
        cursor.execute("SET lock_timeout = '500ms'")
    try:
        with table_locked(Event), pytest.raises(OperationalError, match="lock timeout"):
            batch.deliver_batch([str(delivery.pk)])  # claims, then cannot read the event
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    delivery.refresh_from_db()
    assert receiver.requests == []
    assert delivery.status == Delivery.Status.PENDING
    assert delivery.attempts == 0  # the attempt it never made is not counted
    assert delivery.next_attempt_at <= timezone.now()  # due now, not at its lease's end
