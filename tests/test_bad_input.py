"""Issue 8, bad input corpus: one inbox day full of broken, odd and hostile files, scored with the
real demo ensemble. Every file must end with the outcome a user can see and understand (an Image
row with a category and a reason, a failed InboxFile with a reason, or a deliberate skip), the
good images of the same day must be scored normally, and the run must end `done`."""

import datetime as dt
import errno
import io
import json
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from PIL import Image as PILImage

import demo
from monitor import discovery, runs
from monitor.models import Image, InboxFile, Run
from tests.conftest import jpeg_bytes, put, sidecar_for

DAY = "2026-11-20"
DEV = "cam-1"
SCORED = {"live", "attack", "low_quality"}


def _encode(img: PILImage.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(side: int = 30_000) -> bytes:
    """A 1-bit PNG whose header declares side x side pixels, with a few bytes of pixel data: a
    decompression bomb in a file of ~100 bytes (never decoded, so no time or memory spent)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def exif_rotated_jpeg(upright: PILImage.Image) -> bytes:
    """The picture stored sideways with EXIF orientation 6 (display = rotate 90 degrees clockwise)."""
    stored = upright.transpose(PILImage.Transpose.ROTATE_90)  # exif_transpose applies ROTATE_270
    exif = PILImage.Exif()
    exif[0x0112] = 6
    return _encode(stored, "JPEG", quality=90, exif=exif.tobytes())


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def make_unreadable(path: Path, monkeypatch) -> None:
    """Reading `path` fails with "Permission denied", whoever runs the tests: chmod 000, and as
    root (who reads through that, as on CI) opening it is refused the same way."""
    path.chmod(0)
    if running_as_root():
        target, path_open = path.resolve(), Path.open  # Path.read_bytes opens through Path.open

        def refuse(self, *args, **kwargs):
            if self.resolve() == target:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return path_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)


@pytest.fixture
def corpus(data_root, tmp_path, monkeypatch):
    inbox = settings.INBOX_DIR
    rng = np.random.default_rng(8)

    def sample(label="genuine"):
        return demo.render_sample(rng, label=label, face_size=200, yaw=0.0, pitch=0.0, blur=0.0)

    def good(name, label="genuine", data=None):
        s = sample(label)
        put(inbox, DAY, DEV, name, data(s) if data else jpeg_bytes(s), sidecar_for(s))
        return s

    # the good ones
    good("good-live.jpg", "genuine")
    good("good-attack.jpg", "attack")
    good("with space.jpg")
    good("ünïcødé-顔.jpg")
    good("-leading-dash.jpg")

    # names that lie about the format, and unusual colour modes: all decode by their bytes
    good("jpeg-named.png")
    good("png-named.jpg", data=lambda s: _encode(s.image, "PNG"))
    good("cmyk.jpg", data=lambda s: _encode(s.image.convert("CMYK"), "JPEG", quality=90))
    good("gray.jpg", data=lambda s: _encode(s.image.convert("L"), "JPEG", quality=90))
    good(
        "gray16.png",
        data=lambda s: _encode(PILImage.fromarray(np.asarray(s.image.convert("L"), dtype=np.uint16) * 257), "PNG"),
    )
    good("alpha.png", data=lambda s: _encode(s.image.convert("RGBA"), "PNG"))
    good("palette-gif.jpg", data=lambda s: _encode(s.image.convert("P"), "GIF"))
    rotated = good("exif-rotated.jpg", data=lambda s: exif_rotated_jpeg(s.image))

    # broken images
    put(inbox, DAY, DEV, "zero.jpg", b"")
    full = jpeg_bytes(sample())
    put(inbox, DAY, DEV, "truncated.jpg", full[: len(full) // 2])
    put(inbox, DAY, DEV, "text.jpg", b"this is a shopping list, not a picture\n")
    put(inbox, DAY, DEV, "bomb.png", bomb_png())
    put(inbox, DAY, DEV, "one-pixel.jpg", _encode(PILImage.new("RGB", (1, 1), (200, 150, 120)), "JPEG"))
    put(
        inbox,
        DAY,
        DEV,
        "one-pixel-face.png",
        _encode(PILImage.new("RGB", (1, 1), (190, 140, 110)), "PNG"),
        {"face": {"x": 0, "y": 0, "w": 1, "h": 1}},
    )

    # bad sidecars (the images themselves are fine)
    put(inbox, DAY, DEV, "sidecar-not-json.jpg", jpeg_bytes(sample()), "{face: not json at all")
    put(
        inbox,
        DAY,
        DEV,
        "sidecar-wrong-types.jpg",
        jpeg_bytes(sample()),
        {"face": "middle", "pose": [1, 2, 3], "blur": "very", "landmarks": 5, "captured_at": 17},
    )
    put(inbox, DAY, DEV, "box-outside.jpg", jpeg_bytes(sample()), {"face": {"x": 5000, "y": 4000, "w": 200, "h": 200}})
    put(inbox, DAY, DEV, "box-negative.jpg", jpeg_bytes(sample()), {"face": {"x": 300, "y": 200, "w": -150, "h": -150}})
    (inbox / DAY / DEV / "orphan.json").write_text(json.dumps({"face": {"x": 1, "y": 1, "w": 10, "h": 10}}))

    # things that are not regular inbox files
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg_bytes(sample()))
    (inbox / DAY / DEV / "link-outside.jpg").symlink_to(outside)
    (inbox / DAY / DEV / "folder.jpg").mkdir()
    locked = put(inbox, DAY, DEV, "locked.jpg", jpeg_bytes(sample()))
    make_unreadable(locked, monkeypatch)

    # a day folder that is not a date
    put(inbox, "not-a-day", DEV, "stray.jpg", jpeg_bytes(sample()))

    yield {"rotated": rotated, "locked": locked}
    locked.chmod(0o644)  # let pytest clean tmp_path


def path(name: str) -> str:
    return f"{DAY}/{DEV}/{name}"


def image(name: str) -> Image:
    return Image.objects.get(path=path(name))


@pytest.mark.django_db
def test_every_bad_file_ends_with_an_outcome_and_a_reason(corpus, demo_ensemble):
    run = runs.run_day(dt.date.fromisoformat(DAY))

    assert run.status == Run.DONE
    assert not InboxFile.objects.filter(status=InboxFile.PENDING).exists()

    # good images, odd names, lying extensions and every colour mode: scored normally
    for name, fmt in [
        ("good-live.jpg", "JPEG"),
        ("good-attack.jpg", "JPEG"),
        ("with space.jpg", "JPEG"),
        ("ünïcødé-顔.jpg", "JPEG"),
        ("-leading-dash.jpg", "JPEG"),
        ("jpeg-named.png", "JPEG"),
        ("png-named.jpg", "PNG"),
        ("cmyk.jpg", "JPEG"),
        ("gray.jpg", "JPEG"),
        ("gray16.png", "PNG"),
        ("alpha.png", "PNG"),
        ("palette-gif.jpg", "GIF"),
        ("exif-rotated.jpg", "JPEG"),
    ]:
        im = image(name)
        assert im.category in {"live", "attack"}, (name, im.category, im.reason, im.failed_gates)
        assert im.format == fmt, name
        assert im.score is not None and 0 <= im.score <= 1, name
        assert set(im.scores) == {m.name for m in demo_ensemble.members.all()}, name
        assert im.box_source == "sidecar", name
        assert im.decision == im.category, name
        assert (settings.SORTED_DIR / im.sorted_path).read_bytes() == (settings.INBOX_DIR / im.path).read_bytes()
        assert im.has_thumbnail, name
    assert image("good-live.jpg").label == "genuine" and image("good-attack.jpg").label == "attack"

    # EXIF orientation 6: the upright size, and the sidecar box (upright coordinates) used as is
    rot, box = image("exif-rotated.jpg"), corpus["rotated"].box
    assert (rot.width, rot.height) == (640, 480)
    assert (rot.box_x, rot.box_y, rot.box_w, rot.box_h) == (round(box.x), round(box.y), round(box.w), round(box.h))
    assert not any("outside" in n or "clipped" in n for n in rot.notes)

    # broken images: unreadable, with a reason a person understands, listed in the run's errors
    for name, words in [
        ("zero.jpg", ["empty file"]),
        ("truncated.jpg", ["truncated"]),
        ("text.jpg", ["not an image"]),
        ("bomb.png", ["decompression bomb"]),
    ]:
        im = image(name)
        assert im.category == "unreadable", (name, im.category, im.reason)
        assert all(w in im.reason for w in words), (name, im.reason)
        assert im.score is None and im.scores == {}, name
        assert {"path": im.path, "reason": im.reason} in run.errors
        assert (settings.SORTED_DIR / DAY / "unreadable" / f"{DEV}__{name}").exists()
    assert "pixels" in image("bomb.png").reason  # refused from the header: 30000 x 30000 never decoded

    # readable but without a usable face box: no_face, with why
    tiny = image("one-pixel.jpg")
    assert (tiny.category, tiny.width, tiny.height) == ("no_face", 1, 1)
    assert "no face box in the sidecar" in tiny.reason
    # ... and with a 1-pixel face box: cropped and scored, but far below the minimum face size
    tiny_face = image("one-pixel-face.png")
    assert tiny_face.category == "low_quality" and tiny_face.score is not None, (tiny_face.category, tiny_face.reason)
    assert tiny_face.face_size == 1 and "face_size" in str(tiny_face.failed_gates)
    for name, reason_words, note_words in [
        ("sidecar-not-json.jpg", "no face box in the sidecar", "not valid JSON"),
        ("sidecar-wrong-types.jpg", "no face box in the sidecar", "face: must be an object"),
        ("box-outside.jpg", "lies outside the image", "lies outside the 640x480 image"),
        ("box-negative.jpg", "no face box in the sidecar", "width and height must be positive"),
    ]:
        im = image(name)
        assert im.category == "no_face", (name, im.category, im.reason)
        assert reason_words in im.reason, (name, im.reason)
        assert any(note_words in n for n in im.notes), (name, im.notes)
        assert im.score is None, name
    wrong = image("sidecar-wrong-types.jpg").notes
    for field in ("pose", "blur", "landmarks", "captured_at"):
        assert any(n.startswith(f"sidecar {field}") for n in wrong), (field, wrong)

    # not regular inbox files: a failed InboxFile with the reason, no Image
    link = InboxFile.objects.get(path=path("link-outside.jpg"))
    assert link.status == InboxFile.FAILED and "outside the inbox" in link.reason
    folder = InboxFile.objects.get(path=path("folder.jpg"))
    assert folder.status == InboxFile.FAILED and "not a regular file" in folder.reason
    for f in (link, folder):
        assert f.image is None and not Image.objects.filter(path=f.path).exists()
        assert {"path": f.path, "reason": f.reason} in run.errors

    # the unreadable file (permissions): a failed InboxFile with the reason, no Image
    locked = InboxFile.objects.get(path=path("locked.jpg"))
    assert (locked.status, locked.reason) == (InboxFile.FAILED, "cannot read the file: Permission denied")
    assert locked.image is None and not Image.objects.filter(path=locked.path).exists()
    assert {"path": locked.path, "reason": locked.reason} in run.errors

    # skipped on purpose: the sidecar without an image is no inbox file at all
    assert not InboxFile.objects.filter(path__endswith=".json").exists()
    assert not Image.objects.filter(path__endswith=".json").exists()

    # every image file of the day is accounted for (the orphan sidecar only is left out)
    names = {p.name for p in (settings.INBOX_DIR / DAY / DEV).iterdir() if p.suffix != ".json"}
    assert {Path(p).name for p in InboxFile.objects.values_list("path", flat=True)} == names
    # the link and the folder fail at discovery (in run.errors, not in run.total); a file that cannot
    # be read fails while scoring (run.failed_files)
    assert run.total == len(names) - 2
    assert run.failed_files == 1
    assert sum(run.counts.values()) == Image.objects.count() == run.total - run.failed_files


@pytest.mark.django_db
def test_a_day_folder_that_is_not_a_date_is_skipped(corpus, demo_ensemble):
    assert discovery.inbox_days() == [dt.date.fromisoformat(DAY)]

    call_command("score_day", "--all", stdout=io.StringIO(), stderr=io.StringIO())

    assert set(Run.objects.values_list("day", flat=True)) == {dt.date.fromisoformat(DAY)}
    assert Run.objects.get().status == Run.DONE
    assert not InboxFile.objects.filter(path__startswith="not-a-day").exists()
    assert not Image.objects.filter(path__contains="stray").exists()


@pytest.mark.django_db
def test_it_fails_only_the_file_that_vanished_before_it_was_read(data_root, demo_ensemble):
    rng = np.random.default_rng(9)
    for name in ("a.jpg", "b.jpg", "gone.jpg"):
        s = demo.render_sample(rng, label="genuine", face_size=200, yaw=0.0, pitch=0.0, blur=0.0)
        put(settings.INBOX_DIR, DAY, DEV, name, jpeg_bytes(s), sidecar_for(s))

    def discover_then_lose_one(run):
        ids = discovery.discover(run)
        (settings.INBOX_DIR / path("gone.jpg")).unlink()  # the device took it back in between
        return ids

    run = runs.start_run(dt.date.fromisoformat(DAY))
    run = runs.run_in_process(run, discover_then_lose_one, runs.score_batch, runs.finish_run)

    gone = InboxFile.objects.get(path=path("gone.jpg"))
    assert (gone.status, gone.reason) == (InboxFile.FAILED, "cannot read the file: No such file or directory")
    assert {"path": gone.path, "reason": gone.reason} in run.errors
    assert run.status == Run.DONE and run.failed_files == 1
    assert set(Image.objects.values_list("path", flat=True)) == {path("a.jpg"), path("b.jpg")}
    assert set(Image.objects.values_list("category", flat=True)) <= SCORED


@pytest.mark.django_db
def test_it_logs_why_it_skips_what_it_skips(corpus, demo_ensemble, caplog, settings):
    inbox = settings.INBOX_DIR
    (inbox / DAY / "notes.txt").write_text("a file where the device folders are")
    put(inbox, DAY, DEV, "readme.txt", b"not an image name")
    long_device = "d" * (discovery.DEVICE_NAME_MAX + 1)
    put(inbox, DAY, long_device, "x.jpg", b"never looked at")
    caplog.set_level(logging.INFO, logger="monitor.discovery")

    call_command("score_day", "--all", stdout=io.StringIO(), stderr=io.StringIO())
    settings.KOALA_SETTLE_SECONDS = 3600
    put(inbox, DAY, DEV, "still-arriving.jpg", b"half a fil")
    assert not discovery.has_work(dt.date.fromisoformat(DAY))

    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "monitor.discovery"]
    for level, prefix, where, why in [
        (logging.INFO, "skipped", f"{DAY}/{DEV}/orphan.json", "sidecar without an image"),
        (logging.INFO, "skipped", "not-a-day", "not a day folder (YYYY-MM-DD)"),
        (logging.INFO, "skipped", f"{DAY}/notes.txt", "not a device folder"),
        (logging.INFO, "skipped", f"{DAY}/{DEV}/readme.txt", "not an image file name (.jpg, .jpeg, .png)"),
        (logging.WARNING, "skipped", f"{DAY}/{long_device}", "device folder name longer than 100 characters"),
        (logging.INFO, "left", f"{DAY}/{DEV}/still-arriving.jpg", "for the next run: modified in the last 3600 s"),
    ]:
        ending = f"/{where}: {why}" if prefix == "skipped" else f"/{where} {why}"
        assert any(lv == level and m.startswith(f"{prefix} ") and m.endswith(ending) for lv, m in logged), (
            where,
            logged,
        )
    # skipped means never recorded
    assert not InboxFile.objects.filter(path__contains="readme.txt").exists()
    assert not InboxFile.objects.filter(path__contains=long_device).exists()
