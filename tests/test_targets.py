"""Hook targets: refused at subscription when they can never be delivered to, and a bad
one stored anyway (bulk_create, update(), raw SQL, an old database) fails alone."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import override_settings

from bookstore.models import Book
from rest_hooks.models import Delivery, Hook
from tests.helpers import attempts_metric

pytestmark = pytest.mark.django_db

#: The default address policy: no private targets, no allowed networks.
DEFAULT_POLICY = {
    k: v
    for k, v in settings.REST_HOOKS.items()
    if k not in ("ALLOW_PRIVATE_TARGETS", "ALLOWED_NETWORKS")
}
THE_FIX = ('REST_HOOKS["ALLOWED_NETWORKS"]', 'REST_HOOKS["ALLOW_PRIVATE_TARGETS"]')


def target_errors(target: str) -> list[str]:
    """What ``full_clean()`` says about a hook's ``target``; [] when it accepts it."""
    try:
        Hook(user_id=1, event="book.added", target=target).full_clean(exclude=["user"])
    except ValidationError as exc:
        return list(exc.message_dict.get("target", []))
    return []


# -- a bad stored target fails alone --------------------------------------------------------


def changed_for_each(django_user_model: Any, run_pipeline: Any, *hooks: Hook) -> dict[str, Any]:
    """Store ``hooks`` as ``bulk_create`` does (no validation), each for its own owner; a
    book changes (``book.changed``, a ``+`` event: every owner's hooks); deliver it.
    Returns the deliveries by target."""
    for i, hook in enumerate(hooks):
        hook.user = django_user_model.objects.create_user(username=f"owner{i}")
    Hook.objects.bulk_create(hooks)
    book = Book.objects.create(user=hooks[0].user, title="T", pages=1, fiction=True)
    book.save()
    return {d.hook.target: d for d in run_pipeline()}


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://example.com:99999/hook", "99999"),
        ("http://example.com:" + "9" * 40 + "/hook", "9" * 40),
        ("http://[::1/hook", "IPv6"),
        ("http:///hook", "no host"),
    ],
)
def test_a_stored_target_that_cannot_be_used_fails_alone(
    django_user_model, receiver, run_pipeline, target, reason
):
    """Three owners' hooks on a ``+`` event, one of them unusable: the two others get
    their deliveries, the bad one is failed with the reason, counted as blocked."""
    good = [receiver.url(f"/hook{i}") for i in range(2)]
    blocked = attempts_metric("blocked", "none", event="book.changed")
    deliveries = changed_for_each(
        django_user_model,
        run_pipeline,
        *(Hook(event="book.changed", target=url) for url in [*good, target]),
    )
    assert sorted(r.path for r in receiver.requests) == ["/hook0", "/hook1"]
    assert [deliveries[url].status for url in good] == [Delivery.Status.SUCCESS] * 2
    bad = deliveries[target]
    assert (bad.status, bad.attempts) == (Delivery.Status.FAILED, 1)
    assert bad.last_error.startswith("refused: ")
    assert reason in bad.last_error
    assert attempts_metric("blocked", "none", event="book.changed") == blocked + 1


def test_a_stored_rate_limit_that_is_no_rate_fails_alone(django_user_model, receiver, run_pipeline):
    deliveries = changed_for_each(
        django_user_model,
        run_pipeline,
        Hook(event="book.changed", target=receiver.url("/good")),
        Hook(event="book.changed", target=receiver.url("/bad"), rate_limit="fast"),
    )
    assert [r.path for r in receiver.requests] == ["/good"]
    assert deliveries[receiver.url("/good")].status == Delivery.Status.SUCCESS
    bad = deliveries[receiver.url("/bad")]
    assert (bad.status, bad.attempts) == (Delivery.Status.FAILED, 1)
    assert bad.last_error.startswith("refused: the hook's rate_limit: ")
    assert "'fast'" in bad.last_error


def test_a_target_with_no_host_to_label_is_counted_with_none(user, run_pipeline):
    Hook.objects.bulk_create([Hook(user=user, event="book.added", target="http://[::1/hook")])
    Book.objects.create(user=user, title="T", pages=1, fiction=True)
    with override_settings(REST_HOOKS={**settings.REST_HOOKS, "METRICS_TARGET_HOST": True}):
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.FAILED
    assert delivery.last_error == "refused: URL cannot be parsed: Invalid IPv6 URL"


def test_a_port_out_of_range_is_refused_at_subscription():
    (error,) = target_errors("http://example.com:99999/hook")
    assert "99999" in error
    assert "65535" in error


# -- a non-public address: refused at subscription, and every refusal names the fix --------

LOOPBACK_FIX = (
    '127.0.0.1 is a loopback address; to deliver to it, add "127.0.0.1/32" to '
    'REST_HOOKS["ALLOWED_NETWORKS"], or set REST_HOOKS["ALLOW_PRIVATE_TARGETS"] = True '
    "if every subscriber is trusted"
)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:8000/hook",
        "http://[::1]/hook",
        "http://0x7f000001/hook",
        "http://2130706433/hook",
        "http://127.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "https://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_non_public_address_is_refused_at_subscription(target):
    """Django's URLValidator may refuse the odd spellings too; ours says what to do."""
    with override_settings(REST_HOOKS=DEFAULT_POLICY):
        errors = target_errors(target)
    assert any(all(fix in error for fix in THE_FIX) for error in errors), errors


def test_the_refusal_at_subscription_names_the_network_to_allow():
    with override_settings(REST_HOOKS=DEFAULT_POLICY):
        assert target_errors("http://127.0.0.1:8000/hook") == [LOOPBACK_FIX]


@pytest.mark.parametrize(
    ("target", "policy"),
    [
        ("http://127.0.0.1:8000/hook", {"ALLOW_PRIVATE_TARGETS": True}),
        ("http://10.1.2.3/hook", {"ALLOWED_NETWORKS": ["10.1.0.0/16"]}),
        ("http://[::ffff:10.1.2.3]/hook", {"ALLOWED_NETWORKS": ["10.1.0.0/16"]}),
        ("http://8.8.8.8/hook", {}),
        # A name is judged where it is resolved, at delivery.
        ("http://localhost:8000/hook", {}),
    ],
)
def test_an_allowed_address_or_a_name_is_accepted(target, policy):
    with override_settings(REST_HOOKS={**DEFAULT_POLICY, **policy}):
        assert target_errors(target) == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_refusal_at_delivery_names_the_fix(user, receiver, run_pipeline, host):
    # Stored while private targets were allowed (the test settings allow them).
    Hook.objects.create(
        user=user, event="book.added", target=receiver.url().replace("127.0.0.1", host)
    )
    Book.objects.create(user=user, title="T", pages=1, fiction=True)
    with override_settings(REST_HOOKS=DEFAULT_POLICY):
        (delivery,) = run_pipeline()
    assert delivery.status == Delivery.Status.FAILED
    assert receiver.requests == []
    if host == "127.0.0.1":
        assert delivery.last_error == f"refused: {LOOPBACK_FIX}"
    assert all(fix in delivery.last_error for fix in THE_FIX), delivery.last_error
