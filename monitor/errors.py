"""The error a job reports to the user (a command exits non-zero with it, a page shows it)."""

from __future__ import annotations


class JobError(Exception):
    """A problem that stops a run before it starts (no active ensemble, bad day, ...)."""
