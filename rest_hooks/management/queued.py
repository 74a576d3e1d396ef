"""What a command that queued deliveries says, and in embedded mode does, before it returns.

With Dramatiq workers a command only queues; the workers deliver. In embedded mode the
queue lives in the command's own memory and its in-process worker delivers: what is still
queued when the command exits is only sent later by the relay of another process. So the
command waits for its worker, with a progress bar, and says how each delivery went. It
does not wait for retries and deliveries held back (rate limit, breaker) that are due
later than ``EMBEDDED_DRAIN_TIMEOUT``: it says when they are due, and the relay sends
them then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand

from rest_hooks.broker import embedded_worker, is_embedded
from rest_hooks.conf import hook_settings
from rest_hooks.management.progress import progress_bar
from rest_hooks.models import Delivery

#: Seconds between two looks at the deliveries while the worker works.
LOOK_EVERY = 0.5
#: Ids one query asks for at most.
CHUNK = 500


def finish_queued(
    command: BaseCommand,
    since: datetime,
    *,
    deliveries: Sequence[Any] = (),
    events: Sequence[Any] = (),
) -> None:
    """Say where the work queued at or after ``since`` goes: these ``deliveries`` and those
    of these ``events``. In embedded mode, deliver it first."""
    if not deliveries and not events:
        return
    worker = embedded_worker()
    if worker is None:
        command.stdout.write(
            "Queued in this process's memory only: EMBEDDED_WORKER is off, so nothing "
            "here delivers them; they stay pending for the relay."
            if is_embedded()
            else "Queued for the Dramatiq workers; this command does not wait for them."
        )
        return
    command.stdout.write("Delivering them in this process (embedded mode).")
    horizon = float(hook_settings.EMBEDDED_DRAIN_TIMEOUT)
    with progress_bar(command.stderr, len(deliveries) + len(events), "delivery") as bar:
        while True:
            done = worker.drain(horizon, timeout=LOOK_EVERY).done
            tally = Tally.of(since, deliveries, events)
            bar.total, bar.n = tally.total, tally.tried
            bar.refresh()
            if done:
                break
    command.stdout.write(tally.summary())


@dataclass
class Tally:
    """How the deliveries a command queued went."""

    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    #: When each delivery tried and to be retried is due again.
    retries: list[datetime] = field(default_factory=list)
    #: When each delivery not tried yet (held back by its target's limits) is due.
    held: list[datetime] = field(default_factory=list)

    @classmethod
    def of(cls, since: datetime, deliveries: Sequence[Any], events: Sequence[Any]) -> Tally:
        """The tally of these deliveries and those of these events; a pending delivery
        attempted at or after ``since`` is one to be retried."""
        rows: dict[Any, tuple[str, datetime | None, datetime | None]] = {}
        for lookup, ids in (("pk__in", deliveries), ("event_id__in", events)):
            for start in range(0, len(ids), CHUNK):
                found = Delivery.objects.filter(**{lookup: ids[start : start + CHUNK]})
                columns = ("pk", "status", "last_attempt_at", "next_attempt_at")
                rows.update((pk, rest) for pk, *rest in found.values_list(*columns))
        tally = cls()
        for status, last_attempt_at, next_attempt_at in rows.values():
            if status == Delivery.Status.SUCCESS:
                tally.delivered += 1
            elif status == Delivery.Status.FAILED:
                tally.failed += 1
            elif status == Delivery.Status.CANCELLED:
                tally.cancelled += 1
            elif next_attempt_at is not None:
                tried = last_attempt_at is not None and last_attempt_at >= since
                (tally.retries if tried else tally.held).append(next_attempt_at)
        return tally

    @property
    def total(self) -> int:
        return self.tried + len(self.held)

    @property
    def tried(self) -> int:
        return self.delivered + self.failed + self.cancelled + len(self.retries)

    def summary(self) -> str:
        """One line, e.g. "3 delivered, 1 failed, 1 to be retried at ..."."""
        parts = [f"{self.delivered} delivered", f"{self.failed} failed"]
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled (hook disabled)")
        for due, label in ((self.retries, "to be retried"), (self.held, "held back")):
            if due:
                when = "at" if len(due) == 1 else "from"
                parts.append(f"{len(due)} {label} {when} {min(due).isoformat(timespec='seconds')}")
        line = ", ".join(parts) + "."
        if self.retries or self.held:
            line += (
                " This process does not wait for them: the relay sends them once due "
                "(manage.py rest_hooks_relay, or a running process's worker)."
            )
        return line
