"""`make time-test`: run `make test` once and keep what it cost under benchmarks/results/.

Records the wall time, the CPU seconds of everything it ran (user + system of all its child
processes), pytest's closing line and how busy the machine was when it started (other work on
the same cores stretches the wall time, not the CPU seconds). Exits with `make test`'s code.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime

from support import RESULTS, ROOT, conditions, minutes_and_seconds

SUMMARY = re.compile(r"^=+ (.*(passed|failed).*) in [0-9.]+s.*=+$")


def main() -> int:
    measured_under = conditions()
    command = ["make", "--no-print-directory", "test", *sys.argv[1:]]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(  # noqa: S603 - our own make target
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    summary = ""
    for line in proc.stdout:
        sys.stdout.write(line)
        found = SUMMARY.match(line.strip())
        if found:
            summary = found.group(1)
    code = proc.wait()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"make_test-{stamp}.json"
    document = {
        "when": stamp,
        "label": os.environ.get("BENCH_LABEL", ""),
        "machine": measured_under,
        "command": " ".join(command),
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "pytest": summary,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(
        f"\nmake test: {minutes_and_seconds(wall)} wall, {cpu:.0f} CPU seconds,"
        f" exit {code} ({summary}); wrote {out.relative_to(ROOT)}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
