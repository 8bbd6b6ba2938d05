"""A progress bar for management commands (tqdm on stderr; silent with --verbosity 0)."""

from tqdm import tqdm


def progress_bar(command, total: int | None = None, desc: str = "", unit: str = "file") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=command.verbosity == 0, file=command.stderr._out)
