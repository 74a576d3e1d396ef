"""What django-rest-hooks 1.5 users rely on keeps working (its README's examples)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core import management
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import override_settings

from bookstore.models import Author, Book, Shelf
from rest_hooks import events
from rest_hooks.models import AbstractHook, Delivery, Event, Hook
from rest_hooks.signals import hook_event, hook_sent_event, raw_hook_event

pytestmark = pytest.mark.django_db


def make_hook(user: Any, event: str, receiver: Any, path: str = "/hook") -> Hook:
    return Hook.objects.create(user=user, event=event, target=receiver.url(path))


def bodies(receiver: Any) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


def test_readme_bookstore_created(user, receiver, run_pipeline):
    hook = make_hook(user, "book.added", receiver)
    book = Book.objects.create(user=user, title="The Two Towers", pages=327, fiction=True)
    run_pipeline()
    assert bodies(receiver) == [
        {
            "hook": {"id": hook.pk, "event": "book.added", "target": hook.target},
            "data": {"id": book.pk, "title": "The Two Towers", "pages": 327, "fiction": True},
        }
    ]


def test_updated_plus_reaches_every_owner(user, django_user_model, receiver, run_pipeline):
    other = django_user_model.objects.create(username="someone-else")
    mine = make_hook(user, "book.changed", receiver, "/mine")
    theirs = make_hook(other, "book.changed", receiver, "/theirs")
    book = Book.objects.create(user=user, title="T", pages=1, fiction=False)
    book.title = "T: Deluxe Edition"
    book.save()
    run_pipeline()
    received = {r.path: json.loads(r.body) for r in receiver.requests}
    assert set(received) == {"/mine", "/theirs"}
    # Each receiver's payload names its own hook.
    assert received["/mine"]["hook"]["id"] == mine.pk
    assert received["/theirs"]["hook"]["id"] == theirs.pk
    assert received["/theirs"]["data"]["title"] == "T: Deluxe Edition"


def test_events_are_scoped_to_the_instance_user(user, django_user_model, receiver, run_pipeline):
    other = django_user_model.objects.create(username="other")
    make_hook(other, "book.added", receiver)
    Book.objects.create(user=user, title="T", pages=1, fiction=False)
    run_pipeline()
    assert receiver.requests == []
    assert Event.objects.get().owner_id == str(user.pk)


def test_deleted_row_is_captured_before_it_is_gone(user, receiver, run_pipeline):
    make_hook(user, "book.removed", receiver)
    book = Book.objects.create(user=user, title="Gone", pages=10, fiction=True)
    book_id = book.pk
    book.delete()
    run_pipeline()
    (body,) = bodies(receiver)
    assert body["data"] == {"id": book_id, "title": "Gone", "pages": 10, "fiction": True}


def test_custom_action_with_hook_event(user, receiver, run_pipeline):
    make_hook(user, "book.read", receiver)
    book = Book.objects.create(user=user, title="Read me", pages=3, fiction=True)
    book.mark_as_read()
    run_pipeline()
    (body,) = bodies(receiver)
    assert body["data"]["title"] == "Read me"
    assert receiver.requests[0].headers["x-hook-event"] == "book.read"


def test_hook_event_user_override(user, django_user_model, receiver, run_pipeline):
    other = django_user_model.objects.create(username="other")
    make_hook(other, "book.read", receiver)
    book = Book.objects.create(user=user, title="Shared", pages=3, fiction=True)
    hook_event.send(sender=Book, action="read", instance=book, user=other)
    run_pipeline()
    assert len(receiver.requests) == 1


def test_hook_event_user_false_reaches_everyone(user, django_user_model, receiver, run_pipeline):
    for name in ("a", "b"):
        make_hook(django_user_model.objects.create(username=name), "book.read", receiver)
    book = Book.objects.create(user=user, title="Everyone", pages=3, fiction=True)
    hook_event.send(sender=Book, action="read", instance=book, user=False)
    run_pipeline()
    assert len(receiver.requests) == 2


def test_raw_hook_event(user, receiver, run_pipeline):
    hook = make_hook(user, "user.logged_in", receiver)
    payload = {"username": user.username, "email": "", "when": "2026-11-25T10:00:00"}
    raw_hook_event.send(sender=None, event_name="user.logged_in", payload=payload, user=user)
    run_pipeline()
    assert bodies(receiver) == [{"hook": hook.dict(), "data": payload}]


def test_raw_hook_event_without_meta_is_sent_as_is(user, receiver, run_pipeline):
    make_hook(user, "user.logged_in", receiver)
    payload = {"hook": "the user's own member, left alone", "n": 1}
    raw_hook_event.send(
        sender=None, event_name="user.logged_in", payload=payload, user=user, send_hook_meta=False
    )
    run_pipeline()
    assert bodies(receiver) == [payload]


def test_default_payload_is_django_python_serialisation(user, receiver, run_pipeline):
    with override_settings(HOOK_EVENTS={"author.added": "bookstore.Author.created"}):
        hook = make_hook(user, "author.added", receiver)
        author = Author.objects.create(user=user, name="Tolkien")
        run_pipeline()
    assert bodies(receiver) == [
        {
            "hook": hook.dict(),
            "data": {
                "model": "bookstore.author",
                "pk": author.pk,
                "fields": {"user": user.pk, "name": "Tolkien"},
            },
        }
    ]


def serializer_for_tests(instance: Any, hook: Any) -> dict[str, Any]:
    return {"hook": hook.dict(), "data": {"custom": str(instance)}}


@override_settings(
    HOOK_EVENTS={"author.added": "bookstore.Author.created"},
    HOOK_SERIALIZER="tests.test_compat.serializer_for_tests",
)
def test_hook_serializer_setting(user, receiver, run_pipeline):
    hook = make_hook(user, "author.added", receiver)
    Author.objects.create(user=user, name="Le Guin")
    run_pipeline()
    assert bodies(receiver) == [{"hook": hook.dict(), "data": {"custom": "Le Guin"}}]


DELIVERED: list[tuple[str, Any, Any, Any]] = []


def deliverer_for_tests(target: str, payload: Any, instance: Any = None, hook: Any = None) -> None:
    DELIVERED.append((target, payload, instance, hook))


@override_settings(HOOK_DELIVERER="tests.test_compat.deliverer_for_tests")
def test_hook_deliverer_replaces_the_post(user, receiver, run_pipeline):
    DELIVERED.clear()
    hook = make_hook(user, "book.added", receiver)
    book = Book.objects.create(user=user, title="Via deliverer", pages=1, fiction=True)
    (delivery,) = run_pipeline()
    assert receiver.requests == []
    ((target, payload, instance, got_hook),) = DELIVERED
    assert target == hook.target
    assert payload["hook"] == hook.dict()
    assert instance == book
    assert got_hook == hook
    assert delivery.status == Delivery.Status.SUCCESS


FOUND: list[tuple[str, Any, Any]] = []


def finder_for_tests(event_name: str, instance: Any, user_override: Any = None, **kw: Any) -> None:
    """A custom finder: only hooks whose target mentions the book's title."""
    FOUND.append((event_name, instance, user_override))
    for hook in Hook.objects.filter(event=event_name, target__contains=instance.title):
        hook.deliver_hook(instance)


@override_settings(HOOK_FINDER="tests.test_compat.finder_for_tests")
def test_hook_finder_picks_the_hooks(user, receiver, run_pipeline):
    FOUND.clear()
    chosen = make_hook(user, "book.added", receiver, "/Dune")
    make_hook(user, "book.added", receiver, "/other")
    Book.objects.create(user=user, title="Dune", pages=1, fiction=True)
    run_pipeline()
    assert [r.path for r in receiver.requests] == ["/Dune"]
    assert bodies(receiver)[0]["hook"] == chosen.dict()
    assert FOUND[0][0] == "book.added"


def test_hook_dict_and_str(user):
    hook = Hook(user=user, event="book.added", target="https://example.com/t")
    hook.save()
    assert hook.dict() == {"id": hook.pk, "event": "book.added", "target": "https://example.com/t"}
    assert str(hook) == "book.added => https://example.com/t"
    assert hook.secret not in repr(hook)


def test_full_clean_rejects_unknown_event(user):
    hook = Hook(user=user, event="not.an.event", target="https://example.com/t")
    with pytest.raises(ValidationError) as info:
        hook.full_clean()
    assert "event" in info.value.message_dict


def test_hook_table_and_columns_are_the_old_ones():
    assert Hook._meta.db_table == "rest_hooks_hook"
    columns = {f.column for f in Hook._meta.concrete_fields}
    assert {"id", "created", "updated", "user_id", "event", "target"} <= columns
    assert issubclass(Hook, AbstractHook)


def test_rolled_back_transaction_captures_nothing(user, receiver, run_pipeline):
    make_hook(user, "book.added", receiver)

    def create_then_fail() -> None:
        with transaction.atomic():
            Book.objects.create(user=user, title="Never", pages=1, fiction=True)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    run_pipeline()
    assert Event.objects.count() == 0
    assert receiver.requests == []


def test_fixture_loading_fires_no_hooks_unless_asked(user, receiver, run_pipeline, tmp_path):
    make_hook(user, "book.added", receiver)
    fixture = tmp_path / "books.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "bookstore.book",
                    "pk": 99,
                    "fields": {"user": user.pk, "title": "Fixture", "pages": 1, "fiction": True},
                }
            ]
        )
    )
    management.call_command("loaddata", str(fixture), verbosity=0)
    assert Event.objects.count() == 0
    Book.objects.filter(pk=99).delete()
    Event.objects.all().delete()
    with override_settings(REST_HOOKS={"FIRE_ON_RAW_SAVE": True, "ALLOW_PRIVATE_TARGETS": True}):
        management.call_command("loaddata", str(fixture), verbosity=0)
        run_pipeline()
    assert len(receiver.requests) == 1


def test_instance_without_user_is_skipped_with_a_warning(user, receiver, caplog):
    with override_settings(HOOK_EVENTS={"shelf.added": "bookstore.Shelf.created"}):
        Shelf.objects.create(label="A")
    assert Event.objects.count() == 0
    assert "has no `user`" in caplog.text


def test_plus_event_for_model_without_user(user, receiver, run_pipeline):
    with override_settings(HOOK_EVENTS={"shelf.added": "bookstore.Shelf.created+"}):
        make_hook(user, "shelf.added", receiver)
        Shelf.objects.create(label="A")
        run_pipeline()
    assert len(receiver.requests) == 1


def test_hook_events_are_parsed_once_and_again_on_change(user):
    first = events.get_routes()
    assert events.get_routes() is first
    with override_settings(HOOK_EVENTS={"x.y": "bookstore.Book.created"}):
        changed = events.get_routes()
        assert changed is not first
        assert changed[("bookstore.Book", "created")].event_name == "x.y"


def test_custom_user_model_owner_resolution(user):
    # The owner is read from the foreign key's column: no query for the user.
    book = Book(user=user, title="t", pages=1, fiction=True)
    assert events.owner_of(book, None) == str(user.pk)
    assert events.owner_of(user, None) == str(user.pk)
    assert events.owner_of(book, False) is None


def test_hook_sent_event_fires_once_on_success(user, receiver, run_pipeline):
    sent: list[dict[str, Any]] = []

    def listener(**kwargs: Any) -> None:
        sent.append(kwargs)

    hook_sent_event.connect(listener)
    try:
        hook = make_hook(user, "book.added", receiver)
        book = Book.objects.create(user=user, title="Signal", pages=1, fiction=True)
        run_pipeline()
    finally:
        hook_sent_event.disconnect(listener)
    assert len(sent) == 1
    assert sent[0]["hook"] == hook
    assert sent[0]["instance"] == book
    assert sent[0]["payload"]["data"]["title"] == "Signal"


@override_settings(HOOK_EVENTS={"hook.added": "rest_hooks.Hook.created+"})
def test_a_hook_as_an_event_never_carries_its_secret(user, receiver, run_pipeline):
    watcher = make_hook(user, "hook.added", receiver, "/watcher")
    run_pipeline()
    (request,) = receiver.requests
    assert watcher.secret not in request.body.decode()
    assert "secret" not in json.loads(request.body)["data"]["fields"]
    assert json.loads(request.body)["data"]["fields"]["target"] == watcher.target


def serializer_with_partial_hook(instance: Any, hook: Any) -> dict[str, Any]:
    return {"hook": {"id": hook.pk}, "data": {"custom": str(instance)}}


@override_settings(
    HOOK_EVENTS={"author.added": "bookstore.Author.created"},
    HOOK_SERIALIZER="tests.test_compat.serializer_with_partial_hook",
)
def test_hook_member_always_names_the_receiving_hook(user, receiver, run_pipeline):
    hook = make_hook(user, "author.added", receiver)
    Author.objects.create(user=user, name="Pratchett")
    run_pipeline()
    assert bodies(receiver) == [{"hook": hook.dict(), "data": {"custom": "Pratchett"}}]
