"""Every score of an image is visible: production's and each shadow run's, with the ensemble,
run, threshold, decision and every member model's score and version (image page and API)."""

import datetime as dt
import io
import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse

import demo
from monitor import runs
from monitor.models import Image, Run, ShadowScore
from monitor.registry import register_manifest
from tests.conftest import DEMO_MANIFEST

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def shadowed_image(demo_ensemble):
    """An image scored by production (the demo ensemble) and by a shadow run of fas_a alone."""
    demo.generate_inbox(settings.INBOX_DIR, days=1, per_day=8, seed=21, end_day=DAY)
    assert runs.run_day(DAY).status == Run.DONE
    register_manifest(DEMO_MANIFEST.parent / "fas_a.toml", threshold=0.3)
    call_command("score_day", DAY.isoformat(), "--ensemble", "fas_a", stdout=io.StringIO(), stderr=io.StringIO())
    shadow = ShadowScore.objects.select_related("image", "run").order_by("id").first()
    assert shadow is not None
    return shadow.image, shadow


@pytest.mark.django_db
def test_it_lists_production_and_shadow_scores_on_the_image_page(client, personas, shadowed_image):
    im, shadow = shadowed_image
    client.force_login(personas["viewer"])
    html = client.get(reverse("image", args=[im.pk])).content.decode()

    assert f"run {im.run_id}" in html  # production's run
    for name, version in im.model_versions.items():
        assert name in html and version in html
    section = html[html.index("<h2>Shadow runs</h2>") :]
    row = re.search(r'<tr class="ensemble" data-shadow="fas_a">(.*?)</tr>', section, re.S).group(1)
    assert f"{shadow.score:.4f}" in row and "threshold 0.3" in row and shadow.decision in row
    assert f"run {shadow.run_id}" in row
    assert shadow.model_versions["fas_a"] in section  # the shadow member's version


@pytest.mark.django_db
def test_it_gives_every_scoring_in_the_api(client, personas, shadowed_image):
    im, shadow = shadowed_image
    client.force_login(personas["viewer"])
    body = client.get(f"/api/images/{im.pk}").json()

    production, shadowed = body["scorings"]
    assert (production["kind"], production["ensemble"], production["run"]) == ("production", "demo", im.run_id)
    assert production["score"] == pytest.approx(im.score) and production["threshold"] == im.threshold
    assert {m["model"]: m["version"] for m in production["models"]} == im.model_versions
    assert (shadowed["kind"], shadowed["ensemble"], shadowed["run"]) == ("shadow", "fas_a", shadow.run_id)
    assert shadowed["score"] == pytest.approx(shadow.score) and shadowed["decision"] == shadow.decision
    [member] = shadowed["models"]
    assert member["model"] == "fas_a" and member["score"] == pytest.approx(shadow.scores["fas_a"])
    assert member["live"] == (shadow.scores["fas_a"] > 0.3)


@pytest.mark.django_db
def test_it_shows_no_shadow_section_for_an_image_only_production_scored(client, personas, demo_ensemble):
    demo.generate_inbox(settings.INBOX_DIR, days=1, per_day=6, seed=22, end_day=DAY)
    runs.run_day(DAY)
    im = Image.objects.exclude(score=None).first()
    client.force_login(personas["viewer"])
    assert "Shadow runs" not in client.get(reverse("image", args=[im.pk])).content.decode()
    assert [s["kind"] for s in client.get(f"/api/images/{im.pk}").json()["scorings"]] == ["production"]
