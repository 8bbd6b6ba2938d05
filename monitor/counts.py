"""What a day's counts count, shared by the daily figures (monitor/daily.py) and the slices of
"what changed" (monitor/slices.py, monitor/explain.py), which daily.py computes: here, below
both, so neither imports the other's caller."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Q

from liveness.ensemble import ATTACK, LIVE, SCORED

DECIDED = Q(category__in=list(SCORED), decision__in=[LIVE, ATTACK])
HISTOGRAM_BINS = 10  # liveness.drift.psi's default


def lock_day(day: dt.date) -> None:
    """A transaction lock per day on PostgreSQL; SQLite's IMMEDIATE transactions already serialise."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x4B0A1A, day.toordinal()])
