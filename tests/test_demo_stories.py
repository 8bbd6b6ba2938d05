"""The stories planted in the demo data (demo/stories.py, make_demo_data --stories):
the files on disk are the plan, and each story is really in the pixels."""

import datetime as dt
import io
import json
import statistics
from pathlib import Path

import imagehash
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from PIL import Image

import demo
import demo.stories
from liveness.boxes import Box
from liveness.detect import FaceDetector, load_detector_manifest
from liveness.ensemble import Ensemble
from liveness.manifest import load_manifest
from liveness.pipeline import FileInput, Pipeline, face_hash
from liveness.quality import blur_score
from liveness.runtime import LivenessModel
from tests.conftest import DEMO_MANIFEST, ROOT, SHARED

END = dt.date(2026, 11, 20)
DAYS, PER_DAY, SEED = 6, 40, 4
FACE_KEYS = {"face", "landmarks", "pose", "blur"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One inbox with stories and one without, same seed (rendering takes ~30 s: made once)."""
    root = tmp_path_factory.mktemp("stories")
    summary, plan = demo.stories.generate(root / "inbox", days=DAYS, per_day=PER_DAY, seed=SEED, end_day=END)
    demo.generate_inbox(root / "plain", days=DAYS, per_day=PER_DAY, seed=SEED, end_day=END)
    return root / "inbox", root / "plain", plan


def sidecar(inbox: Path, rel: str) -> dict | None:
    path = (inbox / rel).with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else None


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def face_of(inbox: Path, rel: str) -> tuple[Image.Image, Box] | None:
    side = sidecar(inbox, rel)
    if not side or "face" not in side:
        return None
    f = side["face"]
    return Image.open(inbox / rel).convert("RGB"), Box(f["x"], f["y"], f["w"], f["h"])


def test_it_plants_each_story_on_its_own_day_among_the_last_four(corpus):
    inbox, _, plan = corpus
    days = [(END - dt.timedelta(days=k)).isoformat() for k in range(4)]
    assert sorted(story["day"] for story in plan["stories"].values()) == sorted(days)
    assert demo.stories.load_plan(inbox) == plan  # written next to the inbox
    assert (inbox.parent / "demo_stories.json").is_file()
    # the same arguments plan the same stories
    again = demo.stories.plan_stories(demo.days_ending(END, DAYS), per_day=PER_DAY, seed=SEED)
    assert again["stories"]["replay_wave"] == plan["stories"]["replay_wave"]


def test_it_writes_every_planted_file_with_the_planned_sidecar(corpus):
    inbox, _, plan = corpus
    planted = demo.stories.planted_files(plan)
    assert len({e["path"] for e in planted}) == len(planted)
    for entry in planted:
        day, device, _ = entry["path"].split("/")
        assert (inbox / entry["path"]).is_file()
        side = sidecar(inbox, entry["path"])
        assert {k: v for k, v in side.items() if k not in FACE_KEYS} == entry["sidecar"]
        assert FACE_KEYS <= side.keys() and side["captured_at"].startswith(day)
        if "label" in side:
            assert side["label"] == entry["render"]["label"]
            assert side.get("attack_type") == entry["render"]["attack_type"]
    st = plan["stories"]
    assert len(st["replay_wave"]["files"]) >= demo.stories.MIN_IMAGES
    assert len(st["small_faces"]["files"]) >= demo.stories.MIN_IMAGES
    retries = sum(len(g["files"]) - 1 for g in st["retry_burst"]["groups"])
    assert retries >= demo.stories.MIN_IMAGES


def test_it_blurs_the_blurry_cameras_pixels_all_day(corpus):
    inbox, _, plan = corpus
    story = plan["stories"]["blurry_camera"]
    device, day = story["device"], story["day"]
    on_day = sorted(p.relative_to(inbox).as_posix() for p in (inbox / day / device).glob("*.jpg"))
    assert set(story["images"]) <= set(on_day) and len(story["images"]) >= demo.stories.MIN_IMAGES

    def measured(paths):
        faces = [face_of(inbox, p) for p in paths]
        return [blur_score(im.crop((b.x, b.y, b.x + b.w, b.y + b.h))) for im, b in filter(None, faces)]

    other_days = [p.relative_to(inbox).as_posix() for p in inbox.glob(f"*/{device}/*.jpg") if not p.parts[-3] == day]
    blurry, usual = measured(story["images"]), measured(other_days)
    assert len(blurry) >= 20 and len(usual) >= 20
    assert statistics.median(blurry) > statistics.median(usual) + 0.3
    assert min(blurry) > statistics.median(usual)
    assert all(sidecar(inbox, p)["blur"] > settings.KOALA_MAX_BLUR for p in story["images"] if sidecar(inbox, p))


def test_it_sends_small_faces_from_a_device_never_seen_before(corpus):
    inbox, _, plan = corpus
    story = plan["stories"]["small_faces"]
    folders = sorted(p.parts[-2] for p in inbox.glob(f"*/{story['device']}"))
    assert folders == [story["day"]]  # a new device: no earlier (or later) day has it
    assert story["device"] not in {d.device_id for d in demo.DEVICES}
    sides = [sidecar(inbox, e["path"]) for e in story["files"]]
    sides_of_folder = list((inbox / story["day"] / story["device"]).glob("*.json"))
    assert len(sides_of_folder) == len(story["files"])
    min_sides = [min(s["face"]["w"], s["face"]["h"]) for s in sides]
    assert all(95 <= m <= 125 for m in min_sides), min_sides
    assert 100 <= statistics.median(min_sides) <= 120
    assert all(m < settings.KOALA_MIN_FACE for m in min_sides)
    assert {s["site"] for s in sides} == {story["site"]}


YUNET = ROOT / "liveness" / "detectors" / "yunet-2023mar.toml"
DETECTOR_FILES = SHARED / "models" / "face_detection"


@pytest.mark.skipif(not DETECTOR_FILES.is_dir(), reason=f"no face detector files in {DETECTOR_FILES}")
def test_it_shows_a_face_detector_the_small_faces_too(corpus):
    inbox, _, plan = corpus
    detect = FaceDetector(load_detector_manifest(YUNET, base=DETECTOR_FILES))
    found = [detect(Image.open(inbox / e["path"]).convert("RGB")) for e in plan["stories"]["small_faces"]["files"]]
    sides = [box.min_side for box, _ in filter(None, found)]
    assert len(sides) >= 0.6 * len(found)  # the detector misses some faces this small
    assert all(70 <= m < settings.KOALA_MIN_FACE for m in sides), sides
    assert 85 <= statistics.median(sides) <= 125


@pytest.fixture(scope="module")
def demo_pipeline():
    e = load_manifest(DEMO_MANIFEST)
    return Pipeline(Ensemble(e.name, [LivenessModel(m) for m in e.models], e.threshold, e.rule))


def test_it_plants_a_replay_wave_at_the_devices_of_one_site(corpus, demo_pipeline):
    inbox, _, plan = corpus
    story = plan["stories"]["replay_wave"]
    site_devices = {d.device_id for d in demo.DEVICES if d.site == story["site"]}
    assert len(site_devices) >= 2 and set(story["devices"]) == site_devices
    assert {e["path"].split("/")[1] for e in story["files"]} == site_devices
    assert all(sidecar(inbox, e["path"])["site"] == story["site"] for e in story["files"])
    labelled = [sidecar(inbox, e["path"]) for e in story["files"] if "label" in sidecar(inbox, e["path"])]
    assert labelled and all((s["label"], s["attack_type"]) == ("attack", "replay") for s in labelled)
    # in the pixels: the demo ensemble rejects them, and its three-class model names a screen
    inputs = [
        FileInput(data=(inbox / e["path"]).read_bytes(), sidecar=(inbox / e["path"]).with_suffix(".json").read_bytes())
        for e in story["files"]
    ]
    results = demo_pipeline.analyse(inputs)
    flagged = [r for r in results if r.decision == "attack"]
    assert len(flagged) >= 0.8 * len(results)
    guesses = [r.attack_guesses.get("fas_b") for r in flagged]
    assert guesses.count("replay") >= 0.8 * len(flagged)


def test_it_plants_retry_groups_seconds_apart_with_near_identical_faces(corpus):
    inbox, _, plan = corpus
    story = plan["stories"]["retry_burst"]
    groups = story["groups"]
    assert any(g["subject"] for g in groups) and any(g["subject"] is None for g in groups)
    assert len({g["device"] for g in groups}) >= 3  # users at several devices: no device holds the story
    gap, distance = settings.KOALA_ATTEMPT_GAP_SECONDS, settings.KOALA_ATTEMPT_HASH_DISTANCE
    for g in groups:
        paths = [e["path"] for e in g["files"]]
        assert 1 + 3 <= len(paths) <= 1 + 6 and {p.split("/")[1] for p in paths} == {g["device"]}
        sides = [sidecar(inbox, p) for p in paths]
        times = [dt.datetime.fromisoformat(s["captured_at"]) for s in sides]
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(2 <= x <= 9 for x in gaps), gaps
        assert [s.get("subject") for s in sides] == [g["subject"]] * len(sides)
        hashes = [imagehash.hex_to_hash(face_hash(*face_of(inbox, p))) for p in paths]
        assert all(b - a <= distance for a, b in zip(hashes, hashes[1:], strict=False))
        # nothing else on the device within the attempt gap: no other image joins or splits the group
        others = [
            dt.datetime.fromisoformat(json.loads(p.read_text())["captured_at"])
            for p in (inbox / story["day"] / g["device"]).glob("*.json")
            if p.relative_to(inbox).with_suffix("").as_posix() not in {x.rsplit(".", 1)[0] for x in paths}
            and "captured_at" in json.loads(p.read_text())
        ]
        assert all(
            t < times[0] - dt.timedelta(seconds=gap) or t > times[-1] + dt.timedelta(seconds=gap) for t in others
        )
    # two users of one device are told apart by their faces too
    firsts = [(g["device"], imagehash.hex_to_hash(face_hash(*face_of(inbox, g["files"][0]["path"])))) for g in groups]
    pairs = [(a, b) for i, (dev_a, a) in enumerate(firsts) for dev_b, b in firsts[:i] if dev_a == dev_b]
    assert pairs and all(a - b > distance for a, b in pairs)


def test_it_changes_no_other_file_than_the_blurry_cameras(corpus):
    inbox, plain, plan = corpus
    with_stories, without = files(inbox), files(plain)
    planted = {e["path"] for e in demo.stories.planted_files(plan)}
    planted |= {str(Path(p).with_suffix(".json")) for p in planted}
    assert set(with_stories) == set(without) | planted
    changed = {p for p in without if with_stories[p] != without[p]}
    story = plan["stories"]["blurry_camera"]
    blurred = {p for p in story["images"] if p not in planted}
    assert blurred and blurred <= changed  # every normal image of the blurry camera is re-rendered
    # besides them only their sidecars (the blur value) and byte copies of either changed
    sides = {str(Path(p).with_suffix(".json")) for p in blurred}
    theirs = {with_stories[p] for p in blurred | (sides & set(with_stories))}
    for p in changed - blurred:
        assert p in sides or with_stories[p] in theirs, p


def test_it_writes_the_same_inbox_without_stories_as_the_generator(tmp_path):
    call_command(
        "make_demo_data",
        "--out",
        str(tmp_path / "inbox"),
        "--days",
        "2",
        "--per-day",
        "8",
        "--seed",
        "3",
        "--end-day",
        "2026-11-02",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    demo.generate_inbox(tmp_path / "direct", days=2, per_day=8, seed=3, end_day=dt.date(2026, 11, 2))
    assert files(tmp_path / "inbox") == files(tmp_path / "direct")
    assert not (tmp_path / demo.stories.PLAN_FILE).exists()


def test_it_plants_the_stories_from_the_command_and_writes_the_plan_next_to_the_inbox(tmp_path):
    out = io.StringIO()
    call_command("make_demo_data", "--out", str(tmp_path / "inbox"), "--days", "5", "--per-day", "6",
                 "--end-day", "2026-11-05", "--stories", stdout=out, stderr=io.StringIO())  # fmt: skip
    plan = json.loads((tmp_path / demo.stories.PLAN_FILE).read_text())
    assert "stories planted" in out.getvalue() and str(tmp_path / demo.stories.PLAN_FILE) in out.getvalue()
    assert {s["day"] for s in plan["stories"].values()} == {f"2026-11-0{d}" for d in (2, 3, 4, 5)}
    assert all((tmp_path / "inbox" / e["path"]).is_file() for e in demo.stories.planted_files(plan))


def test_it_refuses_stories_on_fewer_days_than_the_stories_need(tmp_path):
    with pytest.raises(CommandError, match="--stories needs --days 5"):
        call_command("make_demo_data", "--out", str(tmp_path), "--days", "4", "--stories", stdout=io.StringIO())


# -------------------------------------------------------------------- scored and explained
# Each story, scored by the demo ensemble, is what "what changed" finds first for its day: the
# planted cause's slice, its share of the day's change confirmed by a count over the images.
EXPECTED = {
    "blurry_camera": ("low_quality", lambda st: ("device", st["device"])),
    "replay_wave": ("flag_rate", lambda st: ("site", st["site"])),
    "small_faces": ("low_quality", lambda st: ("device", st["device"])),
    "retry_burst": ("flag_rate", lambda st: ("attempt", "retry")),
}
COUNTED = {"flag_rate": ("flagged", "scored"), "low_quality": ("low_quality", "scored")}


def counted(images, measure: str) -> tuple[int, int]:
    """(k, n) of a measure over Image rows, counted here, not from the stored slices."""
    from django.db.models import Count, Q

    k_name, _ = COUNTED[measure]
    k_q = Q(decision="attack") if k_name == "flagged" else Q(category="low_quality")
    c = images.exclude(decision="").aggregate(n=Count("id"), k=Count("id", filter=k_q))
    return c["k"], c["n"]


def share_counted(day: dt.date, measure: str, dims: str, value: str) -> float:
    from monitor.models import Image

    window = Image.objects.filter(day__gte=day - dt.timedelta(days=settings.KOALA_EXPLAIN_WINDOW_DAYS), day__lt=day)
    whole = Image.objects.filter(day=day)
    of = {"device": "device__name", "site": "site"}.get(dims)
    if of:
        one, one_window = whole.filter(**{of: value}), window.filter(**{of: value})
    else:  # attempt = retry
        one, one_window = whole.filter(attempt_index__gt=1), window.filter(attempt_index__gt=1)
    k, n = counted(one, measure)
    wk, wn = counted(one_window, measure)
    big_k, big_n = counted(whole, measure)
    big_wk, big_wn = counted(window, measure)
    # a slice whose window has too few images for a rate of its own is held against the whole window
    p_one = wk / wn if wn >= 30 else big_wk / big_wn
    return (k - n * p_one) / (big_k - big_n * big_wk / big_wn)


@pytest.mark.django_db
def test_it_explains_each_story_by_its_planted_cause_and_groups_the_burst_as_planned(demo_ensemble):
    from monitor import runs
    from monitor.explain import explain_day
    from monitor.models import Image

    days, end = 18, dt.date(2026, 10, 31)
    _, plan = demo.stories.generate(settings.INBOX_DIR, days=days, per_day=100, seed=SEED, end_day=end)
    for day in demo.days_ending(end, days):
        runs.run_day(day)

    found, wrong = {}, []
    for name, (measure, cause) in EXPECTED.items():
        story = plan["stories"][name]
        day = dt.date.fromisoformat(story["day"])
        ranked = explain_day(day, measure).result.slices
        found[name] = [(r.dims, r.value, round(r.share or 0, 3), r.significant) for r in ranked[:3]]
        dims, value = cause(story)
        planted = next(r for r in ranked if (r.dims, r.value) == (dims, value))
        assert planted.share == pytest.approx(share_counted(day, measure, dims, value), abs=1e-9)
        # first, and significant; slices of exactly its images (site "annex" is device "kiosk-07")
        # rank after it, the device and the site being the dimensions a user reads first
        before = ranked[: ranked.index(planted)]
        if not planted.significant or before:
            wrong.append(
                f"{name}: {dims}={value} ranks {len(before) + 1} (share {planted.share:.3f}, day"
                f" {planted.day.k}/{planted.day.n}, window {planted.window.k}/{planted.window.n},"
                f" p {planted.p_value}, adjusted {planted.p_adjusted}, too few {planted.too_few})"
            )
    for g in plan["stories"]["retry_burst"]["groups"]:
        rows = [Image.objects.get(path=e["path"]) for e in g["files"]]
        assert [r.attempt_index for r in rows] == list(range(1, len(rows) + 1))
        assert {r.attempt_group for r in rows} == {rows[0].id} and {r.attempt_size for r in rows} == {len(rows)}
    planted_groups = len(plan["stories"]["retry_burst"]["groups"])
    burst_day = plan["stories"]["retry_burst"]["day"]
    burst_paths = {e["path"] for g in plan["stories"]["retry_burst"]["groups"] for e in g["files"]}
    burst_group_ids = set(Image.objects.filter(path__in=burst_paths).values_list("attempt_group", flat=True))
    assert len(burst_group_ids) == planted_groups
    assert not Image.objects.filter(day=burst_day, attempt_group__in=burst_group_ids).exclude(path__in=burst_paths)
    assert not wrong, f"the planted cause is not ranked first: {wrong}; top slices: {found}"
