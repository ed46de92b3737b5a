"""`-c phase=auto`: the capacity planner picks the phase and sizes GPU pools and KEDA."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest

from app import build_app, cdk_json_context, config_from_context
from phases import ConfigError, Phase, TaskType
from phases.loader import EXAMPLES
from stacks.sizing import auto_config

PROD_EXAMPLE = f"@{EXAMPLES / 'prod.example.json'}"


def test_the_briefs_example_deploys_phase_2_with_one_gpu_per_pool(
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = config_from_context(
        {"phase": "auto", "env": "staging", "tasks_per_month": "50000", "avg_audio_minutes": "3"}
    )
    assert config.phase is Phase.GROWTH
    assert config.eks is not None
    for pool in config.eks.gpu_pools:
        assert pool.spot.max == 1 and pool.on_demand.max == 1
    assert config.eks.worker_max_replicas == {TaskType.STT: 1, TaskType.LLM: 1}
    printed = capsys.readouterr().err
    assert printed.startswith("phase=auto: 50,000 tasks/month x 3 min -> phase 2")
    assert "KEDA max replicas llm 1, stt 1" in printed


def test_low_volume_stays_on_managed_services() -> None:
    sizing = auto_config({"phase": "auto", "tasks_per_month": 1000, "avg_audio_minutes": 3})
    assert sizing.config.phase is Phase.MVP
    assert sizing.config.compute == "ecs"


def test_high_volume_goes_to_phase_3_with_pools_sized_to_the_peak() -> None:
    sizing = auto_config(
        {
            "phase": "auto",
            "env": "prod",
            "tasks_per_month": 1_000_000,
            "avg_audio_minutes": 3,
            "overrides": PROD_EXAMPLE,
        }
    )
    assert sizing.config.phase is Phase.SCALE
    eks = sizing.config.eks
    assert eks is not None
    stt = next(p for p in eks.gpu_pools if p.purpose is TaskType.STT)
    assert stt.spot.max == sizing.plan.stt_gpus == eks.worker_max_replicas[TaskType.STT]
    assert stt.spot.max > 4


def test_explicit_overrides_win_over_the_planner() -> None:
    sizing = auto_config(
        {
            "phase": "auto",
            "tasks_per_month": 50000,
            "avg_audio_minutes": 3,
            "overrides": '{"eks": {"worker_max_replicas": {"stt": 9, "llm": 9}}}',
        }
    )
    assert sizing.config.eks is not None
    assert sizing.config.eks.worker_max_replicas[TaskType.STT] == 9


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"avg_audio_minutes": 3}, "phase=auto needs -c tasks_per_month=<number>"),
        ({"tasks_per_month": 5}, "phase=auto needs -c avg_audio_minutes=<number>"),
        ({"tasks_per_month": "many", "avg_audio_minutes": 3}, "invalid tasks_per_month: 'many'"),
        ({"tasks_per_month": 0, "avg_audio_minutes": 3}, "invalid tasks_per_month: must be"),
        ({"tasks_per_month": 10, "avg_audio_minutes": -1}, "invalid avg_audio_minutes: must be"),
    ],
)
def test_auto_needs_a_valid_workload(context: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        auto_config({"phase": "auto", **context})
    assert str(caught.value).startswith(message)


def test_a_mistyped_context_key_is_rejected() -> None:
    app = cdk.App(context={**cdk_json_context(), "tasks_per_mnth": "5"})
    with pytest.raises(ConfigError, match="unknown context key 'tasks_per_mnth'"):
        build_app(app)


def test_three_azs_without_a_region_are_pointed_out(capsys: pytest.CaptureFixture[str]) -> None:
    app = cdk.App(
        context={**cdk_json_context(), "phase": "3", "env": "prod", "overrides": PROD_EXAMPLE}
    )
    config, _ = build_app(app, nag=False)
    assert config.network.max_azs == 3
    assert "network.max_azs is 3 but the VPC spans 2 AZs until" in capsys.readouterr().err
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    overrides = json.dumps({"region": "eu-west-1", "network": {"availability_zones": zones}})
    app = cdk.App(context={**cdk_json_context(), "phase": "3", "overrides": overrides})
    _, stacks = build_app(app, nag=False)
    network = next(s for s in stacks if s.stack_name.endswith("-Network"))
    template = app.synth().get_stack_by_name(network.stack_name).template
    subnets = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::Subnet"]
    assert sorted({r["Properties"]["AvailabilityZone"] for r in subnets}) == zones
    assert "network.max_azs" not in capsys.readouterr().err
