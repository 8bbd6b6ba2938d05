"""Daily figures follow the sign conventions: positive = attack; FP = genuine flagged."""

import datetime as dt

import pytest

from monitor import daily, labels
from monitor.models import DailyMetric, LabelEvent
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
    # counted over all scored images, the low-quality genuine flagged at 0.2 is one more FP
    every = overall.figures(DailyMetric.ALL)
    assert (every.scored, every.flagged, every.genuine, every.fp, every.attacks, every.tp) == (6, 4, 3, 2, 2, 1)
    assert every.counted_text.startswith("all scored")


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


@pytest.mark.django_db
def test_it_counts_attacks_per_type_for_apcer_and_acer():
    for score in (0.1, 0.2, 0.3, 0.9):  # print: 3 of 4 flagged, APCER 1/4
        f.image(score=score, label="attack", attack_type="print")
    f.image(score=0.1, label="attack", attack_type="replay")  # replay: APCER 1/2
    f.image(score=0.7, label="attack", attack_type="replay", device_name="gate-north")
    f.image(score=0.95, label="attack")  # no type: "unknown", APCER 1/1
    f.image(score=0.6, label="attack", attack_type="mask", category="low_quality")  # gated: not counted
    for score in (0.2, 0.8, 0.9, 0.9):  # genuine: FPR = BPCER = 1/4
        f.image(score=score, label="genuine")

    daily.compute_day(DAY)

    overall = DailyMetric.objects.get(day=DAY, device=None)
    assert overall.attack_types == {
        "print": {"attacks": 4, "tp": 3},
        "replay": {"attacks": 2, "tp": 1},
        "unknown": {"attacks": 1, "tp": 0},
    }
    apcer = {name: (r.k, r.n) for name, r in overall.apcer_per_type.items()}
    assert apcer == {"print": (1, 4), "replay": (1, 2), "unknown": (1, 1)}
    # untyped attacks are no PAI species: the worst named type (replay, 1/2) is the reported APCER
    assert overall.apcer[0] == "replay" and overall.apcer[1].value == 0.5
    assert overall.acer == pytest.approx((0.5 + 0.25) / 2)
    assert overall.figures().acer_too_few  # 2 replay attacks, 4 genuine: too few to rely on
    gate = DailyMetric.objects.get(day=DAY, device__name="gate-north")
    assert gate.attack_types == {"replay": {"attacks": 1, "tp": 0}}
    assert gate.acer is None  # no labelled genuine on that device


@pytest.mark.django_db
def test_it_stores_the_days_score_histogram_with_the_bins_of_score_histogram():
    import numpy as np

    from liveness.drift import score_histogram

    rng = np.random.default_rng(7)
    scores = [*rng.uniform(0, 1, 40).round(3), 0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.9, 0.99, 1.0, 0.30000000000000004]
    for s in scores:
        f.image(score=float(s))
    f.image(score=0.05, category="low_quality", failed_gates=["blur"])  # not scored: not in the histogram
    f.image(score=None)

    daily.compute_day(DAY)

    overall = DailyMetric.objects.get(day=DAY, device=None)
    assert overall.histogram == score_histogram(scores).tolist()
    assert sum(overall.histogram) == overall.scored == len(scores)
    assert overall.histogram[2:4] == [
        sum(1 for s in scores if 0.2 <= s < np.linspace(0, 1, 11)[3]),
        sum(1 for s in scores if np.linspace(0, 1, 11)[3] <= s < 0.4),
    ]


@pytest.mark.django_db
def test_it_computes_a_day_in_a_number_of_queries_that_does_not_grow_with_the_day():
    """Figures, attempt groups and the slices of "what changed" together: a day ten times the size
    costs at most one more query (one more INSERT batch of slice rows: their number follows the
    values seen, not the images)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def day_of(day, n):
        for i in range(n):
            f.image(
                day=day, score=i / n, device_name=f"dev-{i % 6}", label="attack" if i % 3 else "", attack_type="print"
            )
        with CaptureQueriesContext(connection) as queries:
            daily.compute_day(dt.date.fromisoformat(day))
        return len(queries)

    small, large = day_of("2026-11-20", 60), day_of("2026-11-21", 600)
    assert small <= large <= small + 1 and large <= 25
    assert DailyMetric.objects.filter(day=DAY).count() == 7


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_recomputes_the_day_when_a_label_changes():
    flagged = f.image(score=0.2)  # flagged, unlabelled
    f.image(score=0.9, label="genuine")
    daily.compute_day(DAY)
    assert DailyMetric.objects.get(day=DAY, device=None).fp == 0

    # a real user wrongly rejected; the figures follow on commit
    labels.set_labels([flagged.pk], "genuine", user=None, source=LabelEvent.LABELLING)

    overall = DailyMetric.objects.get(day=DAY, device=None)
    assert (overall.genuine, overall.fp) == (2, 1)
