"""Model manifests (TOML): how to crop, preprocess and read one ONNX liveness model.

    [model]
    name = "fas_a"            # unique name; scores are stored under it
    version = "1"
    file = "fas_a.onnx"       # relative to the manifest

    [input]
    name = "input"            # optional: the ONNX input name (default: the model's first input)
    size = [80, 80]           # h, w
    layout = "NCHW"           # or "NHWC"
    color = "RGB"             # or "BGR"
    scale = "unit"            # "unit": x / 255; "raw": 0..255
    mean = [0.0, 0.0, 0.0]    # per channel, in the channel order above, after scaling
    std = [1.0, 1.0, 1.0]

    [crop]
    side = "max"              # square crop of the larger box side; "axes": scale w and h separately
    scale = 2.7
    border = "shift"          # "pad": zeros outside the image; "shift": shrink, then move inside
    resize = "stretch"        # or "letterbox" (aspect kept, zero padding, centred)
    interpolation = "pillow_bilinear"  # or "opencv_linear": cv2.resize INTER_LINEAR (no antialiasing)
    box_round = "none"        # the face box before the crop: "truncate" (int(), as MiniFASNet's authors) or "round"
    small_face_ref = 0        # px (0 = the rule is off); faces with min side below it get scale * ref / side ...
    small_face_max_scale = 4.0  # ... capped here (required, > 0, when small_face_ref is set)

    [output]
    name = ""                 # optional: the ONNX output (default: the first)
    type = "logits"           # or "probabilities"
    activation = "softmax"    # for logits: "softmax" or "sigmoid"
    live_index = 1            # int or list of ints; the live probability is their sum
    classes = ["attack", "live"]  # optional: one name per output index; non-live names are attack types

An ensemble manifest lists member manifests:

    [ensemble]
    name = "demo"
    threshold = 0.5
    rule = "mean"
    models = ["fas_a.toml", "fas_b.toml"]

A face detector manifest has one [detector] section (family, input resize `interpolation`,
`score_threshold`, `nms_iou`, `nms_candidates`, `face`: each defaults to what the family's
authors do); `liveness/detect.py` documents its keys.

Unknown keys and sections are refused (a misspelt key would silently fall back to its default),
with the closest known key suggested.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ManifestError(ValueError):
    """A manifest problem; the message names the key."""


MODEL_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("name", "version", "file"),
    "input": ("name", "size", "layout", "color", "scale", "mean", "std"),
    "crop": (
        "side",
        "scale",
        "border",
        "resize",
        "interpolation",
        "box_round",
        "small_face_ref",
        "small_face_max_scale",
    ),
    "output": ("name", "type", "activation", "live_index", "classes"),
}
ENSEMBLE_SECTIONS: dict[str, tuple[str, ...]] = {"ensemble": ("name", "threshold", "rule", "models")}


def _hint(word: str, known: Sequence[str], wrap: str = "'{}'") -> str:
    close = difflib.get_close_matches(word, known, n=1)
    return f"; did you mean {wrap.format(close[0])}?" if close else ""


# Words in a key that say which section's setting it means: `crop_scale` is [crop] scale (the crop
# size factor), not [input] scale (the value scale) that it is spelt closest to.
SECTION_WORDS = {
    "model": "model",
    "input": "input",
    "crop": "crop",
    "output": "output",
    "pixel": "input",
    "box": "crop",
}


def _a(section: str) -> str:
    return f"an [{section}]" if section[0] in "aeiou" else f"a [{section}]"


def _named_section(key: str, sections: Mapping) -> tuple[str | None, str]:
    """(the section a word of `key` names, the key without that word), or (None, key)."""
    words = [w for w in key.lower().replace("-", "_").split("_") if w]
    for i, word in enumerate(words):
        if SECTION_WORDS.get(word) in sections:
            return SECTION_WORDS[word], "_".join(words[:i] + words[i + 1 :])
    return None, key


def _key_hint(key: str, section: str, known: Sequence[str], sections: Mapping) -> str:
    """What an unknown `section.key` was probably meant to be: the same key of another section,
    the key a section-naming word points at, else the closest key of this section, and never a
    same-spelt key with another meaning."""
    homes = [f"[{s}]" for s, keys in sections.items() if s != section and key in keys]
    if homes:
        return f"; it belongs in {' or '.join(homes)}"
    named, rest = _named_section(key, sections)
    if named is None or named == section:
        return f"; did you mean '{rest}'?" if rest in known and rest != key else _hint(key, known)
    if rest in sections[named]:
        return f"; {key} is not {_a(section)} key; did you mean [{named}] {rest}?"
    return f"; {key} is not {_a(section)} key, and [{named}] has no key '{rest or key}'"


def check_keys(table: Mapping, section: str, known: Sequence[str], sections: Mapping | None = None) -> None:
    """Refuse a key `section` does not know, naming `section.key` and what it was probably meant
    to be (see _key_hint; `sections`: every section's keys, to look in the others too)."""
    for key in table:
        if key in known:
            continue
        hint = _key_hint(key, section, known, sections or {section: known})
        raise ManifestError(f"{section}.{key}: unknown key{hint} (known: {', '.join(known)})")


def check_sections(doc: Mapping, known: Sequence[str]) -> None:
    """Refuse a top-level table or key that is not one of the `known` sections."""
    for name, value in doc.items():
        if name in known:
            continue
        listed = ", ".join(f"[{k}]" for k in known)
        if isinstance(value, dict):
            raise ManifestError(f"[{name}]: unknown section{_hint(name, known, '[{}]')} (known: {listed})")
        raise ManifestError(f"{name}: unknown top-level key; keys belong in a section ({listed})")


@dataclass(frozen=True)
class CropRecipe:
    side: str = "max"
    scale: float = 1.0
    border: str = "pad"
    resize: str = "stretch"
    interpolation: str = "pillow_bilinear"
    box_round: str = "none"
    small_face_ref: float = 0.0
    small_face_max_scale: float = 0.0


@dataclass(frozen=True)
class ModelManifest:
    name: str
    file: Path
    version: str = "1"
    input_name: str = ""
    size: tuple[int, int] = (80, 80)  # h, w
    layout: str = "NCHW"
    color: str = "RGB"
    scale: str = "unit"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    crop: CropRecipe = field(default_factory=CropRecipe)
    output_name: str = ""
    output_type: str = "logits"
    activation: str = "softmax"
    live_index: tuple[int, ...] = (1,)
    classes: tuple[str, ...] = ()
    text: str = ""  # the TOML source, stored with the registered model

    @property
    def attack_classes(self) -> dict[int, str]:
        return {i: n for i, n in enumerate(self.classes) if i not in self.live_index}


@dataclass(frozen=True)
class EnsembleManifest:
    name: str
    threshold: float
    rule: str
    models: tuple[ModelManifest, ...]


def get_key(table: dict, section: str, key: str, kind, default=None, choices=None):
    value = table.get(key, default)
    where = f"{section}.{key}"
    if value is None:
        raise ManifestError(f"{where}: missing")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        if choices:  # the allowed values say more than the type: `scale = 255` is "unit" or "raw"
            allowed = ", ".join(f'"{c}"' for c in choices)
            raise ManifestError(f"{where}: expected one of {allowed} (a string in quotes), got {value!r}")
        raise ManifestError(f"{where}: expected {kind.__name__}, got {value!r}")
    if choices and value not in choices:
        raise ManifestError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
    return value


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _triple(table: dict, section: str, key: str, default) -> tuple[float, float, float]:
    value = table.get(key, default)
    if not (isinstance(value, list | tuple) and len(value) == 3 and all(_is_number(v) for v in value)):
        raise ManifestError(f"{section}.{key}: expected 3 numbers, got {value!r}")
    return tuple(float(v) for v in value)


def section_of(doc: dict, name: str, required: bool = True) -> dict:
    table = doc.get(name)
    if table is None:
        if required:
            raise ManifestError(f"[{name}]: missing section")
        return {}
    if not isinstance(table, dict):
        raise ManifestError(f"[{name}]: must be a table")
    return table


def _model_sections(doc: dict) -> tuple[dict, dict, dict, dict]:
    check_sections(doc, tuple(MODEL_SECTIONS))
    tables = []
    for name, known in MODEL_SECTIONS.items():
        table = section_of(doc, name, name in ("model", "input"))
        check_keys(table, name, known, MODEL_SECTIONS)
        tables.append(table)
    return tuple(tables)


def _live_index(o: dict) -> list[int]:
    live = o.get("live_index", 1)
    live = [live] if is_int(live) else live
    if not (isinstance(live, list) and live and all(is_int(v) and v >= 0 for v in live)):
        raise ManifestError(f"output.live_index: expected a non-negative int or a list of them, got {live!r}")
    if len(set(live)) != len(live):
        raise ManifestError(f"output.live_index: an index is listed twice (it would count twice), got {live!r}")
    return live


def _classes(o: dict, live: list[int]) -> list[str]:
    classes = o.get("classes", [])
    if not (isinstance(classes, list) and all(isinstance(v, str) for v in classes)):
        raise ManifestError("output.classes: expected a list of strings")
    if classes and max(live) >= len(classes):
        raise ManifestError(
            f"output.live_index: {max(live)} is beyond output.classes, which names {len(classes)} "
            f"(indices 0..{len(classes) - 1}): {classes!r}"
        )
    return classes


def _crop(c: dict) -> CropRecipe:
    crop = CropRecipe(
        side=get_key(c, "crop", "side", str, "max", ("max", "axes")),
        scale=get_key(c, "crop", "scale", float, 1.0),
        border=get_key(c, "crop", "border", str, "pad", ("pad", "shift")),
        resize=get_key(c, "crop", "resize", str, "stretch", ("stretch", "letterbox")),
        interpolation=get_key(c, "crop", "interpolation", str, "pillow_bilinear", ("pillow_bilinear", "opencv_linear")),
        box_round=get_key(c, "crop", "box_round", str, "none", ("none", "truncate", "round")),
        small_face_ref=get_key(c, "crop", "small_face_ref", float, 0.0),
        small_face_max_scale=get_key(c, "crop", "small_face_max_scale", float, 0.0),
    )
    if crop.scale <= 0:
        raise ManifestError(f"crop.scale: must be positive, got {crop.scale}")
    for key in ("small_face_ref", "small_face_max_scale"):
        if getattr(crop, key) < 0:
            raise ManifestError(f"crop.{key}: must not be negative, got {getattr(crop, key)}")
    if crop.small_face_ref > 0 and crop.small_face_max_scale == 0:
        raise ManifestError(
            f"crop.small_face_max_scale: missing or 0, so crop.small_face_ref = {crop.small_face_ref:g} would "
            "have no effect; give the largest scale (or set small_face_ref = 0 to turn the rule off)"
        )
    return crop


def parse_model(doc: dict, base: Path, text: str = "") -> ModelManifest:
    m, i, c, o = _model_sections(doc)
    size = i.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) and v > 0 for v in size)):
        raise ManifestError(f"input.size: expected [height, width] positive integers, got {size!r}")
    std = _triple(i, "input", "std", [1, 1, 1])
    if any(s == 0 for s in std):
        raise ManifestError("input.std: must not contain 0")
    live = _live_index(o)
    classes = _classes(o, live)
    crop = _crop(c)
    name = get_key(m, "model", "name", str)
    if not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise ManifestError(f"model.name: use letters, digits, '_', '-', '.', got {name!r}")
    return ModelManifest(
        name=name,
        file=(base / get_key(m, "model", "file", str)).resolve(),
        version=str(m.get("version", "1")),
        input_name=get_key(i, "input", "name", str, ""),
        size=(size[0], size[1]),
        layout=get_key(i, "input", "layout", str, "NCHW", ("NCHW", "NHWC")),
        color=get_key(i, "input", "color", str, "RGB", ("RGB", "BGR")),
        scale=get_key(i, "input", "scale", str, "unit", ("unit", "raw")),
        mean=_triple(i, "input", "mean", [0, 0, 0]),
        std=std,
        crop=crop,
        output_name=get_key(o, "output", "name", str, ""),
        output_type=get_key(o, "output", "type", str, "logits", ("logits", "probabilities")),
        activation=get_key(o, "output", "activation", str, "softmax", ("softmax", "sigmoid")),
        live_index=tuple(live),
        classes=tuple(classes),
        text=text,
    )


def read_toml(path: Path) -> tuple[str, dict]:
    """The text of a manifest file and its parsed TOML; ManifestError naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None


def load_manifest(path: str | Path) -> ModelManifest | EnsembleManifest:
    """Load a model or ensemble manifest; raises ManifestError naming the file and key."""
    path = Path(path)
    text, doc = read_toml(path)
    try:
        if "ensemble" in doc:
            check_sections(doc, tuple(ENSEMBLE_SECTIONS))
            e = section_of(doc, "ensemble")
            check_keys(e, "ensemble", ENSEMBLE_SECTIONS["ensemble"])
            members = e.get("models")
            if not (isinstance(members, list) and members and all(isinstance(v, str) for v in members)):
                raise ManifestError("ensemble.models: expected a non-empty list of manifest paths")
            models = []
            for member in members:
                loaded = load_manifest(path.parent / member)
                if not isinstance(loaded, ModelManifest):
                    raise ManifestError(f"ensemble.models: {member} is not a model manifest")
                if any(m.name == loaded.name for m in models):  # scores are keyed by model name
                    raise ManifestError(f"ensemble.models: two members are named {loaded.name!r}")
                models.append(loaded)
            threshold = get_key(e, "ensemble", "threshold", float, 0.5)
            if not 0 <= threshold <= 1:
                raise ManifestError(f"ensemble.threshold: must be in [0, 1], got {threshold}")
            return EnsembleManifest(
                name=get_key(e, "ensemble", "name", str),
                threshold=threshold,
                rule=get_key(e, "ensemble", "rule", str, "mean", ("mean",)),
                models=tuple(models),
            )
        return parse_model(doc, path.parent, text)
    except ManifestError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ManifestError(f"{path}: {exc}") from None


def parse_model_text(text: str, file: Path) -> ModelManifest:
    """Rebuild a stored manifest (e.g. from the database) with its model file at `file`."""
    doc = tomllib.loads(text)
    m = parse_model(doc, file.parent, text)
    return ModelManifest(**{**m.__dict__, "file": file})
