"""A custom user (UUID primary key), a custom hook model and a model that fires events."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from rest_hooks.models import AbstractHook


class Member(AbstractUser):
    """``AUTH_USER_MODEL``: its primary key is a UUID, not an integer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)


class TeamHook(AbstractHook):
    """``HOOK_CUSTOM_MODEL``: a UUID primary key, an extra field, its own ``dict()``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.CharField(max_length=64, blank=True, default="")

    def dict(self) -> dict[str, Any]:
        return {**super().dict(), "team": self.team}


class Note(models.Model):
    """No serialize_hook: its payload is the default one, owned through ``user``."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text
