"""Counts as people read them in commands, admin messages and log lines: "1 delivery",
"2 deliveries", never "1 deliveries"."""

from django.utils.translation import ngettext


def deliveries_text(count: int) -> str:
    return ngettext("%d delivery", "%d deliveries", count) % count


def events_text(count: int) -> str:
    return ngettext("%d event", "%d events", count) % count


def hooks_text(count: int) -> str:
    return ngettext("%d hook", "%d hooks", count) % count
