"""Management commands: useful output, progress, and a clear error with a non-zero exit on bad input."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from monitor.models import Ensemble, Image, ModelVersion
from tests.conftest import DEMO_MANIFEST, ROOT


def run_manage(*args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["score_day", "2026-13-40"], "not a day: '2026-13-40'"),
        (["score_day"], "give at least one day"),
        (["make_demo_data", "--days", "0"], "expected a positive integer"),
        (["make_demo_data", "--per-day", "lots"], "expected a positive integer"),
        (["register_models", "no/such/manifest.toml"], "cannot read"),
        (["rebuild_folders", "--day", "yesterday"], "not a day"),
    ],
)
def test_it_exits_non_zero_with_a_message_on_bad_arguments(args, message, data_root):
    result = run_manage(*args, env_extra={"KOALA_DATA_DIR": str(data_root)})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.django_db
def test_it_says_what_is_missing_when_no_ensemble_is_active():
    with pytest.raises(CommandError, match="no active ensemble"):
        call_command("score_day", "2026-11-20")


@pytest.mark.django_db
def test_it_names_the_manifest_key_that_is_wrong(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO_MANIFEST.with_name("fas_a.toml").read_text().replace('"NCHW"', '"NWHC"'))
    (tmp_path / "fas_a.onnx").symlink_to(DEMO_MANIFEST.with_name("fas_a.onnx"))
    with pytest.raises(CommandError, match=r"input\.layout"):
        call_command("register_models", str(bad))
    assert not ModelVersion.objects.exists()


def fas_a_with(tmp_path, old: str, new: str) -> Path:
    """The demo fas_a manifest (its ONNX output has 2 values per image) with one line changed."""
    text = DEMO_MANIFEST.with_name("fas_a.toml").read_text()
    assert old in text
    path = tmp_path / "fas_a.toml"
    path.write_text(text.replace(old, new))
    (tmp_path / "fas_a.onnx").symlink_to(DEMO_MANIFEST.with_name("fas_a.onnx"))
    return path


def test_it_exits_non_zero_when_the_live_index_is_beyond_the_model_outputs(tmp_path, data_root):
    path = fas_a_with(tmp_path, 'live_index = 1\nclasses = ["attack", "live"]', "live_index = 2")  # no classes
    result = run_manage("register_models", str(path), "--no-measure", env_extra={"KOALA_DATA_DIR": str(data_root)})
    assert result.returncode != 0
    assert "output.live_index: 2 is beyond the outputs" in result.stderr
    assert "gives 2 values per image" in result.stderr and "model fas_a (" in result.stderr


@pytest.mark.django_db
def test_it_refuses_classes_that_do_not_name_each_model_output(tmp_path):
    path = fas_a_with(tmp_path, 'classes = ["attack", "live"]', 'classes = ["print", "live", "replay"]')
    with pytest.raises(CommandError, match=r"output\.classes: names 3 classes, but .* gives 2 values per image"):
        call_command("register_models", str(path), "--no-measure")
    assert not ModelVersion.objects.exists()


@pytest.mark.django_db
def test_it_registers_and_activates_the_demo_ensemble():
    out = io.StringIO()
    call_command("register_models", str(DEMO_MANIFEST), "--activate", "--threshold", "0.42", stdout=out)
    ens = Ensemble.objects.get(is_active=True)
    assert ens.threshold == 0.42 and ens.members.count() == 3
    assert "active" in out.getvalue() and ens.name in out.getvalue()
    for mv in ens.members.all():
        assert (settings.MODELS_DIR / mv.file).is_file()
    # registering again changes nothing
    call_command("register_models", str(DEMO_MANIFEST), stdout=io.StringIO())
    assert ModelVersion.objects.count() == 3 and Ensemble.objects.count() == 1


@pytest.mark.django_db
def test_it_generates_scores_and_summarises_a_demo_inbox(demo_ensemble):
    out, err = io.StringIO(), io.StringIO()
    call_command("make_demo_data", "--days", "2", "--per-day", "12", "--end-day", "2026-11-02", stdout=out, stderr=err)
    assert "demo inbox written" in out.getvalue()
    assert sorted(p.name for p in settings.INBOX_DIR.iterdir()) == ["2026-11-01", "2026-11-02"]

    out = io.StringIO()
    call_command("score_day", "--all", stdout=out, stderr=err)

    lines = out.getvalue().strip().splitlines()
    assert [line[:10] for line in lines] == ["2026-11-01", "2026-11-02"]
    for line in lines:
        day = line[:10]
        assert "new images" in line and "day total" in line
        assert f"{Image.objects.filter(day=day).count()} new images" in line
    assert "100%" in err.getvalue()  # the progress bar went to stderr


def test_it_parses_the_compose_file():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "migrate"} <= set(services)
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "data:/data" in services[name]["volumes"]
    assert "gunicorn" in services["web"]["command"]
    assert all("healthcheck" in services[n] for n in ("postgres", "redis", "web", "worker"))
    json.dumps(compose)  # plain data, no YAML-only types


@pytest.mark.django_db
def test_it_measures_the_speed_of_newly_registered_models_unless_told_not_to():
    fas_a = str(DEMO_MANIFEST.with_name("fas_a.toml"))
    out = io.StringIO()
    call_command("register_models", fas_a, "--no-measure", stdout=out)
    mv = ModelVersion.objects.get()
    assert mv.measured_at is None and "speed" not in out.getvalue()

    out = io.StringIO()
    call_command("register_models", fas_a, stdout=out)  # registered, never measured: measured now
    mv.refresh_from_db()
    assert mv.latency_ms > 0 and mv.throughput > 0 and mv.best_batch in (1, 8, 32, 64)
    assert f"speed of {mv.label}: {mv.latency_ms:.2f} ms/image (batch 1, one core)" in out.getvalue()

    out = io.StringIO()
    call_command("register_models", fas_a, stdout=out)  # measured already: not again
    assert "speed" not in out.getvalue()
