from django.core.management.base import CommandError

from monitor import daily, discovery, errors
from monitor.models import Image

from ._progress import ProgressCommand


class Command(ProgressCommand):
    help = "Recompute the daily figures (DailyMetric) from the stored images, for one day or every day."

    def add_arguments(self, parser):
        parser.add_argument("--day", metavar="YYYY-MM-DD", help="only this day (default: every day with images)")

    def handle(self, *args, day, **options):
        try:
            days = [discovery.parse_day(day)] if day else sorted(set(Image.objects.values_list("day", flat=True)))
        except errors.JobError as exc:
            raise CommandError(str(exc)) from None
        with self.progress_bar(total=len(days), desc="metrics", unit="day") as bar:
            for d in days:
                daily.compute_day(d)
                bar.update(1)
        self.stdout.write(f"recomputed the figures of {len(days)} days")
