from django.core.management.base import CommandError

from monitor import discovery, errors, folders
from monitor.models import Image

from ._progress import ProgressCommand


class Command(ProgressCommand):
    help = "Rebuild SORTED/<day>/<category>/ links and missing thumbnails from the database."

    def add_arguments(self, parser):
        parser.add_argument("--day", metavar="YYYY-MM-DD", help="only this day (default: every day)")

    def handle(self, *args, day, **options):
        try:
            day = discovery.parse_day(day) if day else None
        except errors.JobError as exc:
            raise CommandError(str(exc)) from None
        qs = Image.objects.all() if day is None else Image.objects.filter(day=day)
        with self.progress_bar(total=qs.count(), desc="rebuild", unit="image") as bar:
            n = folders.rebuild_folders(day, progress=bar.update)
        self.stdout.write(f"rebuilt links for {n} images" + (f" of {day}" if day else ""))
