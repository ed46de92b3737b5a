"""`make bench-report`: the README's performance tables are the ones the kept results give, and
runs from two machines are never folded into one median."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "report.py"


def test_the_readme_tables_are_the_ones_the_kept_results_give() -> None:
    done = subprocess.run(
        [sys.executable, str(REPORT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _api_cpu_run(directory: Path, stamp: str, cpu_model: str, create_ms: float) -> None:
    document = {
        "when": stamp,
        "label": "after",
        "machine": {"cpus": 2, "cpu_model": cpu_model, "python": "3.11.7"},
        "requests_per_round": 300,
        "rounds": 5,
        "cpu_ms_per_request": {"create-task": create_ms, "get-task": 0.2},
    }
    (directory / f"api_cpu-{stamp}.json").write_text(json.dumps(document))


@pytest.fixture
def report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    monkeypatch.syspath_prepend(str(REPORT.parent))
    import report as module  # noqa: PLC0415 - benchmarks/ is a folder of scripts, not a package

    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "RESULTS", results)
    return module


def test_runs_of_one_machine_give_their_median(report: Any) -> None:
    for stamp, ms in (
        ("20261128T100000Z", 0.30),
        ("20261128T100100Z", 0.50),
        ("20261128T100200Z", 0.31),
    ):
        _api_cpu_run(report.RESULTS, stamp, "AMD EPYC", ms)
    lines = report.api_cpu_section()
    assert "| create-task |  | 0.31 |  |" in lines
    assert lines[-1].startswith(
        "- after: median of 3 runs (`benchmarks/results/api_cpu-20261128T100000Z.json` and 2 more):"
        " 2 cores (AMD EPYC)"
    )


def test_runs_of_two_machines_are_refused_with_both_named(
    report: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _api_cpu_run(report.RESULTS, "20261128T100000Z", "AMD EPYC", 0.30)
    _api_cpu_run(report.RESULTS, "20261128T100100Z", "Intel Xeon", 0.40)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench-report:begin -->\nold\n<!-- bench-report:end -->\n")
    monkeypatch.setattr(report, "README", readme)
    assert report.main([]) == 2
    assert readme.read_text().count("old") == 1, "the README must be left as it was"
    with pytest.raises(report.MixedMachines) as refused:
        report.api_cpu_section()
    assert str(refused.value) == (
        "benchmarks/results/ holds api_cpu runs from 2 machines"
        " (2 cores (AMD EPYC); 2 cores (Intel Xeon)): keep one machine's runs"
        " (older ones stay in git history)"
    )
