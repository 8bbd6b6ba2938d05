"""Shadow scoring (issue 6): a non-active ensemble scores a day into ShadowScore rows and leaves
everything of production alone. Real demo models on a small generated day."""

import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse

import demo
from liveness.boxes import Box
from liveness.pipeline import FileInput, Pipeline
from monitor import errors, loading, runs, shadow
from monitor.models import (
    Alert,
    DailyMetric,
    Device,
    Ensemble,
    Image,
    InboxFile,
    LabelEvent,
    ModelVersion,
    Run,
    ShadowScore,
)
from monitor.registry import register_manifest
from tests.conftest import DEMO_MANIFEST, DEMO_T, DEMO_VERSION, NEXT_VERSION, ROOT

DAY = dt.date(2026, 11, 20)
FAS_A = DEMO_MANIFEST.parent / "fas_a.toml"


@pytest.fixture(scope="session")
def small_day(tmp_path_factory):
    out = tmp_path_factory.mktemp("shadow_inbox")
    demo.generate_inbox(out, days=1, per_day=30, seed=13, end_day=DAY)
    return out


@pytest.fixture
def scored_day(small_day, demo_ensemble, data_root):
    """The day scored by production (the active demo ensemble: fas_a, fas_b, fas_c)."""
    shutil.copytree(small_day, settings.INBOX_DIR, dirs_exist_ok=True)
    run = runs.run_day(DAY)
    assert run.status == Run.DONE
    return run


@pytest.fixture
def fas_a_only(demo_ensemble):
    """A second, non-active ensemble: the demo's fas_a alone, with another threshold."""
    ens = register_manifest(FAS_A, threshold=0.3)
    assert not ens.is_active and list(ens.members.values_list("name", flat=True)) == ["fas_a"]
    return ens


def listing(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_nlink)
    return out


def production_state() -> dict:
    return {
        "images": list(Image.objects.order_by("id").values()),
        "inbox_files": list(InboxFile.objects.order_by("id").values()),
        "daily_metrics": list(DailyMetric.objects.order_by("id").values()),
        "alerts": list(Alert.objects.order_by("id").values()),
        "label_events": list(LabelEvent.objects.order_by("id").values()),
        "devices": list(Device.objects.order_by("id").values()),
        "runs": list(Run.objects.filter(shadow=False).order_by("id").values()),
        "sorted": listing(settings.SORTED_DIR),
        "thumbs": listing(settings.THUMBS_DIR),
        "inbox": listing(settings.INBOX_DIR),
    }


def production_scored():
    return Image.objects.filter(day=DAY, score__isnull=False, box_w__isnull=False)


@pytest.mark.django_db
def test_it_leaves_the_active_results_untouched(scored_day, fas_a_only):
    before = production_state()
    assert before["sorted"] and before["thumbs"] and before["daily_metrics"]

    run = shadow.run_shadow_day(DAY, fas_a_only)

    assert (run.status, run.shadow, run.ensemble, run.threshold) == (Run.DONE, True, fas_a_only, 0.3)
    after = production_state()
    for key in before:
        assert after[key] == before[key], key


@pytest.mark.django_db
def test_it_stores_one_shadow_score_per_scored_image(scored_day, fas_a_only):
    run = shadow.run_shadow_day(DAY, fas_a_only)

    scored = production_scored()
    rows = {s.image_id: s for s in ShadowScore.objects.filter(ensemble=fas_a_only)}
    assert scored.count() > 20 and set(rows) == set(scored.values_list("id", flat=True))
    assert run.total == run.processed == run.new_images == len(rows) and run.failed_files == 0
    flagged = sum(s.decision == "attack" for s in rows.values())
    assert run.counts == {"scored": len(rows), "flagged": flagged, "day_total": len(rows)}
    # fas_a alone on the stored box scores exactly what fas_a said in production (same face, same
    # crop, the same decode: full resolution for the demo models' opencv_linear crops)
    for im in scored:
        s = rows[im.pk]
        assert s.scores == {"fas_a": pytest.approx(im.scores["fas_a"], abs=1e-5)}
        assert s.score == s.scores["fas_a"]  # a one-model ensemble
        assert (s.day, s.run_id, s.threshold) == (im.day, run.pk, 0.3)
        assert s.decision == ("live" if s.score > 0.3 else "attack")
        assert s.model_versions == {"fas_a": fas_a_only.members.get().label}


@pytest.mark.django_db
def test_it_matches_a_direct_computation_for_one_image(scored_day, fas_a_only):
    shadow.run_shadow_day(DAY, fas_a_only)
    im = production_scored().order_by("id").first()

    path = settings.INBOX_DIR / im.path
    side = path.with_suffix(".json")
    box = Box(im.box_x, im.box_y, im.box_w, im.box_h)
    ens = loading.load_ensemble(fas_a_only)
    (r,) = Pipeline(ens, loading.gates_from_settings()).analyse(
        [FileInput(path.read_bytes(), side.read_bytes() if side.exists() else None, box=box)]
    )

    s = ShadowScore.objects.get(ensemble=fas_a_only, image=im)
    assert r.box_source == "stored"
    assert s.score == pytest.approx(r.score, abs=1e-6) and s.decision == r.decision
    assert s.scores == pytest.approx(r.scores, abs=1e-6)


@pytest.mark.django_db
def test_it_adds_nothing_when_a_shadow_day_runs_again(scored_day, fas_a_only):
    shadow.run_shadow_day(DAY, fas_a_only)
    before = list(ShadowScore.objects.order_by("id").values())

    again = shadow.run_shadow_day(DAY, fas_a_only)

    assert (again.status, again.total, again.processed, again.new_images) == (Run.DONE, 0, 0, 0)
    assert again.counts == {"scored": 0, "flagged": 0, "day_total": len(before)}
    assert list(ShadowScore.objects.order_by("id").values()) == before


@pytest.mark.django_db
def test_it_overwrites_the_shadow_scores_on_rescore(scored_day, fas_a_only):
    first = shadow.run_shadow_day(DAY, fas_a_only)
    n = ShadowScore.objects.count()
    fas_a_only.threshold = 0.9
    fas_a_only.save()

    again = shadow.run_shadow_day(DAY, fas_a_only, rescore=True)

    assert again.total == again.new_images == n == ShadowScore.objects.count()
    rows = list(ShadowScore.objects.all())
    assert {(s.run_id, s.threshold) for s in rows} == {(again.pk, 0.9)} and first.pk != again.pk
    assert all(s.decision == ("live" if s.score > 0.9 else "attack") for s in rows)
    assert again.counts["flagged"] == sum(s.decision == "attack" for s in rows)


@pytest.mark.django_db
def test_it_records_a_missing_file_and_scores_the_rest(scored_day, fas_a_only):
    gone = production_scored().order_by("id").first()
    (settings.INBOX_DIR / gone.path).unlink()

    run = shadow.run_shadow_day(DAY, fas_a_only)

    assert run.status == Run.DONE and run.failed_files == 1
    assert [e["path"] for e in run.errors] == [gone.path] and "cannot read the file" in run.errors[0]["reason"]
    assert ShadowScore.objects.count() == production_scored().count() - 1
    assert not ShadowScore.objects.filter(image=gone).exists()


@pytest.mark.django_db
def test_it_refuses_a_shadow_run_of_the_active_ensemble(demo_ensemble):
    with pytest.raises(errors.JobError, match="active ensemble"):
        shadow.start_shadow_run(DAY, demo_ensemble)
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_it_runs_the_celery_task_as_a_chord(scored_day, fas_a_only, settings):
    from monitor import tasks

    settings.KOALA_BATCH_SIZE = 7  # several batches
    run_id = tasks.shadow_day.delay(DAY.isoformat(), fas_a_only.pk).get()

    run = Run.objects.get(pk=run_id)
    assert run.shadow and run.status == Run.DONE and run.timings["batches"] > 1
    assert ShadowScore.objects.filter(run=run).count() == production_scored().count() == run.processed


# --- the command -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_names_the_known_ensembles_for_an_unknown_one(fas_a_only):
    with pytest.raises(CommandError, match=r"unknown ensemble 'nope' \(ensembles: demo, fas_a\)"):
        call_command("score_day", DAY.isoformat(), "--ensemble", "nope")
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_it_shadow_scores_a_day_from_the_command(scored_day, fas_a_only):
    out = io.StringIO()
    call_command("score_day", DAY.isoformat(), "--ensemble", "fas_a", stdout=out, stderr=io.StringIO())

    run = Run.objects.get(shadow=True)
    n = production_scored().count()
    assert run.trigger == "command" and ShadowScore.objects.filter(run=run).count() == n
    text = out.getvalue()
    assert "shadow run of ensemble fas_a" in text and f"{n} images scored" in text


@pytest.mark.django_db
def test_it_runs_a_normal_run_when_the_command_names_the_active_ensemble(scored_day, fas_a_only):
    out = io.StringIO()
    call_command("score_day", DAY.isoformat(), "--ensemble", "demo", stdout=out, stderr=io.StringIO())

    assert not Run.objects.filter(shadow=True).exists() and Run.objects.filter(shadow=False).count() == 2
    assert not ShadowScore.objects.exists() and "shadow" not in out.getvalue()


# --- the runs page -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_starts_a_shadow_run_from_the_runs_page(client, personas, scored_day, fas_a_only):
    client.force_login(personas["admin"])
    page = client.get(reverse("runs")).content.decode()
    assert '<option value="demo" selected>' in page and '<option value="fas_a">' in page

    response = client.post(reverse("run-start"), {"day": DAY.isoformat(), "ensemble": "fas_a"})

    run = Run.objects.get(shadow=True)
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    assert (run.status, run.ensemble, run.trigger) == (Run.DONE, fas_a_only, "manual")
    assert ShadowScore.objects.filter(run=run).count() == production_scored().count()
    assert "Shadow run of ensemble fas_a" in client.get(response["Location"]).content.decode()
    assert "shadow: fas_a" in client.get(reverse("runs")).content.decode()
    # and the compare page shows both ensembles over those images
    page = client.get(reverse("compare")).content.decode()
    assert f'data-images="{production_scored().count()}"' in page and "A: demo" in page and "B: fas_a" in page


@pytest.mark.django_db
def test_it_starts_a_normal_run_from_the_runs_page_with_the_active_ensemble(client, personas, scored_day, fas_a_only):
    client.force_login(personas["admin"])
    response = client.post(reverse("run-start"), {"day": DAY.isoformat(), "ensemble": "demo"})
    assert response.status_code == 302
    assert not Run.objects.filter(shadow=True).exists() and Run.objects.count() == 2


# --- one model alone -----------------------------------------------------------------------------


def one_model(out: io.StringIO, spec: str, *extra: str) -> Run:
    call_command("score_day", DAY.isoformat(), "--model", spec, *extra, stdout=out, stderr=io.StringIO())
    return Run.objects.filter(shadow=True).latest("pk")


@pytest.mark.django_db
def test_it_scores_one_model_alone_from_the_command_at_the_active_threshold(scored_day):
    out = io.StringIO()
    run = one_model(out, "fas_b")

    fas_b = ModelVersion.objects.get(name="fas_b")
    assert run.ensemble.name == f"model:fas_b@{DEMO_VERSION}" and not run.ensemble.is_active
    assert list(run.ensemble.members.all()) == [fas_b] and run.threshold == DEMO_T  # the demo ensemble's
    rows = ShadowScore.objects.filter(run=run)
    assert rows.count() == production_scored().count() and {tuple(s.scores) for s in rows} == {("fas_b",)}
    for s in rows.select_related("image"):
        assert s.score == pytest.approx(s.image.scores["fas_b"], abs=1e-5)
    assert f"shadow run of model {fas_b.label} (threshold {DEMO_T}): {rows.count()} images scored" in out.getvalue()
    # a second run reuses the hidden ensemble, which is no ensemble admins pick from
    one_model(io.StringIO(), f"fas_b:{DEMO_VERSION}", "--rescore")
    assert Ensemble.objects.filter(name__startswith="model:").count() == 1
    assert "model:" not in shadow.known_names()


@pytest.mark.django_db
def test_it_shadow_runs_one_onnx_file_under_two_versions_with_two_crop_scales(scored_day, tmp_path):
    text = (
        FAS_A.read_text()
        .replace(f'version = "{DEMO_VERSION}"', f'version = "{NEXT_VERSION}"')
        .replace("scale = 2.7", "scale = 4.0")
    )
    (tmp_path / "fas_a.toml").write_text(text)
    (tmp_path / "fas_a.onnx").symlink_to(FAS_A.with_name("fas_a.onnx"))
    call_command("register_models", str(tmp_path / "fas_a.toml"), "--no-measure", stdout=io.StringIO())

    newest = one_model(io.StringIO(), "fas_a")  # without a version: the one registered last
    older = one_model(io.StringIO(), f"fas_a:{DEMO_VERSION}")

    assert (newest.ensemble.name, older.ensemble.name) == (f"model:fas_a@{NEXT_VERSION}", f"model:fas_a@{DEMO_VERSION}")
    by_image = {}
    for s in ShadowScore.objects.filter(run__in=[newest, older]):
        by_image.setdefault(s.image_id, {})[s.ensemble.name] = s.score
    assert len(by_image) == production_scored().count() and all(len(v) == 2 for v in by_image.values())
    assert any(
        abs(v[f"model:fas_a@{NEXT_VERSION}"] - v[f"model:fas_a@{DEMO_VERSION}"]) > 1e-3 for v in by_image.values()
    )  # another crop
    for im in production_scored():  # the shipped version is production's fas_a
        assert by_image[im.pk][f"model:fas_a@{DEMO_VERSION}"] == pytest.approx(im.scores["fas_a"], abs=1e-5)


@pytest.mark.django_db
def test_it_follows_the_active_threshold_and_records_the_change(scored_day, personas):
    from monitor.registry import set_threshold

    first = one_model(io.StringIO(), "fas_c")
    set_threshold(loading.active_ensemble(), 0.6, user=personas["admin"], note="tighter")

    second = one_model(io.StringIO(), "fas_c", "--rescore")

    assert (first.threshold, second.threshold) == (DEMO_T, 0.6)
    kinds = list(second.ensemble.events.order_by("created_at", "id").values_list("kind", "new_threshold"))
    assert kinds == [("registered", DEMO_T), ("threshold", 0.6)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", rf"unknown model 'nope' \(models: fas_a:{DEMO_VERSION}, fas_b:{DEMO_VERSION}, fas_c:{DEMO_VERSION}\)"),
        (
            "fas_a:9",
            rf"unknown model 'fas_a:9' \(models: fas_a:{DEMO_VERSION}, fas_b:{DEMO_VERSION}, fas_c:{DEMO_VERSION}\)",
        ),
    ],
)
def test_it_names_the_known_models_for_an_unknown_one(demo_ensemble, spec, message):
    with pytest.raises(CommandError, match=message):
        call_command("score_day", DAY.isoformat(), "--model", spec)
    assert not Run.objects.exists() and not Ensemble.objects.filter(name__startswith="model:").exists()


@pytest.mark.django_db
def test_it_refuses_an_ensemble_and_a_model_at_once(demo_ensemble):
    with pytest.raises(CommandError, match="give --ensemble or --model, not both"):
        call_command("score_day", DAY.isoformat(), "--model", "fas_a", "--ensemble", "demo")


def test_it_exits_non_zero_for_an_unknown_model(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env["KOALA_DATA_DIR"] = str(tmp_path)

    def manage(*args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)

    assert manage("migrate", "-v", "0").returncode == 0
    assert manage("register_models", str(FAS_A), "--no-measure").returncode == 0
    result = manage("score_day", DAY.isoformat(), "--model", "fas_x")
    assert result.returncode != 0 and f"unknown model 'fas_x' (models: fas_a:{DEMO_VERSION})" in result.stderr


# --- one model alone from the runs page ----------------------------------------------------------


@pytest.mark.django_db
def test_it_scores_with_one_model_from_the_runs_page(client, personas, scored_day):
    client.force_login(personas["admin"])
    fas_b = ModelVersion.objects.get(name="fas_b")
    page = client.get(reverse("runs")).content.decode()
    assert "Score with one model" in page and f'<option value="{fas_b.pk}">{fas_b.label}</option>' in page

    response = client.post(reverse("run-start"), {"day": DAY.isoformat(), "model": fas_b.pk})

    run = Run.objects.get(shadow=True)
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    assert (run.status, run.ensemble.name, run.trigger, run.threshold) == (
        Run.DONE,
        f"model:fas_b@{DEMO_VERSION}",
        "manual",
        DEMO_T,
    )
    assert ShadowScore.objects.filter(run=run).count() == production_scored().count()
    assert run.ensemble.events.get().user == personas["admin"]
    page = client.get(reverse("runs")).content.decode()
    assert f"shadow: model:fas_b@{DEMO_VERSION}" in page
    assert f'<option value="model:fas_b@{DEMO_VERSION}"' not in page  # offered by its model, not as an ensemble


@pytest.mark.django_db
def test_it_shows_the_error_of_a_bad_one_model_form(client, personas, scored_day):
    client.force_login(personas["admin"])
    response = client.post(reverse("run-start"), {"day": DAY.isoformat(), "model": "999999"})
    assert response.status_code == 400
    assert "model: Select a valid choice." in response.content.decode()
    assert not Run.objects.filter(shadow=True).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_it_offers_one_model_runs_to_admins_only(client, personas, scored_day, role):
    client.force_login(personas[role])
    assert "Score with one model" not in client.get(reverse("runs")).content.decode()
    fas_b = ModelVersion.objects.get(name="fas_b")
    assert client.post(reverse("run-start"), {"day": DAY.isoformat(), "model": fas_b.pk}).status_code == 403
    assert not Run.objects.filter(shadow=True).exists()


# --- one model against another version of itself on the compare page ------------------------------


def register_scale_4(tmp_path) -> None:
    """fas_a's file again under the next version, with crop scale 4.0."""
    text = FAS_A.read_text().replace(f'version = "{DEMO_VERSION}"', f'version = "{NEXT_VERSION}"')
    (tmp_path / "fas_a.toml").write_text(text.replace("scale = 2.7", "scale = 4.0"))
    (tmp_path / "fas_a.onnx").symlink_to(FAS_A.with_name("fas_a.onnx"))
    call_command("register_models", str(tmp_path / "fas_a.toml"), "--no-measure", stdout=io.StringIO())


def compare_page(client, a: str, b: str) -> str:
    query = {"a": a, "b": b, "from": DAY.isoformat(), "to": DAY.isoformat(), "fpr": "1%"}
    response = client.get(reverse("compare"), query)
    assert response.status_code == 200, response.content.decode()[:2000]
    return response.content.decode()


def listed_scores(page: str) -> dict[int, tuple[float, float]]:
    rows = re.findall(r'<li class="thumb" data-image="(\d+)" data-score-a="([\d.]+)" data-score-b="([\d.]+)"', page)
    return {int(pk): (float(a), float(b)) for pk, a, b in rows}


@pytest.mark.django_db
def test_it_compares_two_versions_of_one_onnx_file_on_the_compare_page(scored_day, tmp_path, client, personas):
    register_scale_4(tmp_path)
    old, new = one_model(io.StringIO(), f"fas_a:{DEMO_VERSION}"), one_model(io.StringIO(), f"fas_a:{NEXT_VERSION}")
    client.force_login(personas["viewer"])

    page = compare_page(client, old.ensemble.name, new.ensemble.name)

    n = production_scored().count()
    assert f'data-images="{n}"' in page
    assert f"fas_a@{DEMO_VERSION} alone" in page and f"fas_a@{NEXT_VERSION} alone" in page  # offered as models
    shown = listed_scores(page)
    assert shown and len(shown) <= n
    stored = {
        (s.run_id, s.image_id): s.score for s in ShadowScore.objects.filter(run__in=[old, new], image_id__in=shown)
    }
    for pk, (a, b) in shown.items():
        assert (a, b) == (round(stored[old.pk, pk], 4), round(stored[new.pk, pk], 4))
    assert any(abs(a - b) > 1e-3 for a, b in shown.values())  # the crop scales differ


@pytest.mark.django_db
def test_it_compares_a_model_by_production_s_own_scores_without_a_shadow_run_of_it(
    scored_day, tmp_path, client, personas
):
    register_scale_4(tmp_path)
    new = one_model(io.StringIO(), f"fas_a:{NEXT_VERSION}")
    old = shadow.one_model_ensemble(ModelVersion.objects.get(name="fas_a", version=DEMO_VERSION))
    assert not ShadowScore.objects.filter(ensemble=old).exists()
    client.force_login(personas["viewer"])

    page = compare_page(client, old.name, new.ensemble.name)

    assert f'data-images="{production_scored().count()}"' in page
    production = dict(production_scored().values_list("pk", "scores"))
    for pk, (a, _) in listed_scores(page).items():
        assert a == round(production[pk]["fas_a"], 4)


@pytest.mark.django_db
def test_it_keeps_one_model_ensembles_off_the_models_page(scored_day, client, personas):
    hidden = one_model(io.StringIO(), "fas_b").ensemble
    client.force_login(personas["admin"])

    page = client.get(reverse("models")).content.decode()

    assert "demo" in page and hidden.name not in page and "run alone" in page  # on fas_b's row
    assert client.post(reverse("ensemble-activate", args=[hidden.pk]), {"note": "try"}).status_code == 404
    assert client.post(reverse("ensemble-threshold", args=[hidden.pk]), {"threshold": "0.2"}).status_code == 404
    hidden.refresh_from_db()
    assert (hidden.is_active, hidden.threshold) == (False, DEMO_T)


@pytest.mark.django_db
def test_it_shows_both_versions_of_one_onnx_file_on_the_image_page_and_in_the_api(
    scored_day, tmp_path, client, personas
):
    register_scale_4(tmp_path)
    runs = {v: one_model(io.StringIO(), f"fas_a:{v}") for v in (DEMO_VERSION, NEXT_VERSION)}
    im = production_scored().first()
    client.force_login(personas["viewer"])

    html = client.get(reverse("image", args=[im.pk])).content.decode()
    body = client.get(f"/api/images/{im.pk}").json()

    section = html[html.index("<h2>Shadow runs</h2>") :]
    shadows = {s["ensemble"]: s for s in body["scorings"] if s["kind"] == "shadow"}
    assert set(shadows) == {f"model:fas_a@{v}" for v in runs}
    for v, run in runs.items():
        s = ShadowScore.objects.get(run=run, image=im)
        assert s.model_versions["fas_a"].startswith(f"fas_a@{v}:") and s.model_versions["fas_a"] in section
        assert f"run {run.pk}" in section and f"{s.score:.4f}" in section
        api = shadows[f"model:fas_a@{v}"]
        assert (api["run"], api["threshold"]) == (run.pk, DEMO_T) and api["score"] == pytest.approx(s.score)
        assert [m["version"] for m in api["models"]] == [s.model_versions["fas_a"]]
