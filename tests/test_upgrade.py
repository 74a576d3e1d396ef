"""Upgrade in place from django-rest-hooks 1.5.

The database is taken back to the schema that library left (its last migration,
``0002_swappable_hook_model``), filled the way it filled it, then migrated forward: the
hooks must survive unchanged, each with a secret of its own, and deliver.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from bookstore.models import Book
from rest_hooks.models import Delivery, Event, Hook
from rest_hooks.security import decode_secret

pytestmark = pytest.mark.django_db(transaction=True)

OLD_LEAF = ("rest_hooks", "0002_swappable_hook_model")
OLD_COLUMNS = {"id", "created", "updated", "event", "target", "user_id"}


def migrate(targets: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def all_leaves() -> list[tuple[str, str]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


@pytest.fixture
def old_schema(transactional_db: Any) -> Iterator[None]:
    """The schema of django-rest-hooks 1.5; fully migrated again afterwards, pass or fail."""
    leaves = all_leaves()
    migrate([OLD_LEAF])
    try:
        yield
    finally:
        migrate(leaves)
        assert MigrationExecutor(connection).migration_plan(leaves) == []


def insert_old_hook(event: str, target: str, user_id: int) -> None:
    """What django-rest-hooks 1.5's ``Hook.objects.create`` wrote, column for column."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO rest_hooks_hook (created, updated, event, target, user_id)"
            " VALUES (%s, %s, %s, %s, %s)",
            [now, now, event, target, user_id],
        )


def test_upgrade_in_place_from_django_rest_hooks_1_5(
    old_schema, django_user_model, receiver, run_pipeline
):
    # What the old library's migrations leave: its one table, with its columns only.
    assert columns("rest_hooks_hook") == OLD_COLUMNS
    assert "rest_hooks_event" not in tables()
    assert "rest_hooks_delivery" not in tables()

    alice = django_user_model.objects.create_user(username="alice", password="x")
    bob = django_user_model.objects.create_user(username="bob", password="x")
    insert_old_hook("book.added", receiver.url("/alice/added"), alice.pk)
    insert_old_hook("book.removed", receiver.url("/alice/removed"), alice.pk)
    insert_old_hook("book.added", receiver.url("/bob/added"), bob.pk)
    insert_old_hook("user.logged_in", "https://example.com/bob", bob.pk)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, event, target, user_id FROM rest_hooks_hook ORDER BY id")
        before = [tuple(row) for row in cursor.fetchall()]
    assert len(before) == 4

    migrate(all_leaves())

    assert {"rest_hooks_event", "rest_hooks_delivery"} <= tables()
    hooks = list(Hook.objects.order_by("pk"))
    assert [(h.pk, h.event, h.target, h.user_id) for h in hooks] == before
    secrets = [h.secret for h in hooks]
    assert len(set(secrets)) == len(hooks), "existing hooks share a secret"
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(decode_secret(secret)) >= 24
    for hook in hooks:
        assert hook.is_active is True
        assert hook.disabled_reason == ""
        assert hook.disabled_at is None
        assert hook.failing_since is None

    # A hook created after the upgrade gets a fresh id and a secret of its own.
    new = Hook.objects.create(user=alice, event="book.changed", target=receiver.url("/new"))
    assert new.pk > before[-1][0]
    assert new.secret not in secrets

    # The outbox and the delivery log work, and an upgraded hook's secret signs.
    book = Book.objects.create(user=alice, title="Silmarillion", pages=365, fiction=True)
    event = Event.objects.get()
    assert event.name == "book.added"
    deliveries = run_pipeline()
    alice_added = hooks[0]
    assert [(d.hook_id, d.status) for d in deliveries] == [(alice_added.pk, "success")]
    (request,) = receiver.requests
    assert request.path == "/alice/added"
    payload = Webhook(alice_added.secret).verify(request.body, request.headers)
    assert payload["hook"] == {
        "id": alice_added.pk,
        "event": "book.added",
        "target": receiver.url("/alice/added"),
    }
    assert payload["data"]["title"] == "Silmarillion"
    assert Delivery.objects.get().event_id == event.pk
    # Deleting a hook cascades to its deliveries in the new tables.
    book.delete()
    alice_added.delete()
    assert not Delivery.objects.exists()


def test_migrating_back_to_the_old_schema_keeps_the_hooks(old_schema, django_user_model):
    """Downgrading (to roll a release back) keeps the rows and drops only what is new."""
    user = django_user_model.objects.create_user(username="carol", password="x")
    insert_old_hook("book.added", "https://example.com/a", user.pk)
    migrate(all_leaves())
    hook = Hook.objects.get()
    Delivery.objects.create(event=Event.objects.create(name="book.added", payload="{}"), hook=hook)
    migrate([OLD_LEAF])
    assert columns("rest_hooks_hook") == OLD_COLUMNS
    assert "rest_hooks_delivery" not in tables()
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, target FROM rest_hooks_hook")
        assert [tuple(r) for r in cursor.fetchall()] == [(hook.pk, "https://example.com/a")]


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = io.StringIO()
    # --check exits with status 1 when a migration is missing.
    call_command("makemigrations", "rest_hooks", check=True, dry_run=True, stdout=out)
    assert "No changes detected" in out.getvalue()
