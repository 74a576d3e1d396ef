from django.db import migrations, models

import rest_hooks.fields
import rest_hooks.security.signing
from rest_hooks.upgrade import encrypt_hook_secrets


class Migration(migrations.Migration):
    dependencies = [
        ("rest_hooks", "0003_delivery_log"),
    ]

    operations = [
        migrations.AddField(
            model_name="hook",
            name="previous_secrets",
            field=rest_hooks.fields.EncryptedSecretField(blank=True, default="", editable=False),
        ),
        migrations.AddField(
            model_name="hook",
            name="signing",
            field=models.CharField(
                choices=[
                    ("hmac-sha256", "HMAC-SHA256 (v1, shared secret)"),
                    ("ed25519", "Ed25519 (v1a, public key)"),
                ],
                default="hmac-sha256",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="hook",
            name="secret",
            field=rest_hooks.fields.EncryptedSecretField(
                default=rest_hooks.security.signing.generate_secret, editable=False
            ),
        ),
        # Existing secrets were stored in plain text: encrypt them now.
        encrypt_hook_secrets("rest_hooks", "Hook"),
    ]
