"""Two ensembles over the same images: the compare page's numbers.

`compare(a, b, date_from, date_to, device=None, target_fprs=...)` -> `Comparison`.

The image set: images of the days date_from..date_to (and the device, if given) with a score from
BOTH ensembles. An ensemble's score for an image is its ShadowScore (monitor/shadow.py), or the
image's own score when production scored it with that ensemble (Image.ensemble). The shadow score
wins when both exist (it is the newer one, and scored with the stored box). One model alone (the
hidden one-model ensemble of `score_day --model`) also scores every image production scored with
that same model version: its stored per-model score (Image.scores), the same preprocessing and
weights, so a model compares with another version of itself without a shadow run of both.

On the labelled images of the set, each ensemble gets the threshold table of the threshold page
(`monitor.thresholds.threshold_table`: minface x quality x target FPR, SPEC section 2 rule), so
the two tables have the same rows; at each ensemble's own threshold (live iff score > t) the
confusion counts (`liveness.metrics.confusion`), and on every image of the set the flags and the
decisions that differ. Last, the images where |score A - score B| is largest.

What-ifs: the figures at a threshold use each ensemble's threshold *now*. They are what production
decided only for the images production decided with that ensemble at that same threshold, from
that same score (`Side.as_decided`); the rest is a what-if (after a threshold change, or for an
ensemble that never ran in production). `Comparison.production` holds what production did
decide on the set, from the stored decisions (Image.decision, Image.ensemble, Image.threshold),
and each side's `shadow_at` the thresholds its shadow runs decided at.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Exists, FloatField, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from liveness import metrics
from liveness.metrics import Confusion, StrategyRow

from . import threshold_input, thresholds
from .models import Device, Ensemble, Image, ShadowScore
from .shadow import is_one_model

DISAGREEMENTS_SHOWN = 50
STRATEGIES = [(m, q) for m in metrics.DEFAULT_MINFACES for q in (False, True)]


class CompareError(ValueError):
    """Input the comparison cannot be made from; the message is meant for the user."""


def scores_of(ens: Ensemble, start: dt.date, end: dt.date, device: Device | None = None) -> dict[int, float]:
    """image id -> the ensemble's score, for the images of the range (and device)."""
    return _scored(ens, start, end, device)[0]


def _scored(ens: Ensemble, start: dt.date, end: dt.date, device: Device | None):
    """(image id -> the ensemble's score, image id -> (threshold, flagged) of the shadow run's
    stored decision where that score is a shadow score)."""
    prod = Image.objects.filter(ensemble=ens, day__range=(start, end), score__isnull=False)
    shadow = ShadowScore.objects.filter(ensemble=ens, day__range=(start, end))
    if device is not None:
        prod, shadow = prod.filter(device=device), shadow.filter(image__device=device)
    out = _as_member(ens, start, end, device) | dict(prod.values_list("id", "score"))
    shadow_at = {}
    for image_id, score, threshold, decision in shadow.values_list("image_id", "score", "threshold", "decision"):
        out[image_id], shadow_at[image_id] = score, (threshold, decision == "attack")
    return out, shadow_at


def _as_member(ens: Ensemble, start: dt.date, end: dt.date, device: Device | None) -> dict[int, float]:
    """image id -> the stored per-model score, for a one-model ensemble: the images production
    scored with exactly its model version. Empty for any other ensemble."""
    if not is_one_model(ens):
        return {}
    members = list(ens.members.all())
    if len(members) != 1:
        return {}
    mv = members[0]
    qs = Image.objects.filter(day__range=(start, end), **{f"model_versions__{mv.name}": mv.label})
    if device is not None:
        qs = qs.filter(device=device)
    qs = qs.annotate(s=Cast(KeyTextTransform(mv.name, "scores"), FloatField())).filter(s__isnull=False)
    return dict(qs.values_list("id", "s"))


@dataclass(frozen=True)
class DecidedAt:
    """Stored decisions of the set made by one ensemble at one threshold."""

    ensemble: str  # "" when the images were never decided
    threshold: float | None
    images: int
    flagged: int = 0

    @property
    def text(self) -> str:
        """ "prod at 0.5 (70 images, 31 flagged)"."""
        images = f"{self.images} image{'s' if self.images != 1 else ''}"
        if self.threshold is None:
            return f"not decided ({images})"
        who = f"{self.ensemble} at" if self.ensemble else "at"
        return f"{who} {self.threshold:g} ({images}, {self.flagged} flagged)"


@dataclass
class Production:
    """What production decided on the set: its stored decisions, whichever ensemble made them."""

    flagged: int
    decided_by: list[DecidedAt]  # most images first

    @property
    def text(self) -> str:
        return ", ".join(d.text for d in self.decided_by)


@dataclass
class Side:
    """One ensemble's figures on the shared image set."""

    ensemble: Ensemble
    scores: np.ndarray  # aligned with Comparison.ids
    table: thresholds.TableResult  # on the labelled images of the set
    at_threshold: Confusion  # labelled images, at the ensemble's own threshold
    flagged: int  # images of the set decided attack at that threshold
    rows: dict[tuple, StrategyRow] = field(default_factory=dict)  # (minface, quality, target) -> row
    # images whose figure here is production's own decision: decided by this ensemble at this
    # threshold from this score; the others are what-ifs
    as_decided: int = 0
    shadow_at: list[DecidedAt] = field(default_factory=list)  # the shadow runs' thresholds

    @property
    def what_if(self) -> bool:
        return self.as_decided < len(self.scores)

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
    production: Production  # what production decided on the set, from the stored decisions

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


def _as_decided(ens: Ensemble, scores: np.ndarray, cols: dict) -> int:
    """Images the side decides as production did: same ensemble, same threshold, same score."""
    same = (cols["ensemble_id"] == ens.pk) & (cols["threshold"] == ens.threshold)
    return int((same & (cols["score"] == scores)).sum())


def _decided_at(decisions, names: dict) -> list[DecidedAt]:
    """One DecidedAt per (ensemble id, threshold) of the (ensemble id, threshold, flagged)
    decisions, most images first."""
    counts: dict = {}
    for ens, t, flagged in decisions:
        n, k = counts.get((ens, t), (0, 0))
        counts[(ens, t)] = (n + 1, k + bool(flagged))
    out = [DecidedAt(names.get(e, ""), t, n, k) for (e, t), (n, k) in counts.items()]
    return sorted(out, key=lambda d: (-d.images, d.ensemble, d.threshold is None, d.threshold or 0))


def _production(cols: dict) -> Production:
    flagged = (cols["decision"] == "attack").tolist()
    decisions = list(zip(cols["ensemble_id"].tolist(), cols["threshold"].tolist(), flagged, strict=True))
    names = dict(Ensemble.objects.filter(pk__in={e for e, _, _ in decisions}).values_list("id", "name"))
    return Production(flagged=int(sum(flagged)), decided_by=_decided_at(decisions, names))


def _side(ens: Ensemble, scores: np.ndarray, cols: dict, labelled: np.ndarray, fprs, source: str) -> Side:
    is_attack = cols["label"][labelled] == "attack"
    inp = threshold_input.TableInput(
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
        as_decided=_as_decided(ens, scores, cols),
    )


def _columns(qs, shared: set[int]) -> dict[str, np.ndarray]:
    """The set's image columns in id order; `ensemble_id`, `threshold`, `decision` and `score` are
    production's stored decision (threshold kept as objects: None is no decision, not NaN)."""
    names = ("id", "label", "attack_type", "box_w", "box_h", "yaw", "pitch", "blur")
    names += ("ensemble_id", "threshold", "decision", "score")
    rows = [r for r in qs.order_by("id").values_list(*names) if r[0] in shared]
    raw = dict(zip(names, zip(*rows, strict=True) if rows else [()] * len(names), strict=True))
    objects = ("label", "attack_type", "ensemble_id", "threshold", "decision")
    return {
        "id": np.array(raw["id"], dtype=np.int64),
        **{k: np.array(raw[k], dtype=object) for k in objects},
        **{k: _floats(raw[k]) for k in ("box_w", "box_h", "yaw", "pitch", "blur", "score")},
    }


def compare(
    a: Ensemble,
    b: Ensemble,
    date_from: dt.date,
    date_to: dt.date,
    device: Device | None = None,
    target_fprs=threshold_input.DEFAULT_TARGET_FPRS,
    shown: int = DISAGREEMENTS_SHOWN,
) -> Comparison:
    if a.pk == b.pk:
        raise CompareError("pick two different ensembles")
    if date_from > date_to:
        raise CompareError(f"the range is empty: from {date_from} is after to {date_to}")
    fprs = tuple(float(f) for f in target_fprs) or threshold_input.DEFAULT_TARGET_FPRS
    score_a, shadow_a = _scored(a, date_from, date_to, device)
    score_b, shadow_b = _scored(b, date_from, date_to, device)
    shared = score_a.keys() & score_b.keys()

    qs = Image.objects.filter(day__range=(date_from, date_to))
    if device is not None:
        qs = qs.filter(device=device)
    has_shadow = Exists(ShadowScore.objects.filter(image=OuterRef("pk"), ensemble__in=(a, b)))
    cols = _columns(qs.filter(Q(ensemble__in=(a, b)) | Q(has_shadow)), shared)
    ids = cols["id"]
    sa = _floats([score_a[i] for i in ids.tolist()])
    sb = _floats([score_b[i] for i in ids.tolist()])
    labelled = np.isin(cols["label"], threshold_input.LABELS) if len(ids) else np.zeros(0, dtype=bool)
    where = f"{date_from}..{date_to}" + (f", device {device.name}" if device else "")
    side_a = _side(a, sa, cols, labelled, fprs, f"images of {where} scored by {a.name} and {b.name}")
    side_b = _side(b, sb, cols, labelled, fprs, f"images of {where} scored by {a.name} and {b.name}")
    for side, shadow_at in ((side_a, shadow_a), (side_b, shadow_b)):
        decisions = [(side.ensemble.pk, *shadow_at[i]) for i in ids.tolist() if i in shadow_at]
        side.shadow_at = _decided_at(decisions, {side.ensemble.pk: side.name})

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
        production=_production(cols),
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
