# A model version is identified by (name, version), kept unique by model_name_version_unique;
# one ONNX file (sha256) may back several versions with different manifests, so the hash is an
# index, not a unique key (GitHub issue 14).
#
# Written by hand: it follows 0013 because 0014_unreadable_per_day was not there yet; once 0014
# exists, this depends on it instead (the operation does not touch 0014's tables).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitor", "0013_daily_production_figures"),
    ]

    operations = [
        migrations.AlterField(
            model_name="modelversion",
            name="sha256",
            field=models.CharField(db_index=True, max_length=64),
        ),
    ]
