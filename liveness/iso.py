"""ISO/IEC 30107-3 figures, with the sign conventions of SPEC section 2 (positive = attack; live if s > t).

- `iso_at`: APCER per attack type, the reported APCER, BPCER and ACER at a threshold.
- `apcer_point`, `bpcer_at_apcer`, `bpcer20`, `bpcer100`: BPCER at the smallest threshold whose
  reported APCER is within a bound.
- `reported_apcer`: the worst PAI species; `untyped_apart`: the untyped attacks, reported apart.

Pure numpy, no Django. Scores must not be NaN (drop unscored images first): a ValueError says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import Rate, labelled_scores, wilson

UNKNOWN_TYPE = "unknown"


def _type_name(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return UNKNOWN_TYPE
    return str(v).strip() or UNKNOWN_TYPE


def _attack_type_codes(attack_types, n: int) -> tuple[list[str], np.ndarray]:
    """Factorise attack types: (sorted names, code per row). None, NaN and "" become "unknown"."""
    if attack_types is None:
        return [UNKNOWN_TYPE], np.zeros(n, dtype=np.intp)
    t = np.asarray(attack_types, dtype=object).ravel()
    if len(t) != n:
        raise ValueError(f"attack_types has {len(t)} values for {n} scores")
    raw: dict = {}
    raw_codes = np.fromiter((raw.setdefault(v, len(raw)) for v in t.tolist()), dtype=np.intp, count=n)
    names = sorted({_type_name(v) for v in raw})
    index = {name: i for i, name in enumerate(names)}
    remap = np.array([index[_type_name(v)] for v in raw], dtype=np.intp)
    return names, remap[raw_codes] if n else raw_codes


def _species(counts: dict[str, int]) -> list[str]:
    """The groups the reported APCER is taken over, by name: the PAI species (typed attacks) present;
    when no attack has a type, the one pooled group UNKNOWN_TYPE. Empty without attacks."""
    typed = [name for name, n in counts.items() if name != UNKNOWN_TYPE and n]
    return typed or [name for name, n in counts.items() if n]


def reported_apcer(per_type: dict[str, Rate]) -> tuple[str, Rate] | None:
    """The reported APCER of ISO/IEC 30107-3: (type, rate) of the worst PAI species (first by name
    on ties). Attacks without a type (UNKNOWN_TYPE) are no species: they never set it and are
    reported apart. When no attack has a type at all, the attacks are one pooled group, reported
    under UNKNOWN_TYPE (a score file without attack types still gets its APCER and BPCER20).
    None without attacks."""
    pool = {name: per_type[name] for name in _species({name: r.n for name, r in per_type.items()})}
    worst = None
    for name in sorted(pool):
        if worst is None or pool[name].value > worst[1].value:
            worst = (name, pool[name])
    return worst


def untyped_apart(per_type: dict[str, Rate], reported: tuple[str, Rate] | None) -> Rate | None:
    """The rate of the untyped attacks when they are reported apart from the species: None when
    there are none, or when they are the pooled group that is itself the reported APCER."""
    if reported is not None and reported[0] == UNKNOWN_TYPE:
        return None
    return per_type.get(UNKNOWN_TYPE)


def iso_at(scores, is_attack, attack_types, t: float | None) -> dict:
    """ISO/IEC 30107-3 figures at threshold t (live iff s > t; None = nothing flagged).

    Returns a dict:
      "apcer_per_type": {type: Rate}   attacks of that type with s > t, of attacks of that type
                                       (attacks without a type count as "unknown"; only types
                                       present among the attacks appear)
      "apcer":      float | None       the reported APCER (`reported_apcer`): the worst PAI species;
                                       untyped attacks never set it, unless no attack has a type
                                       (then all attacks are one pooled group, "unknown"); None
                                       without attacks
      "apcer_type": str | None         the type that gives it (first by name on ties)
      "apcer_rate": Rate | None        that type's rate, with counts (for intervals and greying)
      "untyped":    Rate | None        the untyped attacks, reported apart; None when there are
                                       none or when they are the pooled group
      "bpcer":      float | None       genuine with s <= t / genuine (= FPR; None without genuine)
      "bpcer_rate": Rate               the same with counts and Wilson interval
      "acer":       float | None       (apcer + bpcer) / 2, None when either is None
    """
    s, a = labelled_scores(scores, is_attack)
    live = np.ones(len(s), dtype=bool) if t is None else s > t
    names, codes = _attack_type_codes(attack_types, len(s))
    n_type = np.bincount(codes[a], minlength=len(names))
    k_type = np.bincount(codes[a & live], minlength=len(names))
    per_type = {name: wilson(int(k), int(m)) for name, k, m in zip(names, k_type, n_type, strict=True) if m}
    reported = reported_apcer(per_type)
    apcer_type, apcer_rate = reported if reported else (None, None)
    apcer = apcer_rate.value if apcer_rate else None
    genuine = int((~a).sum())
    bpcer_rate = wilson(int((~a & ~live).sum()), genuine)
    bpcer = bpcer_rate.value if genuine else None
    acer = (apcer + bpcer) / 2 if apcer is not None and bpcer is not None else None
    return {
        "apcer_per_type": per_type,
        "apcer": apcer,
        "apcer_type": apcer_type,
        "apcer_rate": apcer_rate,
        "untyped": untyped_apart(per_type, reported),
        "bpcer": bpcer,
        "bpcer_rate": bpcer_rate,
        "acer": acer,
    }


@dataclass(frozen=True)
class ApcerPoint:
    """The operating point of BPCERxx: threshold t, reported APCER there (and its type), BPCER with
    counts, and the untyped attacks there when they are reported apart (see `iso_at`)."""

    threshold: float
    apcer: float
    bpcer: Rate
    apcer_type: str | None = None
    untyped: Rate | None = None


def apcer_point(scores, is_attack, attack_types, max_apcer: float) -> ApcerPoint | None:
    """The smallest observed score t at which the reported APCER (worst PAI species, s > t) <= max_apcer.

    Only the species the reported APCER is taken over count (`_species`: typed attacks; all attacks
    pooled when none has a type): untyped attacks among typed ones put no requirement on t.
    Per species with n attacks, APCER <= b allows m = floor(b * n) (robust: floor(b*n + 1e-9))
    attacks above t, so t must be at least that species' (n - m)-th smallest score; t is the largest
    of these requirements (itself an observed score), or the smallest observed score when no species
    requires anything. None without attacks or without genuine images. O(n log n).
    """
    s, a = labelled_scores(scores, is_attack)
    if not a.any() or a.all():
        return None
    names, codes = _attack_type_codes(attack_types, len(s))
    sa, ca = s[a], codes[a]
    order = np.lexsort((sa, ca))  # by type, then score
    sa, ca = sa[order], ca[order]
    n_type = np.bincount(ca, minlength=len(names))
    start = np.concatenate(([0], np.cumsum(n_type)[:-1]))
    allowed = np.floor(max_apcer * n_type + 1e-9).astype(np.int64)
    need = n_type - allowed  # this many of the species' attacks must be at or below t
    counted = _species({name: int(m) for name, m in zip(names, n_type, strict=True)})
    req = [sa[start[i] + need[i] - 1] for i, name in enumerate(names) if name in counted and need[i] >= 1]
    t = float(max(req)) if req else float(s.min())
    k_type = np.bincount(ca[sa > t], minlength=len(names))
    per_type = {name: wilson(int(k), int(m)) for name, k, m in zip(names, k_type, n_type, strict=True) if m}
    reported = reported_apcer(per_type)
    genuine = int((~a).sum())
    bpcer = wilson(int((~a & ~(s > t)).sum()), genuine)
    return ApcerPoint(t, reported[1].value, bpcer, reported[0], untyped_apart(per_type, reported))


def bpcer_at_apcer(scores, is_attack, attack_types, max_apcer: float) -> float | None:
    """BPCER at the smallest observed score with reported APCER <= max_apcer (`apcer_point`).

    BPCER20 = bpcer_at_apcer(..., 0.05), BPCER100 = bpcer_at_apcer(..., 0.01). None without attacks
    or without genuine images.
    """
    p = apcer_point(scores, is_attack, attack_types, max_apcer)
    return None if p is None else p.bpcer.value


def bpcer20(scores, is_attack, attack_types=None) -> float | None:
    return bpcer_at_apcer(scores, is_attack, attack_types, 0.05)


def bpcer100(scores, is_attack, attack_types=None) -> float | None:
    return bpcer_at_apcer(scores, is_attack, attack_types, 0.01)
