"""What two model manifests set differently, key by key: a version registered again must come
with the same settings, since another recipe under the same version would mix its scores."""

from __future__ import annotations

import json
import tomllib


def _flat(doc: dict) -> dict[str, object]:
    """A manifest's settings as {"section.key": value}. Left out: `model.file` (the file is
    compared by its sha256, wherever the manifest naming it lies) and `model.version` (looked up
    by it, so equal; `2` and "2" are the same version)."""
    flat = {f"{s}.{k}": v for s, table in doc.items() if isinstance(table, dict) for k, v in table.items()}
    for key in ("model.file", "model.version"):
        flat.pop(key, None)
    return flat


def _shown(value) -> str:
    """A manifest value as TOML spells it ("RGB", 2.7, ["attack", "live"], true)."""
    return "(not set)" if value is None else json.dumps(value, default=str)


def manifest_changes(old_text: str, new_text: str) -> list[str]:
    """The keys two manifests set differently, as "crop.scale: 2.7 -> 4.0" (empty: the same
    settings, whatever their comments or layout)."""
    old, new = _flat(tomllib.loads(old_text)), _flat(tomllib.loads(new_text))
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return [f"{k}: {_shown(old.get(k))} -> {_shown(new.get(k))}" for k in keys]
