"""Labels in bulk as CSV: `import_labels` (by sha256 or inbox path, dry run first, all or nothing)
and `labels_csv` (the export). Every change goes through monitor/labels.py `apply_labels`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from liveness.sidecar import normalise_label

from .labels import CHUNK, apply_labels, attack_type_names, schedule_recompute
from .models import Image, InboxFile, LabelEvent


class ImportRow(NamedTuple):
    line: int
    image_id: int
    old_label: str
    new_label: str
    attack_type: str


class ImportProblem(NamedTuple):
    line: int
    message: str


@dataclass
class ImportResult:
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)
    changed: int = 0  # written, or (dry run) that would be written
    dry_run: bool = True
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def unchanged(self) -> int:
        return len(self.rows) - self.changed


def _clean_path(text: str) -> str:
    path = text.strip().replace("\\", "/")
    inbox = str(settings.INBOX_DIR).replace("\\", "/").rstrip("/") + "/"
    if path.startswith(inbox):
        path = path[len(inbox) :]
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/")


def _lookup(keys: set[str], by: str) -> tuple[dict[str, tuple[int, str, str]], set[str]]:
    """(key (sha256 or inbox path) -> (image id, label, attack type), the sha256 keys that match
    unreadable images only)."""
    out: dict[str, tuple[int, str, str]] = {}
    unreadable: set[str] = set()
    keys_list = sorted(keys)
    for start in range(0, len(keys_list), CHUNK):
        chunk = keys_list[start : start + CHUNK]
        if by == "sha256":
            unreadable |= _lookup_sha256(chunk, out)
        else:
            for pk, key, label, atype in Image.objects.filter(path__in=chunk).values_list(
                "pk", "path", "label", "attack_type"
            ):
                out[key] = (pk, label, atype)
            # a duplicate file (same bytes under another name) points at the same image
            rest = [k for k in chunk if k not in out]
            if rest:
                for key, pk, label, atype in InboxFile.objects.filter(path__in=rest, image__isnull=False).values_list(
                    "path", "image_id", "image__label", "image__attack_type"
                ):
                    out[key] = (pk, label, atype)
    return out, unreadable


def _lookup_sha256(chunk: list[str], out: dict[str, tuple[int, str, str]]) -> set[str]:
    """Add the readable image of each sha256 of `chunk` to `out` (at most one: Image's constraints);
    return the ones that match only unreadable images. Those bytes may be stored once per day
    they arrived broken on, and show no picture to label: never one of them picked at random."""
    rows = Image.objects.filter(sha256__in=chunk).values_list("pk", "sha256", "label", "attack_type", "category")
    unreadable = set()
    for pk, key, label, atype, category in rows:
        if category == "unreadable":
            unreadable.add(key)
        else:
            out[key] = (pk, label, atype)
    return unreadable - set(out)


def import_labels(text: str, *, user, dry_run: bool) -> ImportResult:
    """Labels from CSV text: a header with `label` and `sha256` or `path` (relative to the inbox),
    optional `attack_type`. Every bad line is reported with its line number; with any error (or
    a dry run) nothing is written. Otherwise the changes are written (source "import") in one
    transaction."""
    result = ImportResult(dry_run=dry_run)
    text = (text or "").lstrip("\ufeff")
    reader = csv.reader(io.StringIO(text))
    try:
        cols = _header(reader, result)
        if cols is None:
            return result
        parsed = _parse_lines(reader, cols, result)
    except csv.Error as exc:
        result.errors.append(ImportProblem(reader.line_num, f"not readable as CSV: {exc}"))
        return result
    _match_images(parsed, cols.key, result)
    result.errors.sort()
    if result.errors or dry_run:
        return result
    _write(result, user)
    return result


class _Columns(NamedTuple):
    """Where the header puts the columns the import reads; `key` is "sha256" or "path"."""

    count: int
    key: str
    i_key: int
    i_label: int
    i_type: int | None


class _BadLine(ValueError):
    """What is wrong with one line of the file."""


def _header(reader, result: ImportResult) -> _Columns | None:
    """The header's columns (blank lines before it skipped); None, with the error in `result`, when
    the file is empty or the header lacks a label column or a sha256 or path column."""
    header = next(reader, None)
    while header is not None and not any(c.strip() for c in header):
        header = next(reader, None)
    if header is None:
        result.errors.append(ImportProblem(1, "the file is empty: expected a header with label and sha256 or path"))
        return None
    columns = [c.strip().lower() for c in header]
    key = "sha256" if "sha256" in columns else "path" if "path" in columns else None
    if key is None or "label" not in columns:
        result.errors.append(
            ImportProblem(reader.line_num, "the header needs a label column and a sha256 or path column")
        )
        return None
    i_type = columns.index("attack_type") if "attack_type" in columns else None
    return _Columns(len(columns), key, columns.index(key), columns.index("label"), i_type)


def _parse_lines(reader, cols: _Columns, result: ImportResult) -> list[tuple[int, str, str, str]]:
    """(line, key, label, attack type) of each good line after the header; blank lines are skipped,
    bad ones go to the errors of `result`."""
    known_types = set(attack_type_names())
    parsed: list[tuple[int, str, str, str]] = []
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        try:
            parsed.append((reader.line_num, *_parse_line(row, cols, known_types)))
        except _BadLine as exc:
            result.errors.append(ImportProblem(reader.line_num, str(exc)))
    return parsed


def _parse_line(row: list[str], cols: _Columns, known_types: set[str]) -> tuple[str, str, str]:
    """(key, label, attack type) of one line; _BadLine says what is wrong with it."""
    if len(row) != cols.count:
        raise _BadLine(f"expected {cols.count} columns, found {len(row)}")
    raw_key = row[cols.i_key].strip()
    ref = raw_key.lower() if cols.key == "sha256" else _clean_path(raw_key)
    if not ref:
        raise _BadLine(f"empty {cols.key}")
    label = normalise_label(row[cols.i_label])
    if label is None:
        raise _BadLine(f"unknown label {row[cols.i_label].strip()!r} (use genuine/live/real/1 or attack/spoof/fake/0)")
    atype = row[cols.i_type].strip().lower() if cols.i_type is not None else ""
    if atype and label == "genuine":
        raise _BadLine(f"attack type {atype!r} given for a genuine label")
    if atype and atype not in known_types:
        raise _BadLine(f"unknown attack type {atype!r} (known: {', '.join(sorted(known_types))})")
    return ref, label, atype


def _match_images(parsed: list[tuple[int, str, str, str]], key: str, result: ImportResult) -> None:
    """Each parsed line's image as a row of `result`, counting the rows that change the label; an
    unknown image, one of unreadable files only, or one named on an earlier line is an error."""
    found, unreadable = _lookup({ref for _, ref, _, _ in parsed}, key)
    first_line: dict[int, int] = {}
    for line, ref, label, atype in parsed:
        if ref in unreadable:
            result.errors.append(
                ImportProblem(line, f"sha256 {ref!r} is of unreadable files only: no picture to label")
            )
            continue
        hit = found.get(ref)
        if hit is None:
            result.errors.append(ImportProblem(line, f"unknown image: no image with {key} {ref!r}"))
            continue
        pk, old_label, old_type = hit
        if pk in first_line:
            result.errors.append(ImportProblem(line, f"the same image as line {first_line[pk]}"))
            continue
        first_line[pk] = line
        result.rows.append(ImportRow(line, pk, old_label, label, atype))
        if (old_label, old_type) != (label, atype):
            result.changed += 1


def _write(result: ImportResult, user) -> None:
    """Apply the rows of `result`, one `apply_labels` per (label, attack type); `changed` becomes
    what was written."""
    groups: dict[tuple[str, str], list[int]] = {}
    for row in result.rows:
        groups.setdefault((row.new_label, row.attack_type), []).append(row.image_id)
    with transaction.atomic():  # one transaction, one recomputation per day for all the groups
        result.changed, days = 0, set()
        for (label, atype), ids in groups.items():
            changed, _, changed_days = apply_labels(ids, label, atype, user=user, source=LabelEvent.IMPORT, note="")
            result.changed += changed
            days |= changed_days
        schedule_recompute(days)
    result.written = True


EXPORT_COLUMNS = [
    "sha256",
    "path",
    "old_label",
    "old_attack_type",
    "new_label",
    "new_attack_type",
    "user",
    "when",
    "source",
    "note",
    "undone",
]


def _cell(value: str) -> str:
    """No formula injection when the file is opened in a spreadsheet."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def labels_csv(queryset=None) -> str:
    """The audit trail as CSV (one line per LabelEvent, oldest first). `queryset`: LabelEvents,
    or Images (their events); default every event."""
    if queryset is None:
        queryset = LabelEvent.objects.all()
    elif queryset.model is Image:
        queryset = LabelEvent.objects.filter(image__in=queryset)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    rows = queryset.order_by("created_at", "id").values_list(
        "image__sha256",
        "image__path",
        "old_label",
        "old_attack_type",
        "new_label",
        "new_attack_type",
        "user__username",
        "created_at",
        "source",
        "note",
        "undone",
    )
    for sha, path, ol, ot, nl, nt, username, when, source, note, undone in rows.iterator(chunk_size=2000):
        w.writerow(
            [
                sha,
                _cell(path),
                ol,
                ot,
                nl,
                nt,
                _cell(username or ""),
                when.isoformat(),
                source,
                _cell(note),
                int(undone),
            ]
        )
    return out.getvalue()
