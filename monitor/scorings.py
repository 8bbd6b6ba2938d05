"""Every scoring of one image: production's (the image row) and each shadow run's (ShadowScore
rows), with the ensemble, run, threshold, decision and every member model's score and version."""

from __future__ import annotations

from .models import Image, ShadowScore


def _models(scores: dict, versions: dict, guesses: dict, threshold: float | None) -> list[dict]:
    return [
        {
            "model": name,
            "version": versions.get(name, ""),
            "score": value,
            "live": threshold is not None and value > threshold,
            "guess": guesses.get(name, ""),
        }
        for name, value in sorted(scores.items())
    ]


def scorings(im: Image) -> list[dict]:
    """Production first, then the shadow runs newest first (one query for those)."""
    out = []
    if im.score is not None:
        out.append(
            {
                "kind": "production",
                "ensemble": im.ensemble.name if im.ensemble_id else None,
                "run": im.run_id,
                "threshold": im.threshold,
                "score": im.score,
                "decision": im.decision,
                "scored_at": im.scored_at,
                "models": _models(im.scores, im.model_versions, im.attack_guesses, im.threshold),
            }
        )
    shadows = ShadowScore.objects.filter(image=im).select_related("ensemble").order_by("-scored_at", "-id")
    for s in shadows:
        out.append(
            {
                "kind": "shadow",
                "ensemble": s.ensemble.name,
                "run": s.run_id,
                "threshold": s.threshold,
                "score": s.score,
                "decision": s.decision,
                "scored_at": s.scored_at,
                "models": _models(s.scores, s.model_versions, s.attack_guesses, s.threshold),
            }
        )
    return out
