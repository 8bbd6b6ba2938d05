"""The day gallery, the image detail and the protected image files."""

import datetime as dt
import re

import numpy as np
import pytest
from django.urls import reverse

from liveness import demo
from monitor import services
from monitor.models import Image
from tests import factories as f
from tests.conftest import jpeg_bytes, put, sidecar_for

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def viewer_client(client, personas):
    client.force_login(personas["viewer"])
    return client


def ids_on(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'href="/images/(\d+)/', html)]


def walk(client, url: str) -> list[int]:
    """Follow 'next page' links to the end; the image ids in page order."""
    seen = []
    while url:
        html = client.get(url).content.decode()
        seen += ids_on(html)
        nxt = re.search(r'<a href="(\?[^"]*)" rel="next">', html)
        url = reverse("gallery", args=[DAY]) + nxt.group(1).replace("&amp;", "&") if nxt else None
    return seen


@pytest.mark.django_db
def test_it_shows_category_tabs_with_counts(viewer_client):
    for score in (0.9, 0.8, 0.1):
        f.image(score=score)
    f.image(score=None)

    html = viewer_client.get(reverse("gallery", args=[DAY])).content.decode()

    counts = dict(re.findall(r'data-category="(\w+)">\s*[\w ]+ <span class="count">(\d+)</span>', html))
    assert counts == {"all": "4", "live": "2", "attack": "1", "low_quality": "0", "no_face": "1", "unreadable": "0"}


@pytest.mark.django_db
def test_it_pages_through_a_day_showing_each_image_once(viewer_client, monkeypatch):
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 7)
    images = [f.image(score=s) for s in [0.5] * 10 + list(np.linspace(0, 1, 13)) + [None] * 3]

    seen = walk(viewer_client, reverse("gallery", args=[DAY]) + "?sort=score")
    assert len(ids_on(viewer_client.get(reverse("gallery", args=[DAY])).content.decode())) == 7  # pages of 7

    assert sorted(seen) == sorted(im.pk for im in images)
    scores = [Image.objects.get(pk=pk).score for pk in seen]
    assert [s for s in scores if s is not None] == sorted(s for s in scores if s is not None)
    assert scores[-3:] == [None, None, None]  # images without a score come last


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["-score", "disagreement", "time", "-time"])
def test_it_pages_in_every_sort_order(viewer_client, monkeypatch, sort):
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 4)
    base = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
    images = [
        f.image(
            score=0.2 + 0.05 * (i % 5),
            scores={"a": 0.1 * (i % 3), "b": 0.5},
            captured_at=base + dt.timedelta(minutes=i % 4),
        )
        for i in range(15)
    ]
    assert sorted(walk(viewer_client, reverse("gallery", args=[DAY]) + f"?sort={sort}")) == sorted(
        im.pk for im in images
    )


@pytest.mark.django_db
def test_it_filters_and_keeps_the_filter_in_the_links(viewer_client, monkeypatch):
    monkeypatch.setattr("monitor.browse.PAGE_SIZE", 2)
    keep = [f.image(score=s, label="genuine", device_name="gate-north") for s in (0.3, 0.4, 0.5)]
    f.image(score=0.45, label="attack", device_name="gate-north")
    f.image(score=0.45, label="genuine", device_name="phone-01")
    f.image(score=0.9, label="genuine", device_name="gate-north")

    url = reverse("gallery", args=[DAY]) + "?device=gate-north&label=genuine&min_score=0.25&max_score=0.6"
    html = viewer_client.get(url).content.decode()
    assert sorted(walk(viewer_client, url)) == [im.pk for im in keep]
    nxt = re.search(r'<a href="(\?[^"]*)" rel="next">', html).group(1)
    assert "device=gate-north" in nxt and "label=genuine" in nxt and "min_score=0.25" in nxt


@pytest.mark.django_db
def test_it_filters_by_failed_gate_and_disagreement(viewer_client):
    blurry = f.image(score=0.7, category="low_quality", failed_gates=["blur"])
    f.image(score=0.7, category="low_quality", failed_gates=["face_size"])
    split = f.image(score=0.5, scores={"a": 0.1, "b": 0.9})
    f.image(score=0.5, scores={"a": 0.45, "b": 0.55})
    gallery = reverse("gallery", args=[DAY])
    assert ids_on(viewer_client.get(gallery + "?gate=blur").content.decode()) == [blurry.pk]
    assert ids_on(viewer_client.get(gallery + "?min_disagreement=0.5").content.decode()) == [split.pk]


@pytest.mark.django_db
def test_it_shows_a_bad_filter_to_the_user(viewer_client):
    response = viewer_client.get(reverse("gallery", args=[DAY]) + "?min_score=high&max_score=0.2")
    assert response.status_code == 200
    assert "Enter a number" in response.content.decode()
    response = viewer_client.get(reverse("gallery", args=[DAY]) + "?min_score=0.9&max_score=0.2")
    assert "the score range is empty" in response.content.decode()


@pytest.mark.django_db
def test_it_steps_to_the_previous_and_next_image_within_the_filter(viewer_client):
    a, _, b, c = f.image(score=0.1), f.image(score=0.2, label="attack"), f.image(score=0.3), f.image(score=0.4)
    query = "?label=none&sort=score"

    html = viewer_client.get(reverse("image", args=[b.pk]) + query).content.decode()

    assert re.search(rf'href="/images/{a.pk}/\?[^"]*" rel="prev"', html)
    assert re.search(rf'href="/images/{c.pk}/\?[^"]*" rel="next"', html)
    first = viewer_client.get(reverse("image", args=[a.pk]) + query).content.decode()
    assert 'rel="prev"' not in first


@pytest.mark.django_db
def test_it_draws_the_face_box_and_each_models_crop(viewer_client, demo_ensemble, settings):
    s = demo.render_sample(np.random.default_rng(4), label="genuine", face_size=200)
    put(settings.INBOX_DIR, DAY.isoformat(), "phone-01", "a.jpg", jpeg_bytes(s), sidecar_for(s))
    services.run_day(DAY)
    im = Image.objects.get()

    html = viewer_client.get(reverse("image", args=[im.pk])).content.decode()

    assert f'x="{im.box_x:.1f}"' in html and f'width="{im.box_w:.1f}"' in html
    assert sorted(re.findall(r'data-model="(\w+)"', html)) == sorted(im.scores)
    for name, value in im.scores.items():
        assert f"{value:.4f}" in html and name in html
    assert f"threshold {im.threshold}" in html


@pytest.mark.django_db
def test_it_serves_images_and_thumbnails_only_through_the_permission_check(client, personas, demo_ensemble, settings):
    s = demo.render_sample(np.random.default_rng(5), label="genuine", face_size=200)
    data = jpeg_bytes(s)
    put(settings.INBOX_DIR, DAY.isoformat(), "phone-01", "a.jpg", data, sidecar_for(s))
    services.run_day(DAY)
    im = Image.objects.get()

    client.force_login(personas["viewer"])
    original = client.get(reverse("image-file", args=[im.pk]))
    assert original.status_code == 200 and b"".join(original.streaming_content) == data
    assert original["Content-Type"] == "image/jpeg"
    thumb = client.get(reverse("thumb", args=[im.pk]))
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"

    settings.KOALA_X_ACCEL_REDIRECT = True
    behind_nginx = client.get(reverse("image-file", args=[im.pk]))
    assert behind_nginx["X-Accel-Redirect"] == f"/protected/inbox/{im.path}" and not behind_nginx.content


@pytest.mark.django_db
def test_it_refuses_a_stored_path_that_leaves_the_inbox(viewer_client, settings, tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"secret")
    im = f.image(format="JPEG", path="../../secret.jpg")
    assert viewer_client.get(reverse("image-file", args=[im.pk])).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query", ["sort=time&after=0.5|1", "sort=score&after=2026-11-20T09:00:00%2B00:00|1", "after=nonsense"]
)
def test_it_refuses_a_cursor_that_does_not_fit_the_sort(viewer_client, query):
    f.image(score=0.5)
    html = viewer_client.get(reverse("gallery", args=[DAY]) + "?" + query).content.decode()
    assert "cursor" in html and 'class="errors"' in html
