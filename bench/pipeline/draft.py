"""Which JPEG reduction (draft decode) each file may be decoded at: the looser rule of the
benchmark (every crop at least its model's input size) and the rule `Pipeline` applies itself."""

from __future__ import annotations

from collections import defaultdict

from bench._common import DEMO_MANIFEST
from liveness.pipeline import THUMB_SIDE
from liveness.quality import BLUR_SIDE  # the face region is resized to this for the blur measure


def draft_min_side(models, box, w: int, h: int) -> int | None:
    """`decode_image(min_side=...)` for the largest JPEG reduction (1/2, 1/4, 1/8) that keeps every
    model's crop at least its input size in pixels, the face region at least BLUR_SIDE px (the
    blur measure resizes it to that) and the thumbnail THUMB_SIDE px. None: decode at full size."""
    from liveness.boxes import Box
    from liveness.crop import crop_rect

    b = Box(*box)
    limit = min(max(w, h) / THUMB_SIDE, b.w / BLUR_SIDE, b.h / BLUR_SIDE)
    for m in models:
        x0, y0, x1, y1 = crop_rect(m.crop, b, w, h)
        ih, iw = m.size
        limit = min(limit, (x1 - x0) / iw, (y1 - y0) / ih)
    r = 1
    while r < 8 and r * 2 <= limit:
        r *= 2
    return min(w, h) // r if r > 1 else None


def pipeline_min_sides(files: list[dict]) -> str:
    """files[i]["min_side_pipeline"]: the reduction `Pipeline` itself chooses for the file (its
    `max_reduction` rule, from the sidecar box), as a `decode_image(min_side=...)`. Returns a note."""
    from liveness.boxes import Box
    from liveness.ensemble import Ensemble
    from liveness.manifest import load_manifest
    from liveness.pipeline import Pipeline
    from liveness.runtime import LivenessModel

    em = load_manifest(DEMO_MANIFEST)
    ens = Ensemble(
        name=em.name, models=[LivenessModel(m, threads=1) for m in em.models], threshold=em.threshold, rule=em.rule
    )
    pipe = Pipeline(ens)
    rule = getattr(pipe, "max_reduction", None) if getattr(pipe, "draft", False) else None
    for f in files:
        r = 1
        if rule is not None:
            limit = rule(Box(*f["box"]))(f["w"], f["h"])
            while r < 8 and r * 2 <= limit:
                r *= 2
        f["min_side_pipeline"] = min(f["w"], f["h"]) // r if r > 1 else None
    return "Pipeline.max_reduction" if rule is not None else "full size (Pipeline has no draft rule)"


def reductions(files: list[dict], key: str) -> dict:
    out: dict[str, int] = defaultdict(int)
    for f in files:
        ms = f[key]
        out[f"{f['w']}x{f['h']} 1/{min(f['w'], f['h']) // ms if ms else 1}"] += 1
    return dict(sorted(out.items()))


def set_min_sides(files: list[dict], models) -> str:
    """Both rules' `min_side` on every file ("min_side", "min_side_pipeline"); returns Pipeline's rule."""
    for f in files:
        f["min_side"] = draft_min_side(models, f["box"], f["w"], f["h"])
    return pipeline_min_sides(files)
