"""The bookstore of django-rest-hooks' README, used by the tests and the demo."""

from typing import Any

from django.conf import settings
from django.db import models

from rest_hooks.signals import hook_event


class Book(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    title = models.CharField(max_length=128)
    pages = models.PositiveIntegerField()
    fiction = models.BooleanField()

    def __str__(self) -> str:
        return self.title

    def serialize_hook(self, hook: Any) -> dict[str, Any]:
        return {
            "hook": hook.dict(),
            "data": {
                "id": self.id,
                "title": self.title,
                "pages": self.pages,
                "fiction": self.fiction,
            },
        }

    def mark_as_read(self) -> None:
        hook_event.send(sender=self.__class__, action="read", instance=self)


class Paperback(Book):
    """A proxy: HOOK_EVENTS must name the concrete model (check rest_hooks.E002)."""

    class Meta:
        proxy = True


class Author(models.Model):
    """No serialize_hook: its payload is Django's default serialisation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=128)

    def __str__(self) -> str:
        return self.name


class Shelf(models.Model):
    """No user at all: only '+' events or an explicit user reach its subscribers."""

    label = models.CharField(max_length=64)

    def __str__(self) -> str:
        return self.label
