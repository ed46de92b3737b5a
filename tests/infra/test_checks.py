"""cdk-nag and cfn-lint over every phase 1 assembly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import Assembly
from tests.infra.test_phase1 import PER_TYPE

# cfn-lint findings that describe CDK's own output, not our choices.
CFN_LINT = str(Path(sys.executable).parent / "cfn-lint")
CFN_LINT_IGNORED = ["W3005"]  # DependsOn that a Ref already implies (CDK adds both)


def test_no_nag_findings_left(any_phase: Assembly) -> None:
    assert any_phase.findings == []


def test_nag_reports_an_unacknowledged_finding() -> None:
    """The checker is live: a bucket without TLS enforcement or logging is reported."""
    app = cdk.App()
    stack = cdk.Stack(app, "Probe")
    s3.Bucket(stack, "Careless")
    report = AwsSolutionsChecks().validate_scope(app)
    rules = {v.rule_name for v in report.violations}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def cfn_lint(outdir: Path) -> subprocess.CompletedProcess[str]:
    templates = sorted(str(p) for p in outdir.glob("*.template.json"))
    assert templates, f"no templates in {outdir}"
    return subprocess.run(
        [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", *templates],
        capture_output=True,
        text=True,
        check=False,
    )


def test_cfn_lint_passes_on_every_template(any_phase: Assembly) -> None:
    assert len(list(any_phase.outdir.glob("*.template.json"))) == 6
    result = cfn_lint(any_phase.outdir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_per_type_assembly_is_lint_clean(assemble: Callable[..., Assembly]) -> None:
    result = cfn_lint(assemble("1", "staging", PER_TYPE).outdir)
    assert result.returncode == 0, result.stdout + result.stderr
