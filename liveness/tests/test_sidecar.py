"""parse_sidecar / normalise_label: bad fields are dropped with a warning, the rest is kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from liveness.boxes import Box
from liveness.sidecar import SidecarError, normalise_label, parse_sidecar

FULL = {
    "captured_at": "2017-10-17T09:31:02+08:00",
    "face": {"x": 210, "y": 120, "w": 160, "h": 160},
    "landmarks": [[250, 180], [330, 180], [290, 220], [260, 260], [320, 260]],
    "pose": {"yaw": 12.5, "pitch": -3.0, "roll": 1.0},
    "blur": 0.21,
    "label": "attack",
    "attack_type": "Print",
    "subject": "anon-17",
    "site": "north",
}


def test_it_reads_every_field_of_a_complete_sidecar():
    sc = parse_sidecar(json.dumps(FULL).encode())
    assert sc.warnings == []
    assert sc.captured_at == datetime(2017, 10, 17, 9, 31, 2, tzinfo=timezone(timedelta(hours=8)))
    assert sc.face == Box(210, 120, 160, 160)
    assert sc.landmarks[2] == (290.0, 220.0) and len(sc.landmarks) == 5
    assert sc.pose == {"yaw": 12.5, "pitch": -3.0, "roll": 1.0}
    assert sc.blur == 0.21
    assert (sc.label, sc.attack_type) == ("attack", "print")
    assert (sc.subject, sc.site) == ("anon-17", "north")


def test_it_accepts_an_empty_object_with_everything_unknown():
    sc = parse_sidecar(b"{}")
    assert sc.face is None and sc.pose is None and sc.blur is None and sc.label is None
    assert sc.warnings == []


def test_it_reads_a_utc_z_timestamp():
    sc = parse_sidecar('{"captured_at": "2024-03-01T12:00:00Z"}')
    assert sc.captured_at == datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("data", [b"not json at all", b'{"face": ', b"\xff\xfe\x00garbage"])
def test_it_refuses_a_sidecar_that_is_not_json(data):
    with pytest.raises(SidecarError, match="JSON"):
        parse_sidecar(data)


@pytest.mark.parametrize(("data", "kind"), [(b"[1, 2, 3]", "list"), (b'"face"', "str"), (b"42", "int")])
def test_it_refuses_json_that_is_not_an_object(data, kind):
    with pytest.raises(SidecarError, match=kind):
        parse_sidecar(data)


def test_it_drops_wrongly_typed_fields_with_a_warning_and_keeps_the_others():
    bad = {
        **FULL,
        "face": {"x": "210", "y": 120, "w": 160, "h": 160},
        "blur": "sharp",
        "pose": {"yaw": "left", "pitch": -3.0, "roll": True},
        "captured_at": "yesterday",
    }
    sc = parse_sidecar(json.dumps(bad))
    assert sc.face is None and sc.blur is None and sc.captured_at is None
    assert sc.pose == {"pitch": -3.0}  # the good pose key survives
    # the untouched fields are kept
    assert sc.label == "attack" and sc.attack_type == "print" and len(sc.landmarks) == 5
    text = " | ".join(sc.warnings)
    for key in ("face", "blur", "pose.yaw", "pose.roll", "captured_at"):
        assert key in text
    assert len(sc.warnings) == 5


@pytest.mark.parametrize(
    "landmarks",
    [[[1, 2]] * 4, [[1, 2, 3]] * 5, "eyes", [[1, "2"]] * 5, [[1, float("nan")]] * 5],
    ids=["four-points", "triples", "string", "string-coordinate", "nan"],
)
def test_it_drops_malformed_landmarks(landmarks):
    sc = parse_sidecar(json.dumps({"landmarks": landmarks, "blur": 0.3}))
    assert sc.landmarks is None
    assert sc.blur == 0.3
    assert any(w.startswith("landmarks") for w in sc.warnings)


@pytest.mark.parametrize("face", [{"x": 1, "y": 1, "w": -20, "h": 50}, {"x": 1, "y": 1, "w": 20, "h": 0}])
def test_it_drops_a_face_box_with_a_non_positive_size(face):
    sc = parse_sidecar(json.dumps({"face": face, "label": "live"}))
    assert sc.face is None
    assert sc.label == "genuine"
    assert any("face" in w and "positive" in w for w in sc.warnings)


def test_it_keeps_a_face_box_with_negative_position():
    # a box partly off the image edge is for the pipeline to clip, not the parser to reject
    sc = parse_sidecar(json.dumps({"face": {"x": -10, "y": -5, "w": 50, "h": 60}}))
    assert sc.face == Box(-10, -5, 50, 60)


@pytest.mark.parametrize("blur", [-0.1, 1.5])
def test_it_drops_blur_outside_0_to_1(blur):
    sc = parse_sidecar(json.dumps({"blur": blur}))
    assert sc.blur is None and sc.warnings


def test_it_drops_a_pose_angle_beyond_180_degrees():
    sc = parse_sidecar(json.dumps({"pose": {"yaw": 400, "pitch": 10}}))
    assert sc.pose == {"pitch": 10.0}


@pytest.mark.parametrize("word", ["genuine", "live", "real", "1", 1, " Live ", "REAL", "bonafide"])
def test_it_normalises_genuine_label_words(word):
    assert normalise_label(word) == "genuine"


@pytest.mark.parametrize("word", ["attack", "spoof", "fake", "0", 0, "Spoof", " FAKE"])
def test_it_normalises_attack_label_words(word):
    assert normalise_label(word) == "attack"


@pytest.mark.parametrize("word", ["maybe", "", "2", None, True])
def test_it_does_not_guess_an_unknown_label(word):
    assert normalise_label(word) is None


def test_it_warns_about_an_unknown_label_and_leaves_it_unknown():
    sc = parse_sidecar('{"label": "perhaps", "blur": 0.1}')
    assert sc.label is None and sc.blur == 0.1
    assert any("label" in w for w in sc.warnings)


def test_it_drops_the_attack_type_on_a_genuine_label():
    sc = parse_sidecar('{"label": "real", "attack_type": "replay"}')
    assert sc.label == "genuine"
    assert sc.attack_type is None
    assert any("attack_type" in w for w in sc.warnings)


def test_it_keeps_the_attack_type_on_an_attack_label_lowercased():
    sc = parse_sidecar('{"label": "spoof", "attack_type": " Replay "}')
    assert (sc.label, sc.attack_type) == ("attack", "replay")
