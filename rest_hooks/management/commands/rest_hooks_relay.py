from typing import Any

from django.core.management.base import BaseCommand

from rest_hooks.tasks import relay_pending


class Command(BaseCommand):
    help = (
        "Enqueue every pending event and every due delivery again, at once. Run it after "
        "the broker lost messages (Redis flushed or restored); workers also relay what is "
        "overdue by REST_HOOKS['RELAY_AFTER'] on their own. Duplicates are harmless: "
        "events are fanned out once and deliveries sent once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        events, deliveries = relay_pending(everything=True)
        self.stdout.write(f"Relayed {events} events and {deliveries} deliveries.")
