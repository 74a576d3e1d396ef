# The schema of django-rest-hooks 1.5, kept under the same migration name so that a
# database created by that library is recognised as already migrated.
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="Hook",
            fields=[
                (
                    "id",
                    models.AutoField(
                        verbose_name="ID", serialize=False, auto_created=True, primary_key=True
                    ),
                ),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("updated", models.DateTimeField(auto_now=True)),
                ("event", models.CharField(max_length=64, verbose_name="Event", db_index=True)),
                ("target", models.URLField(max_length=255, verbose_name="Target URL")),
                (
                    "user",
                    models.ForeignKey(
                        related_name="hooks",
                        to=settings.AUTH_USER_MODEL,
                        on_delete=models.CASCADE,
                    ),
                ),
            ],
            # Not in django-rest-hooks' 0001 (its 0002 added it): without it, a project with
            # HOOK_CUSTOM_MODEL got an unused rest_hooks_hook table. A database migrated by
            # that library has this migration applied already, so nothing changes for it.
            options={"swappable": "HOOK_CUSTOM_MODEL"},
        ),
    ]
