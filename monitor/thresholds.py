"""The threshold table ("strategy explorer", SPEC section 5), shared by the page and the command.

`threshold_table(table_input, target_fprs, threshold=None)`: the whole result for a
`monitor.threshold_input.TableInput`: the strategy rows (`liveness.metrics.strategy_table`) and
the ISO/IEC 30107-3 block (`liveness.iso`). The block applies one threshold to every score
(`applied_text` says which: for stored images a what-if, since past images were decided at the
thresholds in force then) and, for stored images, sets beside it what production decided for the
same images (`Production`).

The input comes from `monitor.threshold_input`, the export formats are in `monitor.threshold_export`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from liveness.iso import UNKNOWN_TYPE, ApcerPoint, apcer_point, iso_at
from liveness.metrics import Rate, StrategyRow, strategy_table

from .threshold_input import DEFAULT_TARGET_FPRS, TableError, TableInput


def threshold_text(t: float | None) -> str:
    return "none" if t is None else f"{t:.6g}"


# --- the result --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Production:
    """What production decided for the images of the ISO block (`Image.decision`), each at the
    threshold in force when it was scored, to set beside the what-if at one threshold."""

    images: int
    flagged: int  # decided attack
    tp: int  # labelled attack, decided attack
    fp: int  # labelled genuine, decided attack
    thresholds: tuple[tuple[float | None, int], ...]  # each distinct threshold (None: not stored), images
    same: bool  # every image was decided on these scores at the block's threshold: the what-if is production

    def thresholds_text(self) -> str:
        return ", ".join(
            f"{threshold_text(t) if t is not None else 'not stored'} ({n} images)" for t, n in self.thresholds
        )

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "flagged": self.flagged,
            "tp": self.tp,
            "fp": self.fp,
            "thresholds": [{"threshold": t, "images": n} for t, n in self.thresholds],
            "same_as_what_if": self.same,
        }


def production_of(inp: TableInput, t: float) -> Production | None:
    """Production's decisions over the images of `inp` (None for a score file: it has none; None
    without images: nothing to set beside the what-if)."""
    if inp.decided_attack is None or inp.decided_at is None or not len(inp):
        return None
    flagged, at = inp.decided_attack, inp.decided_at
    counts = Counter(None if math.isnan(v) else float(v) for v in at.tolist())
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0.0))
    return Production(
        images=len(inp),
        flagged=int(flagged.sum()),
        tp=int((flagged & inp.is_attack).sum()),
        fp=int((flagged & ~inp.is_attack).sum()),
        thresholds=tuple(ordered),
        # one model's scores were never what production decided on, whatever the thresholds
        same=inp.model is None and list(counts) == [t],
    )


def applied_text(inp: TableInput, t: float, given: bool) -> str:
    """Which threshold the ISO block applies, to whose scores, and for stored images that it is a
    what-if (past images were decided at the thresholds in force then, see `Production`)."""
    # without one given, the threshold is the ensemble's as it is now (`database_input`)
    origin = "the threshold given" if given or inp.ensemble is None else f"today's threshold of {inp.ensemble.name}"
    if inp.ensemble is None:  # a score file: no production decisions to contrast with
        return f"at threshold {threshold_text(t)}, {origin}, applied to the file's scores"
    whose = f"model {inp.model}'s scores" if inp.model else "these scores"
    return f"at threshold {threshold_text(t)}, {origin}, applied to {whose} — a what-if"


def _rate_dict(r: Rate | None) -> dict | None:
    if r is None:
        return None
    return {"value": r.value, "k": r.k, "n": r.n, "low": r.low, "high": r.high, "too_few": r.too_few}


def _point_dict(p: ApcerPoint | None) -> dict | None:
    if p is None:
        return None
    return {
        "threshold": p.threshold,
        "bpcer": _rate_dict(p.bpcer),
        "apcer": p.apcer,
        "apcer_type": p.apcer_type,
        "untyped_attacks": _rate_dict(p.untyped),
    }


@dataclass
class TableResult:
    rows: list[StrategyRow]  # grouped by target FPR (in the order given), sorted by TPR within a group
    target_fprs: tuple[float, ...]
    threshold: float | None  # the threshold of the ISO block (None: no ISO figures at a threshold)
    iso: dict | None  # liveness.iso.iso_at at `threshold`, None without one
    bpcer20: ApcerPoint | None
    bpcer100: ApcerPoint | None
    source: str
    scores_of: str
    attacks: int
    genuine: int
    applied: str = ""  # `applied_text`: the threshold of the ISO block, whose scores, what-if or not
    flagged: int | None = None  # images with score <= threshold (what the block's threshold flags)
    flagged_attacks: int | None = None
    production: Production | None = None  # stored images: production's own decisions for them

    def groups(self) -> list[tuple[float, list[StrategyRow]]]:
        return [(f, [r for r in self.rows if r.target_fpr == f]) for f in self.target_fprs]

    @property
    def apcer_per_type(self) -> dict[str, Rate]:
        return self.iso["apcer_per_type"] if self.iso else {}

    @property
    def species(self) -> list[tuple[str, Rate]]:
        """The APCER lines of the species, by name: the untyped attacks are not among them when they
        are reported apart (`iso["untyped"]`); when no attack has a type they are the pooled group."""
        untyped = self.iso["untyped"] if self.iso else None
        return [(t, r) for t, r in self.apcer_per_type.items() if not (t == UNKNOWN_TYPE and untyped)]

    @property
    def acer_too_few(self) -> bool:
        """ACER greys like its parts: when the reported APCER's or the BPCER's count is under 30."""
        iso = self.iso
        return iso is None or iso["apcer_rate"] is None or iso["apcer_rate"].too_few or iso["bpcer_rate"].too_few

    def as_dict(self) -> dict:
        """The JSON export: `rows` (exactly the keys of `threshold_export.ROW_KEYS`) and `iso`."""
        iso = self.iso or {}
        return {
            "rows": [r.as_dict() for r in self.rows],
            "iso": {
                "threshold": self.threshold,
                "apcer_per_type": {t: r.value for t, r in self.apcer_per_type.items()},
                "apcer": iso.get("apcer"),
                "bpcer": iso.get("bpcer"),
                "acer": iso.get("acer"),
                "bpcer20": None if self.bpcer20 is None else self.bpcer20.bpcer.value,
                "bpcer100": None if self.bpcer100 is None else self.bpcer100.bpcer.value,
                **self._iso_details(iso),
            },
        }

    def _iso_details(self, iso: dict) -> dict:
        """The JSON fields added to the first ones: counts, intervals, greying, what-if, production."""
        return {
            "applied": self.applied or None,
            "apcer_type": iso.get("apcer_type"),
            "apcer_rate": _rate_dict(iso.get("apcer_rate")),
            "apcer_per_type_rates": {t: _rate_dict(r) for t, r in self.apcer_per_type.items()},
            "untyped_attacks": _rate_dict(iso.get("untyped")),
            "bpcer_rate": _rate_dict(iso.get("bpcer_rate")),
            "acer_too_few": self.acer_too_few if self.iso else None,
            "flagged": self.flagged,
            "flagged_attacks": self.flagged_attacks,
            "production": None if self.production is None else self.production.as_dict(),
            "bpcer20_point": _point_dict(self.bpcer20),
            "bpcer100_point": _point_dict(self.bpcer100),
        }


def threshold_table(
    table_input: TableInput, target_fprs=DEFAULT_TARGET_FPRS, threshold: float | None = None
) -> TableResult:
    """Strategy rows for each target FPR, and the ISO block on all the images: APCER per type, APCER,
    BPCER, ACER at `threshold` (default: the data's active threshold; none: those are null) and
    BPCER20 / BPCER100."""
    fprs = tuple(float(f) for f in target_fprs) or DEFAULT_TARGET_FPRS
    for f in fprs:
        if not 0 < f < 1:
            raise TableError(f"a target FPR must be strictly between 0 and 1, got {f:g}")
    t = table_input.threshold if threshold is None else threshold
    inp = table_input
    rows = strategy_table(**inp.strategy_kwargs(), target_fprs=fprs)
    iso = iso_at(inp.scores, inp.is_attack, inp.attack_types, t) if t is not None else None
    at_t = {} if t is None else _applied(inp, t, given=threshold is not None)
    return TableResult(
        rows=rows,
        target_fprs=fprs,
        threshold=t,
        iso=iso,
        bpcer20=apcer_point(inp.scores, inp.is_attack, inp.attack_types, 0.05),
        bpcer100=apcer_point(inp.scores, inp.is_attack, inp.attack_types, 0.01),
        source=inp.source,
        scores_of=inp.scores_of,
        attacks=inp.attacks,
        genuine=inp.genuine,
        **at_t,
    )


def _applied(inp: TableInput, t: float, given: bool) -> dict:
    """The ISO block's figures at t beyond `iso_at`: its label, what t flags, production beside it."""
    flagged = inp.scores <= t
    return {
        "applied": applied_text(inp, t, given),
        "flagged": int(flagged.sum()),
        "flagged_attacks": int((flagged & inp.is_attack).sum()),
        "production": production_of(inp, t),
    }
