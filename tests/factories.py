"""Rows for tests that need many images without scoring real files."""

import datetime as dt
import hashlib
import itertools

from monitor.models import Device, Ensemble, Image

_seq = itertools.count()


def device(name: str = "phone-01") -> Device:
    return Device.objects.get_or_create(name=name)[0]


def ensemble(name: str = "test", threshold: float = 0.5, active: bool = True) -> Ensemble:
    return Ensemble.objects.get_or_create(name=name, defaults={"threshold": threshold, "is_active": active})[0]


def image(day="2026-11-20", device_name="phone-01", score=0.9, label="", category=None, **fields) -> Image:
    """An image row; category follows from the score and threshold unless given."""
    n = next(_seq)
    day = dt.date.fromisoformat(day) if isinstance(day, str) else day
    ens = fields.pop("ensemble", None) or ensemble()
    if category is None:
        category = "no_face" if score is None else ("live" if score > ens.threshold else "attack")
    decision = "" if score is None else ("live" if score > ens.threshold else "attack")
    scores = fields.pop("scores", None) or ({} if score is None else {"m1": score, "m2": score})
    values = {
        "sha256": hashlib.sha256(f"img{n}".encode()).hexdigest(),
        "path": f"{day.isoformat()}/{device_name}/img{n}.jpg",
        "day": day,
        "device": device(device_name),
        "file_size": 1000,
        "score": score,
        "scores": scores,
        "disagreement": (max(scores.values()) - min(scores.values())) if scores else None,
        "decision": decision,
        "category": category,
        "label": label,
        "ensemble": ens,
        "threshold": ens.threshold if score is not None else None,
        **fields,
    }
    return Image.objects.create(**values)
