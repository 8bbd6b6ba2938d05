"""A model version is (name, version): one ONNX file may back several versions with different
manifests (stored once, by content); the identical manifest registered again changes nothing; a
changed manifest under a registered version is refused, naming the keys that differ (issue 14)."""

import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from liveness.runtime import file_sha256
from monitor.models import ModelVersion
from tests.conftest import DEMO_MANIFEST, DEMO_VERSION, NEXT_VERSION

FAS_A = DEMO_MANIFEST.with_name("fas_a.toml")
FAS_A_ONNX = DEMO_MANIFEST.with_name("fas_a.onnx")


def fas_a_as(folder: Path, *changes: tuple[str, str], name: str = "fas_a.toml") -> Path:
    """The demo fas_a manifest with lines changed, next to (a link to) its ONNX file."""
    folder.mkdir(parents=True, exist_ok=True)
    text = FAS_A.read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    if not (folder / "fas_a.onnx").exists():
        (folder / "fas_a.onnx").symlink_to(FAS_A_ONNX)
    path = folder / name
    path.write_text(text)
    return path


def register(path: Path) -> str:
    out = io.StringIO()
    call_command("register_models", str(path), "--no-measure", stdout=out)
    return out.getvalue()


def stored_files() -> list[str]:
    return sorted(p.name for p in settings.MODELS_DIR.iterdir())


@pytest.mark.django_db
def test_it_registers_one_onnx_file_under_two_versions_with_different_crop_scales(tmp_path):
    old, new = DEMO_VERSION, NEXT_VERSION
    v_new = fas_a_as(
        tmp_path, (f'version = "{old}"', f'version = "{new}"'), ("scale = 2.7", "scale = 4.0"), name="new.toml"
    )

    first, second = register(FAS_A), register(v_new)

    sha = file_sha256(FAS_A_ONNX)
    assert f"model fas_a@{old}:{sha[:8]} registered" in first and f"model fas_a@{new}:{sha[:8]} registered" in second
    versions = {mv.version: mv for mv in ModelVersion.objects.all()}
    assert set(versions) == {old, new} and {mv.sha256 for mv in versions.values()} == {sha}
    assert "scale = 2.7" in versions[old].manifest and "scale = 4.0" in versions[new].manifest
    assert versions[old].file == versions[new].file and stored_files() == [versions[old].file]  # stored once


@pytest.mark.django_db
def test_it_stores_the_file_once_when_another_model_name_uses_it(tmp_path):
    register(FAS_A)
    register(fas_a_as(tmp_path, ('name = "fas_a"', 'name = "fas_a_bgr"'), ('color = "RGB"', 'color = "BGR"')))

    assert sorted(ModelVersion.objects.values_list("name", flat=True)) == ["fas_a", "fas_a_bgr"]
    assert len(stored_files()) == 1


@pytest.mark.django_db
def test_it_says_nothing_changed_when_the_identical_manifest_is_registered_again(tmp_path):
    register(FAS_A)
    # the same settings with another comment and from another folder: the same registration
    again = fas_a_as(tmp_path / "elsewhere", ("# Demo model A", "# a copy of demo model A"))

    out = register(again)

    assert "was registered already with this manifest: nothing changed" in out
    assert ModelVersion.objects.count() == 1 and len(stored_files()) == 1


@pytest.mark.django_db
def test_it_refuses_a_changed_manifest_under_a_registered_version_naming_the_differing_keys(tmp_path):
    register(FAS_A)
    changed = fas_a_as(tmp_path, ("scale = 2.7", "scale = 4.0"), ('color = "RGB"', 'color = "BGR"'))

    with pytest.raises(CommandError) as exc:
        register(changed)

    message = str(exc.value)
    assert 'crop.scale: 2.7 -> 4.0; input.color: "RGB" -> "BGR"' in message
    assert f"fas_a@{DEMO_VERSION}:" in message and "register it with a new model.version" in message
    assert ModelVersion.objects.count() == 1 and "scale = 2.7" in ModelVersion.objects.get().manifest


@pytest.mark.django_db
def test_it_names_a_key_added_or_removed_as_not_set(tmp_path):
    register(FAS_A)
    changed = fas_a_as(tmp_path, ('classes = ["attack", "live"]\n', ""))

    with pytest.raises(CommandError, match=r'output\.classes: \["attack", "live"\] -> \(not set\)'):
        register(changed)


@pytest.mark.django_db
def test_it_still_refuses_another_file_under_a_registered_name_and_version(tmp_path):
    register(FAS_A)
    other = tmp_path / "other"
    other.mkdir()
    (other / "fas_a.onnx").symlink_to(DEMO_MANIFEST.with_name("fas_b.onnx"))
    # fas_b gives 3 values per image: without fas_a's two class names the manifest fits it
    (other / "fas_a.toml").write_text(FAS_A.read_text().replace('classes = ["attack", "live"]\n', ""))

    with pytest.raises(
        CommandError, match=f"fas_a version {DEMO_VERSION} is already registered with another file; bump the version"
    ):
        register(other / "fas_a.toml")
