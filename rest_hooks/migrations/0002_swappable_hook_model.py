# Same name and effect as django-rest-hooks 1.5's second migration.
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("rest_hooks", "0001_initial")]

    operations = [
        migrations.AlterModelOptions(name="Hook", options={"swappable": "HOOK_CUSTOM_MODEL"}),
    ]
