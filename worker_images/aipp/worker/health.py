"""Container HEALTHCHECK: `python -m aipp.worker.health` exits 0 while the receive loop is alive.

The loop touches WORKER_HEARTBEAT_FILE at least once per long poll (20 s at most); a file older
than WORKER_HEALTH_MAX_AGE seconds (default 90) means the loop is stuck.
"""

from __future__ import annotations

import os
import sys
import time

DEFAULT_FILE = "/tmp/aipp-worker-heartbeat"  # noqa: S108 - the worker's default marker


def main() -> int:
    path = os.environ.get("WORKER_HEARTBEAT_FILE") or DEFAULT_FILE
    max_age = float(os.environ.get("WORKER_HEALTH_MAX_AGE", "90"))
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        print(f"unhealthy: no heartbeat file {path}")
        return 1
    if age > max_age:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
