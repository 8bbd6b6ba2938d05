"""The overview's figures: the latest day's KPIs with Wilson intervals, per-day trends with
interval bands and change markers (from the figures, and the admins' recorded changes:
EnsembleEvent), from DailyMetric rows (SPEC section 5) in a fixed number of queries whatever the
range. `cached_figures` keeps them in Django's cache under a fingerprint of the rows they come
from (`data_version`: one query), so a page view recomputes them only after a day's figures were
recomputed or an ensemble event was recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Max, Q, Subquery
from django.utils import timezone
from django.utils.html import json_script

from liveness.metrics import Rate, wilson

from . import attempts
from .models import CATEGORIES, DailyMetric, EnsembleEvent
from .rates import pct

# (key, our name, ISO/IEC 30107-3 name, numerator field, denominator field, what it counts)
RATES = [
    ("flag_rate", "Flag rate", "", "flagged", "scored", "attack decisions / decided images"),
    ("fpr", "FPR", "BPCER", "fp", "genuine", "genuine flagged / labelled genuine"),
    ("tpr", "TPR", "1 − APCER, attack types pooled", "tp", "attacks", "attacks flagged / labelled attacks"),
]


def _kpi(rate: Rate, name: str, iso: str, meaning: str) -> dict:
    return {
        "name": name,
        "iso": iso,
        "meaning": meaning,
        "k": rate.k,
        "n": rate.n,
        "value": pct(rate.value, 1) if rate.n else "—",
        "counts": f"{rate.k} / {rate.n}",
        "interval": f"{pct(rate.low, 1)} – {pct(rate.high, 1)}" if rate.n else "",
        "too_few": rate.too_few,
    }


def _versions_change(before: dict, after: dict) -> str:
    names = sorted(set(before) | set(after))
    parts = [f"{n}: {before.get(n, 'none')} → {after.get(n, 'none')}" for n in names if before.get(n) != after.get(n)]
    return "models " + "; ".join(parts)


def _event_text(ev: EnsembleEvent) -> str:
    """ "threshold 0.49 → 0.55: <note> (by <user>)" or "ensemble demo activated: <note> (by <user>)"."""
    if ev.kind == EnsembleEvent.THRESHOLD:
        text = f"threshold {ev.old_threshold:g} → {ev.new_threshold:g}"
    else:
        text = f"ensemble {ev.ensemble.name} activated"
    if ev.note:
        text += f": {ev.note}"
    if ev.user is not None:
        text += f" (by {ev.user.get_username()})"
    return text


def _events(start: dt.date, end: dt.date, ensemble_ids: set[int]) -> list[EnsembleEvent]:
    """Activations, and threshold changes of the ensembles the chart shows, on the local days
    start .. end; one query."""
    tz = timezone.get_current_timezone()
    since = dt.datetime.combine(start, dt.time.min, tzinfo=tz)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return list(
        EnsembleEvent.objects.filter(created_at__gte=since, created_at__lt=until)
        .filter(Q(kind=EnsembleEvent.ACTIVATED) | Q(kind=EnsembleEvent.THRESHOLD, ensemble_id__in=ensemble_ids))
        .select_related("ensemble", "user")
        .order_by("created_at", "id")
    )


def _markers(chosen: list[DailyMetric], events: list[EnsembleEvent] = ()) -> list[dict]:
    """Days where the threshold or the model versions differ from the previous day that had them
    (days with no scored image carry neither and are skipped, not counted as a change), merged
    with the recorded ensemble events on the local day of each: one marker per day, its texts
    joined with "; " (a figures' change that an event of the day already says is left out)."""
    per_day: dict[str, list[str]] = {}
    for ev in events:
        per_day.setdefault(timezone.localdate(ev.created_at).isoformat(), []).append(_event_text(ev))
    last_threshold, last_versions, last_ensemble = None, None, None
    for m in chosen:
        changes = []
        if m.ensemble_id is not None:
            if last_ensemble is not None and m.ensemble_id != last_ensemble.id:
                changes.append(f"ensemble {last_ensemble.name} → {m.ensemble.name}")
            last_ensemble = m.ensemble
        if m.threshold is not None:
            if last_threshold is not None and m.threshold != last_threshold:
                changes.append(f"threshold {last_threshold:g} → {m.threshold:g}")
            last_threshold = m.threshold
        if m.model_versions:
            if last_versions is not None and m.model_versions != last_versions:
                changes.append(_versions_change(last_versions, m.model_versions))
            last_versions = m.model_versions
        if m.mixed:
            changes.append(f"decided by {m.decided_text}")
        day = m.day.isoformat()
        told = per_day.get(day, [])
        changes = [c for c in changes if not any(t.startswith(c + ":") or t.startswith(c + " ") for t in told)]
        if changes:
            per_day[day] = changes + told
    return [{"day": day, "text": "; ".join(texts)} for day, texts in sorted(per_day.items())]


def _trend(by_day: dict[dt.date, DailyMetric], start: dt.date, end: dt.date, counted: str) -> dict:
    """Per-day series over every day of the range; a day without data (or a rate without a
    denominator) is null, so the charts show a gap, not a zero."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    shown = {d: m.figures(counted) for d, m in by_day.items()}
    rates = {}
    for key, name, iso, num, den, _ in RATES:
        series = {"name": name, "iso": iso, "k": [], "n": [], "value": [], "low": [], "high": [], "too_few": []}
        for day in days:
            m = shown.get(day)
            n = getattr(m, den) if m else 0
            if not n:
                for field in ("k", "n", "value", "low", "high", "too_few"):
                    series[field].append(None)
                continue
            r = wilson(getattr(m, num), n)
            series["k"].append(r.k)
            series["n"].append(r.n)
            series["value"].append(r.value)
            series["low"].append(r.low)
            series["high"].append(r.high)
            series["too_few"].append(r.too_few)
        rates[key] = series
    counts = {c: [by_day[d].counts.get(c, 0) if d in by_day else None for d in days] for c in CATEGORIES}
    return {
        "days": [d.isoformat() for d in days],
        "counted": DailyMetric.COUNTED[counted],
        "rates": rates,
        "counts": counts,
        "images": [by_day[d].images if d in by_day else None for d in days],
        "decided": [by_day[d].decided_text if d in by_day else None for d in days],
    }


def data_version() -> tuple:
    """A fingerprint of the rows the figures come from, in one cheap query: the DailyMetric rows
    (a day's recompute deletes and re-creates them with new ids, so the sum of the ids changes
    even when two days recomputed at once commit out of order and the count and largest id stay;
    `computed_at` changes on any save) and the ensemble events (added, never edited). The active
    ensemble and the device are part of the cache key; ids are never reused (AUTOINCREMENT on
    SQLite, sequences on PostgreSQL). It lives in the database, so a day recomputed by a worker
    process shows at once in every web process, whatever the cache. Not covered: a user renamed
    in the admin (the "by" of the markers) shows after KOALA_OVERVIEW_CACHE_SECONDS at most."""
    q = connection.ops.quote_name
    dm, ev = q(DailyMetric._meta.db_table), q(EnsembleEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT COUNT(*) FROM {dm}), (SELECT MAX(id) FROM {dm}), (SELECT SUM(id) FROM {dm}), "
            f"(SELECT MAX(computed_at) FROM {dm}), "
            f"(SELECT COUNT(*) FROM {ev}), (SELECT MAX(id) FROM {ev})"
        )
        return tuple(cursor.fetchone())


def figures(range_days: int, device_id: int | None, active_id: int | None, counted: str = DailyMetric.GATED) -> dict:
    """The range's figures from the DailyMetric rows: the latest day's KPIs, the trend series
    with their markers (and their JSON for the charts). Plain values, so they can be cached.
    Each day's row covers every production decision of the day, whichever ensemble made it."""
    # the range ends on the latest day with figures for any device, so a silent device shows gaps
    end = DailyMetric.objects.aggregate(last=Max("day"))["last"]
    out = {
        "latest_day": end,
        "start": None,
        "kpi_row": None,
        "kpi_counts": [],
        "kpis": None,
        "users": None,
        "markers": [],
        "data": None,
        "trend_json": "",
    }
    if end is None:
        return out
    start = end - dt.timedelta(days=range_days - 1)
    scope = DailyMetric.objects.filter(device_id=device_id) if device_id else DailyMetric.objects.filter(device=None)
    # the last day before the range with a threshold, to tell whether the first day changed it
    before = scope.filter(day__lt=start).exclude(threshold=None).order_by("-day").values("day")[:1]
    chosen = list(
        scope.filter(Q(day__gte=start, day__lte=end) | Q(day=Subquery(before)))
        .select_related("ensemble")
        .order_by("day")
    )
    shown = {m.ensemble_id for m in chosen if m.ensemble_id is not None} | ({active_id} - {None})
    events = _events(start, end, shown)
    markers = [mk for mk in _markers(chosen, events) if mk["day"] >= start.isoformat()]
    by_day = {m.day: m for m in chosen if m.day >= start}
    trend = _trend(by_day, start, end, counted)
    trend["markers"] = markers
    out.update(start=start, markers=markers, data=trend, trend_json=json_script(trend, "trend-data"))
    if by_day:
        m = by_day[max(by_day)]
        out["kpi_row"] = _kpi_row(m)
        out["kpi_counts"] = [(c, m.counts.get(c, 0)) for c in CATEGORIES]
        shown_figures = m.figures(counted)
        out["kpis"] = [
            _kpi(wilson(getattr(shown_figures, num), getattr(shown_figures, den)), name, iso, meaning)
            for _, name, iso, num, den, meaning in RATES
        ]
        out["users"] = _user_card(m)
    return out


def _user_card(m: DailyMetric) -> dict | None:
    """The latest day per user (attempt groups, monitor/attempts.py), over every decided image."""
    u = attempts.per_user(m)
    if not u["users"]:
        return None
    rows = [("rejected", "rejected at least once"), ("always_rejected", "rejected on every attempt")]
    if u["genuine_users"]:
        rows += [("genuine_rejected", "genuine users rejected at least once")]
        rows += [("genuine_always_rejected", "genuine users rejected on every attempt")]
    return {
        "users": u["users"],
        "genuine_users": u["genuine_users"],
        "attempts_per_user": f"{u['attempts_per_user']:.2f}",
        "too_few": u["rejected"].too_few,
        "rates": [dict(_kpi(u[key], name, "", ""), key=key) for key, name in rows],
    }


def _kpi_row(m: DailyMetric) -> dict:
    """The latest day's heading: its images and who decided them at which threshold."""
    return {
        "day": m.day,
        "images": m.images,
        "ensemble": {"name": m.ensemble.name} if m.ensemble_id is not None else None,
        "thresholds": m.thresholds,
        "mixed": m.mixed,
        "decided": m.decided_text,
    }


def cached_figures(range_days: int, device_id: int | None, active_id: int | None, counted: str) -> dict:
    """`figures`, from Django's cache while the rows behind them are unchanged (`data_version`)."""
    seconds = settings.KOALA_OVERVIEW_CACHE_SECONDS
    if seconds <= 0:
        return figures(range_days, device_id, active_id, counted)
    scope = (range_days, device_id, active_id, counted, timezone.get_current_timezone_name(), data_version())
    key = "overview-figures:" + hashlib.sha256(repr(scope).encode()).hexdigest()
    found = cache.get(key)
    if found is None:
        found = figures(range_days, device_id, active_id, counted)
        cache.set(key, found, seconds)
    return found
