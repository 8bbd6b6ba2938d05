"""python manage.py purge_images --older-than DAYS [--dry-run] [--include-inbox | --no-include-inbox]"""

import argparse

from django.conf import settings
from django.core.management.base import CommandError

from monitor.purge import cutoff_day, expired, purge_images

from ._progress import ProgressCommand

SHOWN_ERRORS = 20


def days_argument(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise CommandError(f"--older-than: expected a whole number of days, got {value!r}") from None
    if days < 1:
        raise CommandError(f"--older-than: expected at least 1 day, got {days}")
    return days


class Command(ProgressCommand):
    help = (
        "Retention: delete the image files (sorted-folder links, thumbnails; with --include-inbox also the "
        "inbox originals) of the days older than DAYS days. Scores, labels and metrics stay; the images "
        "show as purged. Default DAYS: KOALA_RETENTION_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", metavar="DAYS", help="purge days before today - DAYS (default: KOALA_RETENTION_DAYS)"
        )
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument(
            "--include-inbox",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="also delete the originals in the inbox (default: KOALA_RETENTION_INBOX)",
        )

    def handle(self, *args, older_than, dry_run, include_inbox, **options):
        if older_than is None:
            if settings.KOALA_RETENTION_DAYS <= 0:
                raise CommandError("give --older-than DAYS (KOALA_RETENTION_DAYS is 0: keep forever)")
            days = settings.KOALA_RETENTION_DAYS
        else:
            days = days_argument(older_than)
        total = expired(cutoff_day(days)).count()
        with self.progress_bar(total=total, desc="dry run" if dry_run else "purge", unit="image") as bar:
            result = purge_images(days, dry_run=dry_run, include_inbox=include_inbox, progress=bar.update)
        self.stdout.write(result.summary)
        for path, reason in result.errors[:SHOWN_ERRORS]:
            self.stderr.write(f"{path}: {reason}")
        if len(result.errors) > SHOWN_ERRORS:
            self.stderr.write(f"... and {len(result.errors) - SHOWN_ERRORS} more")
        if result.errors:
            raise CommandError(f"{len(result.errors)} files could not be deleted", returncode=2)
