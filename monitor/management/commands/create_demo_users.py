import os
import secrets

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand

ROLES = ("viewer", "reviewer", "admin")


class Command(BaseCommand):
    help = (
        "Create (or reset) the demo users viewer, reviewer and admin, each in its group, and print "
        "their passwords. Set KOALA_DEMO_PASSWORD to use one fixed password. For the demo only."
    )

    def handle(self, *args, **options):
        fixed = os.environ.get("KOALA_DEMO_PASSWORD")
        for role in ROLES:
            user, _ = User.objects.get_or_create(username=role)
            password = fixed or secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            self.stdout.write(f"  {role:9s} password: {password}")
