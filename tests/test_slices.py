"""The gallery's slice filter (monitor/slices.py, monitor/browse.py): every stored slice count of a
day is exactly what the gallery shows for that slice; bad slices are form errors."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pytest
from django.http import QueryDict
from django.urls import reverse

from monitor import browse, explain, slices
from monitor.models import DaySlice, Image
from tests import factories as f
from tests.test_explain import gallery_ids

DAY = dt.date(2026, 11, 20)


@pytest.fixture
def viewer(client, personas):
    client.force_login(personas["viewer"])
    return client


def varied_day(rng, n=120):
    """Images with every kind of value, missing ones included, for the filter's exactness."""
    sites, formats, sources = ["north", "", "south"], ["JPEG", "PNG", ""], ["sidecar", "detector", ""]
    guesses = [{}, {"m1": "print"}, {"m1": "replay", "m2": "replay"}, {"m1": "print", "m2": "replay"}]
    for i in range(n):
        score = None if i % 17 == 0 else float(rng.uniform(0, 1))
        face = None if i % 11 == 0 else float(rng.choice([99.5, 100, 109.9, 110, 129, 130, 149.99, 150, 400]))
        yaw = None if i % 7 == 0 else float(rng.choice([-35, -30, -10, 0, 9.99, 20, 30, 30.01]))
        pitch = None if i % 5 == 0 else float(rng.choice([-20, 0, 10, 31]))
        gates = [
            g
            for g, bad in (("face_size", face is not None and face < 130), ("yaw", yaw is not None and abs(yaw) > 30))
            if bad
        ]
        f.image(
            day=DAY,
            device_name=f"cam-{i % 3}",
            score=score,
            label=["", "genuine", "attack"][i % 3],
            category="low_quality" if gates and score is not None else None,
            failed_gates=gates,
            site=sites[i % 3],
            face_size=face,
            yaw=yaw,
            pitch=pitch,
            blur=None if i % 13 == 0 else float(rng.choice([0, 0.1, 0.29, 0.3, 0.5, 0.9])),
            captured_at=None if i % 19 == 0 else dt.datetime(2026, 11, 20, i % 24, 59, tzinfo=dt.UTC),
            width=None if i % 23 == 0 else [640, 1920][i % 2],
            height=None if i % 23 == 0 else [480, 1080][i % 2],
            format=formats[i % 3],
            box_source=sources[(i // 3) % 3],
            attack_guesses=guesses[i % 4],
            attempt_index=[None, 1, 2, 3][i % 4],
            disagreement=None if score is None else float(rng.choice([0, 0.05, 0.1, 0.19, 0.2, 0.7])),
        )


@pytest.mark.django_db
def test_it_filters_the_gallery_to_exactly_the_stored_count_of_every_slice(settings):
    settings.TIME_ZONE = "Asia/Shanghai"  # the hour of capture is local: UTC 20:59 is 04 here
    varied_day(np.random.default_rng(8))
    explain.store_day_slices(DAY)

    stored = list(DaySlice.objects.filter(day=DAY))
    assert {r.dims for r in stored} == set(slices.DIMENSIONS) | {slices.join(p) for p in slices.PAIRS}
    for dim in slices.DIMENSIONS:  # each dimension is a partition of the day
        assert sum(r.images for r in stored if r.dims == dim) == 120, dim
    for r in stored:
        form = browse.BrowseForm(QueryDict(urlencode_slice(r.dims, r.value)))
        assert form.is_valid(), (r.dims, r.value, form.errors)
        assert browse.filtered(DAY, form.cleaned_data).count() == r.images, (r.dims, r.value)
    hour = {r.value: r.images for r in stored if r.dims == "hour"}
    assert hour["04"] == sum(1 for i in range(120) if i % 19 and (i % 24 + 8) % 24 == 4)


def urlencode_slice(dims: str, value: str) -> str:
    """A slice as the gallery's repeated parameters: one `slice=dim:value` per dimension."""
    names = dims.split(slices.SEPARATOR)
    values = value.split(slices.SEPARATOR) if len(names) > 1 else [value]
    q = QueryDict(mutable=True)
    q.setlist("slice", [f"{d}:{v}" for d, v in zip(names, values, strict=True)])
    return q.urlencode()


@pytest.mark.django_db
def test_it_refuses_an_unknown_slice_in_the_gallery_with_a_message(viewer):
    f.image(day=DAY)
    for bad in ("colour:red", "face_size:huge", "device", "hour:25"):
        response = viewer.get(reverse("gallery", args=[DAY]), {"slice": bad})
        assert response.status_code == 200 and 'role="alert"' in response.content.decode(), bad
        api = viewer.get(reverse("api-day-images", args=[DAY]), {"slice": bad})
        assert api.status_code == 400 and "slice" in api.json()["errors"], bad


@pytest.mark.django_db
def test_it_keeps_the_slice_filter_on_the_gallery_links(viewer):
    for i in range(6):
        f.image(day=DAY, device_name="cam-1", face_size=105.0 if i % 2 else 140.0, score=0.1 + i / 10)
    url = reverse("gallery", args=[DAY]) + "?slice=device:cam-1&slice=face_size:100-109"

    html = viewer.get(url).content.decode()
    tab = re.search(r'<a href="\?([^"]*)" class="tab[^"]*" data-category="attack"', html).group(1)

    assert len(gallery_ids(viewer, url)) == 3
    assert gallery_ids(viewer, reverse("gallery", args=[DAY]) + "?" + tab.replace("&amp;", "&")) == set(
        Image.objects.filter(day=DAY, face_size=105.0, category="attack").values_list("pk", flat=True)
    )


@pytest.mark.django_db
def test_it_says_which_slice_the_gallery_shows_and_keeps_it_when_filters_are_applied(viewer):
    for i in range(6):
        f.image(
            day=DAY, device_name="cam-1" if i < 4 else "cam-2", face_size=105.0 if i % 2 else 140.0, score=0.1 + i / 10
        )
    url = reverse("gallery", args=[DAY]) + "?slice=device:cam-1&slice=face_size:100-109"

    html = viewer.get(url).content.decode()
    form = html.split('id="filters"', 1)[1].split("</form>", 1)[0]
    kept = re.search(r'<input type="hidden" name="slice" value="([^"]+)"', form).group(1)
    every = re.search(r'id="active-slice">.*?<a href="\?([^"]*)"', form, re.S).group(1).replace("&amp;", "&")

    assert "device = cam-1, face_size = 100-109" in form
    applied = reverse("gallery", args=[DAY]) + "?" + f"slice={kept}&sort=-score"  # Apply sends the hidden field
    assert gallery_ids(viewer, applied) == set(
        Image.objects.filter(day=DAY, device__name="cam-1", face_size=105.0).values_list("pk", flat=True)
    )
    assert len(gallery_ids(viewer, reverse("gallery", args=[DAY]) + "?" + every)) == 6  # the link out of the slice
