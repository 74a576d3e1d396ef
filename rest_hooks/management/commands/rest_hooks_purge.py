from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from rest_hooks.conf import hook_settings
from rest_hooks.management.progress import progress_bar
from rest_hooks.models import Delivery, DeliveryAttempt, Event
from rest_hooks.plurals import deliveries_text, events_text

BATCH = 1000


class Command(BaseCommand):
    help = (
        "Delete finished deliveries, and dispatched and refused events, older than the "
        "retention (REST_HOOKS['RETENTION_DAYS'], default 30 days). Pending work is never "
        "deleted."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days", type=float, help="retention in days (default: RETENTION_DAYS)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else hook_settings.RETENTION_DAYS
        if days < 0:
            raise CommandError(f"--days must not be negative, not {days:g}.")
        cutoff = timezone.now() - timedelta(days=days)
        deliveries = Delivery.objects.filter(created_at__lt=cutoff).exclude(
            status=Delivery.Status.PENDING
        )
        events = Event.objects.filter(
            created_at__lt=cutoff, status__in=[Event.Status.DISPATCHED, Event.Status.REFUSED]
        ).exclude(
            # Deleting an event cascades to its deliveries: keep those pending or newer.
            Exists(
                Delivery.objects.filter(event=OuterRef("pk")).filter(
                    Q(status=Delivery.Status.PENDING) | Q(created_at__gte=cutoff)
                )
            )
        )
        if options["dry_run"]:
            self.stdout.write(
                f"{deliveries_text(deliveries.count())} and {events_text(events.count())} "
                "would be deleted."
            )
            return
        removed_deliveries = self._delete(deliveries, "deliveries")
        removed_events = self._delete(events, "events")
        # Attempts whose delivery was deleted while they were being recorded.
        DeliveryAttempt.objects.filter(started_at__lt=cutoff).exclude(
            Exists(Delivery.objects.filter(pk=OuterRef("delivery_id")))
        ).delete()
        self.stdout.write(
            f"Deleted {deliveries_text(removed_deliveries)} and {events_text(removed_events)} "
            f"older than {days:g} days."
        )

    def _delete(self, queryset: Any, label: str) -> int:
        """Delete in batches, so that no single statement holds locks for long."""
        removed = 0
        total = queryset.count()
        with progress_bar(self.stderr, total, label) as bar:
            while True:
                batch = list(queryset.values_list("pk", flat=True)[:BATCH])
                if not batch:
                    return removed
                # Deleting an event cascades to its (finished) deliveries.
                queryset.model.objects.filter(pk__in=batch).delete()
                removed += len(batch)
                bar.update(len(batch))
