"""`python -m capacity ...` as a user runs it: readable output, JSON, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from capacity_test_paths import FIXTURES, REPO

from capacity.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capacity", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_plan_prints_a_readable_table() -> None:
    done = run("plan", "--tasks-per-month", "50000", "--avg-audio-minutes", "3")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "recommended phase    2 (Growth)" in out
    assert "STT GPUs / LLM GPUs  1 / 1" in out
    assert "transcribe.tiers.0.usd_per_minute" in out  # the assumption that moves it most


def test_plan_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--tasks-per-month", "50000", "--avg-audio-minutes", "3", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    for key in (
        "recommended_phase",
        "stt_gpus",
        "llm_gpus",
        "self_hosted_monthly_usd",
        "managed_monthly_usd",
        "savings_pct",
        "crossover_tasks_per_month",
    ):
        assert key in answer
    assert answer["recommended_phase"] == 2
    assert 1_000 < answer["crossover_tasks_per_month"] < 50_000


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["plan", "--set", "gpu.target_utilisation=1.5"], "gpu.target_utilisation"),
        (
            ["plan", "--set", "gpu.stt.audio_minutes_per_gpu_minute=0"],
            "audio_minutes_per_gpu_minute",
        ),
        (["plan", "--set", "gpu.stt.instance_type=x1.mega"], "gpu.stt.instance_type"),
        (["plan", "--tasks-per-month", "-3"], "tasks_per_month"),
        (["plan", "--avg-audio-minutes", "0"], "avg_audio_minutes"),
        (["plan", "--tasks-per-month", "lots"], "--tasks-per-month"),
        (["cost", "tests"], "manifest.json"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_2(args: list[str], named: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert named in lines[0]
    assert "Traceback" not in done.stderr


def test_crossover_draws_a_small_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "crossover.png"
    assert main(["crossover", "--out", str(out), "--tasks-per-month", "50000"]) == 0
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert 10_000 < len(data) < 200_000
    assert "crossover at" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["crossover.png"]  # no temp file left


def test_crossover_to_a_missing_directory_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crossover", "--out", str(tmp_path / "no" / "c.png")]) == 2
    assert "directory" in capsys.readouterr().err
    assert main(["crossover", "--out", str(tmp_path / "c.txt")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_cost_lists_each_line_and_the_total(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cost", str(FIXTURES / "phase1-mini"), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["total_monthly_usd"] > 100
    assert {"Firewall", "OddService"} <= {
        x["logical_id"] for x in answer["lines"] if not x["priced"]
    }
    assert main(["cost", str(FIXTURES / "phase1-mini")]) == 0
    table = capsys.readouterr().out
    assert "unpriced" in table
    assert "TOTAL USD/month" in table


def test_assumptions_lists_every_value_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assumptions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_path = {r["path"]: r for r in rows}
    assert by_path["transcribe.tiers.0.usd_per_minute"]["value"] == 0.024
    assert all(r["source"] for r in rows)


def test_inputs_outside_the_briefs_ranges_warn_on_stderr_and_still_plan() -> None:
    done = run("plan", "--tasks-per-month", "5000000", "--avg-audio-minutes", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # stdout stays clean JSON
    assert answer["recommended_phase"] in (2, 3)
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert "tasks_per_month" in warnings[0] and "avg_audio_minutes" in warnings[1]
    quiet = run("plan", "--tasks-per-month", "50000", "--avg-audio-minutes", "3")
    assert quiet.stderr == ""


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["plan", "--set", "load.peak_to_average=Infinity"], "load.hourly_profile"),
        (["plan", "--set", "load.hours_per_month=Infinity"], "load.hours_per_month"),
        (["plan", "--set", "load.hours_per_month=NaN"], "load.hours_per_month"),
        (["plan", "--avg-audio-minutes", "nan"], "avg_audio_minutes"),
        (["plan", "--avg-audio-minutes", "inf"], "avg_audio_minutes"),
        (["plan", "--from-usage", "--days", "0"], "days"),
    ],
)
def test_inf_and_nan_end_in_one_line_not_a_traceback(args: list[str], named: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert named in line
