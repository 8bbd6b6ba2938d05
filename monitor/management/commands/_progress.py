"""A base for commands with a progress bar (tqdm on stderr; silent with --verbosity 0)."""

from django.core.management.base import BaseCommand
from tqdm import tqdm


class ProgressCommand(BaseCommand):
    verbosity = 1

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        return super().execute(*args, **options)

    def progress_bar(self, total: int | None = None, desc: str = "", unit: str = "file") -> tqdm:
        return tqdm(total=total, desc=desc, unit=unit, disable=self.verbosity == 0, file=self.stderr._out)
