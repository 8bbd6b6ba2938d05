"""Alert rules (SPEC section 5), evaluated per day once its figures are computed (monitor/daily.py).

Each rule gives a verdict per device and for all devices (device = NULL) on the day's DailyMetric
row, which covers every production decision of the day whichever ensemble made it, counted on the
images that passed the quality gates. Trailing windows use the days mostly decided by the same
ensemble as the day (a new model starts without a baseline).

- `flag_rate`: flagged / scored above its limit. The limit is the absolute bound
  KOALA_ALERT_MAX_FLAG_RATE when an admin sets one, else the control limit: mean + 3 sigma of the
  daily flag rates over the trailing KOALA_ALERT_WINDOW_DAYS (14) days with enough images, sigma
  floored at the day's binomial sigma sqrt(p (1 - p) / n), p = max(mean, 1 / n), so a perfectly
  flat history does not alert on noise. Days on which the rule fired (spans of its alerts) stay
  out of the baseline unless fewer than KOALA_ALERT_MIN_HISTORY_DAYS would remain, so a spike does
  not lift its own limit, and a lasting shift becomes the new normal after about a week. Needs KOALA_ALERT_MIN_COUNT (100) scored images that day and
  on each counted history day, and KOALA_ALERT_MIN_HISTORY_DAYS (7) such history days.
- `fpr`: labelled genuine flagged / labelled genuine, likewise (KOALA_ALERT_MAX_FPR,
  KOALA_ALERT_MIN_GENUINE = 30 genuine images).
- `psi`: PSI of the day's score histogram against the pooled histograms of the trailing window
  (without fired days, likewise) above KOALA_ALERT_MAX_PSI (0.2) and above what sampling alone
  reaches at the day's and the window's counts as rarely as a rate passes its sigma limit
  (`liveness.drift.psi_by_chance`); needs MIN_COUNT scored images on both sides and MIN_HISTORY days.
- `silent` (devices only): no image on the day from a device that normally reports: it reported on
  at least KOALA_ALERT_SILENT_MIN_DAYS (8) of the trailing 14 days, and on the same weekday a week
  before (so weekday-only devices do not alert every weekend).

A verdict is fired / fine / none (too few images, no baseline). An active alert (open or
acknowledged) is unique per (rule, device). It closes once the verdict has been *fine* on
KOALA_ALERT_CLEAR_DAYS (2) days with a verdict in a row after the last day it fired; days
without a verdict (too few images) are skipped: they neither break nor extend the run. Acknowledging keeps it listed until then. Verdicts are recomputed from the stored
figures, so evaluating a day again changes nothing (no duplicate alert, no second email).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from liveness.drift import psi_by_chance, psi_from_counts

from . import alert_email
from .models import Alert, DailyMetric, Device
from .rates import pct


@dataclass(frozen=True)
class Config:
    window: int
    min_history: int
    sigmas: float
    min_count: int
    min_genuine: int
    max_flag_rate: float | None
    max_fpr: float | None
    max_psi: float
    silent_min_days: int
    clear_days: int

    @classmethod
    def from_settings(cls) -> Config:
        s = settings
        return cls(
            window=getattr(s, "KOALA_ALERT_WINDOW_DAYS", 14),
            min_history=getattr(s, "KOALA_ALERT_MIN_HISTORY_DAYS", 7),
            sigmas=getattr(s, "KOALA_ALERT_SIGMAS", 3.0),
            min_count=getattr(s, "KOALA_ALERT_MIN_COUNT", 100),
            min_genuine=getattr(s, "KOALA_ALERT_MIN_GENUINE", 30),
            max_flag_rate=getattr(s, "KOALA_ALERT_MAX_FLAG_RATE", None),
            max_fpr=getattr(s, "KOALA_ALERT_MAX_FPR", None),
            max_psi=getattr(s, "KOALA_ALERT_MAX_PSI", 0.2),
            silent_min_days=getattr(s, "KOALA_ALERT_SILENT_MIN_DAYS", 8),
            clear_days=max(1, getattr(s, "KOALA_ALERT_CLEAR_DAYS", 2)),
        )


@dataclass(frozen=True)
class Verdict:
    fired: bool | None  # True: above the limit; False: fine; None: no verdict (too few images, no baseline)
    value: float = 0.0
    limit: float = 0.0
    count: int = 0
    ensemble_id: int | None = None
    text: str = ""


NO_VERDICT = Verdict(None)
MAX_CLEAR_LOOKBACK = 60  # days searched back for the good days that close an alert


class History:
    """The DailyMetric rows every verdict of one evaluation needs, read in one query:
    {device_id: {day: row}}, device_id None = all devices. A row holds every production decision
    of its day, whichever ensemble made it (monitor/daily.py)."""

    def __init__(self, day: dt.date, cfg: Config, since: dt.date | None = None):
        self.cfg = cfg
        start = day - dt.timedelta(days=cfg.window + cfg.clear_days - 1)
        if since is not None:
            start = min(start, since - dt.timedelta(days=cfg.window))
        self.rows: dict[int | None, dict[dt.date, DailyMetric]] = {}
        for m in DailyMetric.objects.filter(day__gte=start, day__lte=day).defer("model_versions", "counts"):
            self.rows.setdefault(m.device_id, {})[m.day] = m
        # days on which a rule fired (its alerts' spans) stay out of that rule's baseline
        self.fired: dict[tuple[str, int | None], set[dt.date]] = {}
        spans = Alert.objects.filter(last_day__gte=start, day__lte=day).values_list(
            "rule", "device_id", "day", "last_day"
        )
        for rule, device_id, first, last in spans:
            days = self.fired.setdefault((rule, device_id), set())
            days.update(first + dt.timedelta(days=i) for i in range((last - first).days + 1))

    def chosen(self, device_id: int | None, day: dt.date) -> DailyMetric | None:
        return self.rows.get(device_id, {}).get(day)

    def window(self, device_id: int | None, day: dt.date, ensemble_id: int | None) -> list[DailyMetric]:
        """The trailing days mostly decided by the same ensemble (a new model starts without a baseline)."""
        rows = self.rows.get(device_id, {})
        found = (rows.get(day - dt.timedelta(days=back)) for back in range(1, self.cfg.window + 1))
        return [m for m in found if m is not None and m.ensemble_id == ensemble_id]

    def baseline(self, rule: str, device_id: int | None, day: dt.date, ensemble_id: int | None, usable) -> list:
        """The trailing window's usable rows without the days the rule fired; the whole window when
        fewer than KOALA_ALERT_MIN_HISTORY_DAYS remain (a lasting shift becomes the new normal)."""
        rows = [m for m in self.window(device_id, day, ensemble_id) if usable(m)]
        fired = self.fired.get((rule, device_id), set())
        clean = [m for m in rows if m.day not in fired]
        return clean if len(clean) >= self.cfg.min_history else rows

    def reported(self, device_id: int | None, day: dt.date) -> int:
        m = self.chosen(device_id, day)
        return m.images if m else 0


# --- rules -------------------------------------------------------------------------------------------

# rule -> (numerator, denominator, minimum count setting, absolute bound setting, name)
RATE_RULES = {
    Alert.FLAG_RATE: ("flagged", "scored", "min_count", "max_flag_rate", "flag rate"),
    Alert.FPR: ("fp", "genuine", "min_genuine", "max_fpr", "FPR"),
}


def _rate_verdict(rule: str, h: History, device_id: int | None, day: dt.date) -> Verdict:
    num, den, min_attr, bound_attr, name = RATE_RULES[rule]
    cfg = h.cfg
    m = h.chosen(device_id, day)
    if m is None:
        return NO_VERDICT
    k, n = getattr(m, num), getattr(m, den)
    minimum = max(1, getattr(cfg, min_attr))
    if n < minimum:
        return Verdict(None, count=n, ensemble_id=m.ensemble_id)
    value = k / n
    bound = getattr(cfg, bound_attr)
    if bound is not None:
        limit, basis = bound, "absolute bound"
    else:
        rows = h.baseline(rule, device_id, day, m.ensemble_id, lambda x: getattr(x, den) >= minimum)
        past = [getattr(x, num) / getattr(x, den) for x in rows]
        if len(past) < max(1, cfg.min_history):
            return Verdict(None, value=value, count=n, ensemble_id=m.ensemble_id)
        mean = statistics.fmean(past)
        sd = statistics.stdev(past) if len(past) > 1 else 0.0
        p = max(mean, 1 / n)
        sigma = max(sd, math.sqrt(p * (1 - p) / n))
        limit = mean + cfg.sigmas * sigma
        basis = f"{len(past)}-day mean {pct(mean)} + {cfg.sigmas:g} sigma"
    fired = value > limit
    text = f"{name} {pct(value)} ({k} / {n}) {'above' if fired else 'within'} its limit {pct(limit)} ({basis})"
    if m.mixed:
        text += f"; the day was decided by {m.decided_text}"
    return Verdict(fired, value, limit, n, m.ensemble_id, text)


def _psi_verdict(h: History, device_id: int | None, day: dt.date) -> Verdict:
    cfg = h.cfg
    m = h.chosen(device_id, day)
    if m is None or not m.histogram:
        return NO_VERDICT
    n = sum(m.histogram)
    if n < max(1, cfg.min_count):
        return Verdict(None, count=n, ensemble_id=m.ensemble_id)
    usable = lambda x: len(x.histogram) == len(m.histogram) and sum(x.histogram) > 0  # noqa: E731
    past = [x.histogram for x in h.baseline(Alert.PSI, device_id, day, m.ensemble_id, usable)]
    pooled = np.sum(past, axis=0) if past else np.zeros(len(m.histogram))
    if len(past) < max(1, cfg.min_history) or pooled.sum() < cfg.min_count:
        return Verdict(None, count=n, ensemble_id=m.ensemble_id)
    value = psi_from_counts(pooled, m.histogram)
    limit, basis = cfg.max_psi, f"{cfg.max_psi:g}"
    if value > limit:  # past the bound: is it more than these counts give by chance?
        tail = 0.5 * math.erfc(cfg.sigmas / math.sqrt(2))  # as often as a rate passes its sigma limit
        chance = psi_by_chance(pooled, n, tail)
        if chance > limit:
            limit, basis = chance, f"{chance:.3f}, what chance reaches one day in {round(1 / tail):,} at these counts"
    fired = value > limit
    text = (
        f"score distribution PSI {value:.3f} against the previous {len(past)} days "
        f"({int(pooled.sum())} scores; {n} today) {'above' if fired else 'within'} {basis}"
    )
    return Verdict(fired, value, limit, n, m.ensemble_id, text)


def _silent_verdict(h: History, device_id: int | None, day: dt.date) -> Verdict:
    cfg = h.cfg
    if device_id is None:
        return NO_VERDICT
    images = h.reported(device_id, day)
    if images:
        return Verdict(False, images, 0, images, None, f"{images} images")
    days = sum(1 for back in range(1, cfg.window + 1) if h.reported(device_id, day - dt.timedelta(days=back)))
    same_weekday = cfg.window < 7 or h.reported(device_id, day - dt.timedelta(days=7)) > 0
    if days < cfg.silent_min_days or not same_weekday:
        return NO_VERDICT
    return Verdict(True, 0, days, 0, None, f"no images; it reported on {days} of the previous {cfg.window} days")


RULES: dict[str, Callable[[History, int | None, dt.date], Verdict]] = {
    Alert.FLAG_RATE: lambda h, d, day: _rate_verdict(Alert.FLAG_RATE, h, d, day),
    Alert.FPR: lambda h, d, day: _rate_verdict(Alert.FPR, h, d, day),
    Alert.PSI: _psi_verdict,
    Alert.SILENT: _silent_verdict,
}


# --- evaluation --------------------------------------------------------------------------------------


def evaluate_day(day: dt.date | str) -> list[Alert]:
    """Apply every rule to `day` for all devices and each device; open, update and close alerts.

    Call it after monitor.daily.compute_day(day). Idempotent. Returns the alerts it opened (an email
    lists them when email is configured, see `monitor.alert_email`).
    """
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    cfg = Config.from_settings()
    active = {(a.rule, a.device_id): a for a in Alert.objects.active()}
    since = min((a.last_day for a in active.values() if a.last_day < day), default=None)
    h = History(day, cfg, since=max(since, day - dt.timedelta(days=MAX_CLEAR_LOOKBACK)) if since else None)
    scopes = {None} | set(h.rows) | {device_id for _, device_id in active}
    names = dict(Device.objects.filter(pk__in=[s for s in scopes if s is not None]).values_list("id", "name"))
    opened = []
    for device_id in sorted(scopes, key=lambda d: (d is not None, names.get(d, ""))):
        where = names.get(device_id, "all devices") if device_id is not None else "all devices"
        for rule, check in RULES.items():
            if rule == Alert.SILENT and device_id is None:
                continue
            verdict = check(h, device_id, day)
            alert = active.get((rule, device_id))
            message = f"{day.isoformat()}, {where}: {verdict.text}"[:500]
            if verdict.fired:
                if alert is None:
                    new = _open(rule, device_id, day, verdict, message)
                    if new is not None:
                        opened.append(new)
                elif alert.day <= day and day >= alert.last_day:
                    Alert.objects.filter(pk=alert.pk).update(
                        last_day=day, value=verdict.value, limit=verdict.limit, count=verdict.count, message=message
                    )
            elif alert is not None and verdict.fired is False:
                if day > alert.last_day and _cleared(check, h, device_id, day, alert.last_day):
                    _close(alert, day)
                elif day == alert.day == alert.last_day:
                    _close(alert, day)  # the only day it fired no longer does (late files, new labels)
    if opened:
        alert_email.send(day, opened)
    return opened


def _cleared(check, h: History, device_id: int | None, day: dt.date, last_fired: dt.date) -> bool:
    """The verdict was fine on `day` and on the KOALA_ALERT_CLEAR_DAYS - 1 latest days with a
    verdict before it, all after the alert last fired; days without a verdict are skipped."""
    needed = h.cfg.clear_days - 1
    back = day - dt.timedelta(days=1)
    while needed > 0 and back > last_fired and day - back <= dt.timedelta(days=MAX_CLEAR_LOOKBACK):
        fired = check(h, device_id, back).fired
        if fired:
            return False
        needed -= fired is False
        back -= dt.timedelta(days=1)
    return needed == 0


def _open(rule: str, device_id: int | None, day: dt.date, verdict: Verdict, message: str) -> Alert | None:
    """A new alert, unless a closed one already covered this day (re-evaluating an old day)."""
    covered = Alert.objects.filter(rule=rule, device_id=device_id, day__lte=day, closed_day__gte=day)
    if covered.exists():
        return None
    # Re-arm delay: the same rule firing again shortly after its alert closed re-opens that alert
    # (listed again, no new email), so a value hovering at its limit does not mail every few days.
    recent = Alert.objects.filter(
        rule=rule,
        device_id=device_id,
        status=Alert.CLOSED,
        closed_day__lt=day,
        closed_day__gte=day - dt.timedelta(days=settings.KOALA_ALERT_REARM_DAYS),
    ).order_by("-closed_day")
    again = recent.first()
    if again is not None:
        with contextlib.suppress(IntegrityError), transaction.atomic():
            Alert.objects.filter(pk=again.pk).update(
                status=Alert.OPEN,
                closed_day=None,
                closed_at=None,
                last_day=day,
                value=verdict.value,
                limit=verdict.limit,
                count=verdict.count,
                message=message,
            )
        return None
    try:
        with transaction.atomic():
            return Alert.objects.create(
                rule=rule,
                device_id=device_id,
                ensemble_id=verdict.ensemble_id,
                day=day,
                last_day=day,
                value=verdict.value,
                limit=verdict.limit,
                count=verdict.count,
                message=message,
            )
    except IntegrityError:  # another worker opened it meanwhile
        return None


def _close(alert: Alert, day: dt.date) -> None:
    Alert.objects.filter(pk=alert.pk, status__in=Alert.ACTIVE).update(
        status=Alert.CLOSED, closed_day=day, closed_at=timezone.now()
    )


# --- email -------------------------------------------------------------------------------------------


# --- pages -------------------------------------------------------------------------------------------


def open_alerts() -> list[Alert]:
    """Active alerts (open or acknowledged), newest first: the overview's `open_alerts`."""
    return list(
        Alert.objects.active()
        .select_related("device", "ensemble", "acknowledged_by")
        .order_by("-status", "-last_day", "rule", "device__name")  # open before acknowledged
    )


def acknowledge(alert: Alert, user, note: str = "") -> bool:
    """Mark an active alert acknowledged (it stays listed until it clears); an acknowledged one
    keeps who acknowledged it and only takes a new note. False when it is already closed."""
    note = note.strip()
    if alert.status == Alert.OPEN:
        done = Alert.objects.filter(pk=alert.pk, status=Alert.OPEN).update(
            status=Alert.ACKNOWLEDGED, acknowledged_by=user, acknowledged_at=timezone.now(), note=note
        )
        if done:
            return True
        alert.refresh_from_db()
    if alert.status == Alert.ACKNOWLEDGED:
        if note:
            Alert.objects.filter(pk=alert.pk).update(note=note)
        return True
    return False
