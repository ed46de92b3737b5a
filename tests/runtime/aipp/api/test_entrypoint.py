"""`python -m aipp.api` (the image's command): one uvicorn worker process per core it may use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aipp.api.server import available_cores, worker_count

ROOT = Path(__file__).resolve().parents[4]


def cpu_max(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cpu.max"
    path.write_text(text)
    return path


def test_a_cpu_quota_caps_the_process_count_rounded_up(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "150000 100000\n")) == min(cores, 2)
    assert available_cores(cpu_max(tmp_path, "50000 100000\n")) == 1


def test_without_a_quota_every_core_of_the_process_counts(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert available_cores(cpu_max(tmp_path, "max 100000\n")) == cores
    assert available_cores(tmp_path / "absent") == cores


def test_web_concurrency_sets_the_count() -> None:
    assert worker_count({"WEB_CONCURRENCY": "3"}) == 3
    assert worker_count({}) == available_cores()


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_web_concurrency_exits_2_with_one_line(bad: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "worker_images"), "WEB_CONCURRENCY": bad}
    result = subprocess.run(
        [sys.executable, "-m", "aipp.api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: WEB_CONCURRENCY must be a whole number of processes >= 1, not {bad!r}"
    )
