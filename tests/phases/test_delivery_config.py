"""The delivery pipeline's config (phases/delivery.py): the example is valid, every mistake is
one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from app import build_delivery_app, cdk_json_context
from phases import ConfigError, Env, Phase
from phases.delivery import REPO_ROOT, load_delivery

EXAMPLE = json.loads((REPO_ROOT / "config" / "delivery.example.json").read_text())
ZONES = {"network": {"availability_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}}


def example(**changes: Any) -> dict[str, Any]:
    return {**EXAMPLE, **changes}


def test_the_example_names_each_environments_phase_account_and_region() -> None:
    delivery = load_delivery("@config/delivery.example.json")
    staging, prod = (delivery.environment(e).platform(e) for e in Env)
    assert (staging.phase, staging.account, staging.region) == (
        Phase.GROWTH,
        "222222222222",
        "us-east-1",
    )
    assert (prod.phase, prod.account, prod.region) == (Phase.MVP, "333333333333", "us-east-1")
    assert prod.observability.alarm_email == "platform-alerts@example.com"  # its overrides file


def test_phase_names_and_overrides_as_json_work() -> None:
    staging = {
        "phase": "scale",
        "account": "222222222222",
        "region": "eu-west-1",
        "overrides": ZONES,
    }
    config = load_delivery(example(staging=staging)).staging.platform(Env.STAGING)
    assert config.phase is Phase.SCALE
    assert config.network.availability_zones == ("eu-west-1a", "eu-west-1b", "eu-west-1c")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"connection_arn": "arn:aws:iam::111111111111:role/x"},
            "invalid delivery config: connection_arn: String should match pattern",
        ),
        (
            {"repository": "no-owner"},
            "invalid delivery config: repository: String should match pattern",
        ),
        (
            {"branches": "main"},
            "invalid delivery config: branches: unknown field (valid: account, approval_email, branch,",
        ),
        (
            {"prod": {**EXAMPLE["prod"], "phase": "4"}},
            "invalid delivery config: prod.phase: unknown phase '4': choose one of 1, mvp, 2, "
            "growth, 3, scale",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_delivery(example(**changes))
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_environment_without_named_zones_is_refused() -> None:
    staging = {"phase": 2, "account": "222222222222", "region": "us-east-1"}
    with pytest.raises(ConfigError, match=r"^delivery\.staging: name network\.availability_zones"):
        load_delivery(example(staging=staging)).staging.platform(Env.STAGING)


def test_an_environments_own_config_error_names_the_environment() -> None:
    prod = {**EXAMPLE["prod"], "overrides": {"queues": {"mode": "several"}}}
    with pytest.raises(ConfigError, match=r"^delivery\.prod: invalid config: queues\.mode"):
        load_delivery(example(prod=prod)).prod.platform(Env.PROD)


def test_an_empty_or_missing_config_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^delivery: the pipeline's config is empty"):
        load_delivery("")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_delivery(f"@{tmp_path / 'nope.json'}")


def test_per_environment_context_is_refused_beside_the_delivery_config() -> None:
    context = {**cdk_json_context(), "delivery": "@config/delivery.example.json", "overrides": "{}"}
    with pytest.raises(ConfigError, match=r"^-c overrides does not apply with -c delivery"):
        build_delivery_app(cdk.App(context=context), nag=False)
