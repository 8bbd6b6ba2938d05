"""Daily-job throughput benchmark (issue 7, items 1-4): the decode ceiling, the inference ceiling
of the active ensemble, their combined ceiling, the daily job end to end on all cores, the worker
processes' memory, and where the time of one image goes.

    python -m bench.pipeline [--images 1500] [--json bench/results/pipeline.json]
                             [--big-share 0.3] [--workers N] [--batch-size 64] [--ort-threads 1]
                             [--database sqlite|postgres] [--inprocess-images 400] [--keep]

It never touches the user's data: a temporary data root (inbox, sorted, thumbs, models) and a
temporary SQLite file (or a fresh PostgreSQL database `koala_bench_pipeline`). Steps:

1. generate an inbox day of N JPEGs (a mix of 640x480 and 1920x1080, `demo.render_sample`;
   each capture rendered once and written 6 times, as rendered and mirrored, at three JPEG
   qualities; kept in a cache folder for the next run) with sidecars (face box, landmarks, capture time; 30 % labelled; no blur and no
   pose: the blur is measured, the pose estimated from the landmarks);
2. decode ceiling: `decode_image` on those files (read + decode) in one process per core, as the
   pipeline does now (full size) and with a draft (reduced) JPEG decode chosen per image so that
   every crop and the thumbnail keep at least their output size in pixels;
3. inference ceiling: the ensemble's models (`LivenessModel.probabilities`) on uint8 crops at batch
   1, 8, 32, 64, as N processes x 1 onnxruntime thread, 1 process x N threads and N x N;
4. end to end: `runs.start_run` + `discover`, then a pool of N worker processes (like
   `celery worker --concurrency N` with KOALA_ORT_THREADS=1, docker-compose) each calling
   `runs.score_batch` on KOALA_BATCH_SIZE ids, then `finish_run`; the rate is images / (first
   batch sent .. finish_run done); each worker's VmRSS / VmHWM after every batch;
5. in-process reference runs (`runs.run_day` on copies of the first images, bytes changed by a
   trailer after the JPEG end so they are new images): onnxruntime default threads (what
   `manage.py score_day` does) and 1 thread (a worker's share), the latter timed per stage by
   wrapping library functions from the outside (no production code is changed);
6. what-ifs on a sample of the files, one process: per-stage cost of the full-size path vs the
   draft path, with the score differences, and row-by-row vs bulk SQL.

Modules: `cli` (the command line), `driver` (the steps above, in order), `corpus` (step 1),
`draft` (the draft decode rules), `ceilings` (steps 2-3 and the combined ceiling), `end_to_end`
(step 4), `stage_timer` (step 5), `whatifs` (step 6), `report` (the printed tables), `machine`
(what ran where), `procs` (process helpers), `config` (the days, the database, the target).
"""

from __future__ import annotations

from bench._common import run_and_write
from bench.pipeline.cli import parse_args
from bench.pipeline.driver import run_pipeline_bench
from bench.pipeline.report import report

__all__ = ["main", "parse_args", "report", "run_pipeline_bench"]


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_and_write(lambda: run_pipeline_bench(args), report, args.json)
