"""rest_hooks.worker.tables.Table: the workers' plain SQL gives and writes what the ORM would."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import pytest
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, connections, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rest_hooks.models import Delivery, Event, Hook, uuid7
from rest_hooks.security.encryption import is_token
from rest_hooks.worker.tables import Expression, Table, write_transaction

pytestmark = pytest.mark.django_db

#: Aware, not in UTC, with microseconds: what a converter or a preparation left out shows.
WHEN = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=dt_timezone(timedelta(hours=2)))


def make_hook(user: Any, path: str = "/hook", **fields: Any) -> Hook:
    fields.setdefault("event", "book.added")
    return Hook.objects.create(user=user, target=f"http://example.com{path}", **fields)


def make_event(**fields: Any) -> Event:
    fields.setdefault("name", "book.added")
    fields.setdefault("payload", '{"b": 1, "a": 2}')
    return Event.objects.create(**fields)


def make_delivery(event: Event, hook: Hook, **fields: Any) -> Delivery:
    return Delivery.objects.create(event=event, hook=hook, **fields)


def raw(model: type[Model], column: str, pk: Any) -> Any:
    """The value of a column as the table holds it, read on a bare cursor."""
    quote = connection.ops.quote_name
    pk_field = model._meta.pk
    assert pk_field is not None
    sql = (
        f"SELECT {quote(column)} FROM {quote(model._meta.db_table)} "
        f"WHERE {quote(pk_field.column)} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk_field.get_db_prep_value(pk, connection)])
        row = cursor.fetchone()
    assert row is not None
    return row[0]


def assert_same(got: Model, expected: Model) -> None:
    """Every concrete field of ``got`` has the value, and the type, the ORM gives."""
    assert type(got) is type(expected)
    for field in type(expected)._meta.concrete_fields:
        mine, theirs = getattr(got, field.attname), getattr(expected, field.attname)
        assert (mine, type(mine)) == (theirs, type(theirs)), field.attname


def pks(rows: list[Any]) -> list[Any]:
    return [row.pk for row in rows]


@pytest.fixture
def table() -> Any:
    """The Delivery table of the default database."""
    return Table.of(Delivery, "default")


@pytest.fixture
def deliveries(user: Any) -> list[Delivery]:
    """Three pending deliveries of one event, in the order of their pks, each due one
    minute after the one before."""
    event = make_event()
    made = sorted(
        (make_delivery(event, make_hook(user, f"/{i}")) for i in range(3)), key=lambda d: d.pk
    )
    base = timezone.now().replace(microsecond=500_000)
    for i, delivery in enumerate(made):
        delivery.next_attempt_at = base + timedelta(minutes=i)
        delivery.save(update_fields=["next_attempt_at"])
    return made


# -- select: the objects the ORM gives ------------------------------------------------


def test_select_hook_is_the_orm_hook(user):
    hook = make_hook(user, is_active=False, disabled_reason="410", rate_limit="10/s")
    Hook.objects.filter(pk=hook.pk).update(disabled_at=WHEN, failing_since=WHEN)
    hook.rotate_secret()  # fills previous_secrets

    (got,) = Table.of(Hook, "default").select({"pk": hook.pk})

    expected = Hook.objects.get(pk=hook.pk)
    assert_same(got, expected)
    assert got.is_active is False
    assert got.user_id == user.pk
    assert got.disabled_at == WHEN
    assert timezone.is_aware(got.created)
    assert timezone.is_aware(got.disabled_at)
    # Decrypted in Python, encrypted in the table.
    assert got.secret.startswith("whsec_")
    assert is_token(raw(Hook, "secret", hook.pk))
    assert got.previous_secrets.startswith('[{"secret": "whsec_')
    assert is_token(raw(Hook, "previous_secrets", hook.pk))
    assert got.signing_secrets() == expected.signing_secrets()
    assert len(got.signing_secrets()) == 2


def test_select_event_is_the_orm_event(user):
    hook = make_hook(user)
    event = make_event(
        action="created",
        has_hook_member=True,
        owner_id=str(user.pk),
        hook=hook,
        instance_model="bookstore.book",
        instance_pk="7",
        fanout_cursor="3",
        dispatched_at=WHEN,
    )

    (got,) = Table.of(Event, "default").select({"pk": event.pk})

    assert_same(got, Event.objects.get(pk=event.pk))
    assert got.has_hook_member is True
    assert got.hook_id == hook.pk
    assert got.payload == '{"b": 1, "a": 2}'
    assert got.dispatched_at == WHEN
    assert timezone.is_aware(got.created_at)


def test_select_delivery_is_the_orm_delivery(user):
    delivery = make_delivery(
        make_event(),
        make_hook(user),
        status=Delivery.Status.FAILED,
        attempts=3,
        next_attempt_at=WHEN,
        last_attempt_at=WHEN - timedelta(seconds=1),
        last_status_code=503,
        last_duration_ms=12.5,
        last_error="HTTP 503",
        response_excerpt="busy",
        finished_at=WHEN,
    )

    (got,) = Table.of(Delivery, "default").select({"pk": delivery.pk})

    assert_same(got, Delivery.objects.get(pk=delivery.pk))
    assert isinstance(got.pk, uuid.UUID)
    assert got.pk == delivery.pk
    assert got.next_attempt_at == WHEN
    assert timezone.is_aware(got.next_attempt_at)
    assert got.last_duration_ms == 12.5


def test_selected_instances_are_usable_like_orm_ones(deliveries):
    first = deliveries[0]
    (got,) = Table.of(Delivery, "default").select({"pk": first.pk})
    assert got._state.db == "default"
    assert got._state.adding is False
    # Relations load as for an ORM instance.
    assert got.hook.target == first.hook.target
    assert got.event.pk == first.event_id

    got.last_error = "saved"
    got.save()  # an UPDATE: an instance still "adding" would INSERT its pk again

    assert Delivery.objects.count() == 3
    assert Delivery.objects.get(pk=first.pk).last_error == "saved"


def test_saved_hook_keeps_its_secret(user):
    hook = make_hook(user)
    (got,) = Table.of(Hook, "default").select({"pk": hook.pk})
    got.target = "http://example.com/moved"
    got.save()
    again = Hook.objects.get(pk=hook.pk)
    assert again.target == "http://example.com/moved"
    assert again.secret == hook.secret
    assert is_token(raw(Hook, "secret", hook.pk))


# -- lookups --------------------------------------------------------------------------


def test_exact_conditions_are_and_ed(table, deliveries):
    Delivery.objects.filter(pk=deliveries[1].pk).update(status=Delivery.Status.SUCCESS)
    pending = table.select({"status": Delivery.Status.PENDING}, order_by="pk")
    assert pks(pending) == [deliveries[0].pk, deliveries[2].pk]
    both = table.select({"status": "pending", "hook": deliveries[2].hook_id})
    assert pks(both) == [deliveries[2].pk]
    assert table.select({"status": "success", "hook_id": deliveries[2].hook_id}) == []


def test_exact_pk_as_a_string(table, deliveries):
    assert pks(table.select({"pk": str(deliveries[1].pk)})) == [deliveries[1].pk]


def test_in(table, deliveries):
    wanted = [str(deliveries[2].pk), str(deliveries[0].pk)]  # as the deliver actor gets them
    assert pks(table.select({"pk__in": wanted}, order_by="pk")) == [
        deliveries[0].pk,
        deliveries[2].pk,
    ]
    hooks = Table.of(Hook, "default").select({"pk__in": {d.hook_id for d in deliveries[:2]}})
    assert sorted(pks(hooks)) == sorted(d.hook_id for d in deliveries[:2])


def test_in_bulk(table, deliveries):
    wanted = pks(deliveries[:2])
    got = table.in_bulk(str(pk) for pk in wanted)
    assert sorted(got) == sorted(wanted)
    for pk in wanted:
        assert_same(got[pk], Delivery.objects.get(pk=pk))


def test_empty_in_matches_nothing(table, deliveries):
    with CaptureQueriesContext(connection) as queries:
        assert table.select({"pk__in": []}) == []
        assert table.values(["pk"], {"pk__in": set()}) == []
        assert table.update({"attempts": 5}, {"pk__in": []}) == 0
    assert len(queries) == 3  # valid SQL, run, not a shortcut that skips the statement
    assert not Delivery.objects.filter(attempts=5).exists()


def test_lte_and_gt_on_a_datetime(table, deliveries):
    middle = deliveries[1].next_attempt_at
    lte = table.select({"next_attempt_at__lte": middle}, order_by="pk")
    gt = table.select({"next_attempt_at__gt": middle}, order_by="pk")
    assert pks(lte) == pks(deliveries[:2])  # the boundary included
    assert pks(gt) == pks(deliveries[2:])
    # The same instant in another time zone is the same boundary.
    elsewhere = middle.astimezone(dt_timezone(timedelta(hours=-5)))
    assert pks(table.select({"next_attempt_at__lte": elsewhere}, order_by="pk")) == pks(
        deliveries[:2]
    )
    assert pks(lte) == list(
        Delivery.objects.filter(next_attempt_at__lte=middle)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def test_order_by_and_limit(table, deliveries):
    Delivery.objects.filter(pk=deliveries[0].pk).update(
        next_attempt_at=deliveries[2].next_attempt_at + timedelta(hours=1)
    )
    by_time = table.select({}, order_by="next_attempt_at", limit=2)
    assert pks(by_time) == [deliveries[1].pk, deliveries[2].pk]
    assert pks(table.select({}, order_by="pk", limit=1)) == [deliveries[0].pk]
    assert len(table.select({})) == 3


def test_user_given_as_a_string_and_pk_gt_as_a_string(user, django_user_model):
    other = django_user_model.objects.create_user(username="cslewis", password="x")
    # Primary keys 9, 10, 11: compared as text, "10" and "11" would come before "9".
    mine = [make_hook(user, f"/{pk}", pk=pk) for pk in (9, 10, 11)]
    make_hook(other, "/other", pk=12)
    make_hook(user, "/off", pk=13, is_active=False)
    hooks = Table.of(Hook, "default")

    # What _next_chunk asks for an event owned by ``user``: Event.owner_id is text.
    where = {"event": "book.added", "is_active": True, "user": str(user.pk)}
    assert pks(hooks.select(where, order_by="pk")) == pks(mine)
    assert pks(hooks.select(where | {"pk__gt": "9"}, order_by="pk")) == [10, 11]
    assert pks(hooks.select(where | {"pk__gt": "10"}, order_by="pk", limit=5)) == [11]
    assert hooks.values(["pk"], where | {"pk__gt": "11"}) == []
    assert pks(hooks.select({"user_id": str(other.pk)})) == [12]


def test_hooks_created_by_a_time_as_the_fan_out_selects_them(user):
    hooks = [make_hook(user, f"/{i}") for i in range(3)]
    for i, hook in enumerate(hooks):  # a microsecond apart around WHEN
        Hook.objects.filter(pk=hook.pk).update(created=WHEN + timedelta(microseconds=i - 1))
    table = Table.of(Hook, "default")
    elsewhere = WHEN.astimezone(dt_timezone(timedelta(hours=-5)))
    for when in (WHEN, elsewhere, WHEN - timedelta(seconds=1)):
        where = {"event": "book.added", "is_active": True, "created__lte": when}
        expected = list(Hook.objects.filter(**where).order_by("pk"))
        assert pks(table.select(where, order_by="pk")) == pks(expected)
    assert pks(table.select({"created__lte": WHEN}, order_by="pk")) == pks(hooks[:2])


# -- values ---------------------------------------------------------------------------


def test_values_are_converted_tuples_in_the_asked_order(table, deliveries):
    Delivery.objects.filter(pk=deliveries[0].pk).update(last_duration_ms=1.5)
    names = ["next_attempt_at", "pk", "hook_id", "status", "last_duration_ms"]
    got = table.values(names, {"pk__in": pks(deliveries)}, order_by="pk", limit=2)
    expected = list(
        Delivery.objects.filter(pk__in=pks(deliveries)).order_by("pk").values_list(*names)[:2]
    )
    assert got == expected
    assert [type(v) for v in got[0]] == [type(v) for v in expected[0]]
    assert got[0] == (
        deliveries[0].next_attempt_at,
        deliveries[0].pk,
        deliveries[0].hook_id,
        "pending",
        1.5,
    )
    assert isinstance(got[0][1], uuid.UUID)
    assert timezone.is_aware(got[0][0])


def test_values_of_hooks_as_the_fan_out_reads_them(user):
    hooks = [make_hook(user, f"/{i}", rate_limit=f"{i}/s") for i in range(3)]
    got = Table.of(Hook, "default").values(
        ["pk", "target", "rate_limit", "is_active", "secret"], {"user": user.pk}, order_by="pk"
    )
    assert got == [(h.pk, h.target, h.rate_limit, True, h.secret) for h in hooks]
    assert all(type(row[3]) is bool for row in got)
    assert all(row[4].startswith("whsec_") for row in got)


# -- update ---------------------------------------------------------------------------


def test_update_returns_the_count(table, deliveries):
    assert table.update({"last_error": "x"}, {"pk__in": pks(deliveries[:2])}) == 2
    assert table.update({"last_error": "y"}, {"pk": deliveries[2].pk}) == 1
    assert table.update({"last_error": "z"}, {"pk": uuid.uuid4()}) == 0
    assert table.update({"last_error": "w"}, {"status": "success"}) == 0
    errors = Delivery.objects.order_by("pk").values_list("last_error", flat=True)
    assert list(errors) == ["x", "x", "y"]


def test_update_is_a_compare_and_set(user):
    """As _next_chunk moves an event's cursor: only if it is where it was read."""
    event = make_event(fanout_cursor="")
    events = Table.of(Event, "default")
    expected = {"pk": event.pk, "status": Event.Status.PENDING, "fanout_cursor": ""}
    assert events.update({"fanout_cursor": "4"}, expected) == 1
    assert events.update({"fanout_cursor": "8"}, expected) == 0  # someone moved it
    now = timezone.now()
    done = {"status": Event.Status.DISPATCHED, "dispatched_at": now, "fanout_cursor": "9"}
    assert events.update(done, expected | {"fanout_cursor": "4"}) == 1
    event.refresh_from_db()
    assert (event.status, event.dispatched_at, event.fanout_cursor) == ("dispatched", now, "9")


def test_update_writes_what_the_orm_writes(table, deliveries):
    mine, theirs = deliveries[0], deliveries[1]
    changes = {
        "next_attempt_at": WHEN,
        "finished_at": None,
        "status": Delivery.Status.FAILED,
        "last_status_code": 500,
        "last_duration_ms": 2.25,
    }
    assert table.update(changes, {"pk": mine.pk}) == 1
    Delivery.objects.filter(pk=theirs.pk).update(**changes)

    got = Delivery.objects.get(pk=mine.pk)
    assert got.next_attempt_at == WHEN  # an aware datetime reads back equal
    assert timezone.is_aware(got.next_attempt_at)
    assert (got.status, got.last_status_code, got.last_duration_ms) == ("failed", 500, 2.25)
    # Byte for byte what the ORM stored (on SQLite: UTC text, so that text comparisons
    # of lte and gt order instants).
    for column in ["next_attempt_at", "finished_at", "status", "last_status_code"]:
        assert raw(Delivery, column, mine.pk) == raw(Delivery, column, theirs.pk), column
    just_before = {"next_attempt_at__gt": WHEN - timedelta(microseconds=1)}
    assert pks(table.select(just_before, order_by="pk")) == pks([mine, theirs])


def test_update_of_a_foreign_key_and_of_a_secret(user):
    hook, other = make_hook(user, "/a"), make_hook(user, "/b")
    delivery = make_delivery(make_event(), hook)
    assert Table.of(Delivery, "default").update({"hook": other.pk}, {"pk": delivery.pk}) == 1
    assert Delivery.objects.get(pk=delivery.pk).hook_id == other.pk

    hooks = Table.of(Hook, "default")
    assert hooks.update({"secret": "whsec_bmV3"}, {"pk": hook.pk}) == 1
    assert is_token(raw(Hook, "secret", hook.pk))  # encrypted as the ORM would
    assert Hook.objects.get(pk=hook.pk).secret == "whsec_bmV3"


def test_expression_increments(table, deliveries):
    where = {"pk__in": pks(deliveries[:2])}
    assert table.update({"attempts": Expression("{} + 1")}, where) == 2
    assert table.update({"attempts": Expression("{} + 1"), "last_error": "again"}, where) == 2
    rows = Delivery.objects.order_by("pk").values_list("attempts", "last_error")
    assert list(rows) == [(2, "again"), (2, "again"), (0, "")]


def test_none_is_null(table, deliveries):
    Delivery.objects.filter(pk=deliveries[1].pk).update(next_attempt_at=None)
    assert pks(table.select({"next_attempt_at": None})) == pks(deliveries[1:2])


# -- save: many rows' fields by primary key ----------------------------------------------


@pytest.mark.parametrize("count", [1, 2])
def test_save_writes_each_row_its_own_values(table, deliveries, count):
    """One row, and several (one UNNEST statement on PostgreSQL, executemany elsewhere)."""
    changed = deliveries[:count]
    for i, delivery in enumerate(changed):
        delivery.status = Delivery.Status.SUCCESS if i else Delivery.Status.FAILED
        delivery.next_attempt_at = None
        delivery.finished_at = WHEN + timedelta(seconds=i)
        delivery.last_status_code = 204 + i
        delivery.last_duration_ms = 1.5 + i
        delivery.last_error = f"error {i}" * i
    untouched = Delivery.objects.get(pk=deliveries[2].pk)
    names = ["status", "next_attempt_at", "finished_at", "last_status_code"]
    with CaptureQueriesContext(connection) as queries:
        table.save(changed, [*names, "last_duration_ms", "last_error"])
    for i, delivery in enumerate(changed):
        got = Delivery.objects.get(pk=delivery.pk)
        assert got.finished_at == WHEN + timedelta(seconds=i)
        assert (got.status, got.next_attempt_at, got.last_status_code) == (
            delivery.status,
            None,
            204 + i,
        )
        assert (got.last_duration_ms, got.last_error) == (1.5 + i, f"error {i}" * i)
    assert_same(Delivery.objects.get(pk=untouched.pk), untouched)
    if connection.vendor == "postgresql":
        assert [q["sql"].split(" ", 1)[0] for q in queries] == ["UPDATE"]


def test_save_of_nothing_runs_nothing(table):
    with CaptureQueriesContext(connection) as queries:
        table.save([], ["status"])
    assert len(queries) == 0


# -- insert: new rows that differ in a few fields, as bulk_create writes them -----------


def new_rows(user: Any, count: int) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """What a fan-out inserts: each row its id, hook and attempts; the rest shared."""
    varying = {
        "id": [uuid7() for _ in range(count)],
        "hook": [make_hook(user, f"/new{i}").pk for i in range(count)],
        "attempts": list(range(count)),
    }
    return varying, {"event": make_event(), "next_attempt_at": WHEN}


@pytest.mark.parametrize("count", [1, 3])
def test_insert_writes_what_bulk_create_writes(user, table, count):
    varying, same = new_rows(user, count)
    with CaptureQueriesContext(connection) as queries:
        assert table.insert(varying, same) == count
    assert [q["sql"].split(" ", 1)[0] for q in queries] == ["INSERT"]
    other_event = make_event().pk  # (event, hook) is unique
    theirs = Delivery.objects.bulk_create(
        Delivery(event_id=other_event, hook_id=hook, attempts=n, next_attempt_at=WHEN)
        for hook, n in zip(varying["hook"], varying["attempts"], strict=True)
    )
    for pk, expected in zip(varying["id"], theirs, strict=True):
        stored = Delivery.objects.get(pk=pk)
        expected.refresh_from_db()
        for field in Delivery._meta.concrete_fields:
            if field.name not in ("id", "event", "created_at"):
                assert getattr(stored, field.attname) == getattr(expected, field.attname), field
        # Stored as bulk_create stores it (on SQLite: UTC text, for example), the defaults
        # of the fields given neither way among them.
        for column in ["next_attempt_at", "status", "attempts", "last_error", "created_at"]:
            mine, bulk = raw(Delivery, column, pk), raw(Delivery, column, expected.pk)
            assert type(mine) is type(bulk), column
            if column != "created_at":
                assert mine == bulk, column


def test_insert_cuts_rows_to_what_the_database_takes(user, table, monkeypatch):
    varying, same = new_rows(user, 5)
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    with CaptureQueriesContext(connection) as queries:
        table.insert(varying, same)
    inserts = [q for q in queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == (1 if connection.vendor == "postgresql" else 3)  # UNNEST: one
    assert sorted(Delivery.objects.values_list("attempts", flat=True)) == [0, 1, 2, 3, 4]
    assert set(Delivery.objects.values_list("pk", flat=True)) == set(varying["id"])


def test_insert_saves_what_a_new_instance_saves(user):
    """The fields given in neither argument: defaults, and auto_now / auto_now_add."""
    hooks = Table.of(Hook, "default")
    before = timezone.now()
    pks = [10_001, 10_002]
    hooks.insert(
        {"id": pks, "target": ["https://a.example/1", "https://a.example/2"]},
        {"user": user, "event": "book.added"},
    )
    stored = list(Hook.objects.filter(pk__in=pks))
    assert len(stored) == 2
    for hook in stored:
        assert hook.created >= before
        assert hook.updated >= before
        assert (hook.is_active, hook.signing, hook.rate_limit) == (True, "hmac-sha256", "")


def test_insert_of_nothing_runs_nothing(table):
    with CaptureQueriesContext(connection) as queries:
        assert table.insert({"id": [], "hook": []}, {}) == 0
    assert len(queries) == 0


# -- claim: take rows no one else is taking -------------------------------------------


def claim_two(table: Any, deliveries: list[Delivery], **options: Any) -> list[Any]:
    """Claim the first two pending deliveries, counting an attempt and setting a lease."""
    wanted = {"pk__in": pks(deliveries), "status": "pending"}
    changes = {"attempts": Expression("{} + 1"), "next_attempt_at": WHEN}
    return table.claim(wanted, changes, order_by="pk", limit=2, **options)


def test_claim_changes_the_rows_and_returns_them_as_they_are_after_it(table, deliveries):
    with CaptureQueriesContext(connection) as queries:
        claimed = sorted(claim_two(table, deliveries), key=lambda d: d.pk)
    assert pks(claimed) == pks(deliveries[:2])
    for got in claimed:
        assert_same(got, Delivery.objects.get(pk=got.pk))
        assert (got.attempts, got.next_attempt_at) == (1, WHEN)
    assert list(Delivery.objects.order_by("pk").values_list("attempts", flat=True)) == [1, 1, 0]
    # One statement, atomic on its own (SKIP LOCKED on PostgreSQL).
    (query,) = queries
    assert query["sql"].startswith("WITH")
    assert (" FOR UPDATE SKIP LOCKED" in query["sql"]) is (connection.vendor == "postgresql")


def test_claim_takes_no_more_than_its_limit_whatever_the_plan(table, deliveries):
    """A plan that runs the choice of rows again for each row updated (a nested loop)
    must not take more: the choice is made once."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for method in ["hashagg", "hashjoin", "mergejoin", "sort", "material"]:
                cursor.execute(f"SET LOCAL enable_{method} = off")  # the test's transaction
    assert sorted(pks(claim_two(table, deliveries))) == pks(deliveries[:2])
    assert list(Delivery.objects.order_by("pk").values_list("attempts", flat=True)) == [1, 1, 0]


def test_claim_of_some_fields(table, deliveries):
    claimed = claim_two(table, deliveries, names=["pk", "attempts"])
    assert sorted(claimed) == [(deliveries[0].pk, 1), (deliveries[1].pk, 1)]


def test_claim_of_nothing(table, deliveries):
    assert table.claim({"status": "success"}, {"attempts": 9}) == []
    assert table.claim({"status": "success"}, {"attempts": 9}, names=["pk"]) == []
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {0}


@pytest.mark.parametrize("names", [None, ["pk", "attempts"]])
def test_claim_where_an_update_returns_no_rows(table, deliveries, monkeypatch, names):
    """MySQL, say: a transaction that locks the rows, changes them and reads them back."""
    monkeypatch.setattr(Table, "_returns_from_update", lambda self: False)
    with CaptureQueriesContext(connection) as queries:
        claimed = claim_two(table, deliveries, names=names)
    if names:
        assert sorted(claimed) == [(deliveries[0].pk, 1), (deliveries[1].pk, 1)]
    else:
        assert sorted((d.pk, d.attempts, d.next_attempt_at) for d in claimed) == [
            (deliveries[0].pk, 1, WHEN),
            (deliveries[1].pk, 1, WHEN),
        ]
    verbs = [q["sql"].split(" ", 1)[0] for q in queries]
    assert [v for v in verbs if v in ("SELECT", "UPDATE")] == ["SELECT", "UPDATE", "SELECT"]
    assert list(Delivery.objects.order_by("pk").values_list("attempts", flat=True)) == [1, 1, 0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.only_on("postgres")  # SQLite has no row locks to skip
def test_claim_passes_over_rows_another_transaction_holds(table, deliveries):
    held = deliveries[1]
    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                assert list(Delivery.objects.select_for_update().filter(pk=held.pk))
                locked.set()
                release.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
        finally:
            locked.set()
            connection.close()  # this thread's connection

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        assert not errors, errors
        with connection.cursor() as cursor:  # an error, not a hang, if it waits
            cursor.execute("SET lock_timeout = '5s'")
        everything = table.select({"pk__in": pks(deliveries)}, order_by="pk")
        claimed = table.claim({"pk__in": pks(deliveries)}, {"last_error": "mine"})
    finally:
        release.set()
        holder.join(timeout=10)
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    assert not holder.is_alive()
    assert not errors, errors
    assert pks(everything) == pks(deliveries)  # reading without a lock waits for nobody
    assert sorted(pks(claimed)) == [deliveries[0].pk, deliveries[2].pk]
    # Once released, the row is there to take.
    assert pks(table.claim({"pk": held.pk}, {"last_error": "mine"})) == [held.pk]


# -- transactions ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.only_on("sqlite")
@pytest.mark.parametrize(("configured", "begin"), [(None, "IMMEDIATE"), ("EXCLUSIVE", "EXCLUSIVE")])
def test_write_transaction_takes_the_sqlite_write_lock_at_begin(monkeypatch, configured, begin):
    """Whatever the database's transaction_mode (Django's default: a deferred BEGIN), and
    only for itself: the application's next transaction begins as configured."""
    db = connections["default"]  # the connection itself: the proxy passes delattr on
    db.ensure_connection()
    monkeypatch.setattr(db, "transaction_mode", configured)
    with CaptureQueriesContext(db) as queries:
        with write_transaction("default"):
            Event.objects.exists()
            with write_transaction("default"):  # nested: a savepoint, as atomic()
                Event.objects.exists()
        with transaction.atomic():
            Event.objects.exists()
    begins = [q["sql"] for q in queries if q["sql"].startswith(("BEGIN", "SAVEPOINT"))]
    assert [sql.split('"')[0].strip() for sql in begins] == [
        f"BEGIN {begin}",
        "SAVEPOINT",
        f"BEGIN {configured}" if configured else "BEGIN",
    ]
    assert db.transaction_mode == configured


@pytest.mark.django_db(transaction=True)
def test_write_transaction_commits_and_rolls_back_as_atomic(user):
    hook = make_hook(user)
    hooks = Table.of(Hook, "default")
    with write_transaction("default"):
        hooks.update({"event": "book.changed"}, {"pk": hook.pk})
    with contextlib.suppress(ZeroDivisionError), write_transaction("default"):
        hooks.update({"event": "book.removed"}, {"pk": hook.pk})
        1 / 0  # noqa: B018
    assert Hook.objects.get(pk=hook.pk).event == "book.changed"


# -- connections ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_of_is_one_table_per_model_database_and_thread(user):
    hook = make_hook(user)
    mine = Table.of(Hook, "default")
    assert Table.of(Hook, "default") is mine
    assert Table.of(Event, "default") is not mine
    assert mine.connection is connections["default"]
    seen: list[Any] = []
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            theirs = Table.of(Hook, "default")
            seen.extend([theirs, Table.of(Hook, "default"), connections["default"]])
            seen.append(theirs.select({"pk": hook.pk}))  # on this thread's connection
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections["default"].close()

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=10)
    assert not errors, errors
    theirs, again, their_connection, found = seen
    assert theirs is again
    assert theirs is not mine
    assert their_connection is not connections["default"]
    assert theirs.connection is their_connection
    assert pks(found) == [hook.pk]
    assert found[0].secret == hook.secret
    # This thread's table is still its own.
    assert Table.of(Hook, "default") is mine


def test_queries_are_captured_like_orm_ones(table, deliveries):
    first = deliveries[0]
    with CaptureQueriesContext(connection) as queries:
        table.select({"pk": first.pk})
        table.values(["attempts"], {"pk": first.pk})
        table.update({"attempts": Expression("{} + 1")}, {"pk": first.pk})
        Delivery.objects.filter(pk=first.pk).update(last_error="orm")
    assert len(queries) == 4
    statements = [q["sql"] for q in queries]
    assert statements[0].startswith("SELECT ")
    assert statements[1].startswith("SELECT ")
    assert statements[2].startswith("UPDATE ")
    assert all("rest_hooks_delivery" in sql for sql in statements)
    assert all(float(q["time"]) >= 0 for q in queries)


def test_unknown_names_are_refused(table, deliveries):
    with pytest.raises(FieldDoesNotExist):
        table.select({"nothing": 1})
    with pytest.raises(KeyError):
        table.select({"attempts__gte": 1})  # not one of the four lookups
