"""Labels, the audit trail and the review queue (monitor/labels.py, issue 5)."""

import datetime as dt
import hashlib

import pytest
from django.contrib import admin
from django.utils import timezone

from monitor import label_csv, labels, review_queue, tasks
from monitor.labels import LabelError
from monitor.models import AttackType, DailyMetric, Image, LabelEvent
from tests import factories as f


@pytest.fixture
def recomputes(monkeypatch):
    """The days handed to tasks.recompute_day.delay (not run)."""
    calls = []
    monkeypatch.setattr(tasks.recompute_day, "delay", lambda day: calls.append(day))
    return calls


def bulk_images(n: int, days: list[str], score: float = 0.3) -> list[int]:
    """n image rows spread over `days`, created with one bulk insert (the fields of tests/factories.py)."""
    ens, dev = f.ensemble(), f.device()
    rows = []
    for i in range(n):
        day = dt.date.fromisoformat(days[i % len(days)])
        rows.append(
            Image(
                sha256=hashlib.sha256(f"bulk{i}".encode()).hexdigest(),
                path=f"{day.isoformat()}/{dev.name}/bulk{i}.jpg",
                day=day,
                device=dev,
                file_size=1000,
                score=score,
                scores={"m1": score, "m2": score},
                disagreement=0.0,
                decision="attack" if score <= ens.threshold else "live",
                category="attack" if score <= ens.threshold else "live",
                ensemble=ens,
                threshold=ens.threshold,
            )
        )
    Image.objects.bulk_create(rows, batch_size=2000)
    return list(Image.objects.order_by("pk").values_list("pk", flat=True))


# --- set_labels ---------------------------------------------------------------------------------


def test_it_writes_one_audit_row_per_changed_image(personas, recomputes, django_capture_on_commit_callbacks):
    a, b = f.image(score=0.2), f.image(score=0.3, day="2026-11-21")
    same = f.image(score=0.4, label="attack", attack_type="print")
    with django_capture_on_commit_callbacks(execute=True):
        n = labels.set_labels(
            [a.pk, b.pk, same.pk, a.pk], "attack", "print", user=personas["admin"], source="labelling", note="batch 7"
        )
    assert n == 2
    events = LabelEvent.objects.order_by("image_id")
    assert [(e.image_id, e.old_label, e.new_label, e.new_attack_type) for e in events] == [
        (a.pk, "", "attack", "print"),
        (b.pk, "", "attack", "print"),
    ]
    assert {(e.user, e.source, e.note) for e in events} == {(personas["admin"], "labelling", "batch 7")}
    assert set(Image.objects.values_list("label", "attack_type")) == {("attack", "print")}
    assert sorted(recomputes) == ["2026-11-20", "2026-11-21"]


def test_it_changes_the_type_alone_and_records_the_old_type(personas, recomputes):
    im = f.image(score=0.2, label="attack", attack_type="print")
    assert labels.set_labels([im.pk], "attack", "replay", user=personas["admin"], source="labelling") == 1
    e = LabelEvent.objects.get()
    assert (e.old_label, e.old_attack_type, e.new_label, e.new_attack_type) == ("attack", "print", "attack", "replay")


def test_it_labels_10k_images_with_one_recompute_per_day(
    personas, recomputes, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    ids = bulk_images(10_000, ["2026-11-20", "2026-11-21"])
    assert len(ids) == 10_000
    # batched: a read and an UPDATE per 1000 images and the audit rows in bulk inserts (about 100
    # rows per INSERT on SQLite, whose statements take at most 999 parameters), not a save per image
    with django_assert_max_num_queries(200), django_capture_on_commit_callbacks(execute=True):
        n = labels.set_labels(ids, "genuine", user=personas["admin"], source="labelling")
    assert n == 10_000
    assert sorted(recomputes) == ["2026-11-20", "2026-11-21"]
    assert LabelEvent.objects.count() == 10_000
    assert Image.objects.filter(label="genuine").count() == 10_000


def test_it_schedules_nothing_when_no_label_changes(personas, recomputes, django_capture_on_commit_callbacks):
    im = f.image(label="genuine")
    with django_capture_on_commit_callbacks(execute=True):
        assert labels.set_labels([im.pk], "genuine", user=personas["admin"], source="labelling") == 0
    assert recomputes == []
    assert not LabelEvent.objects.exists()


def test_it_drops_the_attack_type_of_a_genuine_label(personas, recomputes):
    im = f.image(score=0.2, label="attack", attack_type="mask")
    labels.set_labels([im.pk], "genuine", "mask", user=personas["admin"], source="labelling")
    im.refresh_from_db()
    assert (im.label, im.attack_type) == ("genuine", "")


@pytest.mark.parametrize(
    "label, attack_type, source, message",
    [
        ("live", "", "labelling", "unknown label"),
        ("", "", "labelling", "unknown label"),
        ("attack", "paper", "labelling", "unknown attack type 'paper'"),
        ("attack", "print", "guess", "unknown label source"),
    ],
)
def test_it_refuses_invalid_labels_and_writes_nothing(personas, recomputes, label, attack_type, source, message):
    im = f.image(score=0.2)
    with pytest.raises(LabelError, match=message):
        labels.set_labels([im.pk], label, attack_type, user=personas["admin"], source=source)
    im.refresh_from_db()
    assert im.label == ""
    assert not LabelEvent.objects.exists()


def test_it_writes_nothing_when_an_image_is_missing(personas, recomputes, django_capture_on_commit_callbacks):
    im = f.image(score=0.2)
    with pytest.raises(LabelError, match="no longer exist"), django_capture_on_commit_callbacks(execute=True):
        labels.set_labels([im.pk, im.pk + 1000], "attack", user=personas["admin"], source="labelling")
    im.refresh_from_db()
    assert im.label == ""
    assert not LabelEvent.objects.exists()
    assert recomputes == []


def test_it_knows_an_attack_type_the_admin_added(personas, recomputes):
    AttackType.objects.create(name="makeup", position=9)
    im = f.image(score=0.2)
    labels.set_labels([im.pk], "attack", "Makeup", user=personas["admin"], source="labelling")
    im.refresh_from_db()
    assert im.attack_type == "makeup"
    assert labels.attack_type_names() == ["print", "replay", "mask", "other", "makeup"]


def test_it_registers_the_label_models_in_the_admin():
    assert AttackType in admin.site._registry
    assert LabelEvent in admin.site._registry


# --- the review queue ------------------------------------------------------------------------------


@pytest.fixture
def queue():
    """Flagged images over two days and two devices, plus images that must not be in the queue."""
    ims = {
        "old_low": f.image(day="2026-11-20", score=0.10),
        "old_high": f.image(day="2026-11-20", score=0.40),
        "new_low": f.image(day="2026-11-21", score=0.05),
        "new_high": f.image(day="2026-11-21", score=0.45, device_name="gate-02"),
        "new_mid": f.image(day="2026-11-21", score=0.30),
    }
    f.image(day="2026-11-21", score=0.9)  # live: not flagged
    f.image(day="2026-11-21", score=0.2, reviewed_at=timezone.now())  # already reviewed
    return ims


def test_it_orders_the_queue_newest_day_first_then_highest_score(db, queue):
    names = {im.pk: name for name, im in queue.items()}
    assert [names[i] for i in review_queue.review_queue().values_list("pk", flat=True)] == [
        "new_high",
        "new_mid",
        "new_low",
        "old_high",
        "old_low",
    ]


def test_it_filters_the_queue_by_day_range_and_device(db, queue):
    def names(qs):
        by_pk = {im.pk: name for name, im in queue.items()}
        return [by_pk[i] for i in qs.values_list("pk", flat=True)]

    assert names(review_queue.review_queue(day_from="2026-11-21")) == ["new_high", "new_mid", "new_low"]
    assert names(review_queue.review_queue(day_to=dt.date(2026, 11, 20))) == ["old_high", "old_low"]
    assert names(review_queue.review_queue(device="gate-02")) == ["new_high"]
    assert names(review_queue.review_queue(device=queue["old_low"].device)) == [
        "new_mid",
        "new_low",
        "old_high",
        "old_low",
    ]
    with pytest.raises(LabelError, match="not a day"):
        review_queue.review_queue(day_from="yesterday")


def test_it_gives_two_reviewers_different_images(personas, queue):
    first = review_queue.claim_next(personas["reviewer"])
    second = review_queue.claim_next(personas["admin"])
    assert first.pk == queue["new_high"].pk
    assert second.pk == queue["new_mid"].pk
    assert first.review_claimed_by == personas["reviewer"]
    assert first.review_claim_until > timezone.now() + dt.timedelta(seconds=100)
    # a reload gives the reviewer the image they hold, not the next one
    assert review_queue.claim_next(personas["reviewer"]).pk == first.pk


def test_it_loses_a_race_for_a_claim_gracefully(personas, queue, monkeypatch):
    """Another reviewer claims the candidate between the read and the UPDATE: the conditional
    UPDATE refuses it and the next image is taken instead."""
    from django.db.models.query import QuerySet

    first, stolen = QuerySet.first, []

    def first_then_steal(self):
        pk = first(self)
        if self.model is Image and pk is not None and not stolen:
            stolen.append(pk)
            Image.objects.filter(pk=pk).update(
                review_claimed_by=personas["admin"], review_claim_until=timezone.now() + dt.timedelta(minutes=2)
            )
        return pk

    monkeypatch.setattr(QuerySet, "first", first_then_steal)
    got = review_queue.claim_next(personas["reviewer"])
    assert stolen == [queue["new_high"].pk]
    assert got.pk == queue["new_mid"].pk
    assert Image.objects.get(pk=stolen[0]).review_claimed_by == personas["admin"]


def test_it_takes_over_an_expired_claim(personas, queue, settings):
    settings.KOALA_REVIEW_CLAIM_SECONDS = 5
    im = review_queue.claim_next(personas["reviewer"])
    assert im.review_claim_until < timezone.now() + dt.timedelta(seconds=6)
    assert review_queue.claim_next(personas["admin"]).pk != im.pk
    Image.objects.filter(pk=im.pk).update(review_claim_until=timezone.now() - dt.timedelta(seconds=1))
    taken = review_queue.claim_next(personas["admin"])
    assert taken.pk == im.pk
    assert taken.review_claimed_by == personas["admin"]


def test_it_skips_and_releases_the_skipped_image(personas, queue):
    im = review_queue.claim_next(personas["reviewer"])
    nxt = review_queue.claim_next(personas["reviewer"], skip=[im.pk])
    assert nxt.pk == queue["new_mid"].pk
    # one claim per reviewer: the skipped image is free for the others again
    assert review_queue.claim_next(personas["admin"]).pk == im.pk
    everything = [i.pk for i in queue.values()]
    assert review_queue.claim_next(personas["reviewer"], skip=everything) is None
    assert not Image.objects.filter(review_claimed_by=personas["reviewer"]).exists()


def test_it_returns_none_when_the_queue_is_empty(personas):
    f.image(score=0.9)
    assert review_queue.claim_next(personas["reviewer"]) is None


def test_it_refuses_a_verdict_on_an_image_another_reviewer_holds(personas, queue):
    im = review_queue.claim_next(personas["reviewer"])
    with pytest.raises(LabelError, match="another reviewer"):
        review_queue.review(im.pk, "genuine", user=personas["admin"])
    im.refresh_from_db()
    assert (im.label, im.reviewed_at) == ("", None)


def test_it_records_a_false_positive_verdict(personas, queue, recomputes, django_capture_on_commit_callbacks):
    im = review_queue.claim_next(personas["reviewer"])
    with django_capture_on_commit_callbacks(execute=True):
        event = review_queue.review(
            im.pk, "genuine", user=personas["reviewer"], attack_type="print", note="my colleague"
        )
    im.refresh_from_db()
    assert (im.label, im.attack_type, im.reviewed_by) == ("genuine", "", personas["reviewer"])
    assert im.reviewed_at is not None and im.review_claimed_by is None and im.review_claim_until is None
    assert (event.image_id, event.old_label, event.new_label, event.source, event.user, event.note) == (
        im.pk,
        "",
        "genuine",
        "review",
        personas["reviewer"],
        "my colleague",
    )
    assert recomputes == ["2026-11-21"]
    assert im.pk not in review_queue.review_queue().values_list("pk", flat=True)
    with pytest.raises(LabelError, match="already reviewed"):
        review_queue.review(im.pk, "attack", user=personas["reviewer"])


def test_it_records_a_correct_attack_even_when_the_label_was_known(personas, recomputes):
    im = f.image(score=0.2, label="attack", attack_type="replay")
    event = review_queue.review(im.pk, "attack", user=personas["reviewer"], attack_type="replay")
    assert (event.old_label, event.new_label, event.new_attack_type) == ("attack", "attack", "replay")
    im.refresh_from_db()
    assert im.reviewed_at is not None
    assert recomputes == []


def test_it_refuses_an_unknown_verdict(personas):
    im = f.image(score=0.2)
    with pytest.raises(LabelError, match="unknown verdict"):
        review_queue.review(im.pk, "maybe", user=personas["reviewer"])
    with pytest.raises(LabelError, match="unknown attack type"):
        review_queue.review(im.pk, "attack", attack_type="paper", user=personas["reviewer"])


def test_it_undoes_the_last_review(personas, queue, recomputes):
    reviewer = personas["reviewer"]
    one = review_queue.claim_next(reviewer)
    review_queue.review(one.pk, "attack", attack_type="mask", user=reviewer)
    two = review_queue.claim_next(reviewer)
    review_queue.review(two.pk, "genuine", user=reviewer)
    review_queue.review(queue["old_low"].pk, "genuine", user=personas["admin"])  # someone else's: not undone

    back = review_queue.undo_last_review(reviewer)
    assert back.pk == two.pk
    assert (back.label, back.attack_type, back.reviewed_at, back.reviewed_by) == ("", "", None, None)
    assert back.review_claimed_by == reviewer  # it comes back to the reviewer who undid it
    events = list(LabelEvent.objects.filter(image=two).order_by("id").values_list("new_label", "note", "undone"))
    assert events == [("genuine", "", True), ("", "undo", False)]
    assert two.pk in review_queue.review_queue().values_list("pk", flat=True)

    # a second undo reverts the review before, not the undo
    assert review_queue.undo_last_review(reviewer).pk == one.pk
    one.refresh_from_db()
    assert (one.label, one.attack_type) == ("", "")
    assert review_queue.undo_last_review(reviewer) is None
    assert Image.objects.get(pk=queue["old_low"].pk).label == "genuine"


def test_it_refuses_to_undo_a_review_relabelled_since(personas, recomputes):
    im = f.image(score=0.2)
    review_queue.review(im.pk, "genuine", user=personas["reviewer"])
    labels.set_labels([im.pk], "attack", "print", user=personas["admin"], source="labelling")
    with pytest.raises(LabelError, match="changed since"):
        review_queue.undo_last_review(personas["reviewer"])
    im.refresh_from_db()
    assert (im.label, im.attack_type) == ("attack", "print")


def test_it_counts_the_progress_of_today(personas, queue, recomputes):
    review_queue.review(queue["new_high"].pk, "genuine", user=personas["reviewer"])
    review_queue.review(queue["new_mid"].pk, "attack", user=personas["admin"])
    # reviewed yesterday: not today's
    f.image(score=0.2, reviewed_at=timezone.now() - dt.timedelta(days=1), reviewed_by=personas["reviewer"])
    progress = review_queue.review_progress(personas["reviewer"], timezone.localdate())
    # the fixture's image reviewed "now" counts too: 3 done today, 3 left
    assert progress == {"done_today": 3, "left": 3, "total": 6}
    assert review_queue.review_progress(personas["reviewer"], timezone.localdate(), device="gate-02") == {
        "done_today": 3,
        "left": 0,
        "total": 3,
    }
    yesterday = review_queue.review_progress(personas["reviewer"], timezone.localdate() - dt.timedelta(days=1))
    assert yesterday["done_today"] == 1


def test_it_shows_a_confirmed_false_positive_in_the_days_fpr(personas, django_capture_on_commit_callbacks):
    from monitor import daily

    day = dt.date(2026, 11, 20)
    for _ in range(4):
        f.image(day=day, score=0.9, label="genuine")
    flagged = f.image(day=day, score=0.3)
    daily.compute_day(day)
    before = DailyMetric.objects.get(day=day, device=None)
    assert (before.fp, before.genuine, before.fpr.value) == (0, 4, 0.0)

    im = review_queue.claim_next(personas["reviewer"])
    assert im.pk == flagged.pk
    with django_capture_on_commit_callbacks(execute=True):  # the eager Celery of tests/conftest.py
        review_queue.review(im.pk, "genuine", user=personas["reviewer"])
    after = DailyMetric.objects.get(day=day, device=None)
    assert (after.fp, after.genuine) == (1, 5)
    assert after.fpr.value == pytest.approx(0.2)


# --- export and sidecar ----------------------------------------------------------------------------


def test_it_exports_the_audit_trail_as_csv(personas, recomputes):
    im = f.image(score=0.2)
    labels.set_labels([im.pk], "attack", "print", user=personas["admin"], source="labelling", note="=cmd()")
    labels.set_labels([im.pk], "genuine", user=None, source="import")
    lines = label_csv.labels_csv(LabelEvent.objects.all()).splitlines()
    assert lines[0] == "sha256,path,old_label,old_attack_type,new_label,new_attack_type,user,when,source,note,undone"
    first = lines[1].split(",")
    assert first[:7] == [im.sha256, im.path, "", "", "attack", "print", "admin-user"]
    assert first[8:] == ["labelling", "'=cmd()", "0"]
    assert lines[2].split(",")[2:7] == ["attack", "print", "genuine", "", ""]
    assert len(label_csv.labels_csv(Image.objects.filter(pk=im.pk)).splitlines()) == 3
    assert len(label_csv.labels_csv(Image.objects.none()).splitlines()) == 1


def test_it_records_sidecar_labels_once(db):
    a = f.image(label="attack", attack_type="replay", score=0.2)
    b = f.image(label="genuine")
    c = f.image()
    assert labels.record_sidecar_labels([a, b, c]) == 2
    assert labels.record_sidecar_labels([a.pk, b.pk]) == 0
    e = LabelEvent.objects.get(image=a)
    assert (e.old_label, e.new_label, e.new_attack_type, e.source, e.user) == ("", "attack", "replay", "sidecar", None)
