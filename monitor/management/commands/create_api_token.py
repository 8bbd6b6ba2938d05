from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError

from monitor.api_auth import new_token
from monitor.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it once (only its sha256 is stored). "
        "Scripts send it as 'Authorization: Bearer <token>'; it has the user's permissions."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. 'nightly report script'")

    def handle(self, *args, username, name, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive: its tokens would be refused")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("give the token a name of 1 to 100 characters with --name")
        token, digest = new_token()
        ApiToken.objects.create(user=user, name=name, token_sha256=digest)
        if not user.has_perm("monitor.view_image"):
            self.stderr.write(f"warning: {username} lacks monitor.view_image: the API will answer 403")
        self.stdout.write(token)
        self.stderr.write(f"token {name!r} for {username}: shown once, store it now")
