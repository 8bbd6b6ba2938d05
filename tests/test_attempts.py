"""Attempt groups (monitor/attempts.py): a planted burst of retries, real files scored by the real
pipeline with the demo ensemble, grouped as planned; per-user figures against an independent
count; the stacked gallery, the image page's attempts, the API and the overview card."""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image as PILImage

import demo
from monitor import attempts, runs
from monitor.models import DailyMetric, Ensemble, Image, InboxFile
from tests import factories
from tests.conftest import put, sidecar_for

DAY0, DAY = "2026-11-19", "2026-11-20"
TZ = dt.timezone(dt.timedelta(hours=8))
T0 = dt.datetime(2026, 11, 20, 9, 0, 0, tzinfo=TZ)


@dataclass(frozen=True)
class Shot:
    """One planned capture: which scene (a render seed), when (seconds after T0; None = no
    capture time in the sidecar), whose subject id, and what it is."""

    name: str
    device: str
    seed: int
    at: float | None
    subject: str = ""
    label: str = "genuine"
    attack_type: str | None = None


# one list per planned attempt group, in capture order
PLAN = {
    # one user retrying 5 times within seconds; the subject id only on the first three, so the
    # face hash has to carry the group on
    "a": [Shot(f"a{i + 1}.jpg", "cam-1", 11, t, "u-a" if i < 3 else "") for i, t in enumerate((0, 4, 9, 13, 18))],
    "b": [Shot("b1.jpg", "cam-1", 12, 40)],  # another person 22 s after a5
    "c1": [Shot("c1.jpg", "cam-1", 13, 600)],  # one person twice, 10 minutes apart: two users
    "c2": [Shot("c2.jpg", "cam-1", 13, 1200)],
    "d": [Shot(f"d{i + 1}.jpg", "cam-1", 14, 1800 + 3 * i, label="attack", attack_type="replay") for i in range(3)],
    "e": [Shot("e1.jpg", "cam-2", 11, 5), Shot("e2.jpg", "cam-2", 11, 9)],  # a's face on another device
    "f": [Shot("f1.jpg", "cam-1", 11, None)],  # a's face again, without a capture time
}
OLD = Shot("old.jpg", "cam-1", 20, 0)  # of DAY0; DAY receives a byte-identical copy of it


def capture(shot: Shot, try_no: int) -> tuple[bytes, dict]:
    """The scene of `shot.seed` captured again (try_no > 0: the head turned a little, new sensor
    noise, another JPEG quality), with its sidecar."""
    rng = np.random.default_rng(1000 * shot.seed + try_no)
    yaw, pitch = (float(rng.uniform(-3, 3)), float(rng.uniform(-2, 2))) if try_no else (0.0, 0.0)
    s = demo.render_sample(
        np.random.default_rng(shot.seed),
        label=shot.label,
        attack_type=shot.attack_type,
        face_size=200,
        yaw=yaw,
        pitch=pitch,
        blur=0.0,
    )
    noisy = np.asarray(s.image, dtype=np.float64) + rng.normal(0, 3, (s.image.height, s.image.width, 3))
    buf = io.BytesIO()
    PILImage.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(75, 95)))
    sidecar = sidecar_for(s)
    if shot.at is not None:
        sidecar["captured_at"] = (T0 + dt.timedelta(seconds=shot.at)).isoformat()
    if shot.subject:
        sidecar["subject"] = shot.subject
    return buf.getvalue(), sidecar


def path_of(shot: Shot, day: str = DAY) -> str:
    return f"{day}/{shot.device}/{shot.name}"


@pytest.fixture
def burst(data_root, demo_ensemble):
    """DAY0 with one image, then DAY with the planned groups (and a copy of DAY0's image), both scored."""
    inbox = settings.INBOX_DIR
    old, old_sidecar = capture(OLD, 0)
    put(inbox, DAY0, OLD.device, OLD.name, old, old_sidecar)
    runs.run_day(dt.date.fromisoformat(DAY0))
    tries = 0
    for group in PLAN.values():
        for shot in group:
            data, sidecar = capture(shot, tries)
            tries += 1
            put(inbox, DAY, shot.device, shot.name, data, sidecar)
    put(inbox, DAY, "cam-1", "copy.jpg", old, old_sidecar)
    runs.run_day(dt.date.fromisoformat(DAY))
    # the demo models pass every genuine try: a threshold between user a's scores makes a user
    # rejected on some tries and not on others, as a real retry burst goes
    scores = sorted(Image.objects.filter(path__in=[path_of(s) for s in PLAN["a"]]).values_list("score", flat=True))
    Ensemble.objects.filter(pk=demo_ensemble.pk).update(threshold=(scores[1] + scores[2]) / 2)
    runs.run_day(dt.date.fromisoformat(DAY), rescore=True)


def stored() -> dict[str, Image]:
    return {im.path: im for im in Image.objects.filter(day=DAY)}


def groups_stored() -> dict[int, list[str]]:
    """{attempt_group: paths in attempt order} as stored."""
    out: dict[int, list[tuple[int, str]]] = {}
    for im in Image.objects.filter(day=DAY):
        out.setdefault(im.attempt_group, []).append((im.attempt_index, im.path))
    return {g: [p for _, p in sorted(rows)] for g, rows in out.items()}


def expected_users(images: dict[str, Image], device: str | None) -> dict[str, int]:
    """The per-user figures counted from the plan (which images are one user) and the stored
    decisions, as SPEC'd in the task: users with a decision, rejected once or more, on every try."""
    counts = dict.fromkeys(attempts.USER_FIELDS, 0)
    for group in PLAN.values():
        if device and group[0].device != device:
            continue
        decided = [(s, images[path_of(s)].decision) for s in group if images[path_of(s)].decision in ("live", "attack")]
        if not decided:
            continue
        flags = {
            "users": True,
            "users_rejected": any(d == "attack" for _, d in decided),
            "users_always_rejected": all(d == "attack" for _, d in decided),
        }
        if all(s.label == "genuine" for s, _ in decided):
            flags |= {f"genuine_{k}": v for k, v in list(flags.items())}
        for k, v in flags.items():
            counts[k] += int(v)
    return counts


@pytest.mark.django_db
def test_it_groups_a_planted_burst_exactly_as_planned(burst):
    found = groups_stored()
    planned = [[path_of(s) for s in group] for group in PLAN.values()]

    assert sorted(found.values()) == sorted(planned)
    images = stored()
    for group in planned:
        first = images[group[0]]
        assert all(images[p].attempt_group == first.pk for p in group)  # the id of the group's first image
        assert [images[p].attempt_size for p in group] == [len(group)] * len(group)
    assert all(len(im.face_hash) == 16 for im in images.values())


@pytest.mark.django_db
def test_it_counts_users_per_device_and_for_all_devices_as_an_independent_count(burst):
    images = stored()
    rows = {m.device.name if m.device else None: m for m in DailyMetric.objects.filter(day=DAY)}

    for device in ("cam-1", "cam-2", None):
        want = expected_users(images, device)
        assert {k: getattr(rows[device], k) for k in attempts.USER_FIELDS} == want, device
    assert rows[None].users == len(PLAN)  # every planned user got a decision
    # the plan holds users rejected on some tries only (a), on every try (d) and never (b)
    assert rows[None].users_always_rejected < rows[None].users_rejected < rows[None].users
    assert 0 < rows[None].genuine_users_rejected < rows[None].genuine_users
    assert rows["cam-1"].users == len([g for g in PLAN.values() if g[0].device == "cam-1"])


@pytest.mark.django_db
def test_it_keeps_the_groups_when_the_day_is_run_again(burst):
    before = groups_stored()

    runs.run_day(dt.date.fromisoformat(DAY))
    assert groups_stored() == before
    runs.run_day(dt.date.fromisoformat(DAY), rescore=True)  # hashes computed anew
    assert groups_stored() == before
    with CaptureQueriesContext(connection) as queries:
        attempts.group_day(dt.date.fromisoformat(DAY))
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]


def tiles(html: str) -> list[tuple[int, int]]:
    """(image id, attempts) of each stacked tile."""
    found = re.findall(
        r'<li class="thumb [^"]*" data-group="\d+" data-attempts="(\d+)">\s*<a href="/images/(\d+)/', html
    )
    return [(int(pk), int(n)) for n, pk in found]


@pytest.mark.django_db
def test_it_stacks_the_gallery_one_tile_per_attempt_group(burst, client, personas, monkeypatch):
    client.force_login(personas["viewer"])
    images = stored()
    url = reverse("gallery", args=[DAY])

    html = client.get(url + "?stack=1").content.decode()

    want = sorted((images[path_of(g[0])].pk, len(g)) for g in PLAN.values())
    assert sorted(tiles(html)) == want
    assert html.count('class="attempts"') == sum(len(g) > 1 for g in PLAN.values())
    a1 = images[path_of(PLAN["a"][0])]
    worst = "attack" if any(images[path_of(s)].decision == "attack" for s in PLAN["a"]) else "live"
    assert re.search(
        rf'href="/images/{a1.pk}/.*?×5</span><span class="worst worst-{worst}">worst: {worst}</span>', html, re.S
    )
    # the tabs count groups, by their first image's category
    counts = dict(re.findall(r'data-category="(\w+)">\s*[\w ]+ <span class="count">(\d+)</span>', html))
    by_category = {}
    for g in PLAN.values():
        c = images[path_of(g[0])].category
        by_category[c] = by_category.get(c, 0) + 1
    assert int(counts["all"]) == len(PLAN)
    assert all(int(counts[c]) == n for c, n in by_category.items())
    tab_queries = re.findall(r'<a href="\?([^"]*)" class="tab[^"]*" data-category=', html)
    assert len(tab_queries) == len(counts) and all("stack=1" in q for q in tab_queries)
    # unstacked, every image is a tile of its own
    plain = client.get(url).content.decode()
    assert len(re.findall(r'<li class="thumb ', plain)) == len(images)

    # keyset pages of a stacked gallery: each group once, the stack kept in the next links
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 2)
    seen, next_url = [], url + "?stack=1&sort=time"
    while next_url:
        page = client.get(next_url).content.decode()
        seen += [pk for pk, _ in tiles(page)]
        nxt = re.search(r'<a href="(\?[^"]*)" rel="next">', page)
        next_url = url + nxt.group(1).replace("&amp;", "&") if nxt else None
        assert next_url is None or "stack=1" in next_url
    assert sorted(seen) == sorted(pk for pk, _ in want) and len(seen) == len(set(seen))


@pytest.mark.django_db
def test_it_lists_the_group_on_the_image_page(burst, client, personas):
    client.force_login(personas["viewer"])
    images = stored()
    a3 = images[path_of(PLAN["a"][2])]

    html = client.get(reverse("image", args=[a3.pk])).content.decode()

    section = re.search(r'<table class="grid attempts" id="attempts">.*?</table>', html, re.S)
    assert section, "no attempts section"
    assert [int(pk) for pk in re.findall(r'data-image="(\d+)"', section.group(0))] == [
        images[path_of(s)].pk for s in PLAN["a"]
    ]
    assert 'aria-current="true"' in section.group(0)
    b1 = images[path_of(PLAN["b"][0])]  # alone: no section
    assert 'id="attempts"' not in client.get(reverse("image", args=[b1.pk])).content.decode()


@pytest.mark.django_db
def test_it_lists_the_exact_copies_of_earlier_days(burst, client, personas):
    client.force_login(personas["viewer"])
    old = Image.objects.get(path=path_of(OLD, DAY0))
    copies = list(attempts.earlier_copies(dt.date.fromisoformat(DAY)))

    assert [(c.path, c.image_id, c.image.day) for c in copies] == [
        (f"{DAY}/cam-1/copy.jpg", old.pk, dt.date.fromisoformat(DAY0))
    ]
    assert InboxFile.objects.get(path=f"{DAY}/cam-1/copy.jpg").status == InboxFile.DUPLICATE
    html = client.get(reverse("gallery", args=[DAY])).content.decode()
    assert "1 file today was an exact copy of earlier days' images" in html
    assert f'href="/images/{old.pk}/" class="copy-of"' in html
    assert "exact cop" not in client.get(reverse("gallery", args=[DAY0])).content.decode()


@pytest.mark.django_db
def test_the_api_and_the_overview_show_the_per_user_figures(burst, client, personas):
    client.force_login(personas["viewer"])
    images = stored()
    want = expected_users(images, "cam-1")
    decided = sum(im.decision in ("live", "attack") for im in images.values() if im.device.name == "cam-1")

    body = client.get(reverse("api-metrics") + f"?from={DAY}&to={DAY}&device=cam-1").json()
    (row,) = body["days"]
    u = row["per_user"]
    assert u["users"] == want["users"]
    assert (u["rejected"]["k"], u["rejected"]["n"]) == (want["users_rejected"], want["users"])
    assert (u["always_rejected"]["k"], u["always_rejected"]["n"]) == (want["users_always_rejected"], want["users"])
    assert u["genuine_rejected"]["n"] == want["genuine_users"]
    assert u["attempts_per_user"] == pytest.approx(decided / want["users"])
    assert u["rejected"]["too_few"] is True  # fewer than 30 users

    html = client.get(reverse("home") + "?device=cam-1").content.decode()
    card = re.search(r'<div class="ov-card ov-users([^"]*)" data-kpi="users" id="per-user">(.*?)</ul>', html, re.S)
    assert card, "no per-user card"
    assert "too-few" in card.group(1)
    assert f'<div class="ov-card-value">{want["users"]}</div>' in card.group(2)
    assert f"{decided / want['users']:.2f} attempts per user" in card.group(2)
    assert f"({want['users_rejected']} / {want['users']})" in card.group(2)
    assert 'data-user-rate="genuine_rejected"' in card.group(2)  # labelled genuine users exist


@pytest.mark.django_db
def test_it_does_not_group_two_different_people_captured_seconds_apart(data_root, demo_ensemble):
    people = [Shot("p1.jpg", "cam-9", 31, 0), Shot("p2.jpg", "cam-9", 32, 3), Shot("p3.jpg", "cam-9", 33, 6)]
    for i, shot in enumerate(people):
        data, sidecar = capture(shot, i)
        put(settings.INBOX_DIR, DAY, shot.device, shot.name, data, sidecar)

    runs.run_day(dt.date.fromisoformat(DAY))

    rows = Image.objects.filter(day=DAY).order_by("captured_at")
    assert [(im.attempt_index, im.attempt_size) for im in rows] == [(1, 1)] * 3
    hashes = [im.face_hash for im in rows]
    assert all(
        attempts.hamming(a, b) > settings.KOALA_ATTEMPT_HASH_DISTANCE for a, b in zip(hashes, hashes[1:], strict=False)
    )


@pytest.mark.django_db
def test_it_joins_on_the_subject_or_the_hash_within_the_gap_only():
    gap = settings.KOALA_ATTEMPT_GAP_SECONDS
    h0, h0_near, h1, h1_near = "0" * 16, "0" * 15 + "f", "f" * 16, "f" * 15 + "0"  # near: 4 bits away

    def image(at, subject, face_hash, device="cam-1"):
        return factories.image(
            day=DAY, device_name=device, captured_at=T0 + dt.timedelta(seconds=at), subject=subject, face_hash=face_hash
        )

    one = [
        image(0, "x", h0),
        image(gap, "x", h1),  # the same subject, exactly the gap later: whatever the hash
        image(gap + 1, "", h1_near),  # no subject: the hash decides
    ]
    far_hash = [image(gap + 2, "", h0)]  # 60 bits from the previous one
    apart = [image(10 * gap, "", h0), image(11 * gap + 1, "", h0_near)]  # just over the gap
    two_subjects = [image(20 * gap, "y", h0), image(20 * gap + 1, "z", h0)]  # one hash, two known people
    other_device = [image(gap + 3, "", h0, device="cam-2")]
    no_time = factories.image(day=DAY, device_name="cam-1", subject="x", face_hash=h0)

    attempts.group_day(dt.date.fromisoformat(DAY))

    def groups(images):
        return [Image.objects.get(pk=im.pk).attempt_group for im in images]

    assert groups(one) == [one[0].pk] * 3
    assert [Image.objects.get(pk=im.pk).attempt_index for im in one] == [1, 2, 3]
    assert groups(far_hash) == [far_hash[0].pk]
    assert groups(apart) == [im.pk for im in apart]
    assert groups(two_subjects) == [im.pk for im in two_subjects]
    assert groups(other_device + [no_time]) == [other_device[0].pk, no_time.pk]


@pytest.mark.django_db
def test_the_stacked_counts_follow_new_images_and_regrouping(client, personas):
    from monitor import daily

    client.force_login(personas["viewer"])
    url = reverse("gallery", args=[DAY]) + "?stack=1"

    def tabs():
        html = client.get(url).content.decode()
        counts = dict(re.findall(r'data-category="(\w+)">\s*[\w ]+ <span class="count">(\d+)</span>', html))
        return int(counts["all"]), int(counts["live"]), int(counts["attack"])

    def image(at, score):
        return factories.image(day=DAY, captured_at=T0 + dt.timedelta(seconds=at), face_hash="ab" * 8, score=score)

    for at in (0, 5, 10):
        image(at, 0.9)
    daily.compute_day(dt.date.fromisoformat(DAY))
    assert tabs() == (1, 1, 0)

    late = image(15, 0.1)  # stored by a run still going: not grouped yet, a tile of its own
    assert tabs() == (2, 1, 1)
    daily.compute_day(dt.date.fromisoformat(DAY))  # the fourth try of the same user
    assert Image.objects.get(pk=late.pk).attempt_index == 4
    assert tabs() == (1, 1, 0)


def test_the_filter_links_keep_the_stack_and_a_zero_score():
    from monitor.views.browsing import query_string

    assert query_string({"stack": "1", "min_score": 0.0, "after": "0.5|3"}) == "stack=1&min_score=0.0"
    assert query_string({"stack": "", "sort": "score"}) == "sort=score"


@pytest.mark.django_db
def test_it_refuses_a_stack_value_it_does_not_know_with_a_message(client, personas):
    client.force_login(personas["viewer"])
    response = client.get(reverse("gallery", args=[DAY]) + "?stack=maybe")
    assert response.status_code == 200
    assert re.search(r'<p class="errors" role="alert">stack attempts: .*maybe', response.content.decode())
