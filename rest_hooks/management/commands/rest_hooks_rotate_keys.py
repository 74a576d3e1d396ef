from typing import Any

from django.core.management.base import BaseCommand

from rest_hooks.conf import secret_box
from rest_hooks.management.progress import progress_bar
from rest_hooks.models import get_hook_model

BATCH = 500
ENCRYPTED = ("secret", "previous_secrets")


class Command(BaseCommand):
    help = (
        "Re-encrypt every hook secret with the first key of REST_HOOKS['SECRET_KEYS'] (or "
        "the key derived from SECRET_KEY). Rotate keys without downtime: put the new key "
        "first and keep the old one after it, deploy, run this command, then remove the "
        "old key. Secrets stored before encryption was enabled are encrypted too."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        model = get_hook_model()
        secret_box()  # fail before the first row if the keys are malformed
        # Read back decrypted (with whichever key), written encrypted with the first key.
        rows = model._base_manager.values_list("pk", *ENCRYPTED)
        total = model._base_manager.count()
        done = 0
        last = None
        with progress_bar(self.stderr, total, "hooks") as bar:
            while True:
                page = rows.order_by("pk")
                batch = list((page.filter(pk__gt=last) if last is not None else page)[:BATCH])
                if not batch:
                    break
                last = batch[-1][0]
                for pk, *values in batch:
                    secrets = dict(zip(ENCRYPTED, values, strict=True))
                    model._base_manager.filter(pk=pk).update(**secrets)
                    done += 1
                bar.update(len(batch))
        self.stdout.write(f"Re-encrypted the secrets of {done} hooks.")
