"""Fixed monthly cost of a cloud assembly, line by line, from real CloudFormation shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from capacity_test_paths import FIXTURES

from capacity import AssumptionError, Assumptions
from capacity.assembly import AssemblyCost, estimate_assembly

HOURS = 730


def _line(cost: AssemblyCost, logical_id: str) -> float | None:
    [line] = [x for x in cost.lines if x.logical_id == logical_id]
    return line.monthly_usd


def test_phase1_assembly_prices_each_fixed_resource(defaults: Assumptions) -> None:
    cost = estimate_assembly(FIXTURES / "phase1-mini", defaults)
    assert _line(cost, "VpcPublicSubnet1NATGateway4D7517AA") == pytest.approx(
        (0.045 + 0.005) * HOURS
    )
    assert _line(cost, "ApiLb") == pytest.approx(0.0225 * HOURS + 5.84, abs=0.01)
    assert _line(cost, "VpcSqsEndpoint") == pytest.approx(0.01 * 2 * HOURS)  # 2 subnets = 2 AZs
    assert _line(cost, "VpcS3Endpoint") == 0  # gateway endpoints are free
    assert _line(cost, "Database") == pytest.approx(0.016 * HOURS + 20 * 0.115, abs=0.01)
    assert _line(cost, "Cache") == pytest.approx(0.016 * HOURS, abs=0.01)
    api = 2 * (0.5 * 0.04048 + 1 * 0.004445) * HOURS  # DesiredCount 2, Cpu 512, Memory 1024
    assert _line(cost, "ApiService") == pytest.approx(api, abs=0.01)
    worker = 1 * (1 * 0.03238 + 2 * 0.003556) * HOURS  # ARM64, no DesiredCount: 1
    assert _line(cost, "WorkerService") == pytest.approx(worker, abs=0.01)
    stacks = {x.stack for x in cost.lines}
    assert stacks == {"Phase1Network", "Phase1Data", "Phase1Compute"}
    priced = sum(x.monthly_usd or 0 for x in cost.lines if x.priced)
    assert cost.total_monthly_usd == pytest.approx(priced, abs=0.01)


def test_what_the_model_cannot_price_is_listed_not_dropped(defaults: Assumptions) -> None:
    cost = estimate_assembly(FIXTURES / "phase1-mini", defaults)
    unpriced = {x.logical_id: x.detail for x in cost.lines if not x.priced}
    assert set(unpriced) == {"Firewall", "OddService"}
    assert "DesiredCount" in unpriced["OddService"]
    assert cost.usage_based["AWS::SQS::Queue"] == 2
    assert cost.usage_based["AWS::S3::Bucket"] == 1


def test_phase3_assembly_prices_eks_nodes_aurora_and_redis_shards(defaults: Assumptions) -> None:
    cost = estimate_assembly(FIXTURES / "phase3-mini", defaults)
    assert _line(cost, "Cluster") == pytest.approx(0.10 * HOURS)
    assert _line(cost, "SystemNodes") == pytest.approx(3 * (0.096 * HOURS + 20 * 0.08), abs=0.01)
    spot = defaults.gpu.instances["g5.xlarge"].spot_usd_per_hour
    assert _line(cost, "GpuSpotNodes") == pytest.approx(2 * (spot * HOURS + 100 * 0.08), abs=0.01)
    assert _line(cost, "GpuOnDemandNodes") == 0  # scaled to zero at rest
    assert _line(cost, "AuroraWriter") == pytest.approx(0.26 * HOURS, abs=0.01)
    redis = next(x for x in cost.lines if x.logical_id == "Redis")
    assert redis.quantity == 6  # 3 shards x (1 primary + 1 replica)
    nats = [x for x in cost.lines if x.resource_type == "AWS::EC2::NatGateway"]
    assert len(nats) == 3
    assert [x.logical_id for x in cost.lines if not x.priced] == ["Inference"]


def test_a_directory_that_is_not_an_assembly_is_rejected(
    tmp_path: Path, defaults: Assumptions
) -> None:
    with pytest.raises(AssumptionError, match=r"manifest\.json"):
        estimate_assembly(tmp_path, defaults)
    with pytest.raises(AssumptionError, match="not a directory"):
        estimate_assembly(tmp_path / "nope", defaults)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(AssumptionError, match="template"):
        estimate_assembly(tmp_path, defaults)


def test_a_web_acl_is_priced_per_acl_and_rule(defaults: Assumptions, tmp_path: Path) -> None:
    assembly = tmp_path / "edge"
    assembly.mkdir()
    rules = [{"Name": f"R{i}"} for i in range(4)]
    template = {
        "Resources": {"Acl": {"Type": "AWS::WAFv2::WebACL", "Properties": {"Rules": rules}}}
    }
    (assembly / "Edge.template.json").write_text(json.dumps(template))
    (assembly / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    cost = estimate_assembly(assembly, defaults)
    assert _line(cost, "Acl") == pytest.approx(5.0 + 4 * 1.0)
