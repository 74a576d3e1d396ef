from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_save, pre_delete


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
        """Connect the capture to its signals and hand the lower layers what they run.

        The imports are here, not at the top, because they import the models, which
        Django loads only after every app's config (this module) is imported.
        """
        from rest_hooks import checks, events, signals, tasks  # noqa: F401 (checks, actors)
        from rest_hooks.metrics.collectors import BREAKERS
        from rest_hooks.worker.gate import breaker_state

        # The metrics read the breakers through the worker's gate, a layer above them.
        BREAKERS.read_states_with(breaker_state)

        post_save.connect(events.on_post_save, dispatch_uid="rest_hooks.post_save")
        pre_delete.connect(events.on_pre_delete, dispatch_uid="rest_hooks.pre_delete")
        signals.hook_event.connect(events.on_hook_event, dispatch_uid="rest_hooks.hook_event")
        signals.raw_hook_event.connect(
            events.on_raw_hook_event, dispatch_uid="rest_hooks.raw_hook_event"
        )
        signals.hook_delivery_requested.connect(
            events.capture_for_hook, dispatch_uid="rest_hooks.hook_delivery_requested"
        )
