import argparse
import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

import demo
import demo.stories

from ._progress import ProgressCommand


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class Command(ProgressCommand):
    help = (
        "Generate a demo inbox: procedural face captures from several devices, print and replay "
        "attacks, sidecars, a labelled share, broken files, duplicates and late arrivals."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out", type=Path, default=None, help=f"inbox folder to write (default: {settings.INBOX_DIR})"
        )
        parser.add_argument("--days", type=positive_int, default=14, help="number of days (default 14)")
        parser.add_argument("--per-day", type=positive_int, default=150, help="images per day, about (default 150)")
        parser.add_argument("--seed", type=int, default=0, help="random seed; another seed adds new files")
        parser.add_argument("--end-day", metavar="YYYY-MM-DD", help="last day (default: yesterday)")
        parser.add_argument(
            "--stories",
            action="store_true",
            help="plant a blurry camera, a replay wave, a small-face device and a retry burst on the last"
            f" four days; the plan goes to {demo.stories.PLAN_FILE} next to the inbox",
        )

    def handle(self, *args, out, days, per_day, seed, end_day, stories, **options):
        out = out or settings.INBOX_DIR
        if out.exists() and not out.is_dir():
            raise CommandError(f"--out: {out} exists and is not a folder")
        try:
            end = dt.date.fromisoformat(end_day) if end_day else None
        except ValueError:
            raise CommandError(f"--end-day: not a day: {end_day!r} (expected YYYY-MM-DD)") from None
        if stories and days < demo.stories.MIN_DAYS:
            raise CommandError(f"--stories needs --days {demo.stories.MIN_DAYS} or more (one normal day, four stories)")
        out.mkdir(parents=True, exist_ok=True)
        with self.progress_bar(total=days * per_day, desc="demo data", unit="image") as bar:

            def progress(done, total):
                bar.total = total
                bar.update(done - bar.n)

            kwargs = {"days": days, "per_day": per_day, "seed": seed, "end_day": end, "progress": progress}
            if stories:
                summary, plan = demo.stories.generate(out, **kwargs)
            else:
                summary, plan = demo.generate_inbox(out, **kwargs), None
        parts = ", ".join(f"{k}: {v}" for k, v in summary.items() if not isinstance(v, dict))
        self.stdout.write(f"demo inbox written to {out} ({parts})")
        if plan is not None:
            days_of = ", ".join(f"{name} {story['day']}" for name, story in plan["stories"].items())
            self.stdout.write(f"stories planted: {days_of}; plan in {demo.stories.plan_path(out)}")
