"""The choices the models share: the image categories (those of liveness.ensemble), labels and
decisions."""

from __future__ import annotations

import liveness.ensemble

CATEGORIES = list(liveness.ensemble.CATEGORIES)
CATEGORY_CHOICES = [(c, c.replace("_", " ")) for c in CATEGORIES]
LABEL_CHOICES = [("genuine", "genuine"), ("attack", "attack")]
DECISION_CHOICES = [("live", "live"), ("attack", "attack")]
