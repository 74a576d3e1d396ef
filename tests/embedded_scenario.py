"""Run by tests/test_embedded.py in a subprocess with ``tests.embedded_settings``.

Migrates a fresh SQLite database, subscribes a hook to ``book.added`` at
``REST_HOOKS_RECEIVER_URL`` and saves a Book. Nothing else runs: the in-process worker
that rest_hooks starts on the first message must deliver it. Waits (bounded) until the
delivery has finished, prints what the test checks as one JSON line (the last line of
stdout) and exits: with status 0 only if the delivery succeeded.
"""

from __future__ import annotations

import json
import os
import sys
import time

import django


def main() -> int:
    django.setup()

    import dramatiq
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from bookstore.models import Book
    from rest_hooks.broker import EmbeddedWorker, current_broker
    from rest_hooks.models import Delivery, Hook

    call_command("migrate", verbosity=0)
    broker = current_broker()
    embedded = [m for m in broker.middleware if isinstance(m, EmbeddedWorker)]
    worker_before = bool(embedded and embedded[0].worker is not None)

    user = get_user_model().objects.create_user(username="tolkien", password="x")
    hook = Hook.objects.create(
        user=user, event="book.added", target=os.environ["REST_HOOKS_RECEIVER_URL"]
    )
    started = time.monotonic()
    Book.objects.create(user=user, title="The Hobbit", pages=310, fiction=True)

    deadline = started + float(os.environ.get("REST_HOOKS_EMBEDDED_WAIT", "15"))
    while time.monotonic() < deadline:
        if Delivery.objects.exclude(status=Delivery.Status.PENDING).exists():
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started

    deliveries = [
        {
            "id": str(d.pk),
            "status": d.status,
            "attempts": d.attempts,
            "last_status_code": d.last_status_code,
        }
        for d in Delivery.objects.order_by("created_at")
    ]
    result = {
        "broker": type(broker).__name__,
        "global_broker_is_ours": dramatiq.get_broker() is broker,
        "worker_before_first_message": worker_before,
        "worker_started": bool(embedded and embedded[0].worker is not None),
        "secret": hook.secret,
        "hook": hook.dict(),
        "deliveries": deliveries,
        "elapsed": elapsed,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if [d["status"] for d in deliveries] == ["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
