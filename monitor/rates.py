"""A rate with its counts, Wilson interval and "too few" greying (SPEC section 2), as pages and
the JSON API show it: one presenter each, used by every view."""

from __future__ import annotations

from liveness.metrics import Rate


def pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def interval(r: Rate) -> str:
    return f"[{100 * r.low:.2f}, {100 * r.high:.2f}]"


def for_page(r: Rate, value: float | None = None, digits: int = 2) -> dict:
    """Text for a table cell: the rate (or `value`, a rate computed beside it), interval, counts."""
    return {
        "value": pct(r.value if value is None else value, digits),
        "interval": interval(r),
        "counts": f"{r.k}/{r.n}",
        "too_few": r.too_few,
    }


def for_json(r: Rate) -> dict:
    """Numbers for the API: k of n, the rate (None without images), the interval, the greying."""
    return {"k": r.k, "n": r.n, "rate": r.value if r.n else None, "low": r.low, "high": r.high, "too_few": r.too_few}
