"""`python -m aipp.api`: the task API under uvicorn, one worker process per available core.

WEB_CONCURRENCY (uvicorn's own variable) sets the number of processes; by default it is the
number of cores this process may use: the container's CPU quota (cgroup v2 `cpu.max`, as ECS
and Kubernetes set it) where there is one, else the cores the scheduler gives it. Host and port
come from UVICORN_HOST / UVICORN_PORT, as with the plain `uvicorn` command.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import uvicorn

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cores(cpu_max: Path = CPU_MAX) -> int:
    """Cores this process may use: min(scheduler affinity, cgroup quota rounded up), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the scheduler's answer stands
    return max(1, cores)


def worker_count(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return available_cores()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a whole number of processes >= 1, not {raw!r}")
    return int(raw)


def main() -> int:
    try:
        workers = worker_count()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "aipp.api.main:app",
        host=os.environ.get("UVICORN_HOST", "127.0.0.1"),
        port=int(os.environ.get("UVICORN_PORT", "8000")),
        workers=workers,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "*"),
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
