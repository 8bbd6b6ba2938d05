"""The default attack types of SPEC section 2 (the admin may add more)."""

from django.db import migrations

DEFAULTS = [
    ("print", "paper or photo print", 1),
    ("replay", "phone, tablet or monitor screen", 2),
    ("mask", "3D or paper mask", 3),
    ("other", "any other presentation attack", 4),
]


def create(apps, schema_editor):
    AttackType = apps.get_model("monitor", "AttackType")
    for name, description, position in DEFAULTS:
        AttackType.objects.get_or_create(name=name, defaults={"description": description, "position": position})


def remove(apps, schema_editor):
    apps.get_model("monitor", "AttackType").objects.filter(name__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitor", "0007_labels")]

    operations = [migrations.RunPython(create, remove)]
