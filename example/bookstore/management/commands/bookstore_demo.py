"""The README scenario of django-rest-hooks, delivered for real and shown as it arrives."""

from __future__ import annotations

import json
import time
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bookstore.models import Book
from bookstore.receiver import Receiver
from rest_hooks.models import Delivery, Hook
from rest_hooks.security import SignatureError, verify
from rest_hooks.signals import raw_hook_event

EVENTS = ("book.added", "book.changed", "book.read", "user.logged_in", "book.removed")


class Command(BaseCommand):
    help = (
        "Run the bookstore scenario of django-rest-hooks' README: subscribe a receiver on "
        "127.0.0.1 to five events, create, change, read and delete a book, log a user in, "
        "and print every delivery the receiver gets, with its signature checked."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--timeout", type=float, default=30, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        receiver = Receiver()
        try:
            self._run(receiver, options["timeout"])
        finally:
            receiver.close()

    def _run(self, receiver: Receiver, timeout: float) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username="jrrtolkien", defaults={"email": "jrr@example.com"}
        )
        Hook.objects.filter(user=user).delete()
        secrets = {}
        for event in EVENTS:
            hook = Hook.objects.create(user=user, event=event, target=receiver.url(f"/{event}"))
            secrets[event] = hook.secret
        self.stdout.write(f"Receiver on {receiver.url('/')}; {len(EVENTS)} hooks subscribed.\n")

        book = Book.objects.create(user=user, title="The Two Towers", pages=327, fiction=True)
        book.title += ": Deluxe Edition"
        book.pages = 352
        book.save()
        book.mark_as_read()
        raw_hook_event.send(
            sender=None,
            event_name="user.logged_in",
            payload={"username": user.username, "email": user.email},
            user=user,
        )
        book.delete()

        start = time.monotonic()
        shown = 0
        while shown < len(EVENTS):
            if time.monotonic() - start > timeout:
                raise CommandError(
                    f"Only {shown} of {len(EVENTS)} deliveries arrived in {timeout:g} s. "
                    "Are the workers running (manage.py rundramatiq)?"
                )
            for request in receiver.requests[shown:]:
                self._show(request, secrets[request.path.lstrip("/")])
                shown += 1
            time.sleep(0.05)
        ok = Delivery.objects.filter(hook__user=user, status="success").count()
        self.stdout.write(self.style.SUCCESS(f"All {shown} deliveries arrived ({ok} logged)."))

    def _show(self, request: Any, secret: str) -> None:
        headers = request.headers
        try:
            verify(request.body, headers, secret)
            verdict = self.style.SUCCESS("signature verified")
        except SignatureError as exc:
            verdict = self.style.ERROR(f"signature REJECTED: {exc}")
        self.stdout.write(
            f"POST {request.path}  event={headers['x-hook-event']}  "
            f"id={headers['webhook-id']}  attempt={headers['x-hook-attempt']}  {verdict}"
        )
        self.stdout.write("    " + json.dumps(json.loads(request.body)) + "\n")
