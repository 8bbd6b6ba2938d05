"""The JSON API: auth (session or Bearer token, JSON 401/403/405, never a login redirect), the
gallery's filters and keyset pages, one image with all its values, daily metrics with Wilson
intervals, and readable 400s."""

import datetime as dt
import hashlib
import io
import math
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitor import browse
from monitor.daily import compute_day
from monitor.models import ApiToken, Image
from tests.conftest import make_user
from tests.factories import image

pytestmark = pytest.mark.django_db

DAY = "2026-11-20"
URLS = ["/api/days", f"/api/days/{DAY}/images", "/api/images/1", "/api/metrics"]


def make_token(username: str, name: str = "script") -> str:
    out = io.StringIO()
    call_command("create_api_token", username, "--name", name, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.fixture
def viewer():
    return make_user("viewer-1")


@pytest.fixture
def api(client, viewer):
    """A client logged in (session) as a viewer."""
    client.force_login(viewer)
    return client


def get(client, url, **params):
    response = client.get(url, params)
    assert response["Content-Type"] == "application/json", (response.status_code, response.content[:200])
    return response.status_code, response.json()


def walk(client, url, **params) -> list[list[int]]:
    """Follow `next` from the first page to the last; the ids of each page."""
    pages = []
    status, body = get(client, url, **params)
    assert status == 200, body
    pages.append([im["id"] for im in body["images"]])
    while body["next"]:
        parts = urlsplit(body["next"])
        assert parts.path == url
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        status, body = get(client, parts.path, **query)
        assert status == 200, body
        pages.append([im["id"] for im in body["images"]])
        assert len(pages) < 1000, "pagination does not end"
    return pages


# -- auth ------------------------------------------------------------------------------------


def test_it_accepts_a_token_made_by_the_command_and_stores_only_its_hash(viewer):
    image(day=DAY)
    token = make_token(viewer.username, "nightly report")
    assert len(token) >= 40 and "\n" not in token
    stored = ApiToken.objects.get()
    assert stored.user == viewer and stored.name == "nightly report"
    assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert stored.last_used_at is None

    response = Client().get("/api/days", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert [d["day"] for d in response.json()["days"]] == [DAY]
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_it_refuses_a_wrong_or_empty_token_with_401_json(viewer):
    make_token(viewer.username)
    for header in ("Bearer not-a-token", "Bearer ", "bearer x" + "y" * 42):
        response = Client().get("/api/days", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response["Content-Type"] == "application/json"
        assert "token" in response.json()["error"]
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_wrong_token_even_with_a_session(api):
    response = api.get("/api/days", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


def test_it_refuses_the_token_of_an_inactive_user(viewer):
    token = make_token(viewer.username)
    viewer.is_active = False
    viewer.save()
    assert Client().get("/api/days", headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("url", URLS)
def test_it_answers_anonymous_with_401_json_not_a_redirect(client, url):
    response = client.get(url)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert "authentication required" in response.json()["error"]
    assert "Location" not in response


@pytest.mark.parametrize("url", URLS)
def test_it_answers_a_user_without_the_view_permission_with_403_json(client, url):
    image(day=DAY)
    nobody = make_user("nobody", group=None)
    client.force_login(nobody)
    response = client.get(url)
    assert response.status_code == 403
    assert "monitor.view_image" in response.json()["error"]
    token = make_token("nobody")
    response = Client().get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_it_answers_other_methods_than_get_with_405(viewer, method):
    token = make_token(viewer.username)
    session = Client(enforce_csrf_checks=True)  # 405 from the API, not Django's CSRF page
    session.force_login(viewer)
    for url in URLS:
        for response in (
            getattr(session, method)(url),
            getattr(Client(enforce_csrf_checks=True), method)(url, headers={"Authorization": f"Bearer {token}"}),
        ):
            assert response.status_code == 405, (method, url)
            assert response["Allow"] == "GET"
            assert "read-only" in response.json()["error"]


def test_it_records_token_use_at_most_once_a_minute(viewer):
    token = make_token(viewer.username)
    stored = ApiToken.objects.get()
    recent = timezone.now() - dt.timedelta(seconds=30)
    ApiToken.objects.filter(pk=stored.pk).update(last_used_at=recent)
    c = Client(headers={"Authorization": f"Bearer {token}"})
    assert c.get("/api/days").status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at == recent
    old = timezone.now() - dt.timedelta(minutes=5)
    ApiToken.objects.filter(pk=stored.pk).update(last_used_at=old)
    assert c.get("/api/days").status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at > old + dt.timedelta(minutes=4)


def test_it_fails_the_command_for_an_unknown_user():
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("create_api_token", "ghost", "--name", "x")
    assert not ApiToken.objects.exists()


def test_it_makes_a_different_token_each_time(viewer):
    assert make_token(viewer.username) != make_token(viewer.username)
    assert ApiToken.objects.count() == 2


# -- days ------------------------------------------------------------------------------------


def test_it_lists_days_newest_first_with_counts_per_category(api):
    for score in (0.9, 0.8, 0.1):
        image(day="2026-11-19", score=score)
    image(day="2026-11-21", score=None)
    image(day="2026-11-23", score=0.2, category="low_quality")
    status, body = get(api, "/api/days")
    assert status == 200
    assert [d["day"] for d in body["days"]] == ["2026-11-23", "2026-11-21", "2026-11-19"]
    d19 = body["days"][2]
    assert d19["images"] == 3
    assert d19["counts"] == {"live": 2, "attack": 1, "low_quality": 0, "no_face": 0, "unreadable": 0}
    assert d19["images_url"].endswith("/api/days/2026-11-19/images")

    status, body = get(api, "/api/days", **{"from": "2026-11-20", "to": "2026-11-22"})
    assert [d["day"] for d in body["days"]] == ["2026-11-21"]
    assert body["days"][0]["counts"]["no_face"] == 1


@pytest.mark.parametrize(
    "params, message",
    [
        ({"from": "2026-13-01"}, "'from': '2026-13-01' is not a date"),
        ({"to": "yesterday"}, "'to': 'yesterday' is not a date"),
        ({"from": "20261101"}, "expected YYYY-MM-DD"),
        ({"from": "2026-11-22", "to": "2026-11-20"}, "'from' (2026-11-22) is after 'to' (2026-11-20)"),
    ],
)
def test_it_refuses_bad_dates_with_a_readable_400(api, params, message):
    for url in ("/api/days", "/api/metrics"):
        status, body = get(api, url, **params)
        assert status == 400
        assert message in body["error"]
        assert body["errors"]


# -- a day's images --------------------------------------------------------------------------


@pytest.fixture
def mixed_day():
    """A day with every kind of row the filters tell apart, and another day that must not leak in."""
    rows = [
        image(day=DAY, score=0.95, label="genuine"),
        image(day=DAY, score=0.7, label="genuine", device_name="gate-02"),
        image(day=DAY, score=0.55, label="attack", attack_type="replay"),
        image(day=DAY, score=0.4, label="genuine"),  # a false positive
        image(day=DAY, score=0.2, label="attack", attack_type="print", device_name="gate-02"),
        image(day=DAY, score=0.1),
        image(day=DAY, score=0.6, category="low_quality", failed_gates=["yaw", "blur"], label="genuine"),
        image(day=DAY, score=0.3, category="low_quality", failed_gates=["face_size"]),
        image(day=DAY, score=None),
        image(day=DAY, score=0.5, scores={"m1": 0.1, "m2": 0.9}),  # disagreement 0.8
    ]
    image(day="2026-11-21", score=0.9, label="genuine")
    return rows


def api_ids(client, **params) -> list[int]:
    status, body = get(client, f"/api/days/{DAY}/images", **params)
    assert status == 200, body
    return [im["id"] for im in body["images"]]


def gallery_ids(**params) -> list[int]:
    form = browse.BrowseForm(params)
    assert form.is_valid(), form.errors
    return [im.pk for im in browse.page(dt.date.fromisoformat(DAY), form.cleaned_data, 500).images]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, lambda im: True),
        ({"min_score": "0.5"}, lambda im: im.score is not None and im.score >= 0.5),
        ({"max_score": "0.3"}, lambda im: im.score is not None and im.score <= 0.3),
        ({"min_score": "0.3", "max_score": "0.6"}, lambda im: im.score is not None and 0.3 <= im.score <= 0.6),
        ({"label": "genuine"}, lambda im: im.label == "genuine"),
        ({"label": "none"}, lambda im: im.label == ""),
        ({"category": "attack"}, lambda im: im.category == "attack"),
        ({"category": "low_quality"}, lambda im: im.category == "low_quality"),
        ({"device": "gate-02"}, lambda im: im.device.name == "gate-02"),
        ({"gate": "blur"}, lambda im: "blur" in im.failed_gates),
        ({"min_disagreement": "0.5"}, lambda im: im.disagreement is not None and im.disagreement >= 0.5),
        (
            {"label": "genuine", "min_score": "0.5", "category": "live"},
            lambda im: im.label == "genuine" and im.score >= 0.5 and im.category == "live",
        ),
    ],
)
def test_it_filters_a_day_like_the_gallery(api, mixed_day, params, expected):
    ids = api_ids(api, **params)
    assert sorted(ids) == sorted(im.pk for im in mixed_day if expected(im))
    assert ids == gallery_ids(**params)  # same rows in the same order as the gallery


def test_it_counts_categories_under_the_other_filters(api, mixed_day):
    status, body = get(api, f"/api/days/{DAY}/images", label="genuine", category="live")
    assert body["day"] == DAY
    # the tabs' counts ignore the category itself but apply the other filters
    assert body["counts"] == {"live": 2, "attack": 1, "low_quality": 1, "no_face": 0, "unreadable": 0}
    assert body["counts"] == browse.category_counts(dt.date.fromisoformat(DAY), {"label": "genuine"})


def test_it_sorts_like_the_gallery(api, mixed_day):
    scores = [im["score"] for im in get(api, f"/api/days/{DAY}/images", sort="-score")[1]["images"]]
    assert scores[:-1] == sorted(scores[:-1], reverse=True) and scores[-1] is None  # no score: last
    assert api_ids(api, sort="-score") == gallery_ids(sort="-score")


@pytest.mark.parametrize("sort", ["score", "-score", "time", "-time", "disagreement"])
def test_it_walks_every_row_exactly_once_across_pages_with_ties(api, sort):
    captured = timezone.make_aware(dt.datetime(2026, 11, 20, 9, 0))
    rows = [image(day=DAY, score=0.7, captured_at=captured) for _ in range(23)]  # ties on everything
    rows += [image(day=DAY, score=0.3, captured_at=captured + dt.timedelta(minutes=i)) for i in range(5)]
    rows += [image(day=DAY, score=None) for _ in range(4)]  # NULL score, NULL time: the tail
    rows += [image(day=DAY, score=0.2, label="attack") for _ in range(3)]
    pages = walk(api, f"/api/days/{DAY}/images", sort=sort, limit="4")
    ids = [pk for p in pages for pk in p]
    assert len(ids) == len(set(ids)) == len(rows)
    assert set(ids) == {im.pk for im in rows}
    assert all(len(p) == 4 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 4
    assert ids == gallery_ids(sort=sort)  # one page of 500 in the gallery = all pages of 4 here


def test_it_keeps_the_filters_in_the_next_link(api):
    genuine = [image(day=DAY, score=0.8, label="genuine") for _ in range(7)]
    image(day=DAY, score=0.8, label="attack")
    image(day=DAY, score=0.4, label="genuine")
    status, body = get(api, f"/api/days/{DAY}/images", label="genuine", min_score="0.5", limit="3")
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["label"] == ["genuine"] and query["min_score"] == ["0.5"] and query["limit"] == ["3"]
    assert query["after"][0].endswith(f"|{body['images'][-1]['id']}")
    pages = walk(api, f"/api/days/{DAY}/images", label="genuine", min_score="0.5", limit="3")
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(pk for p in pages for pk in p) == sorted(im.pk for im in genuine)


def test_it_defaults_to_100_images_a_page_and_says_when_there_is_no_next(api):
    rows = [image(day=DAY, score=0.5) for _ in range(101)]
    status, body = get(api, f"/api/days/{DAY}/images")
    assert len(body["images"]) == 100 and body["next"]
    status, body = get(api, f"/api/days/{DAY}/images", limit="500")
    assert len(body["images"]) == len(rows) and body["next"] is None


def test_it_answers_an_empty_day_with_zero_counts(api):
    status, body = get(api, "/api/days/2020-01-01/images")
    assert status == 200
    assert body["images"] == [] and body["next"] is None and set(body["counts"].values()) == {0}


@pytest.mark.parametrize(
    "params, field, message",
    [
        ({"limit": "0"}, "limit", "an integer from 1 to 500"),
        ({"limit": "501"}, "limit", "an integer from 1 to 500"),
        ({"limit": "ten"}, "limit", "'limit': 'ten'"),
        ({"min_score": "high"}, "min_score", "'min_score': Enter a number"),
        ({"min_score": "1.5"}, "min_score", "less than or equal to 1"),
        ({"min_score": "0.8", "max_score": "0.2"}, "__all__", "the score range is empty"),
        ({"category": "blurry"}, "category", "Select a valid choice"),
        ({"sort": "size"}, "sort", "Select a valid choice"),
        ({"after": "garbage"}, "after", "not a page cursor"),
    ],
)
def test_it_refuses_bad_image_parameters_with_a_readable_400(api, params, field, message):
    status, body = get(api, f"/api/days/{DAY}/images", **params)
    assert status == 400
    assert message in body["error"]
    assert field in body["errors"] and all(isinstance(m, str) for m in body["errors"][field])


# -- one image -------------------------------------------------------------------------------


def test_it_returns_every_stored_value_of_an_image(api):
    im = image(
        day=DAY,
        score=0.42,
        label="attack",
        attack_type="replay",
        scores={"m1": 0.4, "m2": 0.44},
        box_x=10.0,
        box_y=20.0,
        box_w=150.0,
        box_h=160.0,
        face_size=150.0,
        yaw=12.5,
        pitch=-3.0,
        blur=0.21,
        failed_gates=[],
        sidecar={"site": "north", "label": "attack"},
        model_versions={"m1": "m1@1:abcd1234"},
        sorted_path=f"{DAY}/attack/x.jpg",
        has_thumbnail=True,
    )
    status, body = get(api, f"/api/images/{im.pk}")
    assert status == 200
    missing = [f.name for f in Image._meta.concrete_fields if f.name not in body]
    assert not missing, f"fields not in the API: {missing}"
    assert body["id"] == im.pk and body["sha256"] == im.sha256 and body["path"] == im.path
    assert body["scores"] == {"m1": 0.4, "m2": 0.44} and body["score"] == 0.42
    assert body["threshold"] == 0.5 and body["decision"] == "attack" and body["category"] == "attack"
    assert body["box"] == {"x": 10.0, "y": 20.0, "w": 150.0, "h": 160.0}
    assert (body["yaw"], body["pitch"], body["blur"], body["face_size"]) == (12.5, -3.0, 0.21, 150.0)
    assert body["label"] == "attack" and body["attack_type"] == "replay"
    assert body["sidecar"] == {"site": "north", "label": "attack"}
    assert body["model_versions"] == {"m1": "m1@1:abcd1234"}
    assert body["device"] == "phone-01" and body["ensemble"] == "test"
    assert body["urls"]["file"] == "http://testserver" + reverse("image-file", args=[im.pk])
    assert body["urls"]["thumbnail"] == "http://testserver" + reverse("thumb", args=[im.pk])


def test_it_answers_a_missing_image_with_404_json(api):
    status, body = get(api, "/api/images/999999")
    assert status == 404 and body["error"]


def test_it_gives_no_file_url_for_an_unreadable_image_nor_a_missing_thumbnail(api):
    im = image(day=DAY, score=None, category="unreadable", has_thumbnail=False)
    urls = get(api, f"/api/images/{im.pk}")[1]["urls"]
    assert urls["file"] is None and urls["thumbnail"] is None


# -- metrics ---------------------------------------------------------------------------------


def wilson_95(k, n):
    """Independent of liveness.metrics: the textbook Wilson score interval."""
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def known_day(day=DAY):
    """On phone-01: 10 genuine live, 2 genuine flagged (FP), 6 attacks flagged (TP), 2 attacks
    missed, 3 unlabelled flagged, 1 low quality, 1 no face. On gate-02: 4 genuine live, 1 attack
    flagged."""
    for _ in range(10):
        image(day=day, score=0.9, label="genuine")
    for _ in range(2):
        image(day=day, score=0.3, label="genuine")
    for _ in range(6):
        image(day=day, score=0.1, label="attack", attack_type="print")
    for _ in range(2):
        image(day=day, score=0.8, label="attack", attack_type="replay")
    for _ in range(3):
        image(day=day, score=0.2)
    image(day=day, score=0.7, category="low_quality", label="genuine", failed_gates=["blur"])
    image(day=day, score=None)
    for _ in range(4):
        image(day=day, score=0.95, label="genuine", device_name="gate-02")
    image(day=day, score=0.05, label="attack", device_name="gate-02")
    compute_day(dt.date.fromisoformat(day))


def check_rate(rate, k, n):
    low, high = wilson_95(k, n)
    assert (rate["k"], rate["n"]) == (k, n)
    assert rate["rate"] == pytest.approx(k / n)
    assert rate["low"] == pytest.approx(low, abs=1e-9) and rate["high"] == pytest.approx(high, abs=1e-9)
    assert rate["too_few"] == (n < 30)


def test_it_reports_a_days_metrics_with_wilson_bounds(api):
    known_day()
    status, body = get(api, "/api/metrics")
    assert status == 200
    [day] = body["days"]
    assert day["day"] == DAY
    assert day["images"] == 30
    assert day["counts"] == {"live": 16, "attack": 12, "low_quality": 1, "no_face": 1, "unreadable": 0}
    assert day["scored"] == 28
    check_rate(day["flag_rate"], 12, 28)
    check_rate(day["fpr"], 2, 16)
    check_rate(day["tpr"], 7, 9)
    assert day["fpr"]["low"] == pytest.approx(0.03498, abs=1e-4)  # 2 of 16, from a Wilson table
    assert day["fpr"]["high"] == pytest.approx(0.36023, abs=1e-4)
    assert day["threshold"] == 0.5 and day["ensemble"] == "test"


def test_it_reports_one_device_when_asked(api):
    known_day()
    status, body = get(api, "/api/metrics", device="gate-02")
    [day] = body["days"]
    assert day["images"] == 5 and body["device"] == "gate-02"
    check_rate(day["fpr"], 0, 4)
    check_rate(day["tpr"], 1, 1)
    assert day["fpr"]["low"] == 0.0 and day["tpr"]["high"] == 1.0  # exact ends at k = 0 and k = n
    status, body = get(api, "/api/metrics", device="no-such-device")
    assert status == 400 and "no device named 'no-such-device'" in body["error"]


def test_it_gives_no_rate_when_nothing_was_counted(api):
    image(day=DAY, score=0.9)  # unlabelled: no FPR nor TPR
    compute_day(dt.date.fromisoformat(DAY))
    [day] = get(api, "/api/metrics")[1]["days"]
    assert day["fpr"] == {"k": 0, "n": 0, "rate": None, "low": 0.0, "high": 1.0, "too_few": True}
    check_rate(day["flag_rate"], 0, 1)


def test_it_defaults_to_the_last_30_days_that_have_metrics(api):
    start = dt.date(2026, 9, 1)
    days = [start + dt.timedelta(days=2 * i) for i in range(33)]  # every other day: 66 days wide
    for d in days:
        image(day=d, score=0.9)
        compute_day(d)
    body = get(api, "/api/metrics")[1]
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in days[-30:]]
    body = get(api, "/api/metrics", to=days[10].isoformat())[1]
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in days[:11]]
    body = get(api, "/api/metrics", **{"from": days[1].isoformat(), "to": days[3].isoformat()})[1]
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in days[1:4]]


def test_it_reports_iso_figures_per_attack_type(api):
    known_day()
    status, body = get(api, "/api/metrics")
    [day] = body["days"]
    # print: 6 of 6 flagged; replay: both missed; gate-02's untyped attack flagged
    assert {t: (r["k"], r["n"]) for t, r in day["apcer_per_type"].items()} == {
        "print": (0, 6),
        "replay": (2, 2),
        "unknown": (0, 1),
    }
    assert day["apcer"] == 1.0 and day["bpcer"] == pytest.approx(2 / 16)
    assert day["acer"] == pytest.approx((1.0 + 2 / 16) / 2)
    assert len(day["histogram"]) == 10


def test_it_refuses_a_device_name_with_a_nul_character(api):
    status, body = get(api, "/api/metrics", device="a\x00b")
    assert status == 400 and "device" in body["errors"]
