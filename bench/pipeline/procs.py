"""The benchmark's processes: their CPU use and memory, and pools of spawned ones."""

from __future__ import annotations

import os
import time
import warnings


def rusage() -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def rusage_per_image(before, after, images: int) -> dict:
    if not images:
        return {}
    return {
        "user_ms_per_image": round((after[0] - before[0]) * 1000 / images, 2),
        "sys_ms_per_image": round((after[1] - before[1]) * 1000 / images, 2),
        "minor_faults_per_image": round((after[2] - before[2]) / images),
    }


def proc_mem() -> dict:
    """This process's resident memory now and at its peak (MB), from /proc/self/status."""
    vals = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    vals[k] = int(v.split()[0]) / 1024
    except OSError:
        import resource

        vals["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_mb": round(vals.get("VmRSS", 0.0), 1), "hwm_mb": round(vals.get("VmHWM", 0.0), 1)}


def init_quiet():
    warnings.filterwarnings("ignore")


def ping(_):
    """A pool task that keeps its process busy briefly: mapped once per process, it starts them all."""
    time.sleep(0.2)
    return os.getpid()


def spawn_pool(ctx, processes: int, env: dict, initializer=init_quiet, initargs=()):
    """A pool whose processes start with `env` added to the environment (glibc and Pillow read
    theirs at start / import)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return ctx.Pool(processes, initializer=initializer, initargs=initargs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
