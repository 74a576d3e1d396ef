"""The admin: hook secrets shown once, logged content escaped, the log read-only, redelivery."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from bookstore.models import Book
from bookstore.receiver import Answer
from rest_hooks.models import Delivery, DeliveryAttempt, Event, Hook

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NO_RETRIES = {"ALLOW_PRIVATE_TARGETS": True, "RETRY_SCHEDULE": []}


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:rest_hooks_{name}", args=args)


def page(client: Any, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.content.decode()


def make_delivery(hook: Hook, **fields: Any) -> Delivery:
    event = Event.objects.create(name=hook.event, payload=json.dumps({"data": {"x": 1}}))
    return Delivery.objects.create(event=event, hook=hook, **fields)


def test_add_form_offers_exactly_the_hook_events(admin_client):
    response = admin_client.get(url("hook_add"))
    assert response.status_code == 200
    field = response.context["adminform"].form.fields["event"]
    assert [value for value, _label in field.choices] == sorted(settings.HOOK_EVENTS)
    html = response.content.decode()
    for name in settings.HOOK_EVENTS:
        assert f'<option value="{name}">' in html


def test_add_form_follows_hook_events(admin_client):
    with override_settings(HOOK_EVENTS={"only.this": None, "and.that": "bookstore.Book.created"}):
        response = admin_client.get(url("hook_add"))
    field = response.context["adminform"].form.fields["event"]
    assert [value for value, _label in field.choices] == ["and.that", "only.this"]


def test_add_refuses_an_event_not_in_hook_events(admin_client, user):
    response = admin_client.post(
        url("hook_add"),
        {"user": user.pk, "event": "not.an.event", "target": "https://example.com/hook"},
    )
    assert response.status_code == 200
    assert "event" in response.context["adminform"].form.errors
    assert not Hook.objects.exists()


def test_secret_is_shown_once_after_adding_and_never_again(admin_client, user):
    response = admin_client.post(
        url("hook_add"),
        {
            "user": user.pk,
            "event": "book.added",
            "target": "https://example.com/hook",
            "signing": "hmac-sha256",
            "is_active": "on",
        },
    )
    assert response.status_code == 200
    hook = Hook.objects.get()
    assert hook.secret.startswith("whsec_")
    assert hook.user == user
    html = response.content.decode()
    assert f'<code class="hook-credential">{hook.secret}</code>' in html
    assert html.count(hook.secret) == 1
    # Not in a message either: messages may live in a cookie.
    assert hook.secret not in str(admin_client.cookies)

    make_delivery(hook, status=Delivery.Status.SUCCESS)
    delivery = Delivery.objects.get()
    pages = [
        url("hook_change", hook.pk),
        url("hook_changelist"),
        url("hook_changelist") + "?q=example.com",
        url("hook_history", hook.pk),
        url("hook_delete", hook.pk),
        url("delivery_changelist"),
        url("delivery_change", delivery.pk),
        url("event_changelist"),
        url("event_change", delivery.event_id),
    ]
    for path in pages:
        assert hook.secret not in page(admin_client, path), path


def test_reenabling_a_disabled_hook_in_the_admin_starts_its_failure_clock_afresh(
    admin_client, user
):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    Hook.objects.filter(pk=hook.pk).update(
        is_active=False,
        disabled_reason="failing since a week",
        disabled_at=timezone.now(),
        failing_since=timezone.now() - timedelta(days=7),
    )
    response = admin_client.post(
        url("hook_change", hook.pk),
        {"user": user.pk, "event": "book.added", "target": hook.target, "is_active": "on"},
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.is_active, hook.disabled_at, hook.disabled_reason, hook.failing_since) == (
        True,
        None,
        "",
        None,
    )


def test_a_save_that_leaves_is_active_alone_keeps_the_disabled_state(user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    disabled_at = timezone.now()
    Hook.objects.filter(pk=hook.pk).update(disabled_at=disabled_at, disabled_reason="410")
    hook.refresh_from_db()  # active, by a stale read, but the row says disabled
    hook.target = "https://example.com/b"
    hook.save(update_fields=["target"])
    hook.refresh_from_db()
    assert (hook.disabled_at, hook.disabled_reason) == (disabled_at, "410")
    hook.save(update_fields=["is_active"])
    hook.refresh_from_db()
    assert (hook.disabled_at, hook.disabled_reason) == (None, "")


def test_changing_a_hook_keeps_and_hides_its_secret(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    secret = hook.secret
    response = admin_client.post(
        url("hook_change", hook.pk),
        {"user": user.pk, "event": "book.changed", "target": "https://example.com/b"},
        follow=True,
    )
    assert response.status_code == 200
    hook.refresh_from_db()
    assert (hook.event, hook.target, hook.is_active) == (
        "book.changed",
        "https://example.com/b",
        False,
    )
    assert hook.secret == secret
    assert secret not in response.content.decode()
    assert secret not in str(admin_client.cookies)


def test_logged_content_is_escaped(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target=f"https://example.com/{XSS}")
    event = Event.objects.create(name=XSS, payload=json.dumps({"data": {"title": XSS}}))
    delivery = Delivery.objects.create(
        event=event,
        hook=hook,
        status=Delivery.Status.FAILED,
        last_status_code=500,
        response_excerpt=f"oops {XSS}",
        last_error=f"HTTP 500 {XSS}",
    )
    pages = {
        "delivery change": url("delivery_change", delivery.pk),
        "delivery changelist": url("delivery_changelist"),
        "event change": url("event_change", event.pk),
        "event changelist": url("event_changelist"),
        "hook changelist": url("hook_changelist"),
    }
    for what, path in pages.items():
        html = page(admin_client, path)
        assert XSS not in html, what
        assert XSS_ESCAPED in html, what
    delivery_html = page(admin_client, pages["delivery change"])
    assert f"<pre>oops {XSS_ESCAPED}</pre>" in delivery_html
    assert f"HTTP 500 {XSS_ESCAPED}" in delivery_html
    event_html = page(admin_client, pages["event change"])
    assert f"{XSS_ESCAPED}&quot;}}}}</pre>" in event_html  # the payload, in its <pre>


def test_a_deliverys_page_lists_every_attempt(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    event = Event.objects.create(name="book.added", payload="{}")
    delivery = Delivery.objects.create(event=event, hook=hook, attempts=2)
    for number, code, error in [(1, 500, f"HTTP 500 {XSS}"), (2, 204, "")]:
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=timezone.now(),
            outcome="retry" if error else "success",
            status_code=code,
            duration_ms=12.5,
            error=error,
        )
    html = page(admin_client, url("delivery_change", delivery.pk))
    assert XSS not in html
    assert f"HTTP 500 {XSS_ESCAPED}" in html
    assert html.count("12.5") == 2
    assert 'name="attempt_log-0-number"' not in html  # shown, not editable


def test_redeliver_action_sends_again_with_the_same_id(admin_client, user, receiver, run_pipeline):
    Hook.objects.create(user=user, event="book.added", target=receiver.url("/hook"))
    receiver.answer("/hook", Answer(500))
    Book.objects.create(user=user, title="T", pages=1, fiction=True)
    with override_settings(REST_HOOKS=NO_RETRIES):
        (delivery,) = run_pipeline()
        assert delivery.status == Delivery.Status.FAILED
        assert delivery.attempts == 1
        assert delivery.finished_at is not None

        response = admin_client.post(
            url("delivery_changelist"),
            {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)], "index": 0},
            follow=True,
        )
        assert response.status_code == 200
        assert "1 delivery queued again." in response.content.decode()
        delivery.refresh_from_db()
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.attempts == 0
        assert delivery.finished_at is None

        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.SUCCESS
    assert delivery.attempts == 1
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == str(delivery.pk)
    assert second.headers["x-hook-attempt"] == "1"


def test_redeliver_action_leaves_unselected_deliveries_alone(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    chosen = make_delivery(hook, status=Delivery.Status.FAILED, attempts=3)
    other = make_delivery(hook, status=Delivery.Status.FAILED, attempts=3)
    admin_client.post(
        url("delivery_changelist"),
        {"action": "redeliver_selected", "_selected_action": [str(chosen.pk)], "index": 0},
    )
    chosen.refresh_from_db()
    other.refresh_from_db()
    assert (chosen.status, chosen.attempts) == (Delivery.Status.PENDING, 0)
    assert (other.status, other.attempts) == (Delivery.Status.FAILED, 3)


@pytest.mark.parametrize("model", ["delivery", "event", "hooknotice"])
def test_log_cannot_be_added(admin_client, model):
    assert admin_client.get(url(f"{model}_add")).status_code == 403
    assert admin_client.post(url(f"{model}_add"), {"name": "x"}).status_code == 403


def test_log_cannot_be_deleted_in_the_admin(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    delivery = make_delivery(hook, status=Delivery.Status.PENDING)
    assert (
        admin_client.post(url("delivery_delete", delivery.pk), {"post": "yes"}).status_code == 403
    )
    assert (
        admin_client.post(url("event_delete", delivery.event_id), {"post": "yes"}).status_code
        == 403
    )
    assert Delivery.objects.filter(pk=delivery.pk).exists()


def test_redeliver_action_leaves_pending_deliveries_alone(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    in_flight = make_delivery(hook, status=Delivery.Status.PENDING, attempts=1)
    lease = in_flight.next_attempt_at
    response = admin_client.post(
        url("delivery_changelist"),
        {"action": "redeliver_selected", "_selected_action": [str(in_flight.pk)]},
        follow=True,
    )
    assert "1 still pending were left alone" in response.content.decode()
    in_flight.refresh_from_db()
    assert (in_flight.attempts, in_flight.next_attempt_at) == (1, lease)


def test_deliveries_cannot_be_changed(admin_client, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempts=2)
    html = page(admin_client, url("delivery_change", delivery.pk))
    assert 'name="_save"' not in html
    response = admin_client.post(
        url("delivery_change", delivery.pk), {"status": "success", "attempts": 0}
    )
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 2)


def test_events_cannot_be_changed(admin_client):
    event = Event.objects.create(name="book.added", payload="{}")
    html = page(admin_client, url("event_change", event.pk))
    assert 'name="_save"' not in html
    response = admin_client.post(url("event_change", event.pk), {"name": "x", "payload": "[]"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.name, event.payload) == ("book.added", "{}")


def test_rotate_action_shows_the_new_secrets_once(admin_client, user):
    hmac_hook = Hook.objects.create(user=user, event="book.added", target="https://a.example/")
    ed_hook = Hook.objects.create(
        user=user, event="book.added", target="https://b.example/", signing="ed25519"
    )
    old = {hmac_hook.pk: hmac_hook.secret, ed_hook.pk: ed_hook.secret}
    response = admin_client.post(
        url("hook_changelist"),
        {"action": "rotate_secrets", "_selected_action": [hmac_hook.pk, ed_hook.pk]},
    )
    html = response.content.decode()
    hmac_hook.refresh_from_db()
    ed_hook.refresh_from_db()
    assert hmac_hook.secret != old[hmac_hook.pk]
    assert hmac_hook.signing_secrets() == [hmac_hook.secret, old[hmac_hook.pk]]
    assert f'<code class="hook-credential">{hmac_hook.secret}</code>' in html
    # An Ed25519 hook's subscriber gets the public key; the private key is never shown.
    assert f'<code class="hook-credential">{ed_hook.public_key}</code>' in html
    assert ed_hook.secret not in html
    assert hmac_hook.secret not in page(admin_client, url("hook_change", hmac_hook.pk))


# -- permissions: a view-only staff user may look, never rotate or redeliver -------------


def staff_client(client: Any, django_user_model: Any, *codenames: str) -> Any:
    """The test client logged in as a staff user holding only the permissions named."""
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user(
        username=f"staff-{'-'.join(codenames)}", password="x", is_staff=True
    )
    staff.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)
    return client


VIEW_ONLY = ("view_hook", "view_delivery", "view_event")


def test_a_view_only_user_is_not_offered_rotate_or_redeliver(client, django_user_model, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    make_delivery(hook, status=Delivery.Status.FAILED)
    viewer = staff_client(client, django_user_model, *VIEW_ONLY)
    hooks_html = page(viewer, url("hook_changelist"))
    deliveries_html = page(viewer, url("delivery_changelist"))
    assert "https://example.com/a" in hooks_html
    assert 'value="rotate_secrets"' not in hooks_html
    assert 'value="redeliver_selected"' not in deliveries_html


def test_a_view_only_user_cannot_rotate_a_secret_by_posting(client, django_user_model, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    secret = hook.secret
    viewer = staff_client(client, django_user_model, *VIEW_ONLY)
    response = viewer.post(
        url("hook_changelist"),
        {"action": "rotate_secrets", "_selected_action": [hook.pk], "index": 0},
        follow=True,
    )
    hook.refresh_from_db()
    assert hook.secret == secret
    assert hook.previous_secrets == ""
    html = response.content.decode()
    assert "hook-credential" not in html
    assert "whsec_" not in html


def test_a_view_only_user_cannot_redeliver_by_posting(client, django_user_model, user):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempts=3)
    viewer = staff_client(client, django_user_model, *VIEW_ONLY)
    response = viewer.post(
        url("delivery_changelist"),
        {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)], "index": 0},
        follow=True,
    )
    assert "queued again" not in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 3)


def test_a_user_with_the_change_permissions_can_rotate_and_redeliver(
    client, django_user_model, user
):
    hook = Hook.objects.create(user=user, event="book.added", target="https://example.com/a")
    old_secret = hook.secret
    delivery = make_delivery(hook, status=Delivery.Status.FAILED, attempts=3)
    editor = staff_client(client, django_user_model, *VIEW_ONLY, "change_hook", "change_delivery")
    assert 'value="rotate_secrets"' in page(editor, url("hook_changelist"))
    assert 'value="redeliver_selected"' in page(editor, url("delivery_changelist"))

    response = editor.post(
        url("hook_changelist"), {"action": "rotate_secrets", "_selected_action": [hook.pk]}
    )
    hook.refresh_from_db()
    assert hook.secret != old_secret
    assert f'<code class="hook-credential">{hook.secret}</code>' in response.content.decode()

    editor.post(
        url("delivery_changelist"),
        {"action": "redeliver_selected", "_selected_action": [str(delivery.pk)]},
    )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 0)
    # The log itself stays read-only, change permission or not.
    assert editor.post(url("delivery_change", delivery.pk), {"attempts": 9}).status_code == 403
