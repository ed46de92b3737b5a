"""`make leftovers` (tools/leftovers.py) on the shared assemblies: what a teardown leaves."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.infra.conftest import Assembly, DeliveryAssembly
from tools import leftovers


def by_type(found: list[leftovers.Leftover]) -> dict[str, list[leftovers.Leftover]]:
    grouped: dict[str, list[leftovers.Leftover]] = {}
    for item in found:
        grouped.setdefault(item.type, []).append(item)
    return grouped


def test_prod_keeps_its_data_secrets_keys_and_logs(assemble: Callable[..., Assembly]) -> None:
    found = by_type(list(leftovers.leftovers(assemble("1", "prod").templates)))
    assert sorted(found) == [
        "AWS::KMS::Key",
        "AWS::Logs::LogGroup",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBSubnetGroup",
        "AWS::S3::Bucket",
        "AWS::SecretsManager::Secret",
    ]
    buckets = {item.name for item in found["AWS::S3::Bucket"]}
    assert (
        "aipp-prod-audio-<AWS::AccountId>-us-east-1" in buckets
    )  # prod's example names its region
    assert all(
        item.why == "kept (RetainExceptOnCreate)" for items in found.values() for item in items
    )
    (database,) = found["AWS::RDS::DBInstance"]
    assert "--no-deletion-protection" in database.remove


def test_staging_buckets_must_be_emptied_before_the_stack_goes(
    assemble: Callable[..., Assembly],
) -> None:
    found = by_type(list(leftovers.leftovers(assemble("1", "staging").templates)))
    assert "AWS::RDS::DBInstance" not in found  # staging's database goes with its stack
    assert {item.why for item in found["AWS::S3::Bucket"]} == {
        "blocks the stack's deletion until it is empty"
    }
    text = leftovers.report([i for items in found.values() for i in items], "phase 1 / staging")
    assert (
        text.splitlines()[1]
        == f"and {len(found['AWS::S3::Bucket'])} bucket(s) must be emptied first"
    )


@pytest.mark.parametrize("phase", ["2", "3"])
def test_every_kept_resource_is_listed(assemble: Callable[..., Assembly], phase: str) -> None:
    assembly = assemble(phase, "prod")
    kept = {
        (stack, logical_id)
        for stack, template in assembly.templates.items()
        for logical_id, resource in template["Resources"].items()
        if resource.get("DeletionPolicy") in ("Retain", "RetainExceptOnCreate", "Snapshot")
    }
    listed = {(item.stack, item.logical_id) for item in leftovers.leftovers(assembly.templates)}
    assert kept and kept <= listed


def test_the_delivery_pipeline_keeps_its_artifacts_key_and_logs(delivery: DeliveryAssembly) -> None:
    found = by_type(list(leftovers.leftovers({"Aipp-Delivery": delivery.template})))
    assert sorted(found) == ["AWS::KMS::Key", "AWS::Logs::LogGroup", "AWS::S3::Bucket"]


def test_nothing_kept_says_so() -> None:
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Delete"}}}
    assert leftovers.report(list(leftovers.leftovers({"S": template})), "x") == (
        "x: deleting these stacks leaves nothing behind."
    )
