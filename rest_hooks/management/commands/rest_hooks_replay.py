from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from rest_hooks.conf import hook_settings
from rest_hooks.management.progress import progress_bar
from rest_hooks.management.queued import finish_queued
from rest_hooks.models import Delivery, Event, get_hook_model
from rest_hooks.plurals import deliveries_text
from rest_hooks.worker.relay import redeliver

BATCH = 500


class Command(BaseCommand):
    help = (
        "Send deliveries again, with their original ids (receivers de-duplicate on them). "
        "Select them by event name, hook, status and creation time; by default the failed "
        "ones. In embedded mode (no broker configured) it delivers them itself before it "
        "returns. Example: manage.py rest_hooks_replay --event book.added --since 2026-01-01"
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--event", help="event name, e.g. book.added")
        parser.add_argument("--hook", help="hook id")
        parser.add_argument(
            "--status",
            default="failed",
            choices=[s.value for s in Delivery.Status if s != Delivery.Status.PENDING] + ["all"],
            help="which deliveries (default: failed)",
        )
        parser.add_argument("--since", help="created at or after (ISO 8601)")
        parser.add_argument("--until", help="created before (ISO 8601)")
        parser.add_argument("--dry-run", action="store_true", help="count, send nothing")

    @staticmethod
    def _check_event(name: str) -> None:
        """A misspelt event name matches nothing: say so, rather than replay nothing. An
        event no longer in HOOK_EVENTS may still have deliveries to replay."""
        if name in hook_settings.HOOK_EVENTS or Event.objects.filter(name=name).exists():
            return
        known = ", ".join(sorted(hook_settings.HOOK_EVENTS)) or "none"
        raise CommandError(f"--event: no event is named {name!r} (HOOK_EVENTS has: {known}).")

    def handle(self, *args: Any, **options: Any) -> None:
        deliveries = Delivery.objects.exclude(status=Delivery.Status.PENDING)
        if options["status"] != "all":
            deliveries = deliveries.filter(status=options["status"])
        if options["event"]:
            self._check_event(options["event"])
            deliveries = deliveries.filter(event__name=options["event"])
        if options["hook"]:
            try:
                hook_id = get_hook_model()._meta.pk.to_python(options["hook"])
            except ValidationError as exc:
                raise CommandError(f"--hook: not a hook id: {options['hook']!r}") from exc
            deliveries = deliveries.filter(hook_id=hook_id)
        for option, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
            if options[option]:
                try:
                    when = parse_datetime(options[option])
                except ValueError:  # well formed but impossible, e.g. February 30
                    when = None
                if when is None:
                    raise CommandError(
                        f"--{option}: not an ISO 8601 date-time: {options[option]!r}"
                    )
                if settings.USE_TZ and timezone.is_naive(when):
                    when = timezone.make_aware(when)  # in TIME_ZONE, without a warning
                deliveries = deliveries.filter(**{lookup: when})
        total = deliveries.count()
        if options["dry_run"]:
            self.stdout.write(deliveries_text(total) + " would be sent again.")
            return
        ids = deliveries.order_by("pk").values_list("pk", flat=True)
        since = timezone.now()
        sent = 0
        queued: list[Any] = []
        with progress_bar(self.stderr, total, "delivery") as bar:
            while True:
                batch = list((ids.filter(pk__gt=queued[-1]) if queued else ids)[:BATCH])
                if not batch:
                    break
                queued.extend(batch)
                sent += redeliver(Delivery.objects.filter(pk__in=batch))
                bar.update(len(batch))
        self.stdout.write(deliveries_text(sent) + " queued again.")
        finish_queued(self, since, deliveries=queued)
