"""What the benchmark commands share: timing one run and writing its JSON result."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_and_write(bench: Callable[[], dict], report: Callable[[dict], None], out: str | Path) -> int:
    """Run `bench`, print its `report`, write the result (with its total time) as JSON to `out`
    (relative to the repository root)."""
    t0 = time.perf_counter()
    result = bench()
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    report(result)
    out = Path(out)
    if not out.is_absolute():
        out = ROOT / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(f"\nwrote {shown} (total {result['total_seconds']:.0f} s)")
    return 0


def close_django_connections() -> None:
    """Close Django's database connections, if Django is set up (a database is dropped without them)."""
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: BLE001 - django may not be set up
        pass
