"""Migration helpers for databases that come from django-rest-hooks 1.5.

Adding the ``secret`` column with a callable default would give every existing hook the
same secret (Django evaluates the default once for the whole table). The migrations add
it empty and then give each existing hook a secret of its own with this operation. A
project with a custom hook model (``HOOK_CUSTOM_MODEL``) adds the same operation to the
migration ``makemigrations`` writes for it::

    from rest_hooks.upgrade import encrypt_hook_secrets, give_each_hook_its_own_secret

    operations = [
        migrations.AddField("myhook", "secret", models.TextField(default="")),
        give_each_hook_its_own_secret("myapp", "MyHook"),
        ...  # the rest of what makemigrations wrote (the secret's final AlterField last)
        encrypt_hook_secrets("myapp", "MyHook"),
    ]
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from rest_hooks.security.signing import generate_secret


def give_each_hook_its_own_secret(app_label: str, model_name: str) -> migrations.RunPython:
    def forwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        if model._meta.swapped:
            return
        manager = model._base_manager.using(schema_editor.connection.alias)
        for pk in manager.filter(secret="").values_list("pk", flat=True).iterator():
            manager.filter(pk=pk).update(secret=generate_secret())

    return migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)


def encrypt_hook_secrets(app_label: str, model_name: str) -> migrations.RunPython:
    """Encrypt secrets stored in plain text (EncryptedSecretField reads those as they are)."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        model = apps.get_model(app_label, model_name)
        if model._meta.swapped:
            return
        manager = model._base_manager.using(schema_editor.connection.alias)
        for pk, secret in manager.values_list("pk", "secret").iterator():
            manager.filter(pk=pk).update(secret=secret)  # saved encrypted

    return migrations.RunPython(forwards, migrations.RunPython.noop, elidable=True)
