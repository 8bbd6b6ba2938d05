"""The monitor app's models, one file a subject; every name is importable from here.

- choices.py: CATEGORIES and the choices of the image fields
- registry.py: ModelVersion, Ensemble, EnsembleEvent
- images.py: Device, Run, Image, ShadowScore, InboxFile
- labels.py: AttackType, LabelEvent
- metrics.py: DailyMetric, DayFigures, Alert, DaySlice
- access.py: ApiToken, ImageAccess

The modules import one another, never this package, so no import goes in a circle.
"""

from .access import ApiToken, ImageAccess
from .choices import CATEGORIES, CATEGORY_CHOICES, DECISION_CHOICES, LABEL_CHOICES
from .images import Device, Image, InboxFile, Run, ShadowScore
from .labels import AttackType, LabelEvent
from .metrics import Alert, AlertQuerySet, DailyMetric, DayFigures, DaySlice
from .registry import Ensemble, EnsembleEvent, ModelVersion

__all__ = [
    "CATEGORIES",
    "CATEGORY_CHOICES",
    "DECISION_CHOICES",
    "LABEL_CHOICES",
    "Alert",
    "AlertQuerySet",
    "ApiToken",
    "AttackType",
    "DailyMetric",
    "DayFigures",
    "DaySlice",
    "Device",
    "Ensemble",
    "EnsembleEvent",
    "Image",
    "ImageAccess",
    "InboxFile",
    "LabelEvent",
    "ModelVersion",
    "Run",
    "ShadowScore",
]
