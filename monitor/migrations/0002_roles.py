"""The three roles of SPEC section 1 as groups: viewer, reviewer, admin."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = ["view_image", "view_run", "view_device", "view_ensemble", "view_modelversion", "view_inboxfile"]
ROLES = {
    "viewer": VIEW,
    "reviewer": VIEW + ["change_image"],
    "admin": VIEW
    + [
        "change_image",
        "add_run",
        "change_run",
        "add_ensemble",
        "change_ensemble",
        "add_modelversion",
        "change_modelversion",
    ],
}


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(content_type__app_label="monitor", codename__in=codenames))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitor", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
