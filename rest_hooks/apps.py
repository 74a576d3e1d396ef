from typing import Any

from django.apps import AppConfig
from django.conf import settings


class RestHooksConfig(AppConfig):
    name = "rest_hooks"
    verbose_name = "REST hooks"
    # The hook table of django-rest-hooks has a 32-bit id; keep it so databases upgrade in place.
    default_auto_field = "django.db.models.AutoField"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Foreign keys to the swappable hook model make Django's migrations read
        # settings.HOOK_CUSTOM_MODEL, which django-rest-hooks never required to be set.
        if not getattr(settings, "HOOK_CUSTOM_MODEL", None):
            settings.HOOK_CUSTOM_MODEL = "rest_hooks.Hook"

    def ready(self) -> None:
        from django.db.models.signals import post_save, pre_delete

        from rest_hooks import checks, events, signals, tasks  # noqa: F401 (checks, actors)

        post_save.connect(events.on_post_save, dispatch_uid="rest_hooks.post_save")
        pre_delete.connect(events.on_pre_delete, dispatch_uid="rest_hooks.pre_delete")
        signals.hook_event.connect(events.on_hook_event, dispatch_uid="rest_hooks.hook_event")
        signals.raw_hook_event.connect(
            events.on_raw_hook_event, dispatch_uid="rest_hooks.raw_hook_event"
        )
