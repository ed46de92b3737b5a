"""cdk-nag and cfn-lint over every phase 1 assembly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from cdk_nag import AwsSolutionsChecks

from tests.infra.conftest import Assembly, CfnLint
from tests.infra.test_phase1 import PER_TYPE


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


def test_cfn_lint_passes_on_every_template(any_phase: Assembly, cfn_lint: CfnLint) -> None:
    assert len(list(any_phase.outdir.glob("*.template.json"))) == 7
    assert cfn_lint.findings(any_phase.outdir) == []


def test_per_type_assembly_is_lint_clean(
    assemble: Callable[..., Assembly], cfn_lint: CfnLint
) -> None:
    assert cfn_lint.findings(assemble("1", "staging", PER_TYPE).outdir) == []


def test_cfn_lint_reports_a_broken_template(tmp_path: Path, cfn_lint: CfnLint) -> None:
    """The linter is live: a queue with an unknown property and a bad reference is reported."""
    template = {
        "Resources": {
            "Queue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {"VisibilityTimeout": {"Ref": "Missing"}, "Colour": "red"},
            }
        }
    }
    (tmp_path / "Probe.template.json").write_text(json.dumps(template))
    rules = {line.split()[1] for line in cfn_lint.findings(tmp_path)}
    assert rules == {"E3002", "E1020"}  # the unknown property, the reference to nothing
