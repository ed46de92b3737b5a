"""`app.py` as the CDK CLI runs it: bad values exit non-zero with one line, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app import cli_context

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def run_app(context: dict[str, str], outdir: Path) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON, output in CDK_OUTDIR."""
    env = {**cli_env(), "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(outdir)}
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"phase": "9"},
            "error: unknown phase '9': choose one of 1, mvp, 2, growth, 3, scale, auto",
        ),
        ({"env": "qa"}, "error: unknown env 'qa': choose one of staging, prod"),
        (
            {"env": "prod"},
            "error: invalid config: edge: prod serves the API over HTTPS only; set edge.domain",
        ),
        (
            {"phse": "2"},
            "error: unknown context key 'phse': valid keys are phase, env, overrides, "
            "transition, tasks_per_month, avg_audio_minutes",
        ),
        ({"overrides": '{"queues": {"mode": "x"}}'}, "error: invalid config: queues.mode"),
        (
            {"phase": "scale", "overrides": '{"eks": {"kubernetes_version": "1.30"}}'},
            "error: invalid config: eks: kubernetes_version 1.30 has no matching kubectl layer",
        ),
    ],
)
def test_bad_context_exits_2_with_one_line(
    context: dict[str, str], message: str, tmp_path: Path
) -> None:
    result = run_app(context, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(message)
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json")), "nothing is written on bad input"


def cli_env() -> dict[str, str]:
    """No AWS credentials or region: synth must not need them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PATH"] = f"{CDK.parent}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def test_cdk_synth_without_context_or_credentials(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--output", str(tmp_path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.glob("*.template.json"))
    stacks = ["ComputeEcs", "Data", "Edge", "Messaging", "Network", "Observability", "Pipeline"]
    assert names == [f"Aipp-Staging-{s}.template.json" for s in sorted(stacks)]
    report = json.loads((tmp_path / "manifest.json").read_text())
    assert all(
        a.get("environment") == "aws://unknown-account/unknown-region"
        for a in report["artifacts"].values()
        if a["type"] == "aws:cloudformation:stack"
    )
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_cdk_cli_reports_a_bad_phase_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CDK), "synth", "-c", "phase=7", "--output", str(tmp_path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert result.returncode != 0
    assert (
        "error: unknown phase '7': choose one of 1, mvp, 2, growth, 3, scale, auto" in result.stderr
    )
    assert "Traceback" not in result.stderr


RUN_AND_REPORT_CDK = """
import runpy, sys
try:
    runpy.run_path("app.py", run_name="__main__")
except SystemExit as exit:
    print(exit.code, "aws_cdk" in sys.modules)
"""


@pytest.mark.parametrize(
    "context",
    [
        {"phse": "2"},
        {"phase": "9"},
        {"overrides": '{"queues": {"mode": "x"}}'},
        {"delivery": "{}", "overrides": "{}"},
    ],
    ids=["key", "phase", "overrides", "delivery"],
)
def test_a_bad_context_is_refused_before_the_cdk_loads(
    context: dict[str, str], tmp_path: Path
) -> None:
    """A mistyped `-c` fails in a fraction of a second: the CDK (a Node.js process) is not
    started for a context that cannot synthesize."""
    env = {**cli_env(), "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_CDK],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert result.stderr.startswith("error: ")


def test_the_context_is_read_as_the_cdk_reads_it(tmp_path: Path) -> None:
    """The CLI moves context that does not fit in CDK_CONTEXT_JSON to a file; both count."""
    overflow = tmp_path / "context.json"
    overflow.write_text(json.dumps({"env": "prod", "phse": "2"}))
    environ = {
        "CDK_CONTEXT_JSON": json.dumps({"phase": "2", "env": "staging"}),
        "CONTEXT_OVERFLOW_LOCATION_ENV": str(overflow),
    }
    assert cli_context(environ) == {"phase": "2", "env": "prod", "phse": "2"}
    assert cli_context({}) == {}
