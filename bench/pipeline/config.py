"""What the benchmark's steps share: the days it scores, its database, its target."""

from __future__ import annotations

import datetime as dt

PG_DBNAME = "koala_bench_pipeline"
TARGET_RATIO = 0.85  # end to end / combined ceiling

DAY_E2E = dt.date(2026, 11, 10)  # the big day, scored by the worker pool
DAY_INPROC = dt.date(2026, 11, 11)  # copies, scored in-process with onnxruntime's default threads
DAY_PROFILE = dt.date(2026, 11, 12)  # copies, scored in-process with 1 thread, timed per stage
