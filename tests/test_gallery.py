"""The day gallery, the image detail and the protected image files."""

import datetime as dt
import re

import numpy as np
import pytest
from django.urls import reverse

import demo
from monitor import runs
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
    runs.run_day(DAY)
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
    runs.run_day(DAY)
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
def test_it_revalidates_a_thumbnail_by_its_etag_after_the_permission_check(client, personas, settings):
    im = f.image(sha256="ab" * 32, has_thumbnail=True)
    thumb = settings.THUMBS_DIR / im.thumb_relpath
    thumb.parent.mkdir(parents=True)
    thumb.write_bytes(b"a thumbnail")
    url = reverse("thumb", args=[im.pk])

    client.force_login(personas["viewer"])
    first = client.get(url)
    again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    changed = client.get(url, HTTP_IF_NONE_MATCH='"another"')
    client.force_login(personas["nobody"])
    refused = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])

    assert first.status_code == 200 and first["ETag"] == f'"{im.sha256}"'
    assert b"".join(first.streaming_content) == b"a thumbnail"
    assert again.status_code == 304 and not again.content and again["Cache-Control"] == "private, max-age=3600"
    assert changed.status_code == 200
    assert refused.status_code == 403  # the ETag never skips the permission check


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


# --- the thumbnails, rendered cheaply (monitor/views/gallery.py: `thumbs_html`, THUMB_FIELDS) ------------

# the thumbnail list as the template rendered it from whole Image rows, before `thumbs_html`
TEMPLATE_BEFORE = """<ul class="thumbs">
  {% for im in images %}
  <li class="thumb cat-{{ im.category }}">
    <a href="{% url 'image' im.pk %}?{{ filter_query }}" title="{{ im.path }}">
      {% if im.has_thumbnail %}<img src="{% url 'thumb' im.pk %}" alt="{{ im.device.name }} {{ im.category }}" \
loading="lazy" width="160" height="160">
      {% elif im.purged_at %}<span class="nothumb purged" title="image purged on {{ im.purged_at|date:'Y-m-d' }}">\
purged</span>
      {% else %}<span class="nothumb">{{ im.category }}</span>{% endif %}
    </a>
    <span class="meta">
      {% if im.score is not None %}<span class="score">{{ im.score|floatformat:3 }}</span>{% endif %}
      {% if im.label %}<span class="label label-{{ im.label }}">{{ im.label }}{% if im.attack_type %}: \
{{ im.attack_type }}{% endif %}</span>{% endif %}
      <span class="device">{{ im.device.name }}</span>
    </span>
  </li>
  {% endfor %}
</ul>"""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "n"),
    [("", 5), ("?sort=-time&label=attack", 2), ("?category=no_face", 1), ("?sort=-score&min_score=0.2", 2)],
)
def test_it_shows_the_thumbnails_as_the_template_did_from_whole_rows(viewer_client, query, n):
    from django.template import engines
    from django.utils import timezone

    f.image(score=0.1235, has_thumbnail=True)  # floatformat rounds half up: 0.124
    f.image(score=0.0005, device_name="gate <north> & co", label="attack", attack_type="print & co")
    f.image(score=1.0, label="genuine", purged_at=timezone.now())
    f.image(score=None, path='2026-11-20/x/"odd" name.jpg', has_thumbnail=True)
    f.image(score=0.49999, label="attack", attack_type="")

    response = viewer_client.get(reverse("gallery", args=[DAY]) + query)
    html = response.content.decode()

    shown = re.search(r'<ul class="thumbs">.*?</ul>', html, re.S)
    assert shown, "no thumbnails on the page"
    ids = ids_on(shown.group(0))
    images = sorted(Image.objects.filter(pk__in=ids).select_related("device"), key=lambda im: ids.index(im.pk))
    filter_query = response.context["filter_query"]  # the page's filter, as the view made it
    assert filter_query and ("sort=" in filter_query)
    before = engines["django"].from_string(TEMPLATE_BEFORE).render({"images": images, "filter_query": filter_query})
    assert shown.group(0) == before
    assert len(images) == n


@pytest.mark.django_db
def test_it_reads_only_the_thumbnail_columns_in_a_fixed_number_of_queries(viewer_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    f.image(score=0.3, sidecar={"face": {"x": 1}}, scores={"m1": 0.3, "m2": 0.3})
    with CaptureQueriesContext(connection) as few:
        viewer_client.get(reverse("gallery", args=[DAY]))
    few_sql = [q["sql"] for q in few.captured_queries]
    for i in range(70):
        f.image(score=i / 70, device_name=f"kiosk-{i % 5}", label="attack" if i % 3 else "", has_thumbnail=True)
    with CaptureQueriesContext(connection) as many:
        viewer_client.get(reverse("gallery", args=[DAY]))
    many_sql = [q["sql"] for q in many.captured_queries]

    assert len(many_sql) <= len(few_sql)  # no query per thumbnail (with few, the unscored tail is read too)
    page = [sql for sql in many_sql if "LIMIT" in sql and '"monitor_image"."path"' in sql]
    assert page, "no page query"
    assert all('"sidecar"' not in sql and '"scores"' not in sql and '"crop_rects"' not in sql for sql in page)


def test_url_maker_builds_what_reverse_builds_also_under_a_script_prefix():
    from django.urls import get_script_prefix, set_script_prefix

    from monitor.views.gallery import url_maker

    old = get_script_prefix()
    try:
        for prefix in ("/", "/koala/"):
            set_script_prefix(prefix)
            image, thumb = url_maker("image"), url_maker("thumb")
            for pk in (1, 7, 90, 9081726354, 123456789012):
                assert image(pk) == reverse("image", args=[pk])
                assert thumb(pk) == reverse("thumb", args=[pk])
    finally:
        set_script_prefix(old)
