"""The review queue page (monitor/views/review.py, issue 5): order, verdicts, skip, undo, claims,
roles, progress and filters, through the views as a reviewer's browser sends them."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitor import tasks
from monitor.models import Image, LabelEvent
from tests import factories as f

QUEUE = reverse("review:queue")


@pytest.fixture(autouse=True)
def no_recompute(monkeypatch):
    """Label changes schedule a day's recomputation; not what these tests are about."""
    calls = []
    monkeypatch.setattr(tasks.recompute_day, "delay", lambda day: calls.append(day))
    return calls


@pytest.fixture
def flagged(db):
    """Flagged images over two days and two devices, plus images that are not in the queue."""
    ims = {
        "old_low": f.image(day="2026-11-20", score=0.10),
        "old_high": f.image(day="2026-11-20", score=0.40, device_name="gate-02"),
        "new_low": f.image(day="2026-11-21", score=0.05),
        "new_high": f.image(day="2026-11-21", score=0.45, device_name="gate-02"),
        "new_mid": f.image(day="2026-11-21", score=0.20),
    }
    f.image(day="2026-11-21", score=0.9)  # live: not flagged
    f.image(day="2026-11-21", score=0.3, reviewed_at=timezone.now() - dt.timedelta(days=2))  # reviewed earlier
    return ims


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown(response) -> int | None:
    """The image the page shows (None: the empty queue)."""
    assert response.status_code == 200
    return response.context["im"].pk if response.context["im"] is not None else None


def walk(client, n: int, verdict: str = "genuine") -> list[int]:
    """Give n verdicts in a row; the images in the order they were shown."""
    seen = []
    for _ in range(n):
        pk = shown(client.get(QUEUE))
        seen.append(pk)
        assert client.post(reverse("review:verdict", args=[pk]), {"verdict": verdict}).status_code == 302
    return seen


def test_it_shows_newest_day_first_then_highest_score(personas, flagged):
    names = {im.pk: name for name, im in flagged.items()}
    order = walk(login(personas["reviewer"]), 5)
    assert [names[pk] for pk in order] == ["new_high", "new_mid", "new_low", "old_high", "old_low"]


def test_it_shows_the_image_with_its_face_box_scores_and_quality(personas, db):
    im = f.image(
        score=0.2,
        width=640,
        height=480,
        box_x=100,
        box_y=80,
        box_w=200,
        box_h=210,
        face_size=200,
        yaw=12.5,
        blur=0.61,
        failed_gates=["blur"],
        scores={"m1": 0.3, "m2": 0.1},
    )
    response = login(personas["reviewer"]).get(QUEUE)
    html = response.content.decode()
    assert f'src="{reverse("image-file", args=[im.pk])}"' in html
    assert 'viewBox="0 0 640 480"' in html
    assert '<rect class="facebox" x="100.0" y="80.0" width="200.0" height="210.0">' in html
    assert "0.3000" in html and "0.1000" in html and "0.2000" in html  # per model and ensemble
    assert "threshold 0.5: <strong>attack</strong>" in html
    assert "12.50°" in html and "failed gate" in html
    assert "phone-01" in html and "2026-11-20" in html
    assert f'data-image="{im.pk}"' in html
    assert 'src="/static/monitor/review.js"' in html
    assert "<script>" not in html  # no inline script
    # the attack types with their keys, in position order
    assert re.findall(r'value="(\w+)" data-key="(\d)"', html) == [
        ("print", "1"),
        ("replay", "2"),
        ("mask", "3"),
        ("other", "4"),
    ]


def test_a_verdict_stores_the_label_and_an_audit_row(
    personas, flagged, no_recompute, django_capture_on_commit_callbacks
):
    client = login(personas["reviewer"])
    pk = shown(client.get(QUEUE))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("review:verdict", args=[pk]), {"verdict": "attack", "attack_type": "replay", "note": "phone screen"}
        )
    assert response.status_code == 302 and response["Location"] == QUEUE
    im = Image.objects.get(pk=pk)
    assert (im.label, im.attack_type, im.reviewed_by) == ("attack", "replay", personas["reviewer"])
    assert im.reviewed_at is not None and im.review_claimed_by is None
    event = LabelEvent.objects.get(image=im)
    assert (event.source, event.user, event.old_label, event.new_label, event.new_attack_type, event.note) == (
        "review",
        personas["reviewer"],
        "",
        "attack",
        "replay",
        "phone screen",
    )
    assert no_recompute == ["2026-11-21"]
    follow = client.get(QUEUE)
    assert shown(follow) != pk
    assert "Press u to undo" in follow.content.decode()


def test_a_genuine_verdict_is_a_false_positive_without_attack_type(personas, flagged):
    client = login(personas["reviewer"])
    pk = shown(client.get(QUEUE))
    client.post(reverse("review:verdict", args=[pk]), {"verdict": "genuine", "attack_type": "print"})
    assert Image.objects.filter(pk=pk).values_list("label", "attack_type").get() == ("genuine", "")


def test_a_verdict_answers_json_for_fetch(personas, flagged):
    client = login(personas["reviewer"])
    pk = shown(client.get(QUEUE + "?device=gate-02"))
    response = client.post(
        reverse("review:verdict", args=[pk]) + "?device=gate-02",
        {"verdict": "genuine"},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] and body["image"] == pk and body["label"] == "genuine"
    assert body["next"] == QUEUE + "?device=gate-02"
    assert body["event"] == LabelEvent.objects.get(image_id=pk).pk


def test_a_bad_verdict_writes_nothing(personas, flagged):
    client = login(personas["reviewer"])
    pk = shown(client.get(QUEUE))
    response = client.post(reverse("review:verdict", args=[pk]), {"verdict": "maybe"}, follow=True)
    assert "unknown verdict" in response.content.decode()
    assert shown(response) == pk  # still theirs
    response = client.post(
        reverse("review:verdict", args=[pk]),
        {"verdict": "attack", "attack_type": "paper"},
        headers={"accept": "application/json"},
    )
    assert response.status_code == 409 and "unknown attack type" in response.json()["error"]
    assert not LabelEvent.objects.exists()
    assert Image.objects.get(pk=pk).reviewed_at is None


def test_a_live_image_is_not_reviewed_here(personas, db):
    live = f.image(score=0.9)
    response = login(personas["reviewer"]).post(reverse("review:verdict", args=[live.pk]), {"verdict": "genuine"})
    assert response.status_code == 302
    assert not LabelEvent.objects.exists()


def test_skip_moves_on_and_releases_the_image(personas, flagged):
    reviewer, admin = login(personas["reviewer"]), login(personas["admin"])
    first = shown(reviewer.get(QUEUE))
    assert first == flagged["new_high"].pk
    response = reviewer.post(reverse("review:skip", args=[first]))
    assert response.status_code == 302
    assert Image.objects.get(pk=first).review_claimed_by is None
    second = shown(reviewer.get(QUEUE))
    assert second == flagged["new_mid"].pk
    assert shown(admin.get(QUEUE)) == first  # free for the others at once
    # the skip holds for the session: after two verdicts the skipped image does not come back
    walk(reviewer, 4)
    assert shown(reviewer.get(QUEUE)) is None
    assert "Show the skipped images again" in reviewer.get(QUEUE).content.decode()
    # until the reviewer asks for the skipped ones again (and the admin no longer holds it)
    admin.post(reverse("review:skip", args=[first]))
    reviewer.post(reverse("review:clear-skips"))
    assert reviewer.session.get("review_skip") == []
    assert shown(reviewer.get(QUEUE)) == first


def test_j_in_the_queue_is_a_skip_and_k_steps_back(personas, flagged):
    client = login(personas["reviewer"])
    first = shown(client.get(QUEUE))
    client.post(reverse("review:skip", args=[first]))
    second = shown(client.get(QUEUE))
    client.post(reverse("review:verdict", args=[second]), {"verdict": "genuine"})
    page = client.get(QUEUE)
    third = shown(page)
    # previous: the last image reviewed, then the one skipped before it
    assert page.context["prev_url"] == f"{QUEUE}?at={second}"
    back = client.get(page.context["prev_url"])
    assert shown(back) == second and back.context["history"]
    assert not back.context["reviewable"]  # already reviewed: shown, not reviewable
    assert "reviewed by reviewer-user" in back.content.decode()
    back2 = client.get(back.context["prev_url"])
    assert shown(back2) == first and back2.context["reviewable"]  # skipped: can still be reviewed
    assert back2.context["prev_url"] is None
    assert back2.context["next_url"] == f"{QUEUE}?at={second}"
    assert client.get(back.context["next_url"]).context["im"].pk == third  # the end of the trail: the queue
    assert Image.objects.get(pk=third).review_claimed_by == personas["reviewer"]  # looking back kept the claim
    # a verdict on the skipped image from the trail
    client.post(reverse("review:verdict", args=[first]), {"verdict": "attack", "attack_type": "print"})
    assert Image.objects.get(pk=first).label == "attack"
    # an image outside the trail is not "looking back": the queue shows
    assert shown(client.get(f"{QUEUE}?at={flagged['old_low'].pk}")) == third


def test_undo_restores_the_label_and_shows_the_image_again(personas, flagged):
    client = login(personas["reviewer"])
    labelled = f.image(day="2026-11-22", score=0.3, label="attack", attack_type="mask")  # first in the queue
    assert shown(client.get(QUEUE)) == labelled.pk
    client.post(reverse("review:verdict", args=[labelled.pk]), {"verdict": "genuine"})
    nxt = shown(client.get(QUEUE))
    assert nxt != labelled.pk
    response = client.post(reverse("review:undo"))
    assert response.status_code == 302
    im = Image.objects.get(pk=labelled.pk)
    assert (im.label, im.attack_type, im.reviewed_at, im.reviewed_by) == ("attack", "mask", None, None)
    assert im.review_claimed_by == personas["reviewer"]
    page = client.get(QUEUE)
    assert shown(page) == labelled.pk  # the same image again
    assert "back in the queue" in page.content.decode()
    events = list(LabelEvent.objects.filter(image=im).order_by("id").values_list("new_label", "note", "undone"))
    assert events == [("genuine", "", True), ("attack", "undo", False)]
    assert not Image.objects.filter(pk=nxt, review_claimed_by=personas["reviewer"]).exists()  # one claim each
    # nothing more to undo
    response = client.post(reverse("review:undo"), headers={"accept": "application/json"})
    assert response.status_code == 404 and response.json()["error"] == "Nothing to undo."


def test_undo_shows_the_image_even_outside_the_filter(personas, flagged):
    client = login(personas["reviewer"])
    pk = shown(client.get(QUEUE))  # new_high, gate-02
    client.post(reverse("review:verdict", args=[pk]), {"verdict": "genuine"})
    response = client.post(reverse("review:undo") + "?device=phone-01")
    assert response["Location"] == QUEUE
    assert shown(client.get(QUEUE)) == pk


def test_two_reviewers_get_different_images(personas, flagged):
    reviewer, admin = login(personas["reviewer"]), login(personas["admin"])
    a = shown(reviewer.get(QUEUE))
    b = shown(admin.get(QUEUE))
    assert a != b
    assert (a, b) == (flagged["new_high"].pk, flagged["new_mid"].pk)
    # the other reviewer's verdict on a held image is refused
    response = admin.post(reverse("review:verdict", args=[a]), {"verdict": "genuine"}, follow=True)
    assert "another reviewer" in response.content.decode()
    assert Image.objects.get(pk=a).label == ""


def test_a_reload_keeps_the_claim(personas, flagged):
    reviewer, admin = login(personas["reviewer"]), login(personas["admin"])
    held = shown(admin.get(QUEUE))  # new_high
    mine = shown(reviewer.get(QUEUE))  # new_mid
    before = Image.objects.get(pk=mine).review_claim_until
    # the image ahead of the reviewer's becomes free again (the admin skips it)
    admin.post(reverse("review:skip", args=[held]))
    assert shown(reviewer.get(QUEUE)) == mine
    assert Image.objects.get(pk=mine).review_claim_until >= before  # renewed
    assert shown(reviewer.get(QUEUE)) == mine


def test_an_expired_claim_goes_to_the_next_reviewer(personas, flagged):
    reviewer, admin = login(personas["reviewer"]), login(personas["admin"])
    mine = shown(reviewer.get(QUEUE))
    Image.objects.filter(pk=mine).update(review_claim_until=timezone.now() - dt.timedelta(seconds=1))
    assert shown(admin.get(QUEUE)) == mine
    assert shown(reviewer.get(QUEUE)) != mine


@pytest.mark.parametrize("role", ["viewer", "nobody"])
def test_a_viewer_gets_403(personas, flagged, role):
    client = login(personas[role])
    pk = flagged["new_high"].pk
    assert client.get(QUEUE).status_code == 403
    assert client.post(reverse("review:verdict", args=[pk]), {"verdict": "genuine"}).status_code == 403
    assert client.post(reverse("review:skip", args=[pk])).status_code == 403
    assert client.post(reverse("review:undo")).status_code == 403
    assert client.post(reverse("review:clear-skips")).status_code == 403
    assert not LabelEvent.objects.exists()
    assert Image.objects.get(pk=pk).review_claimed_by is None


def test_anonymous_users_are_sent_to_login(db, flagged):
    client = Client()
    assert client.get(QUEUE)["Location"].startswith(reverse("login"))
    response = client.post(reverse("review:verdict", args=[flagged["new_high"].pk]), {"verdict": "genuine"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not LabelEvent.objects.exists()


def test_posts_need_the_csrf_token(personas, flagged):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["reviewer"])
    pk = flagged["new_high"].pk
    assert client.post(reverse("review:verdict", args=[pk]), {"verdict": "genuine"}).status_code == 403
    assert client.get(reverse("review:verdict", args=[pk])).status_code == 405
    assert not LabelEvent.objects.exists()


def test_progress_counts_done_today_of_done_plus_left(personas, flagged):
    client = login(personas["reviewer"])
    f.image(score=0.2, reviewed_at=timezone.now(), reviewed_by=personas["admin"])  # done today by someone else
    page = client.get(QUEUE)
    text = " ".join(re.sub(r"<[^>]+>", " ", page.content.decode()).split())
    assert "1 of 6 today" in text and "5 left" in text
    walk(client, 2)
    text = " ".join(re.sub(r"<[^>]+>", " ", client.get(QUEUE).content.decode()).split())
    assert "3 of 6 today" in text
    filtered = client.get(QUEUE + "?device=phone-01").context["progress"]
    assert filtered == {"done_today": 3, "left": 2, "total": 5}


def test_filters_by_day_range_and_device_and_keep_them(personas, flagged):
    client = login(personas["reviewer"])
    names = {im.pk: name for name, im in flagged.items()}
    page = client.get(QUEUE + "?day_from=2026-11-20&day_to=2026-11-20")
    assert names[shown(page)] == "old_high"
    html = page.content.decode()
    # the verdict, skip and undo forms carry the filter
    pk = shown(page)
    assert f'action="{reverse("review:verdict", args=[pk])}?day_from=2026-11-20&amp;day_to=2026-11-20"' in html
    response = client.post(
        reverse("review:verdict", args=[pk]) + "?day_from=2026-11-20&day_to=2026-11-20", {"verdict": "attack"}
    )
    assert response["Location"] == QUEUE + "?day_from=2026-11-20&day_to=2026-11-20"
    assert names[shown(client.get(response["Location"]))] == "old_low"
    assert shown(client.get(QUEUE + "?device=gate-02&day_from=2026-11-21")) == flagged["new_high"].pk


def test_filter_by_device_and_day(personas, flagged):
    client = login(personas["admin"])
    names = {im.pk: name for name, im in flagged.items()}
    assert names[shown(client.get(QUEUE + "?device=gate-02"))] == "new_high"
    walk_pk = shown(client.get(QUEUE + "?device=gate-02"))
    client.post(reverse("review:verdict", args=[walk_pk]) + "?device=gate-02", {"verdict": "genuine"})
    assert names[shown(client.get(QUEUE + "?device=gate-02"))] == "old_high"
    assert names[shown(client.get(QUEUE + "?day_from=2026-11-21&device=phone-01"))] == "new_mid"


def test_an_empty_queue_says_so(personas, flagged):
    client = login(personas["reviewer"])
    page = client.get(QUEUE + "?day_from=2030-01-01")
    assert shown(page) is None
    assert "Nothing left to review with this filter" in page.content.decode()
    assert 'data-mode="empty"' in page.content.decode()


def test_a_bad_filter_is_reported_and_ignored(personas, flagged):
    client = login(personas["reviewer"])
    page = client.get(QUEUE + "?day_from=yesterday")
    assert shown(page) == flagged["new_high"].pk
    assert "filter ignored" in page.content.decode()
    page = client.get(QUEUE + "?day_from=2026-11-21&day_to=2026-11-20")
    assert "the first day is after the last day" in page.content.decode()


def test_it_leaves_purged_images_out_of_the_queue(db):
    from monitor import review_queue

    kept, purged = f.image(score=0.1), f.image(score=0.2)
    Image.objects.filter(pk=purged.pk).update(purged_at=timezone.now())
    assert list(review_queue.review_queue().values_list("pk", flat=True)) == [kept.pk]
