"""The daily job with a face detector (KOALA_FACE_DETECTOR): images without a sidecar box get
the face the detector manifest's `face` rule picks (the shipped ones: the best-scoring face, as
the detectors' authors), its score is stored, and images without a face stay `no_face`.
Uses the detector files and photos in ../shared (skipped when absent)."""

import datetime as dt
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image as PILImage

from liveness.decode import decode_image
from liveness.detect import FaceDetector, load_detector_manifest
from monitor import loading, runs
from monitor.models import Image, Run
from tests.conftest import put

SHARED = Path(__file__).resolve().parents[2] / "shared"
DETECTORS = SHARED / "models" / "face_detection"
FACES = SHARED / "images" / "faces"
REPO_DETECTORS = Path(__file__).resolve().parents[1] / "liveness" / "detectors"
DAY = "2026-11-20"

pytestmark = pytest.mark.skipif(
    not (DETECTORS / "version-RFB-320.onnx").is_file() or not (FACES / "one_face.jpg").is_file(),
    reason=f"needs the shared detector files and photos in {SHARED}",
)


@pytest.fixture
def detector(settings, tmp_path):
    """The shipped UltraFace manifest, next to the shared ONNX file (as an operator would put it)."""
    text = (REPO_DETECTORS / "ultraface-rfb320.toml").read_text()
    manifest = tmp_path / "ultraface.toml"
    manifest.write_text(text.replace('"version-RFB-320.onnx"', f'"{DETECTORS / "version-RFB-320.onnx"}"'))
    settings.KOALA_FACE_DETECTOR = str(manifest)
    loading.clear_caches()
    yield manifest
    loading.clear_caches()


def grey_jpeg(path: Path) -> bytes:
    PILImage.new("RGB", (640, 480), (128, 128, 128)).save(path, "JPEG")
    return path.read_bytes()


def test_it_finds_the_face_of_an_image_without_a_sidecar_box(data_root, demo_ensemble, detector, settings, tmp_path):
    put(settings.INBOX_DIR, DAY, "gate-1", "one.jpg", (FACES / "one_face.jpg").read_bytes())
    put(settings.INBOX_DIR, DAY, "gate-1", "group.jpg", (FACES / "group_five.jpg").read_bytes())
    put(settings.INBOX_DIR, DAY, "gate-1", "grey.jpg", grey_jpeg(tmp_path / "grey.jpg"))
    run = runs.run_day(dt.date.fromisoformat(DAY))

    one = Image.objects.get(path__endswith="one.jpg")
    assert one.box_source == "detector"
    assert one.detection_score > 0.7
    assert one.category in ("live", "attack", "low_quality")
    assert one.score is not None and one.scores
    # the best-scoring of the five faces is the one kept, not the largest
    group = Image.objects.get(path__endswith="group.jpg")
    assert group.box_source == "detector"
    found = FaceDetector(load_detector_manifest(detector)).detect(
        decode_image((FACES / "group_five.jpg").read_bytes()).image
    )
    best = max(found, key=lambda d: d.score)
    assert best.area < max(d.area for d in found)
    stored = (group.box_x, group.box_y, group.box_w, group.box_h, group.detection_score)
    assert stored == pytest.approx((best.box.x, best.box.y, best.box.w, best.box.h, best.score))
    grey = Image.objects.get(path__endswith="grey.jpg")
    assert grey.category == "no_face"
    assert "no face detected by the face detector" in grey.reason
    assert run.detector.startswith("ultraface-rfb320@")


def test_it_prefers_the_sidecar_box_over_the_detector(data_root, demo_ensemble, detector, settings):
    box = {"x": 400, "y": 200, "w": 150, "h": 150}
    put(settings.INBOX_DIR, DAY, "gate-1", "one.jpg", (FACES / "one_face.jpg").read_bytes(), {"face": box})
    runs.run_day(dt.date.fromisoformat(DAY))
    im = Image.objects.get()
    assert im.box_source == "sidecar"
    assert (im.box_x, im.box_y, im.box_w, im.box_h) == (400, 200, 150, 150)
    assert im.detection_score is None


def test_it_shows_the_detection_score_on_the_image_page(data_root, demo_ensemble, detector, settings, client, personas):
    put(settings.INBOX_DIR, DAY, "gate-1", "one.jpg", (FACES / "one_face.jpg").read_bytes())
    runs.run_day(dt.date.fromisoformat(DAY))
    im = Image.objects.get()
    client.force_login(personas["viewer"])
    page = client.get(f"/images/{im.pk}/").content.decode()
    assert f"detection score {im.detection_score:.3f}" in page


def test_it_refuses_to_score_with_a_broken_detector_manifest(data_root, demo_ensemble, settings, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[detector]\nname = "x"\nfamily = "retina"\nfile = "x.onnx"\n')
    settings.KOALA_FACE_DETECTOR = str(bad)
    loading.clear_caches()
    put(settings.INBOX_DIR, DAY, "gate-1", "one.jpg", (FACES / "one_face.jpg").read_bytes())
    with pytest.raises(CommandError, match="KOALA_FACE_DETECTOR.*detector.family"):
        call_command("score_day", DAY)
    assert not Run.objects.exists() and not Image.objects.exists()


def test_it_names_the_detector_on_the_run_page(data_root, demo_ensemble, detector, settings, client, personas):
    put(settings.INBOX_DIR, DAY, "gate-1", "one.jpg", (FACES / "one_face.jpg").read_bytes())
    run = runs.run_day(dt.date.fromisoformat(DAY))
    client.force_login(personas["viewer"])
    assert run.detector in client.get(f"/runs/{run.pk}/").content.decode()


def test_it_tells_the_admin_when_the_detector_manifest_is_broken(data_root, demo_ensemble, settings, client, personas):
    settings.KOALA_FACE_DETECTOR = str(settings.DATA_DIR / "missing.toml")
    loading.clear_caches()
    client.force_login(personas["admin"])
    page = client.post("/runs/start", {"day": DAY, "ensemble": demo_ensemble.name}, follow=True).content.decode()
    assert "KOALA_FACE_DETECTOR" in page and "cannot read" in page
    assert not Run.objects.exists()
