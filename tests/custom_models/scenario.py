"""Run by tests/test_swappable.py in a subprocess with ``tests.settings_custom``.

Migrates a fresh database, subscribes a ``TeamHook`` of a ``Member`` to ``note.added`` at
``REST_HOOKS_RECEIVER_URL``, saves a ``Note``, runs the actors' functions until nothing is
due, and prints what the test checks as one JSON line (the last line of stdout).
"""

from __future__ import annotations

import io
import json
import os
import sys

import django


def main() -> None:
    django.setup()

    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from rest_hooks.models import Delivery, Event, get_hook_model
    from rest_hooks.worker.batch import deliver_batch
    from rest_hooks.worker.fanout import fan_out

    call_command("migrate", verbosity=0)
    out = io.StringIO()
    # Exits with status 1 if the models and the migrations disagree in this set-up.
    call_command("makemigrations", check=True, dry_run=True, stdout=out)
    call_command("check", fail_level="WARNING")

    from tests.custom_models.models import Note, TeamHook

    url = os.environ["REST_HOOKS_RECEIVER_URL"]
    member_model = get_user_model()
    ann = member_model.objects.create_user(username="ann", password="x")
    ben = member_model.objects.create_user(username="ben", password="x")
    hook = TeamHook.objects.create(user=ann, event="note.added", target=url, team="blue")
    # Another member's hook: the note is ann's, so this one gets nothing.
    TeamHook.objects.create(user=ben, event="note.added", target=url + "?ben", team="red")
    note = Note.objects.create(user=ann, text="Sharp pencils")

    for event_id in Event.objects.filter(status="pending").values_list("pk", flat=True):
        fan_out(event_id)
    due = Delivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
    for delivery_id in due.values_list("pk", flat=True):
        deliver_batch([str(delivery_id)])

    with connection.cursor() as cursor:
        tables = sorted(connection.introspection.table_names(cursor))
    hook_field = Delivery._meta.get_field("hook")
    result = {
        "makemigrations": out.getvalue().strip(),
        "tables": tables,
        "hook_model": get_hook_model()._meta.label,
        "swapped": apps.get_model("rest_hooks", "Hook")._meta.swapped,
        "delivery_hook_model": hook_field.related_model._meta.label,
        "event_hook_model": Event._meta.get_field("hook").related_model._meta.label,
        "member": {"pk": str(ann.pk), "type": type(ann.pk).__name__},
        "hook": {"pk": str(hook.pk), "secret": hook.secret, "team": hook.team},
        "note_pk": note.pk,
        "events": [
            {"name": e.name, "owner_id": e.owner_id, "status": e.status}
            for e in Event.objects.order_by("pk")
        ],
        "deliveries": [
            {
                "hook_id": str(d.hook_id),
                "hook_type": type(d.hook)._meta.label,
                "hook_team": d.hook.team,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in Delivery.objects.select_related("hook").order_by("created_at")
        ],
    }
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
