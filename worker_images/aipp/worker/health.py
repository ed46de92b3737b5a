"""Container HEALTHCHECK: `python -m aipp.worker.health` exits 0 while the receive loop is alive.

The loop touches AIPP_WORKER_HEARTBEAT_FILE at least once per long poll (20 s at most); a file
older than AIPP_WORKER_HEALTH_MAX_AGE_SECONDS (default 90) means the loop is stuck. The settings
are read as the worker reads them, without its secrets.
"""

from __future__ import annotations

import os
import sys
import time

from aipp.core.config import SettingsError, read_environment


def main() -> int:
    try:
        settings = read_environment()
    except SettingsError as exc:
        print(f"unhealthy: {exc.code}")
        return 1
    path = settings.worker_heartbeat_file
    if not path:
        return 0  # the heartbeat is switched off: nothing to look at
    try:
        age = time.time() - os.path.getmtime(path)
    except OSError:
        print(f"unhealthy: no heartbeat file {path}")
        return 1
    if age > settings.worker_health_max_age_seconds:
        print(f"unhealthy: last heartbeat {age:.0f} s ago")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
