"""Admin for hooks, events and the delivery log.

A hook's secret appears once, on the page that follows its creation, and never again: it is
not a field of any form, list or message (messages may be stored in a cookie).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from rest_hooks.conf import hook_settings
from rest_hooks.models import Delivery, DeliveryAttempt, Event, HookNotice, get_hook_model
from rest_hooks.plurals import deliveries_text
from rest_hooks.worker.relay import redeliver


class HookForm(forms.ModelForm):  # type: ignore[type-arg]
    event = forms.ChoiceField(choices=())
    target = forms.URLField(max_length=255, assume_scheme="https")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [(e, e) for e in sorted(hook_settings.HOOK_EVENTS)]  # type: ignore[attr-defined]


class HookAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = HookForm
    list_display = ("id", "event", "target", "user", "is_active", "signing", "created")
    list_filter = ("is_active", "event", "signing")
    search_fields = ("target", "event")
    raw_id_fields = ("user",)
    fields = (
        "user",
        "event",
        "target",
        "signing",
        "public_key",
        "is_active",
        "disabled_reason",
        "disabled_at",
    )
    actions = ["rotate_secrets"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = ["public_key", "disabled_reason", "disabled_at"]
        # Changing the scheme of an existing hook means new keys: use "rotate" instead.
        return [*readonly, "signing"] if obj is not None else readonly

    @admin.display(description="public key (Ed25519)")
    def public_key(self, obj: Any) -> str:
        return obj.public_key or "-"

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        return self._show_credentials(
            request, "The hook was created.", [(obj, obj.public_key or obj.secret)]
        )

    # Rotating writes new secrets and shows them: the change permission, never view only.
    @admin.action(
        description="Rotate the signing secret (old one valid for the grace period)",
        permissions=["change"],
    )
    def rotate_secrets(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        credentials = [(hook, hook.rotate_secret()) for hook in queryset]
        grace = float(hook_settings.SECRET_ROTATION_GRACE) / 3600
        return self._show_credentials(
            request,
            f"New secrets for {len(credentials)} hooks. Deliveries are signed with the old "
            f"secret too for {grace:g} hours.",
            credentials,
        )

    def _show_credentials(
        self, request: HttpRequest, intro: str, credentials: list[tuple[Any, str]]
    ) -> HttpResponse:
        """The one page that ever shows secrets: right after they were made."""
        return TemplateResponse(
            request,
            "admin/rest_hooks/hook_secret.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "intro": intro,
                "credentials": credentials,
                "title": "Copy the signing secrets",
            },
        )


class ReadOnlyInline(admin.TabularInline):  # type: ignore[type-arg]
    """Rows of the log under their event or delivery: shown, never edited."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryInline(ReadOnlyInline):
    model = Delivery
    fields = ("id", "hook", "status", "attempts", "last_status_code", "next_attempt_at")
    readonly_fields = fields
    show_change_link = True


class DeliveryAttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    fields = (
        "number",
        "started_at",
        "outcome",
        "status_code",
        "duration_ms",
        "error",
        "response_excerpt",
    )
    readonly_fields = fields


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The log is written by workers only; old rows go with `rest_hooks_purge`."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "action", "status", "owner_id", "created_at")
    list_filter = ("status", "name", "created_at")
    fields = (
        "name",
        "action",
        "status",
        "owner_id",
        "hook",
        "instance_model",
        "instance_pk",
        "created_at",
        "dispatched_at",
        "error",
        "payload_pretty",
    )
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="payload")
    def payload_pretty(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", obj.payload)  # escaped by format_html


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "event",
        "hook",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
        "next_attempt_at",
    )
    list_filter = ("status", "event__name", "created_at")
    search_fields = ("=id", "hook__target")
    list_select_related = ("event", "hook")
    fields = (
        "id",
        "event",
        "hook",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_duration_ms",
        "last_error",
        "response_pretty",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver_selected"]

    @admin.display(description="response (excerpt)")
    def response_pretty(self, obj: Delivery) -> str:
        return format_html("<pre>{}</pre>", obj.response_excerpt)

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        """Redelivering changes deliveries: it takes their change permission, although
        the admin itself never edits the log (``has_change_permission`` is always False)."""
        codename = get_permission_codename("change", self.opts)
        return bool(request.user.has_perm(f"{self.opts.app_label}.{codename}"))

    @admin.action(description="Redeliver the selected deliveries", permissions=["redeliver"])
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = redeliver(queryset)
        skipped = queryset.count() - count
        note = f" {skipped} still pending were left alone." if skipped else ""
        self.message_user(
            request, f"{deliveries_text(count)} queued again.{note}", messages.SUCCESS
        )


@admin.register(HookNotice)
class HookNoticeAdmin(ReadOnlyAdmin):
    """What owners were told of their failing hooks, and when it went out."""

    list_display = ("hook", "stage", "percent", "created_at", "emailed_at", "posted_at")
    list_filter = ("stage", "created_at")
    list_select_related = ("hook",)
    fields = ("hook", "stage", "percent", "run", "reason", "created_at", "emailed_at", "posted_at")
    readonly_fields = fields


if not get_hook_model()._meta.swapped and get_hook_model()._meta.app_label == "rest_hooks":
    admin.site.register(get_hook_model(), HookAdmin)
