"""The threshold table's three export formats: `as_json_text`, `as_csv_text`, `as_text` (`FORMATS`
by name), and the text pieces the page shows the same way. The page's downloads and the command's
output are these same functions, so they are byte-identical for the same input.
"""

from __future__ import annotations

import csv
import io
import json

from liveness.iso import UNKNOWN_TYPE, ApcerPoint
from liveness.metrics import Rate

from .rates import interval, pct
from .thresholds import TableResult, threshold_text

ROW_KEYS = ("minface", "quality", "target_fpr", "threshold", "tpr", "fpr", "attack", "genuine", "fp", "tp")


def as_json_text(result: TableResult) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def as_csv_text(result: TableResult) -> str:
    """A header and one line per row, the columns of the JSON rows."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(ROW_KEYS)
    for r in result.rows:
        d = r.as_dict()
        w.writerow([_csv_value(d[k]) for k in ROW_KEYS])
    return buf.getvalue()


def fpr_label(f: float) -> str:
    return f"{100 * f:g}%"


def _align(table: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]


def as_text(result: TableResult) -> str:
    """An aligned table per target FPR, sorted by TPR, the best row marked with `*`, then the ISO figures."""
    lines = [
        f"Threshold table: {result.source}, {result.scores_of}",
        f"{result.attacks + result.genuine} labelled images: {result.attacks} attack, {result.genuine} genuine",
        "Positive = attack; live if score > threshold. * = best row (highest TPR) of a target FPR.",
    ]
    head = ["", "minface", "quality", "threshold", "TPR", "95% CI", "FPR", "95% CI", "attack", "genuine", "TP", "FP"]
    for f, rows in result.groups():
        lines += ["", f"Target FPR {fpr_label(f)}"]
        table = [head]
        for r in rows:
            tpr, fpr = r.tpr_rate, r.fpr_rate
            table.append(
                [
                    "*" if r.best else "",
                    "none" if r.minface is None else str(r.minface),
                    "on" if r.quality else "off",
                    threshold_text(r.threshold),
                    pct(r.tpr),
                    interval(tpr),
                    pct(r.fpr, 3),
                    interval(fpr),
                    str(r.attack),
                    str(r.genuine),
                    str(r.tp),
                    str(r.fp),
                ]
            )
        lines += _align(table, right={3, 4, 6, 8, 9, 10, 11})
    lines += ["", "ISO/IEC 30107-3 (all images, no strategy filter)"]
    lines += [_point_line(name, p) for name, p in (("BPCER20", result.bpcer20), ("BPCER100", result.bpcer100))]
    if result.iso is None:
        lines.append("  APCER, BPCER, ACER: no active threshold (give one with --threshold)")
    else:
        lines += _iso_lines(result)
    return "\n".join(lines) + "\n"


UNTYPED_NOTE = "not a PAI species, not in the reported APCER"


def too_few_text(r: Rate | None) -> str:
    return " too few" if r is None or r.too_few else ""


def rate_text(r: Rate) -> str:
    """A rate with its counts, interval and greying, as the text output writes it."""
    return f"{pct(r.value)} ({r.k}/{r.n}) {interval(r)}{too_few_text(r)}"


def species_name(name: str) -> str:
    # only the pooled group is ever listed under UNKNOWN_TYPE (`TableResult.species`)
    return "unknown (no attack has a type: all attacks pooled)" if name == UNKNOWN_TYPE else name


def production_text(result: TableResult) -> str | None:
    """The production line beside the what-if, None when there is none to show."""
    p = result.production
    if p is None:
        return None
    if p.same:
        return f"production decided all {p.images} images at this threshold: the same decisions"
    # production decided on the ensemble score: say so beside one model's what-if
    on = "" if result.scores_of == "ensemble score" else " on the ensemble score"
    return (
        f"production flagged {p.flagged} of {p.images} ({p.tp} attacks, {p.fp} genuine){on}"
        f" at the thresholds in force then: {p.thresholds_text()}"
    )


def flagged_text(result: TableResult) -> str:
    n = result.attacks + result.genuine
    genuine = result.flagged - result.flagged_attacks
    return f"flagged {result.flagged} of {n} ({result.flagged_attacks} attacks, {genuine} genuine)"


def _point_line(name: str, p: ApcerPoint | None) -> str:
    if p is None:
        return f"  {name}: - (needs attack and genuine images)"
    untyped = "" if p.untyped is None else f"; untyped attacks above t: {p.untyped.k}/{p.untyped.n}"
    return (
        f"  {name}: {pct(p.bpcer.value)} ({p.bpcer.k}/{p.bpcer.n} genuine at or below t = {p.threshold:.6g},"
        f" APCER there {pct(p.apcer)} ({p.apcer_type})){too_few_text(p.bpcer)}{untyped}"
    )


def _iso_lines(result: TableResult) -> list[str]:
    iso = result.iso
    lines = [f"  {result.applied}:", f"    {flagged_text(result)}"]
    production = production_text(result)
    if production:
        lines.append(f"    {production}")
    r = iso["apcer_rate"]
    if r is None:
        lines.append("    APCER -")
    else:
        lines.append(f"    APCER {pct(iso['apcer'])} ({iso['apcer_type']}), {r.k}/{r.n} {interval(r)}{too_few_text(r)}")
    b = iso["bpcer_rate"]
    lines.append(f"    BPCER {rate_text(b)}" if iso["bpcer"] is not None else "    BPCER -")
    lines.append(f"    ACER  {pct(iso['acer'])}{' too few' if result.acer_too_few else ''}")
    lines += [f"    APCER {species_name(t)}: {rate_text(r)}" for t, r in result.species]
    if iso["untyped"] is not None:
        lines.append(f"    untyped attacks: {rate_text(iso['untyped'])} — {UNTYPED_NOTE}")
    return lines


FORMATS = {"json": as_json_text, "csv": as_csv_text, "text": as_text}
