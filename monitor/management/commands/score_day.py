from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from monitor import discovery, errors, loading, runs, shadow
from monitor.models import Ensemble

from ._progress import ProgressCommand


class Command(ProgressCommand):
    help = (
        "Score inbox days in this process, with the same service functions as the Celery job: "
        "discover new files, score them in batches, link them into sorted folders, finish the run. "
        "With --ensemble NAME of a non-active ensemble: a shadow run, which scores the day's stored images "
        "into shadow scores and leaves the images, their categories, the folders and the day's figures alone. "
        "With --model NAME[:VERSION]: a shadow run of that one model alone."
    )

    def add_arguments(self, parser):
        parser.add_argument("days", nargs="*", metavar="YYYY-MM-DD", help="the day(s) to score")
        parser.add_argument("--all", action="store_true", help="score every day folder found in the inbox")
        parser.add_argument("--inbox", type=Path, help=f"inbox folder (default: {settings.INBOX_DIR})")
        parser.add_argument("--rescore", action="store_true", help="score already scored images of the day again")
        parser.add_argument("--batch-size", type=int, default=settings.KOALA_BATCH_SIZE, help="files per batch")
        parser.add_argument(
            "--ensemble",
            metavar="NAME",
            help="score with this ensemble: the active one is a normal run, another one a shadow run "
            "(compare them on the compare page)",
        )
        parser.add_argument(
            "--model",
            metavar="NAME[:VERSION]",
            help="a shadow run of this one model alone (default version: the one registered last), in a "
            "hidden one-model ensemble model:NAME@VERSION at the active ensemble's threshold",
        )

    def handle(self, *args, days, all, inbox, rescore, batch_size, ensemble=None, model=None, **options):
        if inbox is not None:
            if not inbox.is_dir():
                raise CommandError(f"--inbox: {inbox} is not a folder")
            settings.INBOX_DIR = inbox.resolve()
        if batch_size < 1:
            raise CommandError("--batch-size: must be at least 1")
        try:
            chosen = [discovery.parse_day(d) for d in days]
            if all:
                chosen += discovery.inbox_days()
            if not chosen:
                raise CommandError("give at least one day (YYYY-MM-DD) or --all")
            ens = self._ensemble(ensemble, model)
            if ens is None or ens.is_active:
                loading.active_ensemble()
                loading.face_detector()  # a broken detector manifest stops here, before any run
        except errors.JobError as exc:
            raise CommandError(str(exc)) from None
        if ens is not None and not ens.is_active:
            for day in sorted(set(chosen)):
                try:
                    self._shadow_day(day, ens, rescore=rescore, batch_size=batch_size)
                except errors.JobError as exc:
                    raise CommandError(str(exc)) from None
            return
        for day in sorted(set(chosen)):
            run = self._with_bar(str(day), "file", runs.run_day, day, rescore=rescore, batch_size=batch_size)
            counts = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items())) or "no images"
            self.stdout.write(
                f"{day}: {run.processed} files processed, {run.new_images} new images, "
                f"{run.duplicates} duplicates, {run.failed_files} failed in {run.timings.get('total_s', 0):.1f} s; "
                f"day total: {counts}"
            )

    @staticmethod
    def _ensemble(ensemble: str | None, model: str | None) -> Ensemble | None:
        """The ensemble named, the hidden one-model ensemble of the model named, or None (the active one)."""
        if ensemble and model:
            raise CommandError("give --ensemble or --model, not both")
        if model:
            return shadow.one_model_ensemble(shadow.find_model(model))
        return shadow.resolve(ensemble) if ensemble else None

    def _with_bar(self, desc: str, unit: str, run_fn, *args, **kwargs):
        """`run_fn(*args, **kwargs, progress=, total=)` with a progress bar of its batches."""
        bar = self.progress_bar(desc=desc, unit=unit)
        try:
            return run_fn(
                *args, **kwargs, progress=bar.update, total=lambda n: setattr(bar, "total", n) or bar.refresh()
            )
        finally:
            bar.close()

    def _shadow_day(self, day, ens: Ensemble, *, rescore: bool, batch_size: int) -> None:
        run = self._with_bar(
            f"{day} shadow {ens.name}", "image", shadow.run_shadow_day, day, ens, rescore=rescore, batch_size=batch_size
        )
        c = run.counts
        what = f"model {ens.members.get().label}" if shadow.is_one_model(ens) else f"ensemble {ens.name}"
        self.stdout.write(
            f"{day}: shadow run of {what} (threshold {run.threshold:g}): {c.get('scored', 0)} images "
            f"scored, {c.get('flagged', 0)} flagged, {run.failed_files} not scored in "
            f"{run.timings.get('total_s', 0):.1f} s; {c.get('day_total', 0)} shadow scores of the day; "
            f"images, categories and folders unchanged"
        )
