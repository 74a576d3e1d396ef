"""The ``Book`` of django-rest-hooks 1.5's README, unchanged but for ``on_delete``."""

from django.conf import settings
from django.db import models


class Book(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    title = models.CharField(max_length=128)
    pages = models.PositiveIntegerField()
    fiction = models.BooleanField()

    class Meta:
        app_label = "bookstore"

    def __str__(self):
        return self.title

    def serialize_hook(self, hook):
        return {
            "hook": hook.dict(),
            "data": {
                "id": self.id,
                "title": self.title,
                "pages": self.pages,
                "fiction": self.fiction,
            },
        }
