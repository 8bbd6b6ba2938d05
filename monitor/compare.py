"""Two ensembles over the same images (GitHub issue 6): the compare page's numbers.

`compare(a, b, date_from, date_to, device=None, target_fprs=...)` -> `Comparison`.

The image set: images of the days date_from..date_to (and the device, if given) with a score from
BOTH ensembles. An ensemble's score for an image is its ShadowScore (monitor/shadow.py), or the
image's own score when production scored it with that ensemble (Image.ensemble). The shadow score
wins when both exist (it is the newer one, and scored with the stored box).

On the labelled images of the set, each ensemble gets the threshold table of the threshold page
(`monitor.thresholds.threshold_table`: minface x quality x target FPR, SPEC section 2 rule), so
the two tables have the same rows; at each ensemble's own threshold (live iff score > t) the
confusion counts (`liveness.metrics.confusion`), and on every image of the set the flags and the
decisions that differ. Last, the images where |score A - score B| is largest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Exists, OuterRef, Q

from liveness import metrics
from liveness.metrics import Confusion, StrategyRow

from . import thresholds
from .models import Device, Ensemble, Image, ShadowScore

DISAGREEMENTS_SHOWN = 50
STRATEGIES = [(m, q) for m in metrics.DEFAULT_MINFACES for q in (False, True)]


class CompareError(ValueError):
    """Input the comparison cannot be made from; the message is meant for the user."""


def scores_of(ens: Ensemble, start: dt.date, end: dt.date, device: Device | None = None) -> dict[int, float]:
    """image id -> the ensemble's score, for the images of the range (and device)."""
    prod = Image.objects.filter(ensemble=ens, day__range=(start, end), score__isnull=False)
    shadow = ShadowScore.objects.filter(ensemble=ens, day__range=(start, end))
    if device is not None:
        prod, shadow = prod.filter(device=device), shadow.filter(image__device=device)
    out = dict(prod.values_list("id", "score"))
    out.update(shadow.values_list("image_id", "score"))
    return out


@dataclass
class Side:
    """One ensemble's figures on the shared image set."""

    ensemble: Ensemble
    scores: np.ndarray  # aligned with Comparison.ids
    table: thresholds.TableResult  # on the labelled images of the set
    at_threshold: Confusion  # labelled images, at the ensemble's own threshold
    flagged: int  # images of the set decided attack at that threshold
    rows: dict[tuple, StrategyRow] = field(default_factory=dict)  # (minface, quality, target) -> row

    @property
    def name(self) -> str:
        return self.ensemble.name

    @property
    def threshold(self) -> float:
        return self.ensemble.threshold

    @property
    def flags(self) -> np.ndarray:
        return self.scores <= self.threshold

    def row(self, target_fpr: float, minface=None, quality=False) -> StrategyRow:
        return self.rows[(minface, quality, target_fpr)]


@dataclass
class Disagreement:
    image: Image
    score_a: float
    score_b: float

    @property
    def diff(self) -> float:
        return self.score_a - self.score_b


@dataclass
class Comparison:
    a: Side
    b: Side
    date_from: dt.date
    date_to: dt.date
    device: Device | None
    target_fprs: tuple[float, ...]
    ids: np.ndarray
    labels: np.ndarray  # "genuine" | "attack" | ""
    disagreements: list[Disagreement]

    @property
    def images(self) -> int:
        return len(self.ids)

    @property
    def genuine(self) -> int:
        return int((self.labels == "genuine").sum())

    @property
    def attacks(self) -> int:
        return int((self.labels == "attack").sum())

    @property
    def unlabelled(self) -> int:
        return self.images - self.genuine - self.attacks

    @property
    def decisions_differ(self) -> int:
        return int((self.a.flags != self.b.flags).sum())

    @property
    def only_a_flags(self) -> int:
        """Images A decides attack and B live."""
        return int((self.a.flags & ~self.b.flags).sum())

    @property
    def only_b_flags(self) -> int:
        return int((~self.a.flags & self.b.flags).sum())

    def strategy_pairs(self, target_fpr: float) -> list[tuple[StrategyRow, StrategyRow]]:
        """Both ensembles' rows of one target FPR, in the strategy order (minface, quality off/on)."""
        return [(self.a.row(target_fpr, m, q), self.b.row(target_fpr, m, q)) for m, q in STRATEGIES]


def _floats(values) -> np.ndarray:
    return np.array(values, dtype=np.float64) if len(values) else np.empty(0)


def _side(ens: Ensemble, scores: np.ndarray, cols: dict, labelled: np.ndarray, fprs, source: str) -> Side:
    is_attack = cols["label"][labelled] == "attack"
    inp = thresholds.TableInput(
        scores=scores[labelled],
        is_attack=is_attack,
        face_w=cols["box_w"][labelled],
        face_h=cols["box_h"][labelled],
        yaw=cols["yaw"][labelled],
        pitch=cols["pitch"][labelled],
        blur=cols["blur"][labelled],
        attack_types=cols["attack_type"][labelled],
        threshold=ens.threshold,
        source=source,
        scores_of=f"ensemble {ens.name}",
        ensemble=ens,
    )
    table = thresholds.threshold_table(inp, fprs)
    return Side(
        ensemble=ens,
        scores=scores,
        table=table,
        at_threshold=metrics.confusion(inp.scores, is_attack, ens.threshold),
        flagged=int((scores <= ens.threshold).sum()),
        rows={(r.minface, r.quality, r.target_fpr): r for r in table.rows},
    )


def compare(
    a: Ensemble,
    b: Ensemble,
    date_from: dt.date,
    date_to: dt.date,
    device: Device | None = None,
    target_fprs=thresholds.DEFAULT_TARGET_FPRS,
    shown: int = DISAGREEMENTS_SHOWN,
) -> Comparison:
    if a.pk == b.pk:
        raise CompareError("pick two different ensembles")
    if date_from > date_to:
        raise CompareError(f"the range is empty: from {date_from} is after to {date_to}")
    fprs = tuple(float(f) for f in target_fprs) or thresholds.DEFAULT_TARGET_FPRS
    score_a = scores_of(a, date_from, date_to, device)
    score_b = scores_of(b, date_from, date_to, device)
    shared = score_a.keys() & score_b.keys()

    qs = Image.objects.filter(day__range=(date_from, date_to))
    if device is not None:
        qs = qs.filter(device=device)
    has_shadow = Exists(ShadowScore.objects.filter(image=OuterRef("pk"), ensemble__in=(a, b)))
    qs = qs.filter(Q(ensemble__in=(a, b)) | Q(has_shadow))
    names = ("id", "label", "attack_type", "box_w", "box_h", "yaw", "pitch", "blur")
    rows = [r for r in qs.order_by("id").values_list(*names) if r[0] in shared]
    raw = dict(zip(names, zip(*rows, strict=True) if rows else [()] * len(names), strict=True))
    cols = {
        "id": np.array(raw["id"], dtype=np.int64),
        "label": np.array(raw["label"], dtype=object),
        "attack_type": np.array(raw["attack_type"], dtype=object),
        **{k: _floats(raw[k]) for k in ("box_w", "box_h", "yaw", "pitch", "blur")},
    }
    ids = cols["id"]
    sa = _floats([score_a[i] for i in ids.tolist()])
    sb = _floats([score_b[i] for i in ids.tolist()])
    labelled = np.isin(cols["label"], thresholds.LABELS) if len(ids) else np.zeros(0, dtype=bool)
    where = f"{date_from}..{date_to}" + (f", device {device.name}" if device else "")
    side_a = _side(a, sa, cols, labelled, fprs, f"images of {where} scored by {a.name} and {b.name}")
    side_b = _side(b, sb, cols, labelled, fprs, f"images of {where} scored by {a.name} and {b.name}")

    absdiff = np.abs(sa - sb)
    top = np.lexsort((ids, -absdiff))[:shown] if len(ids) else np.empty(0, dtype=np.int64)
    top_ids = [int(ids[i]) for i in top]
    images = Image.objects.select_related("device").in_bulk(top_ids)
    disagreements = [Disagreement(images[int(ids[i])], float(sa[i]), float(sb[i])) for i in top]
    return Comparison(
        a=side_a,
        b=side_b,
        date_from=date_from,
        date_to=date_to,
        device=device,
        target_fprs=fprs,
        ids=ids,
        labels=cols["label"],
        disagreements=disagreements,
    )


# --- defaults of the page -----------------------------------------------------------------------


def default_pair() -> tuple[Ensemble | None, Ensemble | None]:
    """A: the active ensemble (else the first by name); B: the most recently shadow-scored other
    ensemble (else the next by name)."""
    ensembles = list(Ensemble.objects.order_by("-is_active", "name"))
    if not ensembles:
        return None, None
    a = ensembles[0]
    latest = ShadowScore.objects.exclude(ensemble=a).order_by("-scored_at", "-id").select_related("ensemble").first()
    if latest is not None:
        return a, latest.ensemble
    return a, next((e for e in ensembles[1:]), None)


def default_range(a: Ensemble | None, b: Ensemble | None, days: int = 30) -> tuple[dt.date, dt.date]:
    """The last `days` days up to the latest day with shadow scores of A or B (else with images)."""
    pair = [e for e in (a, b) if e is not None]
    last = (
        ShadowScore.objects.filter(ensemble__in=pair).order_by("-day").values_list("day", flat=True).first()
        or Image.objects.order_by("-day").values_list("day", flat=True).first()
        or dt.date.today()
    )
    return last - dt.timedelta(days=days - 1), last
