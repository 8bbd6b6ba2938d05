"""What the gallery benchmark's steps share: its database, its target and the shape of the data."""

from __future__ import annotations

import datetime as dt

PG_DBNAME = "koala_bench"
TARGET_P95_MS = 150.0

BIG_DAY = dt.date(2026, 11, 20)
DAYS_BEFORE, DAYS_AFTER = 25, 5  # the other ~30 days around the big one
MODELS = ["fas_a", "fas_b", "fas_c"]  # a 3-model mean ensemble, like the demo
CROP_SCALE = {"fas_a": 1.0, "fas_b": 1.6, "fas_c": 2.7}
THRESHOLD = 0.484
GATES = ["face_size", "yaw", "pitch", "blur"]
ATTACK_TYPES = ["print", "replay", "mask", "cutout"]
N_DEVICES = 12
