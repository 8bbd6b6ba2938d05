"""Daily figures follow the sign conventions: positive = attack; FP = genuine flagged."""

import datetime as dt

import pytest

from monitor import daily
from monitor.models import DailyMetric
from tests import factories as f

DAY = dt.date(2026, 11, 20)


@pytest.mark.django_db
def test_it_counts_flags_and_labelled_errors_per_device_and_overall():
    f.image(score=0.9, label="genuine")  # TN
    f.image(score=0.2, label="genuine")  # FP: a real user rejected
    f.image(score=0.1, label="attack", device_name="gate-north")  # TP
    f.image(score=0.8, label="attack", device_name="gate-north")  # FN: a missed attack
    f.image(score=0.3)  # flagged, unlabelled
    f.image(score=0.2, label="genuine", category="low_quality", failed_gates=["blur"])  # gated: not counted
    f.image(score=None)  # no face

    daily.compute_day(DAY)

    overall = DailyMetric.objects.get(day=DAY, device=None)
    assert overall.images == 7
    assert overall.counts == {"live": 2, "attack": 3, "low_quality": 1, "no_face": 1}
    assert (overall.scored, overall.flagged) == (5, 3)
    assert (overall.genuine, overall.fp, overall.attacks, overall.tp) == (2, 1, 2, 1)
    assert overall.threshold == 0.5
    gate = DailyMetric.objects.get(day=DAY, device__name="gate-north")
    assert (gate.images, gate.attacks, gate.tp, gate.genuine) == (2, 2, 1, 0)


@pytest.mark.django_db
def test_it_replaces_a_days_figures_when_computed_again():
    f.image(score=0.9)
    daily.compute_day(DAY)
    f.image(score=0.1)
    daily.compute_day(DAY)
    assert DailyMetric.objects.filter(day=DAY).count() == 2  # all devices + phone-01
    assert DailyMetric.objects.get(day=DAY, device=None).flagged == 1


@pytest.mark.django_db
def test_it_recomputes_every_day_from_the_command():
    from django.core.management import call_command

    f.image(score=0.1, day="2026-11-19")
    f.image(score=0.9, day="2026-11-20")
    call_command("compute_metrics", verbosity=0)
    assert sorted(DailyMetric.objects.filter(device=None).values_list("day", "flagged")) == [
        (dt.date(2026, 11, 19), 1),
        (dt.date(2026, 11, 20), 0),
    ]
