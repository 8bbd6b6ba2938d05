"""Registering from the models page: an admin uploads a model's manifest and ONNX file (checked
as `register_models` checks them, stored by sha256, its speed measured), or makes an ensemble
of registered model versions; every problem is shown next to the input at fault, and nothing is
half-registered. Only admins may; the POSTs need a CSRF token."""

import re
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from liveness.manifest import ManifestError, load_manifest
from liveness.runtime import LivenessModel, file_sha256
from liveness.tests.onnx_models import manifest_text, write_model
from monitor import registry
from monitor.models import Ensemble, EnsembleEvent, ModelVersion


@pytest.fixture
def upload_tmp(tmp_path, settings):
    """Where the uploads are written while they are checked: empty again after every request."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture
def admin(client, personas, upload_tmp):
    client.force_login(personas["admin"])
    return client


@pytest.fixture
def tiny(tmp_path) -> Path:
    """The manifest of a tiny real ONNX model (the per-channel mean of a 16x16 input)."""
    return write_model(tmp_path / "src", "tiny")


def post_model(client, manifest: Path | str, onnx: Path | bytes, *, onnx_name: str = "", measure: bool = False):
    text = manifest.read_text() if isinstance(manifest, Path) else manifest
    data = onnx.read_bytes() if isinstance(onnx, Path) else onnx
    name = onnx_name or (onnx.name if isinstance(onnx, Path) else "tiny.onnx")
    form = {
        "manifest": SimpleUploadedFile("tiny.toml", text.encode(), "application/toml"),
        "onnx": SimpleUploadedFile(name, data, "application/octet-stream"),
    }
    if measure:
        form["measure"] = "on"
    return client.post(reverse("model-register"), form)


def field_block(html: str, form_class: str, field: str) -> str:
    form = re.search(rf'<form [^>]*class="{form_class}".*?</form>', html, re.S)
    assert form, f"no form {form_class}"
    match = re.search(rf'data-field="{field}">.*?(?=data-field=|<button)', form.group(0), re.S)  # to the next field
    assert match, f"no field {field} in {form_class}"
    return match.group(0)


def models_dir_files(settings) -> list[Path]:
    return sorted(settings.MODELS_DIR.glob("*")) if settings.MODELS_DIR.exists() else []


# --- a model version ---------------------------------------------------------------------------


def test_it_registers_an_uploaded_model_that_then_shows_on_the_page_with_its_sha256(
    admin, tiny, settings, upload_tmp, personas
):
    onnx = tiny.with_suffix(".onnx")
    sha = file_sha256(onnx)

    response = post_model(admin, tiny, onnx, measure=True)

    assert response.status_code == 302 and response["Location"] == reverse("models")
    mv = ModelVersion.objects.get()
    assert (mv.name, mv.version, mv.sha256, mv.registered_by) == ("tiny", "1", sha, personas["admin"])
    assert mv.manifest == tiny.read_text()
    assert mv.input_shape == ["N", 3, 16, 16] and mv.output_shape == ["N", 3]
    stored = settings.MODELS_DIR / mv.file
    assert stored.read_bytes() == onnx.read_bytes() and models_dir_files(settings) == [stored]
    assert mv.latency_ms > 0 and mv.throughput > 0 and mv.measured_at is not None  # measured as a job
    assert list(upload_tmp.iterdir()) == []  # the temporary copy is gone

    html = admin.get(response["Location"]).content.decode()
    assert f"Model tiny v1 registered (sha256 {sha})." in html
    assert f"{mv.latency_ms:.2f} ms/image" in html
    row = re.search(rf'<tr data-model="{mv.pk}".*?</tr>', html, re.S).group(0)
    assert f'<code title="{sha}">{sha[:12]}</code>' in row and "<code>[N, 3, 16, 16]</code>" in row
    # the viewer sees it too, and its manifest on its own page
    viewer = Client()
    viewer.force_login(personas["viewer"])
    page = viewer.get(reverse("model", args=[mv.pk])).content.decode()
    assert sha in page and f"by {personas['admin'].get_username()} on the models page" in page


def test_it_scores_with_an_uploaded_model_like_with_a_registered_one(admin, tiny):
    post_model(admin, tiny, tiny.with_suffix(".onnx"))
    mv = ModelVersion.objects.get()
    model = registry.open_model(registry.model_manifest(mv))
    original = LivenessModel(load_manifest(tiny))  # the uploaded files, as the command would load them

    crops = np.full((1, 16, 16, 3), (255, 0, 51), np.uint8)
    assert np.allclose(model.session.run(None, {"input": model.to_tensor(crops)})[0], [[1.0, 0.0, 0.2]])
    assert np.allclose(model.live_probability(model.probabilities(crops)), [1.0])  # live_index 0
    assert np.array_equal(model.probabilities(crops), original.probabilities(crops))


def test_it_shows_an_unknown_manifest_key_on_the_form_and_registers_nothing(admin, tiny, settings, upload_tmp):
    text = tiny.read_text().replace("[crop]\n", "[crop]\nscal = 2.7\n")

    response = post_model(admin, text, tiny.with_suffix(".onnx"), measure=True)

    assert response.status_code == 400
    html = response.content.decode()
    block = field_block(html, "register-model", "manifest")
    assert "crop.scal: unknown key; did you mean &#x27;scale&#x27;?" in block
    assert "Nothing registered" in html
    assert not ModelVersion.objects.exists() and not EnsembleEvent.objects.exists()
    assert models_dir_files(settings) == [] and list(upload_tmp.iterdir()) == []


def _other_model(tmp_path, **kw) -> Path:
    return write_model(tmp_path / "other", "tiny", **kw)


@pytest.mark.parametrize(
    "case, field, error",
    [
        ("not valid TOML", "manifest", "not valid TOML"),
        ("an ensemble manifest", "manifest", "[ensemble]: this is an ensemble manifest"),
        ("a bad value", "manifest", "input.layout: must be one of NCHW, NHWC, got &#x27;NCWH&#x27;"),
        ("not an ONNX file", "onnx", "model.file: not a readable ONNX model"),
        (
            "shapes not matching",
            "onnx",
            "input: manifest says NCHW 16x16x3, the ONNX input &#x27;input&#x27; has shape",
        ),
        ("live index beyond the outputs", "onnx", "output.live_index: 5 is beyond the outputs"),
        ("another file name", "onnx", "model.file: the manifest names tiny.onnx, the uploaded file is fas_a.onnx"),
    ],
)
def test_it_refuses_a_bad_upload_next_to_the_field_at_fault(
    admin, tiny, tmp_path, settings, upload_tmp, case, field, error
):
    manifest, onnx, name = tiny.read_text(), tiny.with_suffix(".onnx").read_bytes(), "tiny.onnx"
    if case == "not valid TOML":
        manifest = manifest.replace("[crop]", "[crop")
    elif case == "an ensemble manifest":
        manifest = manifest_text({"ensemble": {"name": "e", "threshold": 0.5, "models": ["tiny.toml"]}})
    elif case == "a bad value":
        manifest = manifest.replace('layout = "NCHW"', 'layout = "NCWH"')
    elif case == "not an ONNX file":
        onnx = b"this is a text file, not a model\n"
    elif case == "shapes not matching":
        onnx = _other_model(tmp_path, model_size=(32, 32)).with_suffix(".onnx").read_bytes()
    elif case == "live index beyond the outputs":
        manifest = manifest.replace("live_index = 0", "live_index = 5")
    elif case == "another file name":
        name = "fas_a.onnx"

    response = post_model(admin, manifest, onnx, onnx_name=name, measure=True)

    assert response.status_code == 400, case
    html = response.content.decode()
    assert error in field_block(html, "register-model", field), (case, html[-3000:])
    other = "onnx" if field == "manifest" else "manifest"
    assert 'class="errors"' not in field_block(html, "register-model", other)
    assert str(upload_tmp) not in html  # the temporary path is not shown
    assert not ModelVersion.objects.exists()
    assert models_dir_files(settings) == [] and list(upload_tmp.iterdir()) == []


def test_it_refuses_a_name_and_version_registered_with_another_file(admin, tiny, tmp_path, settings, upload_tmp):
    assert post_model(admin, tiny, tiny.with_suffix(".onnx")).status_code == 302
    first = ModelVersion.objects.get()
    other = _other_model(tmp_path, output_dim=2)  # another file, same name and version

    response = post_model(admin, other, other.with_suffix(".onnx"))

    assert response.status_code == 400
    block = field_block(response.content.decode(), "register-model", "manifest")
    assert "model.version: tiny version 1 is already registered with another file; bump the version" in block
    assert list(ModelVersion.objects.all()) == [first]
    assert models_dir_files(settings) == [settings.MODELS_DIR / first.file]
    assert list(upload_tmp.iterdir()) == []

    bumped = other.read_text().replace('version = "1"', 'version = "2"')
    assert post_model(admin, bumped, other.with_suffix(".onnx")).status_code == 302
    assert sorted(ModelVersion.objects.values_list("version", flat=True)) == ["1", "2"]


def test_it_registers_the_same_file_and_manifest_once(admin, tiny):
    post_model(admin, tiny, tiny.with_suffix(".onnx"))
    response = post_model(admin, tiny, tiny.with_suffix(".onnx"))
    assert response.status_code == 302
    assert "was registered already" in admin.get(response["Location"]).content.decode()
    assert ModelVersion.objects.count() == 1

    changed = tiny.read_text().replace("scale = 1.0", "scale = 1.5")
    response = post_model(admin, changed, tiny.with_suffix(".onnx"))
    assert response.status_code == 400
    block = field_block(response.content.decode(), "register-model", "manifest")
    assert (
        "model.version: tiny@1:" in block and "is registered with another manifest (crop.scale: 1.0 -&gt; 1.5)" in block
    )
    assert "register it with a new model.version" in block


def test_it_registers_the_same_file_with_another_manifest_under_a_new_version(admin, tiny, settings):
    post_model(admin, tiny, tiny.with_suffix(".onnx"))
    bumped = tiny.read_text().replace("scale = 1.0", "scale = 1.5").replace('version = "1"', 'version = "2"')

    response = post_model(admin, bumped, tiny.with_suffix(".onnx"))

    assert response.status_code == 302
    assert "Model tiny v2 registered" in admin.get(response["Location"]).content.decode()
    one, two = ModelVersion.objects.order_by("version")
    assert one.sha256 == two.sha256 and one.file == two.file
    assert models_dir_files(settings) == [settings.MODELS_DIR / one.file]  # the file is stored once


def test_it_says_when_a_file_is_missing(admin, tiny):
    response = admin.post(reverse("model-register"), {"manifest": SimpleUploadedFile("tiny.toml", tiny.read_bytes())})
    assert response.status_code == 400
    assert "This field is required." in field_block(response.content.decode(), "register-model", "onnx")
    assert not ModelVersion.objects.exists()


# --- who may ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_it_refuses_a_viewer_or_reviewer(client, personas, tiny, settings, demo_ensemble, role):
    client.force_login(personas[role])
    html = client.get(reverse("models")).content.decode()
    assert "register-model" not in html and "register-ensemble" not in html
    before = set(ModelVersion.objects.values_list("pk", flat=True))

    assert post_model(client, tiny, tiny.with_suffix(".onnx"), measure=True).status_code == 403
    members = list(ModelVersion.objects.values_list("pk", flat=True))
    response = client.post(reverse("ensemble-register"), {"name": "mine", "members": members, "threshold": "0.5"})
    assert response.status_code == 403

    assert set(ModelVersion.objects.values_list("pk", flat=True)) == before
    assert not Ensemble.objects.filter(name="mine").exists()
    assert not (settings.MODELS_DIR / "tiny").exists() and not list(settings.MODELS_DIR.glob("tiny-*"))


def test_it_checks_the_csrf_token(personas, tiny, upload_tmp):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["admin"])
    assert post_model(client, tiny, tiny.with_suffix(".onnx")).status_code == 403
    assert not ModelVersion.objects.exists()


def test_it_shows_the_forms_to_an_admin_with_a_token(admin, demo_ensemble):
    html = admin.get(reverse("models")).content.decode()
    model_form = re.search(r'<form [^>]*class="register-model".*?</form>', html, re.S).group(0)
    assert f'action="{reverse("model-register")}"' in model_form and 'enctype="multipart/form-data"' in model_form
    assert "csrfmiddlewaretoken" in model_form
    assert 'type="file" name="manifest"' in model_form and 'type="file" name="onnx"' in model_form
    ensemble_form = re.search(r'<form [^>]*class="register-ensemble".*?</form>', html, re.S).group(0)
    assert "csrfmiddlewaretoken" in ensemble_form
    for mv in ModelVersion.objects.all():
        assert f'value="{mv.pk}"' in ensemble_form and f"{mv.name} v{mv.version} ({mv.sha256[:12]})" in ensemble_form


# --- an ensemble of registered versions ------------------------------------------------------------


def test_it_makes_an_ensemble_of_registered_versions_with_who_when_and_why(admin, personas, demo_ensemble):
    picked = list(ModelVersion.objects.filter(name__in=["fas_a", "fas_b"]).order_by("name"))
    data = {"name": "ab-only", "members": [mv.pk for mv in picked], "threshold": "0.45", "note": "without fas_c"}

    response = admin.post(reverse("ensemble-register"), data)

    assert response.status_code == 302 and response["Location"] == reverse("models")
    ens = Ensemble.objects.get(name="ab-only")
    assert (ens.threshold, ens.rule, ens.is_active) == (0.45, "mean", False)
    assert sorted(ens.members.values_list("name", flat=True)) == ["fas_a", "fas_b"]
    ev = ens.events.get()
    assert (ev.kind, ev.new_threshold, ev.user, ev.note) == ("registered", 0.45, personas["admin"], "without fas_c")
    assert ev.created_at is not None
    assert Ensemble.objects.get(is_active=True) == demo_ensemble  # production unchanged

    html = admin.get(response["Location"]).content.decode()
    assert "Ensemble ab-only registered with threshold 0.45" in html
    row = re.search(rf'<tr data-ensemble="{ens.pk}".*?</tr>', html, re.S).group(0)
    assert "registered (threshold 0.45)" in row and "by admin-user" in row and "without fas_c" in row
    assert f'action="{reverse("ensemble-activate", args=[ens.pk])}"' in row  # activate it from here


@pytest.mark.parametrize(
    "change, field, error",
    [
        ({"name": "demo"}, "name", "an ensemble named demo already exists"),
        ({"name": "two words"}, "name", "use letters, digits"),
        ({"members": []}, "members", "pick at least one model version"),
        ({"members": ["twice"]}, "members", "two versions of fas_a: an ensemble has one version of each model"),
        ({"threshold": "1.5"}, "threshold", "the threshold must be in [0, 1]"),
        ({"threshold": ""}, "threshold", "This field is required."),
    ],
)
def test_it_refuses_a_bad_ensemble_next_to_the_field_at_fault(admin, demo_ensemble, change, field, error):
    fas_a = ModelVersion.objects.get(name="fas_a")
    data = {"name": "new", "members": [fas_a.pk], "threshold": "0.5", "note": "kept"}
    data.update(change)
    if data["members"] == ["twice"]:
        other = f"{fas_a.version}.1"
        text = fas_a.manifest.replace(f'version = "{fas_a.version}"', f'version = "{other}"')
        fas_a2 = ModelVersion.objects.create(name="fas_a", version=other, sha256="b" * 64, file="x.onnx", manifest=text)
        data["members"] = [fas_a.pk, fas_a2.pk]
    events = EnsembleEvent.objects.count()

    response = admin.post(reverse("ensemble-register"), data)

    assert response.status_code == 400
    html = response.content.decode()
    assert error in field_block(html, "register-ensemble", field)
    assert 'value="kept"' in field_block(html, "register-ensemble", "note")  # the input is kept
    assert "No ensemble made" in html
    assert set(Ensemble.objects.values_list("name", flat=True)) == {"demo"}
    assert EnsembleEvent.objects.count() == events


# --- all or nothing in the registry (the command too) ----------------------------------------------


def test_it_leaves_no_member_behind_when_an_ensemble_manifest_fails(tmp_path, settings, db):
    good = write_model(tmp_path, "good")
    bad = write_model(tmp_path, "bad", model_size=(32, 32))
    path = tmp_path / "ens.toml"
    path.write_text(manifest_text({"ensemble": {"name": "e", "threshold": 0.5, "models": [good.name, bad.name]}}))

    with pytest.raises(ManifestError, match="model bad"):
        registry.register_manifest(path)

    assert not ModelVersion.objects.exists() and not Ensemble.objects.exists()
    assert models_dir_files(settings) == []  # good's file, copied first, is removed again


def test_it_keeps_no_model_loaded_after_checking_an_upload(admin, tiny):
    """Each upload is checked from a new temporary path: a cached session per upload would keep
    every uploaded model (up to 1 GB each) loaded in the web process."""
    from liveness.runtime import load_session

    load_session.cache_clear()
    for _ in range(2):  # registered, then "registered already": both checked from a temporary copy
        assert post_model(admin, tiny, tiny.with_suffix(".onnx")).status_code == 302
    assert ModelVersion.objects.count() == 1
    assert load_session.cache_info().currsize == 0
