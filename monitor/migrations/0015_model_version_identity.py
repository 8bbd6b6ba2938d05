# A model version is identified by (name, version), kept unique by model_name_version_unique;
# one ONNX file (sha256) may back several versions with different manifests, so the hash is an
# index, not a unique key (GitHub issue 14).
#
# Written by hand; it follows 0014_unreadable_per_day (the operation does not touch 0014's tables).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitor", "0014_unreadable_per_day"),
    ]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="sha256",
            field=models.CharField(db_index=True, max_length=64),
        ),
    ]
