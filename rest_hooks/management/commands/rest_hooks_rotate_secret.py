from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rest_hooks.conf import hook_settings
from rest_hooks.models import get_hook_model


class Command(BaseCommand):
    help = (
        "Give hooks a new signing secret and print it (for Ed25519 hooks, the new public "
        "key), one 'hook_id<TAB>secret' line per hook. The old secret keeps signing "
        "deliveries for the grace period, so subscribers can switch without losing any."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("hook_ids", nargs="+", metavar="HOOK_ID", help="hooks to rotate")
        parser.add_argument(
            "--grace",
            type=float,
            help="hours the old secret stays valid (default: "
            "REST_HOOKS['SECRET_ROTATION_GRACE'], 24 h); 0 drops it at once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["grace"]
        if hours is not None and hours < 0:
            raise CommandError("--grace must not be negative.")
        grace = None if hours is None else timedelta(hours=hours)
        model = get_hook_model()
        try:
            ids = [model._meta.pk.to_python(i) for i in options["hook_ids"]]
        except Exception as exc:
            raise CommandError(f"Not a hook id: {exc}") from exc
        hooks: dict[Any, Any] = {h.pk: h for h in model._default_manager.filter(pk__in=ids)}
        missing = [str(i) for i in ids if i not in hooks]
        if missing:
            raise CommandError(f"No such hooks: {', '.join(missing)}")
        for hook_id in ids:
            self.stdout.write(f"{hook_id}\t{hooks[hook_id].rotate_secret(grace)}")
        if grace is None:
            grace = timedelta(seconds=float(hook_settings.SECRET_ROTATION_GRACE))
        self.stderr.write(
            f"Rotated {len(ids)} hooks; old secrets stay valid for "
            f"{grace.total_seconds() / 3600:g} hours."
        )
