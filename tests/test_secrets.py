"""Hook secrets: encrypted at rest, rotated with a grace period, Ed25519, never leaked."""

from __future__ import annotations

import io
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from standardwebhooks.webhooks import Webhook

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, Hook
from rest_hooks.security import verify
from rest_hooks.security.encryption import DecryptionError

pytestmark = pytest.mark.django_db

PRIVATE_OK = {"ALLOW_PRIVATE_TARGETS": True}


def raw_secret_column(hook: Hook) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM rest_hooks_hook WHERE id = %s", [hook.pk])
        return str(cursor.fetchone()[0])


def make_hook(user: Any, receiver: Any, **fields: Any) -> Hook:
    return Hook.objects.create(user=user, event="book.added", target=receiver.url(), **fields)


def signature_entries(request: Any) -> list[str]:
    return request.headers["webhook-signature"].split()


def test_secret_is_encrypted_in_the_database(user, receiver):
    hook = make_hook(user, receiver)
    stored = raw_secret_column(hook)
    assert stored.startswith("gAAAAA")
    assert hook.secret not in stored
    assert "whsec_" not in stored
    assert Hook.objects.get(pk=hook.pk).secret == hook.secret


def test_dumpdata_shows_no_secret_and_loaddata_restores_it(user, receiver, tmp_path):
    hook = make_hook(user, receiver)
    dump = tmp_path / "hooks.json"
    call_command("dumpdata", "rest_hooks.hook", output=str(dump), verbosity=0)
    text = dump.read_text()
    assert hook.secret not in text
    assert "whsec_" not in text
    secret = hook.secret
    Hook.objects.all().delete()
    call_command("loaddata", str(dump), verbosity=0)
    assert Hook.objects.get(pk=hook.pk).secret == secret


def test_key_rotation_without_downtime(user, receiver):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(REST_HOOKS={**PRIVATE_OK, "SECRET_KEYS": [old_key]}):
        hook = make_hook(user, receiver)
        secret = hook.secret
    with override_settings(REST_HOOKS={**PRIVATE_OK, "SECRET_KEYS": [new_key, old_key]}):
        assert Hook.objects.get(pk=hook.pk).secret == secret  # old key still decrypts
        out = io.StringIO()
        call_command("rest_hooks_rotate_keys", stdout=out, stderr=io.StringIO())
        assert "1 hooks" in out.getvalue()
    with override_settings(REST_HOOKS={**PRIVATE_OK, "SECRET_KEYS": [new_key]}):
        assert Hook.objects.get(pk=hook.pk).secret == secret  # old key no longer needed


def test_a_secret_no_key_decrypts_fails_its_own_hook_only(user, receiver, run_pipeline):
    with override_settings(
        REST_HOOKS={**PRIVATE_OK, "SECRET_KEYS": [Fernet.generate_key().decode()]}
    ):
        lost = make_hook(user, receiver)  # encrypted with a key the settings no longer have
    kept = make_hook(user, receiver)
    assert {h.pk for h in Hook.objects.all()} == {lost.pk, kept.pk}  # reading never fails

    Book.objects.create(user=user, title="Keys", pages=1, fiction=True)
    # The receiver was not asked: its breaker, opened by any failure here, stays closed.
    with override_settings(REST_HOOKS={**PRIVATE_OK, "BREAKER_FAILURES": 1}):
        by_hook = {d.hook_id: d for d in run_pipeline()}

    (request,) = receiver.requests
    verify(request.body, request.headers, kept.secret)  # the neighbour was delivered
    failed = by_hook[lost.pk]
    assert (failed.status, failed.attempts) == ("pending", 1)  # retried: the key may come back
    assert "SECRET_KEYS" in failed.last_error
    assert f"rest_hooks_rotate_secret {lost.pk}" in failed.last_error
    assert lost.secret not in failed.last_error

    # Rotating is the way out: the next attempt is signed with the new secret.
    new = Hook.objects.get(pk=lost.pk).rotate_secret()
    Delivery.objects.filter(pk=failed.pk).update(next_attempt_at=failed.created_at)
    run_pipeline()
    assert Delivery.objects.get(pk=failed.pk).status == "success"
    verify(receiver.requests[-1].body, receiver.requests[-1].headers, new)


def test_a_secret_no_key_decrypts_is_not_shown_by_its_error(user, receiver):
    with override_settings(
        REST_HOOKS={**PRIVATE_OK, "SECRET_KEYS": [Fernet.generate_key().decode()]}
    ):
        hook = make_hook(user, receiver)
    with pytest.raises(DecryptionError) as info:
        Hook.objects.get(pk=hook.pk).signing_secrets()
    assert hook.secret not in str(info.value)


def test_plaintext_secrets_from_before_encryption_are_encrypted(user, receiver):
    hook = make_hook(user, receiver)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE rest_hooks_hook SET secret = %s WHERE id = %s", [hook.secret, hook.pk]
        )
    assert Hook.objects.get(pk=hook.pk).secret == hook.secret  # still readable
    call_command("rest_hooks_rotate_keys", stdout=io.StringIO(), stderr=io.StringIO())
    assert raw_secret_column(hook).startswith("gAAAAA")


def test_rotation_signs_with_both_secrets_during_the_grace(user, receiver, run_pipeline):
    hook = make_hook(user, receiver)
    old = hook.secret
    new = hook.rotate_secret(grace=timedelta(hours=1))
    assert new != old
    assert new.startswith("whsec_")
    assert Hook.objects.get(pk=hook.pk).signing_secrets() == [new, old]
    Book.objects.create(user=user, title="Rotating", pages=1, fiction=True)
    run_pipeline()
    (request,) = receiver.requests
    assert len(signature_entries(request)) == 2
    # A subscriber on either secret accepts it, with the standard library or ours.
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)
        verify(request.body, request.headers, secret)
    verify(request.body, request.headers, [new, old])


def test_old_secret_is_dropped_after_the_grace(user, receiver):
    hook = make_hook(user, receiver)
    old = hook.secret
    new = hook.rotate_secret(grace=timedelta(seconds=60))
    assert hook.signing_secrets(now=time.time() + 30) == [new, old]
    assert hook.signing_secrets(now=time.time() + 61) == [new]


def test_rotation_keeps_a_few_secrets_at_most(user, receiver):
    hook = make_hook(user, receiver)
    for _ in range(6):
        hook.rotate_secret()
    assert len(Hook.objects.get(pk=hook.pk).signing_secrets()) == 4  # current + 3


def test_previous_secrets_are_encrypted_too(user, receiver):
    hook = make_hook(user, receiver)
    old = hook.secret
    hook.rotate_secret()
    with connection.cursor() as cursor:
        cursor.execute("SELECT previous_secrets FROM rest_hooks_hook WHERE id = %s", [hook.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("gAAAAA")
    assert old not in stored


def test_rotate_command_prints_the_new_secret(user, receiver):
    hook = make_hook(user, receiver)
    old = hook.secret
    out = io.StringIO()
    call_command(
        "rest_hooks_rotate_secret", str(hook.pk), "--grace", "2", stdout=out, stderr=io.StringIO()
    )
    hook.refresh_from_db()
    assert out.getvalue().strip() == f"{hook.pk}\t{hook.secret}"
    assert hook.signing_secrets() == [hook.secret, old]


def test_rotate_command_refuses_unknown_hooks(user):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("rest_hooks_rotate_secret", "999999", stdout=io.StringIO())


def test_ed25519_hook_signs_v1a_verified_with_its_public_key(user, receiver, run_pipeline):
    hook = make_hook(user, receiver, signing=Hook.Signing.ED25519)
    assert hook.secret.startswith("whsk_")
    assert hook.public_key.startswith("whpk_")
    Book.objects.create(user=user, title="Asymmetric", pages=1, fiction=True)
    run_pipeline()
    (request,) = receiver.requests
    (entry,) = signature_entries(request)
    assert entry.startswith("v1a,")
    payload = verify(request.body, request.headers, hook.public_key)
    assert payload["data"]["title"] == "Asymmetric"


def test_ed25519_rotation(user, receiver, run_pipeline):
    hook = make_hook(user, receiver, signing=Hook.Signing.ED25519)
    old_public = hook.public_key
    new_public = hook.rotate_secret()
    assert new_public.startswith("whpk_")
    assert new_public != old_public
    Book.objects.create(user=user, title="Both keys", pages=1, fiction=True)
    run_pipeline()
    (request,) = receiver.requests
    assert len(signature_entries(request)) == 2
    verify(request.body, request.headers, old_public)
    verify(request.body, request.headers, new_public)


@override_settings(REST_HOOKS={"HTTPS_ONLY": True})
def test_https_only_at_subscription(user):
    hook = Hook(user=user, event="book.added", target="http://example.com/hook")
    with pytest.raises(ValidationError) as info:
        hook.full_clean()
    assert "target" in info.value.message_dict
    Hook(user=user, event="book.added", target="https://example.com/hook").full_clean()


def test_https_only_at_delivery_is_final(user, receiver, run_pipeline):
    make_hook(user, receiver)  # an http:// target, stored before the setting was on
    Book.objects.create(user=user, title="Plain", pages=1, fiction=True)
    with override_settings(REST_HOOKS={**PRIVATE_OK, "HTTPS_ONLY": True}):
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error.startswith("refused")
    assert receiver.requests == []


@pytest.mark.parametrize(
    "target",
    [
        "ftp://example.com/hook",
        "https://user:pass@example.com/hook",
        "https:///nohost",
        "https://example.com/" + "a" * 300,
    ],
)
def test_bad_targets_are_refused_at_subscription(user, target):
    with pytest.raises(ValidationError) as info:
        Hook(user=user, event="book.added", target=target).full_clean()
    assert "target" in info.value.message_dict


def test_no_secret_in_logs_repr_or_errors(user, receiver, run_pipeline, caplog):
    caplog.set_level(logging.DEBUG)
    hook = make_hook(user, receiver)
    receiver.answer("/hook", Answer(500))
    Book.objects.create(user=user, title="Quiet", pages=1, fiction=True)
    with override_settings(REST_HOOKS={**PRIVATE_OK, "RETRY_SCHEDULE": [0]}):
        run_pipeline()
        (delivery,) = run_pipeline()
    secret = hook.secret
    assert secret not in caplog.text
    assert secret not in repr(hook)
    assert secret not in str(hook)
    assert secret not in delivery.last_error + delivery.response_excerpt


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_broker_messages(user, receiver, redis_url):
    """Everything the broker holds after a save is ids: no secret, target or payload."""
    hook = make_hook(user, receiver)
    client = redis.Redis.from_url(redis_url)
    Book.objects.create(user=user, title="Sealed", pages=1, fiction=True)
    stored = b""
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == b"hash":
            stored += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"list":
            stored += b"".join(client.lrange(key, 0, -1))
        elif kind == b"zset":
            stored += b"".join(client.zrange(key, 0, -1))
        elif kind == b"string":
            stored += client.get(key) or b""
    assert b"rest_hooks.dispatch" in stored  # the message is there...
    for needle in (hook.secret, "whsec_", hook.target, "Sealed"):
        assert needle.encode() not in stored  # ...and carries none of these
