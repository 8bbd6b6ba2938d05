"""Procedural demo data: a realistic-looking inbox for the demo and the tests, and the training
data of the bundled demo models. numpy + Pillow, deterministic for a seed; no Django.

- `render.py`: one capture (`render_sample`): a scene, a person, a print or replay attack, the
  capturing camera; `training_samples` for the demo models.  Its steps: `scene.py` (backgrounds,
  a person in a scene), `person.py` (a person's appearance and drawing), `attacks.py` (prints and
  screens), `camera.py` (the capturing camera), `paint.py` (drawing primitives).
- `inbox.py`: `generate_inbox` writes `out/<YYYY-MM-DD>/<device_id>/<name>.jpg|.png` + sidecars
  from the demo devices (`DEVICES`), with late files, copies and broken files.
- `stories.py`: planted causes for "what changed" (`make_demo_data --stories`).
"""

from .inbox import days_ending, encode, face_fields, generate_inbox, write_new
from .render import ATTACK_TYPES, DEVICES, TZ, DeviceProfile, Sample, render_sample, training_samples

__all__ = [
    "ATTACK_TYPES",
    "DEVICES",
    "TZ",
    "DeviceProfile",
    "Sample",
    "days_ending",
    "encode",
    "face_fields",
    "generate_inbox",
    "render_sample",
    "training_samples",
    "write_new",
]
