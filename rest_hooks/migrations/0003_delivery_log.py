import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import rest_hooks.models
import rest_hooks.security.signing
from rest_hooks.upgrade import give_each_hook_its_own_secret


class Migration(migrations.Migration):
    dependencies = [
        ("rest_hooks", "0002_swappable_hook_model"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        migrations.swappable_dependency(settings.HOOK_CUSTOM_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="hook",
            name="disabled_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="hook",
            name="disabled_reason",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.AddField(
            model_name="hook",
            name="failing_since",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="hook",
            name="is_active",
            field=models.BooleanField(default=True),
        ),
        # Empty first, then one secret per existing hook (a callable default would be
        # evaluated once and shared by every existing row).
        migrations.AddField(
            model_name="hook",
            name="secret",
            field=models.CharField(default="", editable=False, max_length=128),
        ),
        give_each_hook_its_own_secret("rest_hooks", "Hook"),
        migrations.AlterField(
            model_name="hook",
            name="secret",
            field=models.CharField(
                default=rest_hooks.security.signing.generate_secret, editable=False, max_length=128
            ),
        ),
        migrations.AlterField(
            model_name="hook",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="%(class)ss",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=64)),
                ("action", models.CharField(blank=True, default="", max_length=64)),
                ("payload", models.TextField()),
                ("has_hook_member", models.BooleanField(default=False)),
                ("owner_id", models.CharField(blank=True, max_length=64, null=True)),
                ("instance_model", models.CharField(blank=True, default="", max_length=128)),
                ("instance_pk", models.CharField(blank=True, default="", max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[("pending", "Pending"), ("dispatched", "Dispatched")],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("fanout_cursor", models.CharField(blank=True, default="", max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("enqueued_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("dispatched_at", models.DateTimeField(blank=True, null=True)),
                (
                    "hook",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.HOOK_CUSTOM_MODEL,
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Delivery",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=rest_hooks.models.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("success", "Success"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_status_code", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("last_duration_ms", models.FloatField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True, default="")),
                ("response_excerpt", models.TextField(blank=True, default="")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "hook",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to=settings.HOOK_CUSTOM_MODEL,
                    ),
                ),
                (
                    "event",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="rest_hooks.event",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "deliveries",
            },
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["status", "enqueued_at"], name="rest_hooks_event_relay"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                fields=["status", "next_attempt_at"], name="rest_hooks_delivery_due"
            ),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(fields=["created_at"], name="rest_hooks_delivery_created"),
        ),
        migrations.AddConstraint(
            model_name="delivery",
            constraint=models.UniqueConstraint(
                fields=("event", "hook"), name="rest_hooks_delivery_once"
            ),
        ),
    ]
