"""The model registry pages: ensembles with members, threshold and change history; model
versions with sha256, shapes, preprocessing and speed; admins activate, change a threshold (a
note saying why is required) and measure speed; the changes show up as trend markers."""

import datetime as dt
import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from monitor import registry
from monitor.models import DailyMetric, Ensemble, EnsembleEvent, ModelVersion
from tests import factories as f
from tests.conftest import DEMO_MANIFEST, DEMO_T, DEMO_VERSION, NEXT_VERSION


@pytest.fixture
def candidate(demo_ensemble):
    """A second, inactive ensemble of the demo models."""
    ens = Ensemble.objects.create(name="candidate", threshold=0.3)
    ens.members.set(demo_ensemble.members.all())
    return ens


def as_user(client, personas, role):
    client.force_login(personas[role])
    return client


def page(client) -> str:
    response = client.get(reverse("models"))
    assert response.status_code == 200
    return response.content.decode()


def ensemble_row(html: str, ens: Ensemble) -> str:
    match = re.search(rf'<tr data-ensemble="{ens.pk}".*?</tr>', html, re.S)
    assert match, f"no row for {ens.name}"
    return match.group(0)


# --- the pages ---------------------------------------------------------------------------------


def test_it_lists_ensembles_members_sha_shapes_and_speed(client, personas, demo_ensemble):
    fas_a = ModelVersion.objects.get(name="fas_a")
    fas_a.latency_ms, fas_a.throughput, fas_a.best_batch = 0.793, 1749.4, 64
    fas_a.measured_at = timezone.now()
    fas_a.save()

    html = page(as_user(client, personas, "viewer"))

    row = ensemble_row(html, demo_ensemble)
    assert "demo" in row and "active" in row and str(DEMO_T) in row and "mean" in row
    for mv in demo_ensemble.members.all():
        assert f'href="{reverse("model", args=[mv.pk])}"' in row
        assert f'<code title="{mv.sha256}">{mv.sha256[:12]}</code>' in html
    assert "registered" in row  # the history: registered, then activated
    assert "<code>[n, 3, 80, 80]</code>" in html and "<code>[n, 2]</code>" in html
    model_row = re.search(rf'<tr data-model="{fas_a.pk}".*?</tr>', html, re.S).group(0)
    assert "NCHW" in model_row and "80×80" in model_row and "RGB" in model_row
    assert "0.79" in model_row and "1749 @ 64" in model_row
    fas_c_row = re.search(r'<tr data-model="\d+">\s*<td><a [^>]*>fas_c</a>.*?</tr>', html, re.S).group(0)
    assert "NHWC" in fas_c_row and "128×128" in fas_c_row and "not measured" in fas_c_row


def test_it_stores_input_and_output_shapes_when_registering(demo_ensemble):
    fas_b = ModelVersion.objects.get(name="fas_b")
    fas_c = ModelVersion.objects.get(name="fas_c")
    assert fas_b.input_shape[1:] == [3, 80, 80] and fas_b.output_shape[1:] == [3]
    assert fas_c.input_shape[1:] == [128, 128, 3] and fas_c.output_shape[1:] == [1]


def test_it_records_a_registered_event_for_a_new_ensemble_only(demo_ensemble):
    kinds = list(demo_ensemble.events.order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds == ["registered", "activated"]
    registry.register_manifest(DEMO_MANIFEST, activate=True)  # again: nothing new
    assert demo_ensemble.events.count() == 2
    registry.register_manifest(DEMO_MANIFEST, threshold=0.6)
    ev = demo_ensemble.events.first()
    assert (ev.kind, ev.old_threshold, ev.new_threshold) == ("threshold", DEMO_T, 0.6)


def test_it_shows_one_model_version_with_its_manifest(client, personas, demo_ensemble, candidate):
    mv = ModelVersion.objects.get(name="fas_c")
    response = as_user(client, personas, "viewer").get(reverse("model", args=[mv.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert mv.sha256 in html
    assert '<pre class="manifest">' in html and "[crop]" in html and "letterbox" in html
    assert "[n, 128, 128, 3]" in html and "[n, 1]" in html and "sigmoid" in html
    assert f"demo (threshold {DEMO_T})" in html and "candidate (threshold 0.3)" in html
    assert "Not measured yet" in html
    assert "<form" not in html.split("<main>")[1]  # a viewer gets no measure button


def test_it_answers_404_for_an_unknown_model_version(client, personas, db):
    assert as_user(client, personas, "viewer").get(reverse("model", args=[999])).status_code == 404


# --- who may change what -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_it_shows_no_forms_to_non_admins_and_refuses_their_posts(client, personas, demo_ensemble, candidate, role):
    as_user(client, personas, role)
    events = EnsembleEvent.objects.count()
    main = page(client).split("<main>")[1]
    assert "<form" not in main
    mv = ModelVersion.objects.get(name="fas_a")
    posts = [
        (reverse("ensemble-activate", args=[candidate.pk]), {"note": "try it"}),
        (reverse("ensemble-threshold", args=[demo_ensemble.pk]), {"threshold": "0.6", "note": "why not"}),
        (reverse("model-measure", args=[mv.pk]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    demo_ensemble.refresh_from_db()
    mv.refresh_from_db()
    assert demo_ensemble.is_active and demo_ensemble.threshold == DEMO_T and mv.measured_at is None
    assert EnsembleEvent.objects.count() == events


def test_it_refuses_get_on_the_change_urls(client, personas, demo_ensemble):
    as_user(client, personas, "admin")
    assert client.get(reverse("ensemble-threshold", args=[demo_ensemble.pk])).status_code == 405
    assert client.get(reverse("ensemble-activate", args=[demo_ensemble.pk])).status_code == 405


def test_it_checks_the_csrf_token(personas, demo_ensemble, candidate):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    response = client.post(reverse("ensemble-activate", args=[candidate.pk]), {"note": "no token"})
    assert response.status_code == 403
    assert Ensemble.objects.get(is_active=True) == demo_ensemble


# --- activating ----------------------------------------------------------------------------------


def test_it_activates_an_ensemble_with_a_note(client, personas, demo_ensemble, candidate):
    as_user(client, personas, "admin")
    html = page(client)
    assert f'action="{reverse("ensemble-activate", args=[candidate.pk])}"' in html
    assert f'action="{reverse("ensemble-activate", args=[demo_ensemble.pk])}"' not in html  # already active

    response = client.post(reverse("ensemble-activate", args=[candidate.pk]), {"note": "shadow run looked better"})

    assert response.status_code == 302 and response["Location"] == reverse("models")
    assert list(Ensemble.objects.filter(is_active=True)) == [candidate]
    ev = EnsembleEvent.objects.get(kind="activated", ensemble=candidate)
    assert ev.user == personas["admin"] and ev.note == "shadow run looked better"
    html = client.get(response["Location"]).content.decode()
    assert "candidate is now the active one" in html
    row = ensemble_row(html, candidate)
    assert "shadow run looked better" in row and "admin-user" in row


def test_it_records_nothing_when_activating_the_active_ensemble(client, personas, demo_ensemble):
    as_user(client, personas, "admin")
    before = EnsembleEvent.objects.count()
    response = client.post(reverse("ensemble-activate", args=[demo_ensemble.pk]), {"note": "again"}, follow=True)
    assert "already was the active one" in response.content.decode()
    assert EnsembleEvent.objects.count() == before


# --- the threshold -------------------------------------------------------------------------------


def test_it_changes_the_threshold_with_a_note(client, personas, demo_ensemble):
    as_user(client, personas, "admin")
    url = reverse("ensemble-threshold", args=[demo_ensemble.pk])

    response = client.post(url, {"threshold": "0.55", "note": "fewer false alarms at gate-north"}, follow=True)

    demo_ensemble.refresh_from_db()
    assert demo_ensemble.threshold == 0.55
    ev = EnsembleEvent.objects.get(kind="threshold")
    assert (ev.ensemble, ev.old_threshold, ev.new_threshold) == (demo_ensemble, DEMO_T, 0.55)
    assert ev.user == personas["admin"] and ev.note == "fewer false alarms at gate-north"
    html = response.content.decode()
    assert f"Threshold of demo: {DEMO_T} → 0.55." in html
    row = ensemble_row(html, demo_ensemble)
    assert f"threshold {DEMO_T} → 0.55" in row and "fewer false alarms at gate-north" in row


@pytest.mark.parametrize(
    "data, error",
    [
        ({"threshold": "0.6", "note": "   "}, "a note is required: say why the threshold changes"),
        ({"threshold": "0.6"}, "a note is required: say why the threshold changes"),
        ({"threshold": "1.5", "note": "looks right"}, "the threshold must be in [0, 1]"),
        ({"threshold": "-0.1", "note": "looks right"}, "the threshold must be in [0, 1]"),
        ({"threshold": "abc", "note": "looks right"}, "enter a number in [0, 1]"),
        ({"threshold": str(DEMO_T), "note": "same"}, f"the threshold of demo is already {DEMO_T}"),
    ],
)
def test_it_refuses_a_bad_threshold_change_and_says_why(client, personas, demo_ensemble, data, error):
    as_user(client, personas, "admin")
    events = EnsembleEvent.objects.count()

    response = client.post(reverse("ensemble-threshold", args=[demo_ensemble.pk]), data)

    assert response.status_code == 400
    html = response.content.decode()
    assert error in html
    row = ensemble_row(html, demo_ensemble)
    assert error in row  # shown at the form that failed
    if data.get("note", "").strip():
        assert f'value="{data["note"]}"' in row  # the input is kept
    demo_ensemble.refresh_from_db()
    assert demo_ensemble.threshold == DEMO_T
    assert EnsembleEvent.objects.count() == events


def test_it_needs_a_note_and_a_threshold_in_range_in_the_registry_too(demo_ensemble, personas):
    admin = personas["admin"]
    with pytest.raises(ValueError, match="a note is required"):
        registry.set_threshold(demo_ensemble, 0.6, user=admin, note="")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        registry.set_threshold(demo_ensemble, 1.5, user=admin, note="why")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        registry.set_threshold(demo_ensemble, float("nan"), user=admin, note="why")
    event = registry.set_threshold(demo_ensemble, 0.5, user=admin, note="round number")
    assert (event.old_threshold, event.new_threshold, demo_ensemble.threshold) == (DEMO_T, 0.5, 0.5)
    assert Ensemble.objects.get(pk=demo_ensemble.pk).threshold == 0.5


# --- speed ---------------------------------------------------------------------------------------


def test_it_measures_a_model_versions_speed(client, personas, demo_ensemble):
    as_user(client, personas, "admin")
    mv = ModelVersion.objects.get(name="fas_a")

    response = client.post(reverse("model-measure", args=[mv.pk]), {"back": "model"})

    assert response.status_code == 302 and response["Location"] == reverse("model", args=[mv.pk])
    mv.refresh_from_db()
    assert mv.latency_ms > 0 and mv.throughput > 0 and mv.best_batch in (1, 8, 32, 64)
    assert mv.measured_at is not None
    html = client.get(response["Location"]).content.decode()
    assert f"{mv.latency_ms:.2f} ms/image" in html
    assert f"images/s at batch {mv.best_batch}" in html


def test_it_says_so_when_a_model_file_is_missing(client, personas, demo_ensemble, settings):
    as_user(client, personas, "admin")
    mv = ModelVersion.objects.get(name="fas_b")
    (settings.MODELS_DIR / mv.file).unlink()

    response = client.post(reverse("model-measure", args=[mv.pk]), follow=True)

    assert response.status_code == 200
    assert "Could not measure fas_b" in response.content.decode()
    mv.refresh_from_db()
    assert mv.measured_at is None


# --- trend markers -------------------------------------------------------------------------------


def trend(response) -> dict:
    match = re.search(
        r'<script id="trend-data" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    return json.loads(match.group(1))


def metric(day, ensemble, threshold, versions=None):
    return DailyMetric.objects.create(
        day=day,
        ensemble=ensemble,
        threshold=threshold,
        model_versions=versions or {"fas_a": "fas_a@1:aaaa"},
        images=100,
        counts={"live": 90, "attack": 10},
        scored=100,
        flagged=10,
    )


def test_it_marks_a_threshold_change_on_the_trend_chart(client, personas, demo_ensemble):
    as_user(client, personas, "admin")
    today = timezone.localdate()
    client.post(
        reverse("ensemble-threshold", args=[demo_ensemble.pk]), {"threshold": "0.55", "note": "print attacks up"}
    )
    metric(today - dt.timedelta(days=1), demo_ensemble, DEMO_T)
    metric(today, demo_ensemble, 0.55)

    response = client.get(reverse("home"))
    markers = trend(response)["markers"]

    want = f"threshold {DEMO_T} → 0.55: print attacks up (by admin-user)"
    assert [m["day"] for m in markers] == [today.isoformat()]
    assert markers[0]["text"].endswith(want)
    assert markers[0]["text"].count(f"{DEMO_T} → 0.55") == 1  # the figures' own change is not repeated
    assert want in response.content.decode()


def test_it_joins_the_events_and_figure_changes_of_one_local_day(client, personas, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    day = dt.date(2026, 11, 20)
    ens = f.ensemble("prod", threshold=0.5, active=True)
    other = f.ensemble("candidate", threshold=0.4, active=False)
    metric(day - dt.timedelta(days=1), ens, 0.5, {"m1": "m1@1:aaaa"})
    metric(day, ens, 0.5, {"m1": "m1@2:bbbb"})
    late = dt.datetime(2026, 11, 19, 23, 30, tzinfo=dt.UTC)  # 00:30 on the 20th in Berlin
    EnsembleEvent.objects.create(
        ensemble=ens, kind="threshold", old_threshold=0.45, new_threshold=0.5, note="n1", created_at=late
    )
    EnsembleEvent.objects.create(
        ensemble=ens, kind="activated", note="back", user=personas["admin"], created_at=late + dt.timedelta(hours=1)
    )
    # a candidate's threshold is not what the chart shows; a registration is no change of production
    EnsembleEvent.objects.create(
        ensemble=other, kind="threshold", old_threshold=0.4, new_threshold=0.3, created_at=late
    )
    EnsembleEvent.objects.create(ensemble=ens, kind="registered", created_at=late)

    markers = trend(as_user(client, personas, "viewer").get(reverse("home")))["markers"]

    assert markers == [
        {
            "day": "2026-11-20",
            "text": "models m1: m1@1:aaaa → m1@2:bbbb; threshold 0.45 → 0.5: n1; "
            "ensemble prod activated: back (by admin-user)",
        }
    ]


def test_it_leaves_out_events_outside_the_charts_range(client, personas):
    day = dt.date(2026, 11, 20)
    ens = f.ensemble("prod", threshold=0.5, active=True)
    metric(day, ens, 0.5)
    old = timezone.make_aware(dt.datetime(2026, 9, 1, 12))
    later = timezone.make_aware(dt.datetime(2026, 11, 22, 12))
    for when in (old, later):
        EnsembleEvent.objects.create(
            ensemble=ens, kind="threshold", old_threshold=0.4, new_threshold=0.5, created_at=when
        )

    markers = trend(as_user(client, personas, "viewer").get(reverse("home")))["markers"]

    assert markers == []


# --- the Django admin: shown, never edited (changes go through the models page, with events) -------


@pytest.fixture(params=["admin", "superuser"])
def staff(request, personas, django_user_model):
    """The admin persona (staff in the admin group) and a superuser, who has every permission."""
    if request.param == "admin":
        return personas["admin"]
    return django_user_model.objects.create_superuser("root", password="a-long-test-password")


def admin_url(obj, action: str) -> str:
    return reverse(f"admin:monitor_{obj._meta.model_name}_{action}", args=[obj.pk])


def test_the_django_admin_shows_an_ensemble_read_only(client, staff, demo_ensemble):
    client.force_login(staff)
    response = client.get(admin_url(demo_ensemble, "change"))
    html = response.content.decode()
    assert response.status_code == 200 and str(DEMO_T) in html
    for field in ("threshold", "is_active", "members", "name"):
        assert f'name="{field}"' not in html, field


def test_the_django_admin_cannot_change_an_ensembles_threshold_activation_or_members(
    client, staff, demo_ensemble, candidate
):
    client.force_login(staff)
    members = sorted(demo_ensemble.members.values_list("pk", flat=True))
    events = EnsembleEvent.objects.count()
    data = {"name": "candidate-renamed", "threshold": "0.9", "rule": "mean", "is_active": "on", "members": members[:1]}

    response = client.post(admin_url(candidate, "change"), data)

    assert response.status_code == 403
    candidate.refresh_from_db()
    assert (candidate.name, candidate.threshold, candidate.is_active) == ("candidate", 0.3, False)
    assert sorted(candidate.members.values_list("pk", flat=True)) == members
    assert EnsembleEvent.objects.count() == events
    assert client.post(reverse("admin:monitor_ensemble_add"), {**data, "name": "new"}).status_code == 403
    assert client.post(admin_url(candidate, "delete"), {"post": "yes"}).status_code == 403
    assert set(Ensemble.objects.values_list("name", flat=True)) == {"demo", "candidate"}


def test_the_django_admin_cannot_change_a_registered_model_version(client, staff, demo_ensemble):
    client.force_login(staff)
    mv = ModelVersion.objects.get(name="fas_a")
    before = ModelVersion.objects.filter(pk=mv.pk).values().get()
    html = client.get(admin_url(mv, "change")).content.decode()
    assert 'name="manifest"' not in html and 'name="sha256"' not in html and "[crop]" in html
    data = {"name": "fas_x", "version": "9", "sha256": "0" * 64, "file": "other.onnx", "manifest": "[model]\n"}

    assert client.post(admin_url(mv, "change"), data).status_code == 403
    assert client.post(reverse("admin:monitor_modelversion_add"), data).status_code == 403
    assert client.post(admin_url(mv, "delete"), {"post": "yes"}).status_code == 403

    assert ModelVersion.objects.filter(pk=mv.pk).values().get() == before
    assert demo_ensemble.members.filter(pk=mv.pk).exists()


# --- one ONNX file, two versions -----------------------------------------------------------------


def test_it_lists_two_versions_of_one_onnx_file_each_with_its_own_manifest(client, personas, demo_ensemble, tmp_path):
    fas_a = DEMO_MANIFEST.with_name("fas_a.toml")
    (tmp_path / "fas_a.onnx").symlink_to(fas_a.with_name("fas_a.onnx"))
    text = (
        fas_a.read_text()
        .replace(f'version = "{DEMO_VERSION}"', f'version = "{NEXT_VERSION}"')
        .replace("scale = 2.7", "scale = 4.0")
    )
    (tmp_path / "fas_a.toml").write_text(text)
    v3 = registry.register_manifest(tmp_path / "fas_a.toml")
    v2 = ModelVersion.objects.get(name="fas_a", version=DEMO_VERSION)

    html = page(as_user(client, personas, "viewer"))

    assert v2.sha256 == v3.sha256 and v2.file == v3.file
    for mv, scale in ((v2, "2.7"), (v3, "4.0")):
        assert re.search(rf'<tr data-model="{mv.pk}">.*?{mv.sha256[:12]}.*?</tr>', html, re.S)
        detail = client.get(reverse("model", args=[mv.pk])).content.decode()
        assert f"scale = {scale}" in detail and f"version = &quot;{mv.version}&quot;" in detail
