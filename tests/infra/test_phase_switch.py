"""One environment grows through the phases in place: every step of 1 -> 2 -> 3 is safe alone.

The steps are those of docs/phase-switch.md (`tools.phase_diff.plan`), synthesized for staging
and prod and compared with `tools.assembly_diff` and `tools.phase_diff.check_step`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from phases import Phase
from stacks import STATEFUL_STACKS
from tests.infra.conftest import Assembly, CfnLint
from tools import assembly_diff, phase_diff
from tools.phase_diff import Step, check_step, plan

ENVS = ["staging", "prod"]
TRANSITIONS = ["1:expand", "1:cutover", "1:retire"]


def _assembly(assemble: Callable[..., Assembly], step: Step, env: str) -> Assembly:
    if step.transition is None:
        return assemble(str(int(step.phase)), env)
    source, name = step.transition.split(":")
    transition = {"transition": {"from_phase": int(source), "step": name}}
    return assemble(str(int(step.phase)), env, transition)


def _walk(assemble: Callable[..., Assembly], env: str, path: list[Phase]) -> list[Any]:
    """(step before, step after, assembly before, assembly after) for each deploy of `path`."""
    steps: list[Step] = [Step(path[0])]
    for start, end in pairwise(path):
        steps += plan(start, end)[1:]
    built = [_assembly(assemble, step, env) for step in steps]
    return [(steps[i - 1], steps[i], built[i - 1], built[i]) for i in range(1, len(steps))]


@pytest.mark.parametrize("env", ENVS)
def test_every_step_from_phase_1_to_3_is_safe_on_its_own(
    assemble: Callable[..., Assembly], env: str
) -> None:
    removed_in: dict[str, list[str]] = {}
    for before, after, old, new in _walk(assemble, env, [Phase.MVP, Phase.GROWTH, Phase.SCALE]):
        diff = assembly_diff.diff_assemblies(_named(old.templates, old), _named(new.templates, new))
        retire = before.retires or after.retires
        problems = check_step(
            _named(old.templates, old), _named(new.templates, new), diff, retire_allowed=retire
        )
        assert problems == [], f"{before.label} -> {after.label}"
        assert not [c for c in diff.stateful_losses if c.action == "replace"]
        losses = [f"{c.stack}/{c.logical_id}" for c in diff.stateful_losses]
        if losses:
            removed_in[after.label] = losses
        for stack in STATEFUL_STACKS:
            assert stack in old.templates and stack in new.templates, "same stateful stacks"
    # Only the retire steps remove anything stateful: the old compute's logs (kept in the
    # account) when its stack goes, then the drained single queue and its DLQ.
    assert set(removed_in) == {"phase 2 (1:retire)", "phase 2"}
    assert all("ComputeEcs/" in loss for loss in removed_in["phase 2 (1:retire)"])
    assert sorted(loss.split("/")[1][:-8] for loss in removed_in["phase 2"]) == [
        "QueuesTasksDlq",
        "QueuesTasksQueue",
    ]


def _named(templates: dict[str, Any], assembly: Assembly) -> dict[str, Any]:
    """Templates under their full stack names (the tests' dicts drop the prefix)."""
    prefix = assembly.config.stack_prefix
    return {f"{prefix}-{name}": template for name, template in templates.items()}


@pytest.mark.parametrize("env", ENVS)
def test_jumping_from_phase_1_to_2_in_one_deploy_is_refused(
    assemble: Callable[..., Assembly], env: str
) -> None:
    old, new = assemble("1", env), assemble("2", env)
    before, after = _named(old.templates, old), _named(new.templates, new)
    diff = assembly_diff.diff_assemblies(before, after)
    problems = check_step(before, after, diff, retire_allowed=False)
    assert any("QueuesTasksQueue" in p and "is removed" in p for p in problems)
    assert any("Pipeline reads" in p for p in problems), "the Lambda still sends to it"


def test_stacks_and_stateful_names_carry_no_phase(any_phase: Assembly) -> None:
    config = any_phase.config
    names = [p.name for p in any_phase.outdir.glob("*.template.json")]
    prefix = f"Aipp-{config.env.value.capitalize()}-"
    assert names and all(n.startswith(prefix) for n in names)
    assert not [n for n in names if "-P1-" in n or "-P2-" in n or "-P3-" in n]
    buckets = [
        json.dumps(b["Properties"]["BucketName"])
        for b in any_phase.resources("AWS::S3::Bucket").values()
    ]
    assert buckets and all(f'"aipp-{config.env.value}-' in b for b in buckets)
    assert not [b for b in buckets if "-p1-" in b or "-p2-" in b or "-p3-" in b]
    for cluster in any_phase.resources("AWS::EKS::Cluster").values():
        assert cluster["Properties"]["Name"] == f"aipp-{config.env.value}"
    tags = {
        t["Key"]: t["Value"]
        for b in any_phase.resources("AWS::S3::Bucket").values()
        for t in b["Properties"]["Tags"]
    }
    assert tags["phase"] == str(int(config.phase)), "the phase is a tag"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("transition", TRANSITIONS)
def test_transition_steps_are_nag_and_lint_clean(
    assemble: Callable[..., Assembly],
    cfn_lint: CfnLint,
    json_snapshot: SnapshotAssertion,
    env: str,
    transition: str,
) -> None:
    step = transition.split(":")[1]
    assembly = assemble("2", env, {"transition": {"from_phase": 1, "step": step}})
    assert assembly.findings == []
    assert cfn_lint.findings(assembly.outdir) == []
    inventory = {
        stack: sorted(f"{k}: {r['Type']}" for k, r in template.get("Resources", {}).items())
        for stack, template in assembly.templates.items()
    }
    assert inventory == json_snapshot


def test_a_change_that_replaces_the_database_is_named_first_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make phase-diff` on a fixture change: the same phase, with the engine switched."""
    code = phase_diff.main(
        [
            "--env",
            "staging",
            "--from",
            "2",
            "--to",
            "2",
            "--to-overrides",
            '{"database": {"engine": "aurora-postgres", "instance_class": "t4g.medium"}}',
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    unsafe = out.split("UNSAFE (", 1)[1].splitlines()
    assert "AWS::RDS::DBInstance DatabaseInstance" in unsafe[1], "the database comes first"
    report = out.split("STATEFUL RESOURCES REPLACED OR REMOVED", 1)[1].splitlines()
    assert "REMOVE  AWS::RDS::DBInstance DatabaseInstance" in report[1]
    assert out.rstrip().endswith("UNSAFE: see the steps above")

    unchanged = phase_diff.main(
        ["--env", "staging", "--from", "2", "--to", "2", "--out", str(tmp_path / "same")]
    )
    assert unchanged == 0


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)
