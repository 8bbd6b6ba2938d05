"""python manage.py import_labels FILE.csv [--dry-run] [--user NAME]"""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from monitor.label_csv import import_labels

from ._progress import ProgressCommand

SHOWN_ROWS = 20


class Command(ProgressCommand):
    help = (
        "Import labels from a CSV file with a header: label and sha256 or path (relative to the inbox), "
        "optional attack_type. Every bad line is reported; with any error nothing is written (exit code 2)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV file")
        parser.add_argument("--dry-run", action="store_true", help="only show what would change")
        parser.add_argument("--user", metavar="NAME", help="the user the changes are recorded for")

    def handle(self, *args, file, dry_run, user, **options):
        who = None
        if user:
            try:
                who = get_user_model().objects.get(username=user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"no user named {user!r}") from None
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None

        result = import_labels(text, user=who, dry_run=dry_run)
        if self.verbosity >= 2:
            for row in result.rows[: None if self.verbosity >= 3 else SHOWN_ROWS]:
                old = row.old_label or "unlabelled"
                new = f"{row.new_label} ({row.attack_type})" if row.attack_type else row.new_label
                self.stdout.write(f"line {row.line}: image {row.image_id} {old} -> {new}")
        self.stdout.write(
            f"{path.name}: {len(result.rows)} rows read, {result.changed} labels change, "
            f"{result.unchanged} unchanged, {len(result.errors)} errors"
        )
        for line, message in result.errors:
            self.stderr.write(f"line {line}: {message}")
        if result.errors:
            raise CommandError(
                f"{len(result.errors)} bad lines: nothing was written; fix them and import again", returncode=2
            )
        if dry_run:
            self.stdout.write("dry run: nothing was written")
        else:
            self.stdout.write(f"wrote {result.changed} label changes")
