from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from rest_hooks.management.queued import finish_queued
from rest_hooks.plurals import deliveries_text, events_text
from rest_hooks.worker.relay import relay_pending


class Command(BaseCommand):
    help = (
        "Enqueue every pending event and every due delivery again, at once. Run it after "
        "the broker lost messages (Redis flushed or restored); workers also relay what is "
        "overdue by REST_HOOKS['RELAY_AFTER'] on their own. Duplicates are harmless: "
        "events are fanned out once and deliveries sent once. In embedded mode (no broker "
        "configured) it delivers them itself before it returns."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        since = timezone.now()
        events, deliveries = relay_pending(everything=True)
        self.stdout.write(
            f"Relayed {events_text(len(events))} and {deliveries_text(len(deliveries))}."
        )
        finish_queued(self, since, deliveries=deliveries, events=events)
