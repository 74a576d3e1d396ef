"""SQLite as a Django user configures it, under worker processes that write side by side.

The workers here get the ``OPTIONS`` a user writes (a ``timeout``, the journal mode, no
``transaction_mode``), not the suite's. Their transactions that read, then write, must take
the write lock up front: SQLite refuses a deferred transaction's upgrade to a writer at
once, with no wait, whenever another connection writes meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import connection

from bookstore.models import Book
from rest_hooks.models import Delivery, Hook
from tests.helpers import Workers

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.only_on("sqlite"),
]

HOOKS = 300
#: Small chunks: the fan-out's transactions then run while the deliveries of the chunks
#: before are claimed and recorded by the other threads.
CHUNK = 50
#: Nothing may need the relay: what is not delivered at once never will be in the test.
NO_RELAY = {"RELAY_AFTER": 3600, "RELAY_INTERVAL": 3600, "FANOUT_CHUNK_SIZE": CHUNK}


@pytest.fixture(params=["WAL", "DELETE"])
def workers(request, start_workers, monkeypatch) -> Iterator[Workers]:
    """2 worker processes of 8 threads on SQLite with the OPTIONS most Django projects
    have: a ``timeout``, this journal mode, no ``transaction_mode``.

    Stopped, and the suite's journal mode set back, before the test database is flushed:
    WAL stays with the file, not with a connection.
    """
    options = {"timeout": 20, "init_command": f"PRAGMA journal_mode={request.param};"}
    monkeypatch.setenv("REST_HOOKS_TEST_SQLITE_OPTIONS", json.dumps(options))
    workers = start_workers(processes=2, threads=8, **NO_RELAY)
    yield workers
    workers.stop()
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode = DELETE")


def test_user_settings_deliver_an_event_to_hundreds_of_hooks_at_once(workers, user, receiver):
    Hook.objects.bulk_create(
        Hook(user=user, event="book.added", target=receiver.url(f"/{i}")) for i in range(HOOKS)
    )

    Book.objects.create(user=user, title="The Silmarillion", pages=365, fiction=True)

    requests = receiver.wait_for(HOOKS, timeout=60)
    assert len({r.headers["x-hook-id"] for r in requests}) == HOOKS
    output = "".join(workers.output)
    assert "OperationalError: database is locked" not in output
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1}
