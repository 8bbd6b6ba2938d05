"""CSV label import (monitor.label_csv.import_labels) and `manage.py import_labels`."""

import io

import pytest
from django.core.management import CommandError, call_command

from monitor import label_csv, tasks
from monitor.models import Image, InboxFile, LabelEvent
from tests import factories as f


@pytest.fixture
def recomputes(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.recompute_day, "delay", lambda day: calls.append(day))
    return calls


@pytest.fixture
def images(db):
    return {
        "a": f.image(day="2026-11-20", score=0.2),
        "b": f.image(day="2026-11-20", score=0.8),
        "c": f.image(day="2026-11-21", score=0.3, label="attack", attack_type="print"),
    }


def malformed(ims) -> str:
    a, b, c = ims["a"], ims["b"], ims["c"]
    return "\n".join(
        [
            "sha256,label,attack_type",  # 1
            f"{a.sha256},attack,print",  # 2 fine
            f"{'0' * 64},genuine,",  # 3 unknown image
            f"{b.sha256},maybe,",  # 4 unknown label
            f"{c.sha256},attack,paper",  # 5 unknown attack type
            f"{b.sha256},live,replay",  # 6 attack type on genuine
            "",  # 7 blank: ignored
            f"{a.sha256.upper()},spoof,",  # 8 the same image as line 2
            f"{c.sha256},attack",  # 9 wrong column count
        ]
    )


MALFORMED_ERRORS = [
    (3, "unknown image"),
    (4, "unknown label"),
    (5, "unknown attack type"),
    (6, "given for a genuine label"),
    (8, "the same image as line 2"),
    (9, "expected 3 columns, found 2"),
]


def test_it_reports_each_bad_line_and_writes_nothing(personas, images, recomputes, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = label_csv.import_labels(malformed(images), user=personas["admin"], dry_run=False)
    assert [(line, part in msg) for (line, msg), (_, part) in zip(result.errors, MALFORMED_ERRORS, strict=True)] == [
        (line, True) for line, _ in MALFORMED_ERRORS
    ]
    assert not result.written
    assert [r.line for r in result.rows] == [2]
    assert not LabelEvent.objects.exists()
    assert list(Image.objects.order_by("pk").values_list("label", flat=True)) == ["", "", "attack"]
    assert recomputes == []


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", 1, "empty"),
        ("id,label\n1,genuine\n", 1, "sha256 or path"),
        ("\n\nsha256,verdict\nx,genuine\n", 3, "label column"),
    ],
)
def test_it_needs_a_header(personas, text, line, message):
    result = label_csv.import_labels(text, user=personas["admin"], dry_run=False)
    assert len(result.errors) == 1
    assert result.errors[0].line == line and message in result.errors[0].message


def test_it_previews_a_dry_run_without_writing(personas, images, recomputes):
    a, b, c = images["a"], images["b"], images["c"]
    text = f"sha256,label,attack_type\n{a.sha256},0,mask\n{b.sha256},real,\n{c.sha256},attack,print\n"
    result = label_csv.import_labels(text, user=personas["admin"], dry_run=True)
    assert result.errors == []
    assert result.rows == [
        (2, a.pk, "", "attack", "mask"),
        (3, b.pk, "", "genuine", ""),
        (4, c.pk, "attack", "attack", "print"),
    ]
    assert (result.changed, result.unchanged, result.written) == (2, 1, False)
    assert not LabelEvent.objects.exists()
    assert Image.objects.filter(label="").count() == 2


def test_it_imports_by_sha256(personas, images, recomputes, django_capture_on_commit_callbacks):
    a, b, c = images["a"], images["b"], images["c"]
    text = f"\ufeffSHA256,Label,Attack_Type\r\n{a.sha256},spoof,replay\r\n{b.sha256},1,\r\n{c.sha256},fake,other\r\n"
    with django_capture_on_commit_callbacks(execute=True):
        result = label_csv.import_labels(text, user=personas["admin"], dry_run=False)
    assert (result.errors, result.changed, result.written) == ([], 3, True)
    got = dict(Image.objects.values_list("pk", "label"))
    assert got == {a.pk: "attack", b.pk: "genuine", c.pk: "attack"}
    assert Image.objects.get(pk=c.pk).attack_type == "other"
    assert set(LabelEvent.objects.values_list("source", "user")) == {("import", personas["admin"].pk)}
    assert LabelEvent.objects.count() == 3
    assert sorted(recomputes) == ["2026-11-20", "2026-11-21"]


def test_it_imports_by_inbox_path(personas, images, recomputes, settings):
    a, b = images["a"], images["b"]
    # the same bytes arrived twice: the second file's path names the same image
    InboxFile.objects.create(
        path="2026-11-20/phone-01/copy.jpg", day=a.day, device=a.device, image=a, status="duplicate"
    )
    text = "\n".join(
        [
            "path,label",
            "./2026-11-20/phone-01/copy.jpg,attack",
            f"{settings.INBOX_DIR}/{b.path},genuine",
        ]
    )
    result = label_csv.import_labels(text, user=None, dry_run=False)
    assert result.errors == []
    assert [(r.image_id, r.new_label) for r in result.rows] == [(a.pk, "attack"), (b.pk, "genuine")]
    assert dict(Image.objects.filter(pk__in=[a.pk, b.pk]).values_list("pk", "label")) == {
        a.pk: "attack",
        b.pk: "genuine",
    }
    assert LabelEvent.objects.filter(user=None, source="import").count() == 2


# --- the command -------------------------------------------------------------------------------


def test_the_command_exits_2_on_errors_and_writes_nothing(personas, images, recomputes, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(malformed(images))
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("import_labels", str(path), "--user", "admin-user", stdout=out, stderr=err)
    assert exc.value.returncode == 2
    assert "nothing was written" in str(exc.value)
    for line, part in MALFORMED_ERRORS:
        assert f"line {line}: " in err.getvalue() and part in err.getvalue()
    assert "1 rows read" in out.getvalue() and "6 errors" in out.getvalue()
    assert not LabelEvent.objects.exists()


def test_the_command_writes_nothing_on_a_dry_run(personas, images, recomputes, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(f"sha256,label\n{images['a'].sha256},genuine\n")
    out = io.StringIO()
    call_command("import_labels", str(path), "--dry-run", stdout=out, stderr=io.StringIO())
    assert "1 labels change" in out.getvalue() and "dry run: nothing was written" in out.getvalue()
    assert not LabelEvent.objects.exists()


def test_the_command_imports_for_a_user(personas, images, recomputes, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(f"sha256,label\n{images['a'].sha256},genuine\n")
    out = io.StringIO()
    assert call_command("import_labels", str(path), "--user", "admin-user", stdout=out, stderr=io.StringIO()) is None
    assert "wrote 1 label changes" in out.getvalue()
    assert LabelEvent.objects.get().user == personas["admin"]


def test_the_command_refuses_an_unknown_user_or_file(personas, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("sha256,label\n")
    with pytest.raises(CommandError, match="no user named"):
        call_command("import_labels", str(path), "--user", "ghost")
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_labels", str(tmp_path / "missing.csv"))
