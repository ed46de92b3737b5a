"""tools/delivery.py: what the pipeline's Synth and Smoke steps run, on the example config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools import delivery

EXAMPLE = "@config/delivery.example.json"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "cdk.out"
    assert delivery.main(["synth", "--delivery", EXAMPLE, "--out", str(root)]) == 0
    return root


@pytest.mark.parametrize(
    ("env", "account", "compute"),
    [("staging", "222222222222", "ComputeEks"), ("prod", "333333333333", "ComputeEcs")],
)
def test_each_environment_is_synthesized_at_its_phase_in_its_account(
    out: Path, env: str, account: str, compute: str
) -> None:
    manifest = json.loads((out / env / "manifest.json").read_text())
    assert "missing" not in manifest  # no lookup, so no AWS credentials at synth
    stacks = {
        a["properties"].get("stackName", name): a["environment"]
        for name, a in manifest["artifacts"].items()
        if a["type"] == "aws:cloudformation:stack"
    }
    prefix = f"Aipp-{env.capitalize()}-"
    parts = ["Network", "Edge", "Data", "Messaging", "Pipeline", "Observability", compute]
    assert sorted(stacks) == sorted(prefix + p for p in parts)
    assert set(stacks.values()) == {f"aws://{account}/us-east-1"}


def test_the_plans_say_what_the_smoke_step_expects(out: Path) -> None:
    staging = json.loads((out / "staging.plan.json").read_text())
    assert staging == {
        "env": "staging",
        "phase": 2,
        "serving_stack": "Aipp-Staging-ComputeEks",
        "smoke_secret": "aipp/staging/smoke-api-key",
        "smoke_timeout_seconds": 1200,
        "api_url": None,
        "release_wait_seconds": 2 * 5 * 60 + 15 * 60,  # two 5-minute canary pauses + margin
    }
    prod = json.loads((out / "prod.plan.json").read_text())
    assert prod["serving_stack"] == "Aipp-Prod-ComputeEcs"
    assert prod["release_wait_seconds"] == 15 * 60  # CloudFormation waited for ECS already


def test_smoke_runs_the_smoke_client_with_the_deploys_outputs(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(delivery.smoke, "main", lambda argv: calls.append(argv) or 0)
    outputs = tmp_path / "staging.json"
    outputs.write_text(
        json.dumps(
            {
                "Aipp-Staging-Network": {},
                "Aipp-Staging-ComputeEks": {"ApiUrl": "http://k8s-alb", "ApiRelease": "abc123"},
            }
        )
    )
    plan = str(out / "staging.plan.json")
    assert delivery.main(["smoke", "--plan", plan, "--outputs", str(outputs)]) == 0
    assert calls == [
        [
            "--url", "http://k8s-alb", "--api-key-secret", "aipp/staging/smoke-api-key",
            "--timeout", "1200", "--release", "abc123", "--release-timeout", "1500",
        ]
    ]  # fmt: skip


def test_smoke_without_the_api_output_is_one_line(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "prod.json"
    outputs.write_text(json.dumps({"Aipp-Prod-ComputeEcs": {}}))
    plan = str(out / "prod.plan.json")
    assert delivery.main(["smoke", "--plan", plan, "--outputs", str(outputs)]) == 2
    assert capsys.readouterr().err == (
        "error: no ApiUrl output of Aipp-Prod-ComputeEcs in the deploy's outputs\n"
    )


def test_a_bad_delivery_config_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    bad = json.dumps({"account": "1", "region": "us-east-1"})
    assert delivery.main(["synth", "--delivery", bad, "--out", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid delivery config: account: String should match pattern")
    assert len(err.strip().splitlines()) == 1
