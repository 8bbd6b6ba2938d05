"""The threshold table (strategy explorer): the command in its three formats, the page, and that both
give identical numbers for the same input (issue 4, SPEC sections 2 and 5).

tests/data/scores_small.csv (10 genuine, 10 attack; the copy of liveness/tests/data/scores_small.csv)
worked by hand, SPEC section 2 rule: with G genuine, k = ceil(f * G) and t = the largest observed
score with at most k genuine at or below it.

- minface none, quality off, f = 0.1% or 1%: G = 10, k = 1; genuine 0.12, 0.35, ...: the second
  genuine is 0.35, so t = 0.33 (largest score below it); attacks <= 0.33: 0.05 0.15 0.20 0.28 0.33
  -> TP 5/10, FP 1/10. With f = 20%: k = 2, third genuine 0.50, t = 0.45, TP 7/10, FP 2/10.
- minface 100, quality off: drops g01 (90x100) and a01 (80x80); 9 + 9 left; k = 1; second genuine
  0.50, t = 0.45, attacks <= 0.45: 0.15 0.20 0.28 0.33 0.40 0.45 -> TP 6/9, FP 1/9.
- minface 130, quality on (|yaw|, |pitch| <= 30, blur <= 0.5; missing passes): genuine g04 g05 g06
  g08 g09 g10 (6), attacks a02 a04 a07 a09 (4); second genuine 0.71 -> t = 0.66, TP 4/4, FP 1/6:
  the best row (TPR 1 with the lowest FPR of the three TPR-1 rows: 140/on has 1/4, 150/on 1/3).
- ISO: BPCER20 and BPCER100: every type has fewer than 20 attacks, so no attack may be above t:
  t = 0.75 (the highest attack), genuine <= 0.75: 0.12 0.35 0.50 0.62 0.71 -> 5/10.
  At t = 0.5: APCER print 1/4 (0.66), replay 1/3 (0.55), mask 1/2 (0.75); untyped 0/1 (reported apart,
  never the reported APCER); APCER 0.5 (mask); BPCER 3/10 (0.12 0.35 0.50); ACER 0.4.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from monitor.models import ModelVersion
from tests import factories
from tests.conftest import ROOT

SMALL = Path(__file__).resolve().parent / "data" / "scores_small.csv"
KEYS = ["minface", "quality", "target_fpr", "threshold", "tpr", "fpr", "attack", "genuine", "fp", "tp"]
# the first group (f = 0.1%) in its hand-derived order: TPR descending, then FPR ascending, then
# strategy order (minface none, 100, ..., 150; quality off before on)
ORDER = [
    (130, True),  # 4/4, FP 1/6
    (140, True),  # 3/3, FP 1/4
    (150, True),  # 3/3, FP 1/3
    (100, True),  # 6/7
    (110, True),  # 5/6
    (130, False),  # 4/5, FP 1/7
    (120, True),  # 4/5, FP 1/6
    (None, True),  # 6/8, FP 1/8
    (110, False),  # 6/8, FP 1/8 (after none: strategy order)
    (140, False),  # 3/4, FP 1/5
    (120, False),  # 5/7
    (100, False),  # 6/9, FP 1/9
    (150, False),  # 2/3, FP 1/4
    (None, False),  # 5/10
]


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("threshold_table", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def row(rows, minface, quality, target_fpr):
    (found,) = [r for r in rows if (r["minface"], r["quality"], r["target_fpr"]) == (minface, quality, target_fpr)]
    return found


# --- the command on the committed score file --------------------------------------------------------


def test_it_reproduces_the_small_score_file_as_json():
    out, _ = run("--scores", str(SMALL), "--format", "json")
    data = json.loads(out)

    assert set(data) == {"rows", "iso"}
    rows = data["rows"]
    assert len(rows) == 28 and all(list(r) == KEYS for r in rows)
    assert [r["target_fpr"] for r in rows] == [0.001] * 14 + [0.01] * 14
    assert [(r["minface"], r["quality"]) for r in rows[:14]] == ORDER
    assert [(r["minface"], r["quality"]) for r in rows[14:]] == ORDER
    assert row(rows, None, False, 0.001) == {
        "minface": None,
        "quality": False,
        "target_fpr": 0.001,
        "threshold": 0.33,
        "tpr": 0.5,
        "fpr": 0.1,
        "attack": 10,
        "genuine": 10,
        "fp": 1,
        "tp": 5,
    }
    r = row(rows, 100, False, 0.01)
    assert (r["threshold"], r["tp"], r["attack"], r["fp"], r["genuine"]) == (0.45, 6, 9, 1, 9)
    assert r["tpr"] == pytest.approx(6 / 9) and r["fpr"] == pytest.approx(1 / 9)
    best = rows[0]
    assert (best["minface"], best["quality"], best["threshold"], best["tp"], best["attack"], best["fp"]) == (
        130,
        True,
        0.66,
        4,
        4,
        1,
    )
    assert best["genuine"] == 6 and best["tpr"] == 1.0
    assert data["iso"]["bpcer20"] == 0.5 and data["iso"]["bpcer100"] == 0.5
    # a score file has no active threshold: no APCER/BPCER/ACER unless --threshold is given
    assert data["iso"]["apcer"] is None and data["iso"]["bpcer"] is None and data["iso"]["acer"] is None
    assert data["iso"]["apcer_per_type"] == {}


def test_it_gives_the_iso_figures_at_a_given_threshold():
    out, _ = run("--scores", str(SMALL), "--format", "json", "--threshold", "0.5", "--fpr", "20%")
    data = json.loads(out)

    iso = data["iso"]
    assert iso["apcer_per_type"] == pytest.approx({"print": 0.25, "replay": 1 / 3, "mask": 0.5, "unknown": 0.0})
    assert iso["apcer"] == 0.5 and iso["bpcer"] == 0.3 and iso["acer"] == pytest.approx(0.4)
    assert iso["bpcer20"] == 0.5 and iso["bpcer100"] == 0.5
    r = row(data["rows"], None, False, 0.2)  # k = 2: t = 0.45, TP 7, FP 2
    assert (r["threshold"], r["tp"], r["fp"], r["tpr"], r["fpr"]) == (0.45, 7, 2, 0.7, 0.2)
    assert len(data["rows"]) == 14


def test_it_writes_the_small_score_file_as_csv():
    out, _ = run("--scores", str(SMALL), "--format", "csv", "--fpr", "0.001", "0.2")
    lines = out.splitlines()

    assert lines[0] == ",".join(KEYS)
    assert len(lines) == 1 + 28
    assert lines[1] == "130,true,0.001,0.66,1.0,0.16666666666666666,4,6,1,4"  # the best row first
    assert ",false,0.001,0.33,0.5,0.1,10,10,1,5" in lines  # minface none, quality off
    assert "100,false,0.001,0.45,0.6666666666666666,0.1111111111111111,9,9,1,6" in lines
    assert ",false,0.2,0.45,0.7,0.2,10,10,2,7" in lines
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["target_fpr"] for r in parsed] == ["0.001"] * 14 + ["0.2"] * 14


def test_it_writes_the_small_score_file_as_an_aligned_text_table():
    out, _ = run("--scores", str(SMALL), "--threshold", "0.5")
    lines = out.splitlines()

    assert "20 labelled images: 10 attack, 10 genuine" in out
    start = lines.index("Target FPR 0.1%")
    header, first, *group = lines[start + 1 : start + 16]
    assert header.split() == ["minface", "quality", "threshold", "TPR", "95%", "CI", "FPR", "95%", "CI"] + [
        "attack",
        "genuine",
        "TP",
        "FP",
    ]
    # the best row is marked and first; it is the only marked row of the group
    assert first.split()[:5] == ["*", "130", "on", "0.66", "100.00%"]
    assert first.split()[-4:] == ["4", "6", "4", "1"]
    assert not any(line.startswith("*") for line in group)
    tprs = [float(line.split()[3].rstrip("%")) for line in group]
    assert tprs == sorted(tprs, reverse=True) and tprs[-1] == 50.0
    assert group[-1].split()[:3] == ["none", "off", "0.33"]
    # aligned: the TPR column ends at the same position on every row
    ends = {line.index("%") for line in [first, *group]}
    assert len(ends) == 1
    assert "Target FPR 1%" in lines
    assert "BPCER20: 50.00% (5/10" in out and "BPCER100: 50.00% (5/10" in out
    assert "APCER 50.00% (mask)" in out and "BPCER 30.00% (3/10)" in out and "ACER  40.00%" in out
    assert "APCER print: 25.00% (1/4)" in out


def test_it_uses_a_model_column_of_the_score_file():
    out, _ = run("--scores", str(SMALL), "--model", "a", "--format", "json", "--fpr", "0.01")
    rows = json.loads(out)["rows"]

    # score_a is empty for g04: 9 genuine, 10 attacks; genuine score_a 0.20 0.30 0.55 ...:
    # k = 1, second genuine 0.30 -> t = 0.25; attacks <= 0.25: 0.10 0.15 0.25 -> TP 3
    r = row(rows, None, False, 0.01)
    assert (r["genuine"], r["attack"], r["threshold"], r["tp"], r["fp"]) == (9, 10, 0.25, 3, 1)


# --- errors ------------------------------------------------------------------------------------------

BAD_FILE = "path,score,label\na.jpg,0.5,genuine\nb.jpg,abc,attack\nc.jpg,0.4,maybe\nd.jpg,0.3\ne.jpg,1.5,attack\n"


def test_it_names_each_bad_line_and_exits_with_code_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_FILE)
    err = io.StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("threshold_table", "--scores", str(bad), stdout=io.StringIO(), stderr=err)

    assert exc.value.returncode == 2
    text = err.getvalue()
    assert "line 3: score is not a number: 'abc'" in text
    assert "line 4: unknown label 'maybe'" in text
    assert "line 5: expected 3 columns, got 2" in text
    assert "line 6: score must be in [0, 1], got 1.5" in text
    assert "line 2" not in text


def test_it_exits_with_code_2_from_the_shell_on_a_malformed_file(tmp_path, data_root):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_FILE)
    env = {"KOALA_DATA_DIR": str(data_root), "PATH": "/usr/bin:/bin"}

    result = subprocess.run(
        [sys.executable, "manage.py", "threshold_table", "--scores", str(bad)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2, result.stderr
    assert "line 3: score is not a number" in result.stderr and "line 5: expected 3 columns" in result.stderr
    assert result.stdout == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args, message",
    [
        (["--scores", str(SMALL), "--from", "2026-11-20", "--to", "2026-11-21"], "not both"),
        ([], "give a source"),
        (["--from", "2026-11-22", "--to", "2026-11-21"], "from 2026-11-22 is after to 2026-11-21"),
        (["--from", "2026-11-20"], "give both --from and --to"),
        (["--from", "2026-11-20", "--to", "someday"], "not a day"),
        (["--from", "2026-11-20", "--to", "2026-11-21", "--ensemble", "nope"], "unknown ensemble 'nope'"),
        (["--from", "2026-11-20", "--to", "2026-11-21", "--model", "nope"], "unknown model 'nope'"),
        (["--from", "2026-11-20", "--to", "2026-11-21", "--ensemble", "e1", "--model", "m9"], "not a member"),
        (["--scores", str(SMALL), "--fpr", "0"], "strictly between 0 and 1"),
        (["--scores", str(SMALL), "--fpr", "1"], "strictly between 0 and 1"),
        (["--scores", str(SMALL), "--fpr", "150%"], "strictly between 0 and 1"),
        (["--scores", str(SMALL), "--fpr", "lots"], "not a target FPR"),
        (["--scores", str(SMALL), "--threshold", "2"], "threshold must be in [0, 1]"),
        (["--scores", str(SMALL), "--model", "zz"], "no column score_zz"),
        (["--scores", str(SMALL), "--ensemble", "e1"], "--ensemble selects database data"),
        (["--scores", "no/such/file.csv"], "cannot read the score file"),
    ],
)
def test_it_refuses_bad_arguments_with_a_clear_message(args, message):
    ensemble_with_models()
    with pytest.raises(CommandError, match=None) as exc:
        run(*args)
    assert message in str(exc.value)
    assert exc.value.returncode != 0


def test_it_refuses_an_unknown_format_with_a_non_zero_exit(data_root):
    env = {"KOALA_DATA_DIR": str(data_root), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "manage.py", "threshold_table", "--scores", str(SMALL), "--format", "xml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "invalid choice: 'xml'" in result.stderr


# --- the database source -----------------------------------------------------------------------------


def ensemble_with_models(name="e1", threshold=0.5, active=True, members=("m1", "m2")):
    ens = factories.ensemble(name, threshold=threshold, active=active)
    for m in members:
        mv, _ = ModelVersion.objects.get_or_create(
            name=m, version="1", defaults={"sha256": f"{m}{name}".ljust(64, "0"), "file": f"{m}.onnx", "manifest": ""}
        )
        ens.members.add(mv)
    return ens


def build_images():
    """Ensemble e1 (threshold 0.5), days 2026-11-20..21, by hand (SPEC section 2 rule):

    genuine  score 0.2 (90x90), 0.6 (120x130), 0.7 (no box), 0.9 (150x140)    m2 0.5 0.6 0.7 0.8
    attack   score 0.1 (100x100 print), 0.3 (130x130 replay), 0.4 (80x200 print), 0.8 (150x150 replay)
                                                                                m2 0.1 0.2 0.3 0.45
             score 0.35 (no box, mask), no m2 score

    Ensemble, minface none, quality off, f = 1%: G = 4, k = 1; the second genuine is 0.6 -> t = 0.4;
    attacks <= 0.4: 0.1 0.3 0.35 0.4 -> TP 4/5, FP 1/4.
    Minface 100: drops 0.2 (90) and 0.4 (80 wide): genuine 0.6 0.7 0.9, attacks 0.1 0.3 0.35 0.8;
    second genuine 0.7 -> t = 0.6; TP 3/4, FP 1/3.
    ISO at 0.5: print 0/2, replay 1/2 (0.8), mask 0/1: APCER 0.5 (replay); BPCER 1/4; ACER 0.375.
    Model m2: 4 genuine, 4 attacks (the mask one has no m2 score); k = 1, second genuine 0.6 ->
    t = 0.5; TP 4/4, FP 1/4.

    Left out: an unlabelled image, one outside the range, one of another ensemble, one unscored.
    """
    e1 = ensemble_with_models()
    other = ensemble_with_models("e2", threshold=0.3, active=False, members=("m1",))
    day = "2026-11-20"

    def img(score, label, m2=None, box=None, **kw):
        scores = {"m1": score} if m2 is None else {"m1": score, "m2": m2}
        box_w, box_h = box or (None, None)
        kw.setdefault("day", day)
        kw.setdefault("ensemble", e1)
        return factories.image(score=score, label=label, scores=scores, box_w=box_w, box_h=box_h, **kw)

    img(0.2, "genuine", 0.5, (90, 90), yaw=5, pitch=0, blur=0.1)
    img(0.6, "genuine", 0.6, (120, 130), day="2026-11-21")
    img(0.7, "genuine", 0.7)
    img(0.9, "genuine", 0.8, (150, 140), yaw=40)
    img(0.1, "attack", 0.1, (100, 100), attack_type="print")
    img(0.3, "attack", 0.2, (130, 130), attack_type="replay", day="2026-11-21")
    img(0.4, "attack", 0.3, (80, 200), attack_type="print")
    img(0.8, "attack", 0.45, (150, 150), attack_type="replay")
    img(0.35, "attack", None, attack_type="mask")
    # left out
    img(0.05, "", 0.05, (150, 150))
    img(0.01, "genuine", 0.01, (150, 150), day="2026-11-25")
    img(0.01, "genuine", 0.01, (150, 150), ensemble=other)
    factories.image(score=None, label="genuine", ensemble=e1, day=day)
    return e1


DB_ARGS = ["--from", "2026-11-20", "--to", "2026-11-21"]


@pytest.mark.django_db
def test_it_builds_the_table_from_stored_images_by_hand():
    build_images()
    out, _ = run(*DB_ARGS, "--format", "json", "--fpr", "0.01")
    data = json.loads(out)

    r = row(data["rows"], None, False, 0.01)
    assert (r["threshold"], r["tp"], r["attack"], r["fp"], r["genuine"]) == (0.4, 4, 5, 1, 4)
    assert (r["tpr"], r["fpr"]) == (0.8, 0.25)
    r = row(data["rows"], 100, False, 0.01)
    assert (r["threshold"], r["tp"], r["attack"], r["fp"], r["genuine"]) == (0.6, 3, 4, 1, 3)
    # quality on drops the genuine 0.9 (yaw 40): G = 3, k = 1, second genuine 0.6 -> t = 0.4
    r = row(data["rows"], None, True, 0.01)
    assert (r["threshold"], r["tp"], r["attack"], r["fp"], r["genuine"]) == (0.4, 4, 5, 1, 3)
    # the ISO block at the ensemble's threshold 0.5
    iso = data["iso"]
    assert iso["threshold"] == 0.5
    assert iso["apcer_per_type"] == {"mask": 0.0, "print": 0.0, "replay": 0.5}
    assert (iso["apcer"], iso["bpcer"], iso["acer"]) == (0.5, 0.25, 0.375)


@pytest.mark.django_db
def test_it_selects_one_model_of_the_ensemble():
    build_images()

    ensemble = json.loads(run(*DB_ARGS, "--format", "json", "--fpr", "0.01")[0])
    m2 = json.loads(run(*DB_ARGS, "--model", "m2", "--format", "json", "--fpr", "0.01")[0])
    m2_named = json.loads(run(*DB_ARGS, "--ensemble", "e1", "--model", "m2", "--format", "json", "--fpr", "0.01")[0])

    r = row(m2["rows"], None, False, 0.01)
    assert (r["threshold"], r["tp"], r["attack"], r["fp"], r["genuine"]) == (0.5, 4, 4, 1, 4)
    assert row(ensemble["rows"], None, False, 0.01)["threshold"] == 0.4
    assert m2_named == m2
    # the ensemble's threshold was never applied to m2 alone: no ISO figures at it
    assert ensemble["iso"]["threshold"] is not None and m2["iso"]["threshold"] is None
    # the other ensemble e2 has one labelled image (genuine, 0.01) in the range
    e2 = json.loads(run(*DB_ARGS, "--ensemble", "e2", "--format", "json")[0])
    assert {(r["attack"], r["genuine"]) for r in e2["rows"]} == {(0, 1)}
    assert e2["iso"]["threshold"] == 0.3


# --- the page ----------------------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client, personas):
    client.force_login(personas["viewer"])
    return client


URL = "/thresholds/"


def test_it_routes_the_page():
    assert reverse("thresholds") == URL


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client):
    for response in (client.get(URL), client.post(URL, {"format": "json"})):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("extra", [[], ["--model", "m2"], ["--fpr", "0.2", "0.5%"]])
def test_it_gives_the_same_numbers_on_the_page_and_in_the_command_for_a_range(viewer_client, fmt, extra):
    build_images()
    params = {"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "format": fmt}
    if "--model" in extra:
        params["model"] = "m2"
    if "--fpr" in extra:
        params["fpr"] = "0.2 0.5%"

    response = viewer_client.get(URL, params)
    command, _ = run(*DB_ARGS, "--ensemble", "e1", *extra, "--format", fmt)

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert response.content.decode() == command
    assert len(command.splitlines()) > 28


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_it_gives_the_same_numbers_on_the_page_and_in_the_command_for_an_upload(viewer_client, fmt):
    upload = SimpleUploadedFile("scores_small.csv", SMALL.read_bytes(), content_type="text/csv")
    response = viewer_client.post(URL, {"scores": upload, "fpr": "0.1% 20%", "threshold": "0.5", "format": fmt})
    command, _ = run("--scores", str(SMALL), "--fpr", "0.001", "0.2", "--threshold", "0.5", "--format", fmt)

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="thresholds_scores_small.{fmt}"'
    assert response.content.decode() == command


@pytest.mark.django_db
def test_it_shows_the_uploaded_table_sorted_with_the_best_row_bold_and_offers_downloads(viewer_client):
    upload = SimpleUploadedFile("scores_small.csv", SMALL.read_bytes(), content_type="text/csv")
    response = viewer_client.post(URL, {"scores": upload, "fpr": "0.1% 1%", "threshold": "0.5"})
    html = response.content.decode()

    assert response.status_code == 200
    assert html.count('<tr class="best"') == 2  # one per target FPR
    first_group = html.split("Target FPR 0.1%")[1].split("Target FPR 1%")[0]
    best = first_group.split('<tr class="best"')[1].split("</tr>")[0]
    assert "<b>130</b>" in best and "0.66" in best and "100.00%" in best and "[51.01, 100.00]" in best
    assert "16.667%" in best  # FPR 1/6
    assert first_group.count("<tr") == 1 + 14  # header + one row per strategy
    assert "BPCER20" in html and "50.00% (5/10)" in html
    assert "APCER mask" in html and "50.00% (1/2)" in html and "ACER" in html
    assert "too few" in html  # every rate here counts fewer than 30 images
    # the downloads carry the command's export of the same table
    command_csv, _ = run("--scores", str(SMALL), "--threshold", "0.5", "--format", "csv")
    from urllib.parse import quote

    assert f'href="data:text/csv;charset=utf-8,{quote(command_csv)}"' in html
    assert 'download="thresholds_scores_small.json"' in html


@pytest.mark.django_db
def test_it_shows_the_range_table_with_download_links(viewer_client):
    build_images()
    response = viewer_client.get(URL, {"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "fpr": "1%"})
    html = response.content.decode()

    assert response.status_code == 200
    assert "ensemble e1, 2026-11-20 to 2026-11-21" in html
    assert "9 labelled images: 5 attack, 4 genuine" in html
    assert "?from=2026-11-20&amp;to=2026-11-21&amp;ensemble=e1&amp;fpr=1%25&amp;format=csv" in html
    assert "at threshold 0.5" in html


@pytest.mark.django_db
def test_it_shows_a_default_range_without_parameters(viewer_client):
    build_images()
    response = viewer_client.get(URL)
    html = response.content.decode()

    assert response.status_code == 200
    # the latest labelled day of the active ensemble (2026-11-25) and the 30 days up to it
    assert 'value="2026-10-27"' in html and 'value="2026-11-25"' in html
    assert "10 labelled images: 5 attack, 5 genuine" in html


@pytest.mark.django_db
def test_it_lists_each_bad_line_of_an_uploaded_file(viewer_client):
    upload = SimpleUploadedFile("bad.csv", BAD_FILE.encode(), content_type="text/csv")
    response = viewer_client.post(URL, {"scores": upload})
    html = response.content.decode()

    assert response.status_code == 400
    assert "bad.csv is malformed: 4 problem(s)" in html
    assert "line 3: score is not a number: &#x27;abc&#x27;" in html
    assert "line 4: unknown label &#x27;maybe&#x27;" in html
    assert "line 5: expected 3 columns, got 2" in html
    assert "line 6: score must be in [0, 1], got 1.5" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, message",
    [
        ({"from": "2026-11-22", "to": "2026-11-21", "ensemble": "e1"}, "from 2026-11-22 is after to 2026-11-21"),
        ({"from": "2026-11-32", "to": "2026-11-21", "ensemble": "e1"}, "From: Enter a valid date."),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "nope"}, "Select a valid choice."),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e2", "model": "m2"}, "not a member of ensemble"),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "fpr": "0"}, "strictly between 0 and 1"),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "fpr": "x"}, "not a target FPR"),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "threshold": "7"}, "less than or equal to 1"),
        ({"from": "2026-11-20", "to": "2026-11-21", "ensemble": "e1", "format": "json", "fpr": "2"}, "strictly"),
    ],
)
def test_it_shows_bad_range_input_to_the_user(viewer_client, params, message):
    build_images()
    response = viewer_client.get(URL, params)
    assert response.status_code == 400
    assert message in response.content.decode()


@pytest.mark.django_db
def test_it_shows_bad_upload_input_to_the_user(viewer_client, settings):
    def post(**data):
        return viewer_client.post(URL, data)

    no_file = post(fpr="1%")
    assert no_file.status_code == 400 and "This field is required." in no_file.content.decode()
    unknown_model = post(scores=SimpleUploadedFile("s.csv", SMALL.read_bytes()), model="zz")
    assert unknown_model.status_code == 400 and "no column score_zz" in unknown_model.content.decode()
    not_text = post(scores=SimpleUploadedFile("s.csv", b"\xff\xfe\x00bin"))
    assert not_text.status_code == 400 and "not UTF-8 text" in not_text.content.decode()
    settings.KOALA_MAX_SCORE_UPLOAD = 100
    too_large = post(scores=SimpleUploadedFile("s.csv", SMALL.read_bytes()))
    assert (
        too_large.status_code == 400
        and "the file is too large (1567 bytes; at most 100 bytes)" in too_large.content.decode()
    )
    # a body far above the limit is refused before it is read (and before the CSRF check reads it)
    huge = post(scores=SimpleUploadedFile("s.csv", SMALL.read_bytes() * 50))
    assert huge.status_code == 413 and "the upload is too large (at most 100 bytes)" in huge.content.decode()


@pytest.mark.django_db
def test_it_needs_the_csrf_token_to_upload(personas):
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas["viewer"])
    upload = SimpleUploadedFile("scores_small.csv", SMALL.read_bytes())

    refused = client.post(URL, {"scores": upload, "format": "json"})
    assert refused.status_code == 403

    client.get(URL)
    token = client.cookies["csrftoken"].value
    upload.seek(0)
    accepted = client.post(URL, {"scores": upload, "format": "json", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 200 and json.loads(accepted.content)["rows"][0]["threshold"] == 0.66


@pytest.mark.django_db
def test_it_forbids_users_without_the_view_permission(client, personas):
    client.force_login(personas["nobody"])
    assert client.get(URL).status_code == 403


@pytest.mark.django_db
def test_it_gives_no_threshold_for_a_range_without_labelled_images(viewer_client):
    build_images()
    data = json.loads(run("--from", "2026-01-01", "--to", "2026-01-31", "--format", "json")[0])

    assert {(r["threshold"], r["tpr"], r["fpr"], r["attack"], r["genuine"]) for r in data["rows"]} == {
        (None, 0.0, 0.0, 0, 0)
    }
    assert data["iso"]["bpcer20"] is None and data["iso"]["apcer"] is None and data["iso"]["bpcer"] is None
    page = viewer_client.get(URL, {"from": "2026-01-01", "to": "2026-01-31", "ensemble": "e1"})
    assert page.status_code == 200 and "0 labelled images" in page.content.decode()
    assert '<tr class="best"' not in page.content.decode()


@pytest.mark.django_db
def test_it_offers_the_upload_when_no_ensemble_is_registered(viewer_client):
    page = viewer_client.get(URL)
    assert page.status_code == 200 and "No ensemble registered yet" in page.content.decode()

    upload = SimpleUploadedFile("scores_small.csv", SMALL.read_bytes())
    response = viewer_client.post(URL, {"scores": upload, "format": "json"})
    assert response.status_code == 200 and len(json.loads(response.content)["rows"]) == 28


# --- the ISO block: PAI species, untyped attacks apart, what-if and production (issue 13) ------------


def build_threshold_change(admin):
    """Ensemble prod decides 2026-11-20 at 0.5; then its threshold changes to 0.55 and 2026-11-21 is
    decided at 0.55. Day 2026-11-20, 85 labelled images:

    genuine 40: 0.40, 0.41, ..., 0.79          print 30: 0.30, ..., 0.59
    replay 10: 0.45, ..., 0.54                  untyped 5: 0.60, ..., 0.64 (all missed at either threshold)

    Returns the scores of 2026-11-20 per group, for the tests' own counts.
    """
    from monitor import registry

    prod = ensemble_with_models("prod", threshold=0.5, members=("m1",))
    groups = {
        "genuine": [round(0.40 + 0.01 * i, 2) for i in range(40)],
        "print": [round(0.30 + 0.01 * i, 2) for i in range(30)],
        "replay": [round(0.45 + 0.01 * i, 2) for i in range(10)],
        "": [round(0.60 + 0.01 * i, 2) for i in range(5)],
    }
    for kind, scores in groups.items():
        label = "genuine" if kind == "genuine" else "attack"
        for s in scores:
            factories.image(score=s, label=label, attack_type="" if label == "genuine" else kind, ensemble=prod)
    registry.set_threshold(prod, 0.55, user=admin, note="fewer missed attacks")
    for s, label in ((0.52, "genuine"), (0.9, "genuine"), (0.53, "attack"), (0.2, "attack")):
        factories.image(day="2026-11-21", score=s, label=label, attack_type="print", ensemble=prod)
    return groups


def iso_section(response) -> str:
    from html import unescape

    return unescape(response.content.decode().split('id="iso"')[1].split("</table>")[0])


def iso_row(section: str, row_id: str) -> str:
    return section.split(f'id="{row_id}"')[1].split("</tr>")[0]


PAST_DAY = {"from": "2026-11-20", "to": "2026-11-20", "ensemble": "prod"}


@pytest.mark.django_db
def test_it_labels_todays_threshold_on_a_past_day_as_a_what_if_beside_the_production_decisions(viewer_client, personas):
    groups = build_threshold_change(personas["admin"])
    every = [(s, kind) for kind, scores in groups.items() for s in scores]
    decided_then = [(s, kind) for s, kind in every if s <= 0.5]  # production, at 0.5 in force that day
    what_if = [(s, kind) for s, kind in every if s <= 0.55]

    iso = iso_section(viewer_client.get(URL, PAST_DAY))

    assert "at threshold 0.55, today's threshold of prod, applied to these scores — a what-if" in iso
    genuine = sum(kind == "genuine" for _, kind in what_if)
    assert f"flagged {len(what_if)} of 85 ({len(what_if) - genuine} attacks, {genuine} genuine)" in iso
    genuine = sum(kind == "genuine" for _, kind in decided_then)
    assert (
        f"production flagged {len(decided_then)} of 85 ({len(decided_then) - genuine} attacks, {genuine} genuine)"
        " at the thresholds in force then: 0.5 (85 images)"
    ) in iso
    assert len(what_if) != len(decided_then)  # the what-if is not what production did


@pytest.mark.django_db
def test_it_lists_each_threshold_in_force_over_a_range_and_the_same_in_the_command(viewer_client, personas):
    build_threshold_change(personas["admin"])
    params = {**PAST_DAY, "to": "2026-11-21"}

    iso = iso_section(viewer_client.get(URL, params))
    text, _ = run("--from", "2026-11-20", "--to", "2026-11-21", "--ensemble", "prod")
    data = json.loads(run("--from", "2026-11-20", "--to", "2026-11-21", "--ensemble", "prod", "--format", "json")[0])

    in_force = "at the thresholds in force then: 0.5 (85 images), 0.55 (4 images)"
    assert in_force in iso and in_force in text
    assert "at threshold 0.55, today's threshold of prod, applied to these scores — a what-if" in text
    production = data["iso"]["production"]
    assert production["thresholds"] == [{"threshold": 0.5, "images": 85}, {"threshold": 0.55, "images": 4}]
    # 2026-11-21 decided at 0.55: 0.52 genuine, 0.53 and 0.2 attacks flagged
    assert (production["images"], production["flagged"], production["fp"]) == (89, 38 + 3, 11 + 1)
    assert data["iso"]["applied"].endswith("— a what-if")


@pytest.mark.django_db
def test_it_reports_the_worst_pai_species_and_the_untyped_attacks_apart(viewer_client, personas):
    build_threshold_change(personas["admin"])

    iso = iso_section(viewer_client.get(URL, PAST_DAY))

    # at 0.55: print 0.56..0.59 missed (4/30); replay none (0/10); every untyped attack (5/5), the
    # highest miss rate, yet no PAI species: the reported APCER is print's
    apcer = iso_row(iso, "iso-apcer")
    assert "13.33% (4/30)" in apcer and "worst PAI species: print" in apcer and "too few" not in apcer
    assert "too-few" not in iso_row(iso, "iso-acer")  # 4/30 attacks and 40 genuine: enough for both
    replay = iso.split("APCER replay</th>")[1].split("</tr>")[0]
    assert 'class="num too-few"' in replay and "0.00% (0/10)" in replay and "too few" in replay
    printed = iso.split("APCER print</th>")[1].split("</tr>")[0]
    assert 'class="num"' in printed and "[5.31, 29.68]" in printed
    untyped = iso_row(iso, "iso-untyped")
    assert "100.00% (5/5)" in untyped and "untyped attacks: not a PAI species, not in the reported APCER" in untyped
    assert "APCER unknown" not in iso


@pytest.mark.django_db
def test_it_greys_the_acer_when_the_reported_apcer_counts_too_few_attacks(viewer_client, personas):
    build_threshold_change(personas["admin"])

    iso = iso_section(viewer_client.get(URL, {**PAST_DAY, "threshold": "0.5"}))
    data = json.loads(run("--from", "2026-11-20", "--to", "2026-11-20", "--threshold", "0.5", "--format", "json")[0])

    # at 0.5: print 0.51..0.59 missed (9/30), replay 0.51..0.54 (4/10): replay, on 10 attacks
    assert "at threshold 0.5, the threshold given, applied to these scores — a what-if" in iso
    apcer = iso_row(iso, "iso-apcer")
    assert "40.00% (4/10)" in apcer and "replay" in apcer and "too-few" in apcer
    assert "too-few" in iso_row(iso, "iso-acer") and "too-few" not in iso_row(iso, "iso-bpcer")
    # every image was decided at 0.5 that day: nothing else to set beside it
    assert "production decided all 85 images at this threshold: the same decisions" in iso
    d = data["iso"]
    assert (d["apcer_type"], d["apcer_rate"]["k"], d["apcer_rate"]["n"], d["apcer_rate"]["too_few"]) == (
        "replay",
        4,
        10,
        True,
    )
    assert d["acer_too_few"] is True and d["acer"] == pytest.approx((0.4 + 11 / 40) / 2)
    assert (d["untyped_attacks"]["k"], d["untyped_attacks"]["n"]) == (5, 5)
    assert d["apcer_per_type_rates"]["print"]["k"] == 9 and d["apcer_per_type"]["unknown"] == 1.0
    assert d["production"]["same_as_what_if"] is True


@pytest.mark.django_db
def test_it_says_only_which_threshold_it_applies_to_an_uploaded_score_file(viewer_client):
    upload = SimpleUploadedFile("scores_small.csv", SMALL.read_bytes(), content_type="text/csv")
    iso = iso_section(viewer_client.post(URL, {"scores": upload, "threshold": "0.5"}))

    assert "at threshold 0.5, the threshold given, applied to the file's scores" in iso
    assert "what-if" not in iso and "production" not in iso and 'id="iso-production"' not in iso
    # the lone untyped attack of the file is reported apart from the species
    assert "untyped attacks: not a PAI species, not in the reported APCER" in iso
    assert "0.00% (0/1)" in iso_row(iso, "iso-untyped")


def test_it_writes_the_species_and_the_untyped_attacks_in_the_text_and_json_outputs():
    text, _ = run("--scores", str(SMALL), "--threshold", "0.5")
    data = json.loads(run("--scores", str(SMALL), "--threshold", "0.5", "--format", "json")[0])

    assert "at threshold 0.5, the threshold given, applied to the file's scores:" in text
    assert "APCER 50.00% (mask), 1/2 [9.45, 90.55] too few" in text
    assert "ACER  40.00% too few" in text
    assert "untyped attacks: 0.00% (0/1) [0.00, 79.35] too few — not a PAI species" in text
    assert "APCER unknown" not in text
    iso = data["iso"]
    assert iso["applied"] == "at threshold 0.5, the threshold given, applied to the file's scores"
    assert iso["production"] is None and iso["flagged"] == 10
    assert iso["untyped_attacks"] == {
        "value": 0.0,
        "k": 0,
        "n": 1,
        "low": 0.0,
        "high": pytest.approx(0.7935, abs=1e-4),
        "too_few": True,
    }
    assert iso["bpcer20_point"]["apcer_type"] == "mask" and iso["bpcer20_point"]["threshold"] == 0.75


def test_it_pools_a_score_file_without_attack_types_into_one_reported_group(tmp_path):
    lines = ["path,score,label"] + [f"g{i}.jpg,{0.5 + i / 100},genuine" for i in range(10)]
    lines += [f"a{i}.jpg,{i / 100},attack" for i in range(8)] + ["a8.jpg,0.7,attack", "a9.jpg,0.8,attack"]
    scores = tmp_path / "untyped.csv"
    scores.write_text("\n".join(lines) + "\n")

    text, _ = run("--scores", str(scores), "--threshold", "0.55")
    iso = json.loads(run("--scores", str(scores), "--threshold", "0.55", "--format", "json")[0])["iso"]

    # 2 of the 10 attacks (0.7, 0.8) above 0.55: the reported APCER over all attacks
    assert (iso["apcer_type"], iso["apcer"], iso["untyped_attacks"]) == ("unknown", 0.2, None)
    assert "APCER unknown (no attack has a type: all attacks pooled): 20.00% (2/10)" in text
    assert "untyped attacks:" not in text
    assert iso["bpcer20"] is not None  # t = 0.8, the highest attack: genuine 0.50..0.59 all at or below
