"""Telling a hook's owner in time: before the hook is switched off, and when it is.

A hook whose deliveries have failed for a part of ``DISABLE_AFTER`` (``NOTICE_AT``, in
percent: 50 and 90 by default) and a hook disabled (a 410, or failing for all of
``DISABLE_AFTER``) are *notices*. Each is written once per hook, run of failures and stage
(a ``HookNotice`` row, unique: the worker that writes it sends it, no other does), so a
hook that recovers and fails anew is warned again.

The ``hook_failing`` signal (``hook_disabled`` for a disabling) is sent at once, in the
worker that recorded the failure. The e-mail to the owner and the operator's operational
webhook go out from the ``notify`` actor, with its retries: a slow mail server or
receiver holds no delivery.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from rest_hooks.conf import hook_settings
from rest_hooks.delivery import loop
from rest_hooks.models import HookNotice
from rest_hooks.security.signing import signature_headers
from rest_hooks.signals import hook_failing
from rest_hooks.worker.attempt import http_client
from rest_hooks.worker.messages import NOTIFY, send_each

logger = logging.getLogger(__name__)


class NoticeNotSent(Exception):
    """The operational webhook did not take the notice (the actor retries it)."""


def failing(hook: Any, now: datetime) -> None:
    """The hook has failed since ``hook.failing_since``: warn its owner of each stage of
    ``NOTICE_AT`` reached (the highest only, if it reached several at once)."""
    since = hook.failing_since
    disable_after = float(hook_settings.DISABLE_AFTER)
    if since is None or disable_after <= 0:
        return
    failed_for = (now - since).total_seconds() / disable_after * 100
    reached = [p for p in sorted(hook_settings.NOTICE_AT) if p <= failed_for and p < 100]
    if not reached:
        return
    # The lower stages are written too, so that none is sent after a higher one.
    written = [_written(hook, HookNotice.Stage.FAILING, p, since.isoformat()) for p in reached]
    notice = written[-1]
    if notice is None:
        return
    disable_at = since + timedelta(seconds=disable_after)
    logger.warning(
        "Hook %s has failed for %d%% of DISABLE_AFTER; it is disabled at %s if it goes on.",
        hook.pk,
        notice.percent,
        disable_at.isoformat(),
        extra={"hook_id": hook.pk, "notice_id": str(notice.pk)},
    )
    hook_failing.send_robust(
        sender=type(hook),
        hook=hook,
        percent=notice.percent,
        failing_since=since,
        disable_at=disable_at,
    )
    send_each(NOTIFY, [str(notice.pk)], "notice")


def disabled(hook: Any, reason: str, disabled_at: datetime) -> None:
    """The hook was switched off: tell its owner (``hook_disabled`` is the caller's)."""
    notice = _written(hook, HookNotice.Stage.DISABLED, 100, disabled_at.isoformat(), reason)
    if notice is not None:
        send_each(NOTIFY, [str(notice.pk)], "notice")


#: The notices this process wrote or found written, most recent last: a hook past a stage
#: fails again and again (every retry of each of its deliveries), and only the first
#: failure a process records needs the INSERT that tells whether the notice is new.
_seen: dict[tuple[Any, str, int, str], None] = {}
SEEN_MAX = 10_000


def _written(hook: Any, stage: str, percent: int, run: str, reason: str = "") -> HookNotice | None:
    """The notice, if this call wrote it; None if it had been written already."""
    key = (hook.pk, stage, percent, run)
    if key in _seen:
        return None
    try:
        with transaction.atomic():
            notice = HookNotice.objects.create(
                hook_id=hook.pk, stage=stage, percent=percent, run=run, reason=reason[:255]
            )
    except IntegrityError:
        notice = None
    _seen[key] = None
    while len(_seen) > SEEN_MAX:
        _seen.pop(next(iter(_seen)), None)
    return notice


def send_notice(notice_id: str) -> None:
    """Send a notice by e-mail and operational webhook, whichever is on and not sent yet.

    Raises ``NoticeNotSent`` (or the mail backend's error), for the actor to retry.
    """
    notice = HookNotice.objects.select_related("hook", "hook__user").filter(pk=notice_id).first()
    if notice is None:  # the hook was deleted since
        return
    email = getattr(notice.hook.user, "email", "")
    if notice.emailed_at is None and hook_settings.NOTICE_EMAIL and email:
        _email(notice, email)
        HookNotice.objects.filter(pk=notice.pk).update(emailed_at=timezone.now())
    if notice.posted_at is None and hook_settings.NOTICE_WEBHOOK_URL:
        _post(notice)
        HookNotice.objects.filter(pk=notice.pk).update(posted_at=timezone.now())


def describe(notice: HookNotice) -> dict[str, Any]:
    """What a notice says, in the e-mail's context and the operational webhook's body."""
    hook = notice.hook
    is_failing = notice.stage == HookNotice.Stage.FAILING
    failing_since = datetime.fromisoformat(notice.run) if is_failing else None
    disable_after = timedelta(seconds=float(hook_settings.DISABLE_AFTER))
    return {
        "type": f"hook.{notice.stage}",
        "notice_id": str(notice.pk),
        "hook": {**hook.dict(), "user": hook.user_id},
        "percent": notice.percent,
        "failing_since": failing_since.isoformat() if failing_since else None,
        "disable_at": (failing_since + disable_after).isoformat() if failing_since else None,
        "disabled_at": None if is_failing else notice.run,
        "reason": notice.reason,
    }


def _email(notice: HookNotice, address: str) -> None:
    context = {**describe(notice), "hook_object": notice.hook}
    subject = render_to_string("rest_hooks/notice_subject.txt", context)
    body = render_to_string("rest_hooks/notice_email.txt", context)
    send_mail(
        " ".join(subject.split()),  # one line, whatever the template's line breaks
        body,
        hook_settings.NOTICE_EMAIL_FROM or settings.DEFAULT_FROM_EMAIL,
        [address],
    )
    logger.info(
        "Notice %s (hook %s, %s) e-mailed to its owner.",
        notice.pk,
        notice.hook_id,
        notice.stage,
        extra={"hook_id": notice.hook_id, "notice_id": str(notice.pk)},
    )


def _post(notice: HookNotice) -> None:
    """POST the notice to ``NOTICE_WEBHOOK_URL``, signed with ``NOTICE_WEBHOOK_SECRET`` as
    a delivery is, through the same client (and address policy)."""
    body = json.dumps(describe(notice)).encode()
    headers = {
        "Content-Type": "application/json",
        **signature_headers(
            hook_settings.NOTICE_WEBHOOK_SECRET, str(notice.pk), int(time.time()), body
        ),
        "X-Hook-Event": f"hook.{notice.stage}",
    }
    result = loop.wait(
        loop.submit(http_client().post(hook_settings.NOTICE_WEBHOOK_URL, body, headers))
    )
    if not 200 <= result.status_code < 300:
        raise NoticeNotSent(f"the operational webhook answered {result.status_code}")
    logger.info(
        "Notice %s (hook %s, %s) posted to the operational webhook.",
        notice.pk,
        notice.hook_id,
        notice.stage,
        extra={"hook_id": notice.hook_id, "notice_id": str(notice.pk)},
    )
