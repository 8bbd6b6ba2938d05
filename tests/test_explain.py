"""What changed on a day: stored slice counts, the explanation page and API, the gallery's slice
filter and the alerts' links. Days are built with one planted cause over a 14-day window of the
same distribution; expected figures are counted here from the planted rows."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape
from unittest import mock
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from monitor import daily, explain, slices
from monitor.models import Alert, DailyMetric, DaySlice, Device, Image
from monitor.views.explain import SLICES_SHOWN
from tests import factories as f

DAY = dt.date(2026, 11, 20)
WINDOW = 14
SITES = {"cam-1": "north", "cam-2": "north", "cam-3": "south", "cam-4": "south"}
THRESHOLD = 0.5  # factories.ensemble's


@pytest.fixture
def viewer(client, personas):
    client.force_login(personas["viewer"])
    return client


def planted(rng, day, device, n, flag_genuine=0.05, flag_attack=0.9, attack_share=0.2, **spec):
    """n image specs of one device and day: labelled genuine / attack, flagged at the given rates."""
    out = []
    for _ in range(n):
        label = "attack" if rng.random() < attack_share else "genuine"
        flagged = rng.random() < (flag_attack if label == "attack" else flag_genuine)
        out.append(
            {
                "day": day,
                "device": device,
                "site": SITES.get(device, "north"),
                "label": label,
                "flagged": flagged,
                "face_size": float(rng.uniform(130, 300)),
                "hour": int(rng.integers(0, 24)),
                "yaw": float(rng.normal(0, 8)),
                "blur": float(rng.uniform(0, 0.45)),
                **spec,
            }
        )
    return out


def create(specs):
    """The image rows of the specs (scored, low quality when the face is under the face gate):
    each made by factories.image, written in one bulk insert (thousands of rows a test)."""
    made: list[Image] = []
    with mock.patch.object(Image.objects, "create", side_effect=lambda **v: made.append(Image(**v))):
        _create(specs)
    Image.objects.bulk_create(made, batch_size=500)


def _create(specs):
    for s in specs:
        score = float(s["score"]) if "score" in s else (0.3 if s["flagged"] else 0.8)
        small = s["face_size"] < 130
        f.image(
            day=s["day"],
            device_name=s["device"],
            score=score,
            label=s["label"],
            attack_type=s.get("attack_type", ""),
            category="low_quality" if small else None,
            failed_gates=["face_size"] if small else [],
            site=s["site"],
            face_size=s["face_size"],
            yaw=s["yaw"],
            pitch=0.0,
            blur=s["blur"],
            captured_at=dt.datetime.combine(s["day"], dt.time(s["hour"], 30), tzinfo=dt.UTC),
            width=640,
            height=480,
            format="JPEG",
            box_source="sidecar",
        )


def window_specs(rng, per_device=30):
    return [
        s
        for d in range(1, WINDOW + 1)
        for device in SITES
        for s in planted(rng, DAY - dt.timedelta(days=d), device, per_device)
    ]


def build(day_specs, window):
    create(window + day_specs)
    for d in range(WINDOW + 1):
        explain.store_day_slices(DAY - dt.timedelta(days=d))


def expected_share(specs, key, value, k_of, n_of):
    """share = (k - n * p_window(slice)) / (K - N * P_window), counted from the specs."""

    def count(rows, pred):
        return sum(1 for r in rows if pred(r))

    day = [s for s in specs if s["day"] == DAY]
    win = [s for s in specs if s["day"] != DAY]
    inside = lambda r: r[key] == value  # noqa: E731
    k, n = count(day, lambda r: inside(r) and k_of(r)), count(day, lambda r: inside(r) and n_of(r))
    wk, wn = count(win, lambda r: inside(r) and k_of(r)), count(win, lambda r: inside(r) and n_of(r))
    big_k, big_n = count(day, k_of), count(day, n_of)
    p_all = count(win, k_of) / count(win, n_of)
    p_slice = wk / wn if wn else p_all
    return (k - n * p_slice) / (big_k - big_n * p_all)


def rows_of(html: str, table: str) -> list[tuple[str, str]]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    found = re.findall(r'<tr class="slice[^"]*" data-dims="([^"]*)" data-value="([^"]*)"', body)
    return [(unescape(d), unescape(v)) for d, v in found]


def first_gallery_link(html: str, table: str = "slices") -> str:
    body = html.split(f'id="{table}"', 1)[1]
    return re.search(r'<a class="slice-gallery" href="([^"]+)"', body).group(1).replace("&amp;", "&")


def gallery_link_of(html: str, table: str, dims: str, value: str) -> str:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    for row in body.split("<tr ")[1:]:
        found = re.match(r'class="slice[^"]*" data-dims="([^"]*)" data-value="([^"]*)"', row)
        if found and (unescape(found.group(1)), unescape(found.group(2))) == (dims, value):
            return re.search(r'<a class="slice-gallery" href="([^"]+)"', row).group(1).replace("&amp;", "&")
    raise AssertionError(f"no row {dims}={value} in #{table}")


def gallery_ids(client, url: str) -> set[int]:
    html = client.get(url).content.decode()
    assert 'role="alert"' not in html
    return {int(pk) for pk in re.findall(r'href="/images/(\d+)/', html)}


flagged = lambda r: r["flagged"]  # noqa: E731
everyone = lambda r: True  # noqa: E731


# -- planted causes ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_ranks_the_device_whose_flag_rate_tripled_first(viewer):
    rng = np.random.default_rng(1)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 100, flag_genuine=0.05 if dev != "cam-2" else 0.3)]
    specs = window_specs(rng) + day
    build(day, [s for s in specs if s["day"] != DAY])

    html = viewer.get(reverse("day-explain", args=[DAY])).content.decode()
    result = explain.explain_day(DAY)

    assert rows_of(html, "slices")[0] == ("device", "cam-2")
    top = result.result.slices[0]
    assert (top.dims, top.value, top.significant) == ("device", "cam-2", True)
    assert top.share == pytest.approx(expected_share(specs, "device", "cam-2", flagged, everyone))
    assert result.result.overall.significant
    assert 'id="nothing-significant"' not in html


@pytest.mark.django_db
def test_it_finds_the_site_where_replay_attacks_got_through(viewer):
    rng = np.random.default_rng(2)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 60)]
    day += [
        s
        for dev in ("cam-3", "cam-4")
        for s in planted(rng, DAY, dev, 40, flag_attack=0.3, attack_share=1.0, attack_type="replay")
    ]
    specs = window_specs(rng) + day
    build(day, [s for s in specs if s["day"] != DAY])

    result = explain.explain_day(DAY, "tpr")

    top = result.result.slices[0]
    assert result.result.overall.direction == -1  # the TPR dropped
    assert (top.dims, top.value, top.significant) == ("site", "south", True)
    attack = lambda r: r["label"] == "attack"  # noqa: E731
    assert top.share == pytest.approx(
        expected_share(specs, "site", "south", lambda r: attack(r) and r["flagged"], attack)
    )


@pytest.mark.django_db
def test_it_explains_small_faces_by_the_new_device_that_took_them(viewer):
    rng = np.random.default_rng(3)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 80)]
    new = planted(rng, DAY, "cam-9", 60)
    for s in new:
        s["face_size"] = float(rng.uniform(90, 125))
    specs = window_specs(rng) + day + new
    build(day + new, [s for s in specs if s["day"] != DAY])

    result = explain.explain_day(DAY, "low_quality")
    html = viewer.get(reverse("day-explain", args=[DAY]) + "?measure=low_quality").content.decode()

    top = result.result.slices[0]
    assert (top.dims, top.value, top.new, top.significant) == ("device", "cam-9", True, True)
    small = lambda r: r["face_size"] < 130  # noqa: E731
    assert top.share == pytest.approx(expected_share(specs, "device", "cam-9", small, everyone))
    # the top row's gallery link shows exactly the new device's images of the day
    assert rows_of(html, "slices")[0] == ("device", "cam-9")
    link = first_gallery_link(html)
    cam9 = set(Device.objects.get(name="cam-9").images.filter(day=DAY).values_list("pk", flat=True))
    assert len(cam9) == 60
    assert gallery_ids(viewer, link) == cam9


@pytest.mark.django_db
def test_it_shows_a_combination_that_concentrates_the_change(viewer):
    # every device has faces of 100-109 px as often as ever; on the day cam-2 flags nearly all of
    # its small faces, and nothing else changed
    rng = np.random.default_rng(4)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 300 if dev == "cam-2" else 200)]
    window = window_specs(rng)
    for s in window + day:
        if rng.random() < 0.15:
            s["face_size"] = float(rng.uniform(100, 110))
            if s["day"] == DAY and s["device"] == "cam-2":
                s["flagged"] = rng.random() < 0.95
    build(day, window)

    html = viewer.get(reverse("day-explain", args=[DAY])).content.decode()

    assert ("device|face_size", "cam-2|100-109") in rows_of(html, "combinations")
    result = explain.explain_day(DAY)
    combo = next(c for c in result.result.combinations if c.value == "cam-2|100-109")
    singles = {(s.dims, s.value): s for s in result.result.slices}
    assert combo.shift >= 1.5 * max(singles[("device", "cam-2")].shift, singles[("face_size", "100-109")].shift)
    # the combination's gallery link: cam-2's small faces of the day, nothing else
    expected = set(
        Device.objects.get(name="cam-2")
        .images.filter(day=DAY, face_size__gte=100, face_size__lt=110)
        .values_list("pk", flat=True)
    )
    assert len(expected) == sum(1 for s in day if s["device"] == "cam-2" and s["face_size"] < 110)
    assert gallery_ids(viewer, gallery_link_of(html, "combinations", "device|face_size", "cam-2|100-109")) == expected


@pytest.mark.django_db
def test_it_reports_nothing_significant_on_a_normal_day(viewer):
    # each measure's page keeps its chance of a false alarm under 5% (liveness/tests/test_explain.py
    # measures the rate over many normal days); this is one normal day
    rng = np.random.default_rng(12)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 100)]
    build(day, window_specs(rng))

    html = viewer.get(reverse("day-explain", args=[DAY])).content.decode()
    for measure in explain.MEASURES:
        result = explain.explain_day(DAY, measure)
        assert not result.result.overall.significant, measure
        assert not [s for s in result.result.slices + result.result.combinations if s.significant], measure

    assert 'id="nothing-significant"' in html
    assert 'class="slice significant' not in html
    assert rows_of(html, "combinations") == []


# -- the API, the device filter, parameters, permissions ----------------------------------------


@pytest.mark.django_db
def test_it_returns_the_same_ranking_in_the_api(viewer):
    rng = np.random.default_rng(6)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 60, flag_genuine=0.05 if dev != "cam-3" else 0.35)]
    build(day, window_specs(rng))

    html = viewer.get(reverse("day-explain", args=[DAY])).content.decode()
    body = viewer.get(reverse("api-day-explain", args=[DAY])).json()

    shown, more = rows_of(html, "slices"), rows_of(html, "slices-more")
    assert len(shown) == SLICES_SHOWN and more  # the rest one click away, ranked on from there
    assert [(s["dims"], s["value"]) for s in body["slices"]] == shown + more
    assert f'<td class="num">{SLICES_SHOWN + 1}</td>' in html.split('id="slices-more"', 1)[1]
    assert body["slices"][0]["value"] == "cam-3" and body["slices"][0]["significant"]
    top = body["slices"][0]
    assert (top["day"]["k"], top["day"]["n"]) == (sum(s["flagged"] for s in day if s["device"] == "cam-3"), 60)
    gallery = urlparse(top["gallery"])
    assert gallery.path == reverse("gallery", args=[DAY]) and parse_qs(gallery.query) == {"slice": ["device:cam-3"]}


@pytest.mark.django_db
def test_it_explains_one_device_by_its_own_slices(viewer):
    rng = np.random.default_rng(7)
    day = [s for dev in SITES for s in planted(rng, DAY, dev, 80)]
    for s in day:
        if s["device"] == "cam-1" and s["hour"] < 6:
            s["flagged"] = True  # cam-1 flags everything at night
    build(day, window_specs(rng))

    body = viewer.get(reverse("api-day-explain", args=[DAY]) + "?device=cam-1").json()
    html = viewer.get(reverse("day-explain", args=[DAY]) + "?device=cam-1").content.decode()

    cam1 = [s for s in day if s["device"] == "cam-1"]
    assert body["figures"]["flag_rate"]["day"]["n"] == len(cam1)
    assert body["figures"]["flag_rate"]["day"]["k"] == sum(s["flagged"] for s in cam1)
    assert {s["dims"] for s in body["slices"]} <= set(slices.DIMENSIONS) - {"device"}
    hours = {s["value"]: s for s in body["slices"] if s["dims"] == "hour"}
    assert hours["03"]["day"]["n"] == sum(1 for s in cam1 if s["hour"] == 3)
    assert body["combinations"] == []
    link = first_gallery_link(html)
    assert parse_qs(urlparse(link).query)["device"] == ["cam-1"]
    dims, value = rows_of(html, "slices")[0]
    expected = set(
        Device.objects.get(name="cam-1")
        .images.filter(day=DAY)
        .filter(slices.q_of([(dims, value)], DAY))
        .values_list("pk", flat=True)
    )
    assert gallery_ids(viewer, link) == expected


@pytest.mark.django_db
def test_it_refuses_bad_parameters_with_a_message(viewer):
    f.image(day=DAY)
    page = viewer.get(reverse("day-explain", args=[DAY]) + "?measure=speed&window=0&device=nope")
    api = viewer.get(reverse("api-day-explain", args=[DAY]) + "?measure=speed")

    assert page.status_code == 400
    text = page.content.decode()
    assert "no device named &#x27;nope&#x27;" in text and "speed is not one of the available choices" in text
    assert api.status_code == 400 and "measure" in api.json()["errors"]


@pytest.mark.django_db
def test_it_requires_login_and_the_view_permission(client, personas):
    page, api = reverse("day-explain", args=[DAY]), reverse("api-day-explain", args=[DAY])

    assert client.get(page).status_code == 302 and "/login/" in client.get(page)["Location"]
    assert client.get(api).status_code == 401
    client.force_login(personas["nobody"])
    assert client.get(page).status_code == 403
    assert client.get(api).status_code == 403


# -- stored counts ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_the_slices_with_the_days_figures():
    rng = np.random.default_rng(9)
    specs = planted(rng, DAY, "cam-1", 40) + planted(rng, DAY, "cam-3", 30)
    create(specs)

    daily.compute_day(DAY)

    m = DailyMetric.objects.get(day=DAY, device=None)
    genuine = [s for s in specs if s["label"] == "genuine"]
    assert (m.all_flagged, m.all_scored) == (sum(s["flagged"] for s in specs), len(specs))
    assert (m.all_fp, m.all_genuine) == (sum(s["flagged"] for s in genuine), len(genuine))
    result = explain.explain_day(DAY)
    figures = {x.measure.name: x.day for x in result.figures}
    assert (figures["flag_rate"].k, figures["flag_rate"].n) == (m.all_flagged, m.all_scored)
    assert (figures["fpr"].k, figures["fpr"].n) == (m.all_fp, m.all_genuine)
    assert DaySlice.objects.get(day=DAY, dims="device", value="cam-3").images == 30


@pytest.mark.django_db
def test_it_clears_the_slices_of_a_day_whose_images_are_gone():
    create(planted(np.random.default_rng(9), DAY, "cam-1", 40))
    daily.compute_day(DAY)
    assert DaySlice.objects.filter(day=DAY).exists()
    Image.objects.filter(day=DAY).delete()

    daily.compute_day(DAY)
    daily.compute_day(DAY + dt.timedelta(days=1))  # a day that never had any

    assert not DaySlice.objects.filter(day__gte=DAY).exists()


@pytest.mark.django_db
def test_it_reads_a_constant_number_of_queries_whatever_the_window_holds():
    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            explain.explain_day(DAY)
        return len(ctx.captured_queries)

    rng = np.random.default_rng(10)
    create(planted(rng, DAY, "cam-1", 10))
    explain.store_day_slices(DAY)
    few = queries()
    create([s for d in range(1, 8) for s in planted(rng, DAY - dt.timedelta(days=d), "cam-2", 10)])
    for d in range(1, 8):
        explain.store_day_slices(DAY - dt.timedelta(days=d))

    assert queries() == few <= 3


# -- alerts ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_links_each_alert_to_the_explanation_of_its_day(viewer):
    cam = f.device("cam-2")
    Alert.objects.create(rule="fpr", day=DAY, last_day=DAY, device=cam, value=0.1, limit=0.05, message="FPR up")
    Alert.objects.create(rule="psi", day=DAY, last_day=DAY, value=0.3, limit=0.2, message="drift")

    for page in (reverse("alerts"), reverse("home")):
        html = viewer.get(page).content.decode()
        links = {
            a.replace("&amp;", "&")
            for a in re.findall(r'<a class="alert-explain" href="([^"]+)">What changed</a>', html)
        }
        explain_url = reverse("day-explain", args=[DAY])
        assert links == {f"{explain_url}?device=cam-2&measure=fpr", f"{explain_url}?"}, page


@pytest.mark.django_db
def test_it_links_the_day_gallery_to_the_explanation_of_its_day_and_device(viewer):
    f.image(day=DAY, device_name="cam-2", score=0.2)

    plain = viewer.get(reverse("gallery", args=[DAY])).content.decode()
    one = viewer.get(reverse("gallery", args=[DAY]) + "?device=cam-2").content.decode()

    link = r'<a id="day-explain" href="([^"]+)">'
    assert re.search(link, plain).group(1) == reverse("day-explain", args=[DAY])
    assert re.search(link, one).group(1) == reverse("day-explain", args=[DAY]) + "?device=cam-2"
