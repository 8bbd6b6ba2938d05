from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from monitor import services

from ._progress import ProgressCommand


class Command(ProgressCommand):
    help = (
        "Score inbox days in this process, with the same service functions as the Celery job: "
        "discover new files, score them in batches, link them into sorted folders, finish the run."
    )

    def add_arguments(self, parser):
        parser.add_argument("days", nargs="*", metavar="YYYY-MM-DD", help="the day(s) to score")
        parser.add_argument("--all", action="store_true", help="score every day folder found in the inbox")
        parser.add_argument("--inbox", type=Path, help=f"inbox folder (default: {settings.INBOX_DIR})")
        parser.add_argument("--rescore", action="store_true", help="score already scored images of the day again")
        parser.add_argument("--batch-size", type=int, default=settings.KOALA_BATCH_SIZE, help="files per batch")

    def handle(self, *args, days, all, inbox, rescore, batch_size, **options):
        if inbox is not None:
            if not inbox.is_dir():
                raise CommandError(f"--inbox: {inbox} is not a folder")
            settings.INBOX_DIR = inbox.resolve()
        if batch_size < 1:
            raise CommandError("--batch-size: must be at least 1")
        try:
            chosen = [services.parse_day(d) for d in days]
            if all:
                chosen += services.inbox_days()
            if not chosen:
                raise CommandError("give at least one day (YYYY-MM-DD) or --all")
            services.active_ensemble()
        except services.JobError as exc:
            raise CommandError(str(exc)) from None
        for day in sorted(set(chosen)):
            bar = self.progress_bar(desc=str(day))
            try:
                run = services.run_day(
                    day,
                    rescore=rescore,
                    batch_size=batch_size,
                    progress=bar.update,
                    total=lambda n, bar=bar: setattr(bar, "total", n) or bar.refresh(),
                )
            finally:
                bar.close()
            counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items())) or "no images"
            self.stdout.write(
                f"{day}: {run.processed} files processed, {run.new_images} new images, "
                f"{run.duplicates} duplicates, {run.failed_files} failed in {run.timings.get('total_s', 0):.1f} s; "
                f"day total: {counts}"
            )
