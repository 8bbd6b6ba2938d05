"""Ensembles: several liveness models, one combined score, one threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runtime import LivenessModel

LIVE, ATTACK = "live", "attack"
CATEGORIES = ("live", "attack", "low_quality", "no_face", "unreadable")
SCORED = ("live", "attack", "low_quality")  # the categories of images with a score and a decision


def decide(score: float, threshold: float) -> str:
    """SPEC section 2: live if s > threshold, else attack."""
    return LIVE if score > threshold else ATTACK


def categorise(decision: str | None, failed_gates: list[str]) -> str:
    if decision is None:
        raise ValueError("an image without a decision is no_face or unreadable, not scored")
    return "low_quality" if failed_gates else decision


@dataclass
class Ensemble:
    name: str
    models: list[LivenessModel]
    threshold: float
    rule: str = "mean"

    def combine(self, per_model: dict[str, np.ndarray]) -> np.ndarray:
        """The ensemble score per image: the mean of the models' live probabilities."""
        if self.rule != "mean":
            raise ValueError(f"unknown ensemble rule {self.rule!r}")
        return np.mean(np.stack([per_model[m.name] for m in self.models]), axis=0)
