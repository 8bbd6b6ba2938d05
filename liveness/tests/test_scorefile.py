"""Score files (SPEC section 5) and the threshold table on the committed fixture, checked by hand."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liveness.iso import apcer_point, bpcer20, bpcer100, iso_at
from liveness.metrics import strategy_table
from liveness.scorefile import ScoreFileError, read_scores

SMALL = Path(__file__).parent / "data" / "scores_small.csv"

# The fixture, sorted by score (face size = min(w, h); Q = fails a quality gate):
#   0.05 a print 80 | 0.12 g 90 | 0.15 a replay 150 | 0.20 a print 125 Q(pitch -35) | 0.28 a mask ?
#   0.33 a replay 140 Q(blur 0.9) | 0.35 g 160 Q(yaw 40) | 0.40 a print 110 | 0.45 a (no type) 135
#   0.50 g 120 Q(blur 0.7) | 0.55 a replay 100 | 0.62 g ? | 0.66 a print 155 | 0.71 g 135
#   0.75 a mask 128 | 0.80 g 150 | 0.85 g 105 | 0.90 g 180 (yaw 30, pitch -30, blur 0.5: on the gates)
#   0.93 g 130 | 0.97 g 145
# Each subset has 3..10 genuine, so f = 0.1% and 1% both give k = 1: t is the largest score of the
# subset below its second-lowest genuine score, FP = 1, TP = attacks of the subset at or below t.
# (minface, quality, threshold, tp, attack, fp, genuine), by hand:
BY_HAND = {
    (None, False): (0.33, 5, 10, 1, 10),  # 2nd genuine 0.35
    (None, True): (0.55, 6, 8, 1, 8),  # 0.35, 0.50 out: 2nd genuine 0.62
    (100, False): (0.45, 6, 9, 1, 9),  # 0.05, 0.12 out: genuine 0.35, 0.50
    (100, True): (0.66, 6, 7, 1, 7),  # genuine 0.62, 0.71
    (110, False): (0.45, 6, 8, 1, 8),  # 0.55 (100) and 0.85 (105) out as well
    (110, True): (0.66, 5, 6, 1, 6),
    (120, False): (0.45, 5, 7, 1, 8),  # 0.40 (110) out; 0.50 (120) stays
    (120, True): (0.66, 4, 5, 1, 6),
    (130, False): (0.45, 4, 5, 1, 7),  # 0.20, 0.50, 0.75 out; 0.93 (130) stays: genuine 0.35, 0.62
    (130, True): (0.66, 4, 4, 1, 6),  # genuine 0.62, 0.71
    (140, False): (0.35, 3, 4, 1, 5),  # 0.45, 0.71, 0.93 out: t is the genuine 0.35 itself
    (140, True): (0.66, 3, 3, 1, 4),  # genuine 0.62, 0.80
    (150, False): (0.35, 2, 3, 1, 4),  # 0.33, 0.97 out
    (150, True): (0.66, 3, 3, 1, 3),  # genuine 0.62, 0.80, 0.90
}
# sorted by TPR (then FPR, then strategy order) within each target FPR
ORDER = [
    (130, True),  # 4/4, FPR 1/6
    (140, True),  # 3/3, FPR 1/4
    (150, True),  # 3/3, FPR 1/3
    (100, True),  # 6/7
    (110, True),  # 5/6
    (130, False),  # 4/5, FPR 1/7
    (120, True),  # 4/5, FPR 1/6
    (None, True),  # 6/8, FPR 1/8
    (110, False),  # 6/8, FPR 1/8 (after None in strategy order)
    (140, False),  # 3/4, FPR 1/5
    (120, False),  # 5/7
    (100, False),  # 6/9, FPR 1/9
    (150, False),  # 2/3, FPR 1/4
    (None, False),  # 5/10
]


def test_it_reads_the_committed_fixture():
    ss = read_scores(SMALL)
    assert len(ss) == 20
    assert ss.columns[:3] == ("path", "score", "label") and ss.ignored_columns == ()
    assert ss.paths[0] == "2024-03-01/dev1/g01.jpg"
    assert ss.scores.dtype == np.float64 and ss.scores[0] == 0.12 and ss.scores[-1] == 0.75
    # genuine / live / REAL / 1 / Live and attack / spoof / Fake / 0 / ATTACK
    assert ss.is_attack.tolist() == [False] * 10 + [True] * 10
    assert math.isnan(ss.face_w[3]) and math.isnan(ss.face_h[3]) and ss.face_w[0] == 90
    assert math.isnan(ss.yaw[2]) and ss.yaw[1] == 40 and ss.pitch[12] == -35 and math.isnan(ss.blur[5])
    assert ss.attack_types.tolist()[10:] == [
        "print",
        "replay",
        "print",
        "mask",
        "replay",
        "print",
        "",
        "replay",
        "print",
        "mask",
    ]
    assert ss.attack_types[0] == ""
    assert set(ss.devices) == {"dev1", "dev2"} and ss.days[7] == "2024-03-02"
    assert ss.models == ["a"] and ss.scores_for("a")[0] == 0.20 and math.isnan(ss.scores_for("a")[3])
    assert ss.line_numbers.tolist() == list(range(2, 22))
    with pytest.raises(KeyError, match="score_b"):
        ss.scores_for("b")


@pytest.mark.parametrize("f", [0.001, 0.01])
def test_it_reproduces_the_hand_computed_table_of_the_fixture(f):
    ss = read_scores(SMALL)
    rows = [r for r in strategy_table(**ss.table_inputs()) if r.target_fpr == f]
    assert [(r.minface, r.quality) for r in rows] == ORDER
    assert [r.best for r in rows] == [True] + [False] * 13
    for r in rows:
        assert (r.threshold, r.tp, r.attack, r.fp, r.genuine) == BY_HAND[(r.minface, r.quality)], r.strategy
    best = rows[0].as_dict()
    assert best == {
        "minface": 130,
        "quality": True,
        "target_fpr": f,
        "threshold": 0.66,
        "tpr": 1.0,
        "fpr": 1 / 6,
        "attack": 4,
        "genuine": 6,
        "fp": 1,
        "tp": 4,
    }


def test_it_gives_the_table_of_one_model_without_its_empty_scores():
    ss = read_scores(SMALL)
    inputs = ss.table_inputs("a")
    assert len(inputs["scores"]) == 19  # g04 has no score_a
    # score_a, genuine: 0.20 0.30 0.55 0.70 0.85 0.88 0.90 0.95 0.99 (9), k = 1, t below 0.30
    [r] = strategy_table(**inputs, minfaces=(None,), target_fprs=(0.01,))[1:]  # quality off comes second
    assert (r.minface, r.quality) == (None, False)
    assert (r.threshold, r.tp, r.attack, r.fp, r.genuine) == (0.25, 3, 10, 1, 9)  # 0.10 0.15 0.25


def test_it_gives_the_iso_figures_of_the_fixture():
    ss = read_scores(SMALL)
    iso = iso_at(ss.scores, ss.is_attack, ss.attack_types, 0.5)
    per = {t: (r.k, r.n) for t, r in iso["apcer_per_type"].items()}
    assert per == {"print": (1, 4), "replay": (1, 3), "mask": (1, 2), "unknown": (0, 1)}
    assert (iso["apcer"], iso["apcer_type"], iso["bpcer"]) == (0.5, "mask", 0.3)
    assert iso["acer"] == pytest.approx(0.4)
    assert bpcer20(ss.scores, ss.is_attack, ss.attack_types) == 0.5  # t = 0.75, 5 of 10 genuine
    assert bpcer100(ss.scores, ss.is_attack, ss.attack_types) == 0.5
    # APCER <= 50% per species: print needs t >= 0.20, replay 0.33, mask 0.28; the one untyped
    # attack (0.45) is no species and puts no requirement on t; at 0.33 mask and print are at 1/2
    point = apcer_point(ss.scores, ss.is_attack, ss.attack_types, 0.5)
    assert (point.threshold, point.apcer_type, point.untyped.k, point.untyped.n) == (
        0.33,
        "mask",
        1,
        1,
    )  # first by name


@pytest.mark.parametrize(
    "w,h,kept",
    [
        ("140", "150", True),  # both known, min 140
        ("140", "120", False),  # both known, min 120
        ("120", "", False),  # one known, below 130: min(w, h) <= 120 whatever the empty side is
        ("", "120", False),
        ("130", "", True),  # one known, at 130: the min is unknown, and unknown passes
        ("", "200", True),
        ("", "", True),  # none known: missing, passes
    ],
)
def test_it_keeps_a_face_box_of_a_score_file_by_its_known_sides(w, h, kept):
    text = f"path,score,label,face_w,face_h\na.jpg,0.2,attack,{w},{h}\ng.jpg,0.9,genuine,{w},{h}\n"
    rows = strategy_table(**read_scores(text).table_inputs(), target_fprs=(0.5,), minfaces=(None, 130))
    [r] = [r for r in rows if (r.minface, r.quality) == (130, False)]
    assert (r.attack, r.genuine) == ((1, 1) if kept else (0, 0))


def test_it_accepts_text_bytes_files_and_paths():
    text = SMALL.read_text()
    for source in (text, text.encode(), io.StringIO(text), io.BytesIO(text.encode()), str(SMALL), SMALL):
        ss = read_scores(source)
        assert len(ss) == 20 and ss.scores.sum() == pytest.approx(10.57)
    assert len(read_scores("\ufeff" + text)) == 20  # a byte-order mark from a spreadsheet


def test_it_reads_the_minimal_columns_and_tolerates_blanks_and_case():
    ss = read_scores(" Path , SCORE ,Label,notes\na.jpg, 0.5 ,Spoof,x\n\nb.jpg,1,Real,y\n")
    assert ss.scores.tolist() == [0.5, 1.0] and ss.is_attack.tolist() == [True, False]
    assert ss.ignored_columns == ("notes",)
    assert ss.line_numbers.tolist() == [2, 4]
    assert np.isnan(ss.face_w).all() and ss.attack_types.tolist() == ["", ""]
    assert ss.model_scores == {}
    # Windows line ends
    assert problems_of("path,score,label\r\na,0.5,live\r\nb,7,fake\r\n") == [(3, "score must be in [0, 1], got 7")]


def problems_of(text):
    with pytest.raises(ScoreFileError) as e:
        read_scores(text)
    return e.value.problems


def test_it_names_every_bad_line():
    text = (
        "path,score,label,face_w,blur,day,score_m1\n"  # line 1
        "a.jpg,0.5,genuine,100,0.1,2024-01-01,0.2\n"  # 2 fine
        "b.jpg,abc,attack,,,,\n"  # 3 score not a number
        "c.jpg,1.5,attack,,,,\n"  # 4 out of range
        "d.jpg,0.2,maybe,,,,\n"  # 5 unknown label
        "e.jpg,0.2,attack\n"  # 6 wrong column count
        "f.jpg,0.2,genuine,-3,1.2,2024-13-01,0.5\n"  # 7 face_w < 0, blur > 1, bad day
        ",0.3,genuine,,,,x\n"  # 8 empty path, model score not a number
        "g.jpg,,,,,,\n"  # 9 empty score, empty label
        "h.jpg,nan,genuine,,,,\n"  # 10 spelled-out NaN
        "i.jpg,0.4,live,big,,,\n"  # 11 face_w not a number
    )
    problems = problems_of(text)
    assert [ln for ln, _ in problems] == [3, 4, 5, 6, 7, 7, 7, 8, 8, 9, 9, 10, 11]
    msgs = dict(problems)  # last message per line is enough for lines with one problem
    assert "score is not a number: 'abc'" in msgs[3]
    assert "score must be in [0, 1], got 1.5" in msgs[4]
    assert "unknown label 'maybe'" in msgs[5]
    assert "expected 7 columns, got 3" in msgs[6]
    assert "score is not a number: 'nan'" in msgs[10]
    assert "face_w is not a number: 'big'" in msgs[11]
    line7 = sorted(m for ln, m in problems if ln == 7)
    assert line7 == [
        "blur must be in [0, 1], got 1.2",
        "day must be YYYY-MM-DD, got '2024-13-01'",
        "face_w must be >= 0, got -3",
    ]
    assert sorted(m for ln, m in problems if ln == 8) == ["path is empty", "score_m1 is not a number: 'x'"]
    assert sorted(m for ln, m in problems if ln == 9) == ["label is empty", "score is empty"]


def test_it_refuses_spelled_out_nan_and_infinity():
    # every value parses with float(): the fast path must still refuse them
    assert problems_of("path,score,label\na.jpg,nan,genuine\nb.jpg,inf,attack\nc.jpg,0.5,attack\n") == [
        (2, "score is not a number: 'nan'"),
        (3, "score is not a number: 'inf'"),
    ]
    # an optional column with empty cells (NaN) and a spelled-out NaN among them
    assert problems_of("path,score,label,yaw\na.jpg,0.1,genuine,\nb.jpg,0.2,attack,NaN\nc.jpg,0.3,attack,5\n") == [
        (3, "yaw is not a number: 'NaN'")
    ]
    assert problems_of("path,score,label,yaw\na.jpg,0.1,genuine,\nb.jpg,0.2,attack,-inf\n") == [
        (3, "yaw is not a number: '-inf'")
    ]


def test_it_reports_header_problems_on_line_one():
    assert problems_of("path,score\na.jpg,0.5\n") == [(1, "missing required column 'label'")]
    assert problems_of("a.jpg,0.5,genuine\nb.jpg,0.7,attack\n") == [
        (1, "missing required column 'label'"),
        (1, "missing required column 'path'"),
        (1, "missing required column 'score'"),
        (1, "no header: the first line must be path,score,label[,...]"),
    ]
    problems = problems_of("path,score,label,score,,score_\na.jpg,0.5,genuine,0.5,x,y\n")
    assert [ln for ln, _ in problems] == [1, 1, 1]
    assert {m for _, m in problems} == {
        "duplicate column 'score'",
        "header column 5 has no name",
        "column 'score_' names no model (score_<model>)",
    }
    assert problems_of("") == [(1, "empty file: a header line with path,score,label is required")]
    assert problems_of("\n\n") == [(1, "empty file: a header line with path,score,label is required")]


def test_it_reads_a_header_without_rows_as_an_empty_set():
    ss = read_scores("path,score,label")
    assert len(ss) == 0 and ss.scores.dtype == np.float64 and ss.is_attack.dtype == bool
    rows = strategy_table(**ss.table_inputs())
    assert len(rows) == 28 and all(r.threshold is None for r in rows)


def test_it_counts_lines_through_quoted_line_breaks():
    problems = problems_of('path,score,label\n"a\nb.jpg",0.5,genuine\nc.jpg,2,attack\n')
    assert problems == [(4, "score must be in [0, 1], got 2")]
    ss = read_scores('path,score,label\n"a,\nb.jpg",0.5,genuine\n')
    assert ss.paths.tolist() == ["a,\nb.jpg"]


def test_it_lists_all_problems_but_shows_a_few():
    text = "path,score,label\n" + "".join(f"x{i}.jpg,2,genuine\n" for i in range(50))
    with pytest.raises(ScoreFileError) as e:
        read_scores(text)
    assert len(e.value.problems) == 50 and e.value.problems[0][0] == 2 and e.value.problems[-1][0] == 51
    message = str(e.value)
    assert "50 problem(s)" in message and "line 2: score must be in [0, 1], got 2" in message
    assert "... and 30 more problems" in message
    assert isinstance(e.value, ValueError)


def test_it_imports_without_django():
    root = Path(__file__).resolve().parents[2]
    code = "import sys, liveness.scorefile, liveness.metrics; assert not any(m.split('.')[0] == 'django' for m in sys.modules)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
