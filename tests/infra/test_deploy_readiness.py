"""What a first real deploy and every routine update need, read off the synthesized templates."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.infra.conftest import Assembly
from tests.infra.test_eks_manifests import applied

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-1111-2222-3333-444455556666"


def _statements(assembly: Assembly, role_hint: str) -> list[dict[str, Any]]:
    return [
        s
        for key, policy in assembly.resources("AWS::IAM::Policy").items()
        if role_hint in key
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_workers_may_protect_their_own_task_from_scale_in(phase1: Assembly) -> None:
    """Without these, ECS stops a busy worker 120 s into a scale-in while jobs run 900 s."""
    worker = [s for s in _statements(phase1, "Worker") if "ecs:" in json.dumps(s["Action"])]
    (statement,) = worker
    assert sorted(statement["Action"]) == ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"]
    resource = json.dumps(statement["Resource"])
    assert ":task/" in resource and '"Ref": "Cluster' in resource, "this cluster's tasks only"
    api = [s for s in _statements(phase1, "ApiTask") if "ecs:" in json.dumps(s["Action"])]
    assert api == []


def _listeners(assembly: Assembly) -> dict[int, tuple[str, dict[str, Any]]]:
    return {
        r["Properties"]["Port"]: (key, r["Properties"])
        for key, r in assembly.resources("AWS::ElasticLoadBalancingV2::Listener").items()
    }


def test_turning_https_on_keeps_the_one_port_80_listener(
    assemble: Callable[..., Assembly],
) -> None:
    """A second port-80 listener beside the old one is rejected by the load balancer and rolls
    the update back: the same listener must switch from forwarding to redirecting."""
    plain = _listeners(assemble("1", "staging"))
    https = _listeners(assemble("1", "staging", {"edge": {"certificate_arn": CERT}}))
    assert sorted(plain) == [80]
    assert sorted(https) == [80, 443]
    assert plain[80][0] == https[80][0], "the port-80 listener keeps its logical id"
    assert plain[80][1]["DefaultActions"][0]["Type"] == "forward"
    (redirect,) = https[80][1]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    forward = https[443][1]["DefaultActions"][0]
    assert forward["TargetGroupArn"] == plain[80][1]["DefaultActions"][0]["TargetGroupArn"], (
        "the target group (and the service attached to it) stays as it is"
    )


def test_retained_resources_are_not_kept_after_a_failed_first_create(any_phase: Assembly) -> None:
    """`Retain` would keep fixed-name buckets and a database whose secret is gone after a
    rolled-back first create; `RetainExceptOnCreate` keeps them on every later change only."""
    policies = {
        key: (r["Type"], r.get("DeletionPolicy"))
        for stack, template in any_phase.templates.items()
        for key, r in ((f"{stack}/{k}", v) for k, v in template.get("Resources", {}).items())
    }
    assert not [k for k, (_, policy) in policies.items() if policy == "Retain"]
    database = [  # the primary (read replicas hold no data of their own)
        policy
        for key, (kind, policy) in policies.items()
        if kind in ("AWS::RDS::DBInstance", "AWS::RDS::DBCluster") and "Replica" not in key
    ]
    secret = [
        policy
        for key, (kind, policy) in policies.items()
        if kind == "AWS::SecretsManager::Secret"
        and ("DatabaseMasterSecret" in key or "DatabaseAppSecret" in key)
    ]
    assert secret and set(secret) == set(database), "the password lives as long as the database"
    if any_phase.config.database.deletion_protection:
        assert set(database) == {"RetainExceptOnCreate"}
        buckets = {p for t, p in policies.values() if t == "AWS::S3::Bucket"}
        assert buckets == {"RetainExceptOnCreate"}


def _upload_function(assembly: Assembly) -> dict[str, Any]:
    (fn,) = [
        f["Properties"]
        for f in assembly.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("PackageType") == "Image"
    ]
    return fn


def test_upload_check_is_bounded_without_reserving_account_concurrency(
    phase1: Assembly, assemble: Callable[..., Assembly]
) -> None:
    """A new account may not be allowed to reserve concurrency; the event source mapping's
    maximum concurrency bounds the function (and its database connections) instead."""
    assert "ReservedConcurrentExecutions" not in _upload_function(phase1)
    (mapping,) = phase1.resources("AWS::Lambda::EventSourceMapping").values()
    limit = mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert limit == phase1.config.upload_check.max_concurrency
    reserved = assemble("1", "staging", {"upload_check": {"reserved_concurrency": 10}})
    assert _upload_function(reserved)["ReservedConcurrentExecutions"] == 10


def _pool_sizes(assembly: Assembly) -> dict[str, set[int]]:
    """AIPP_DB_POOL_MAX of every container and function that reaches the database, by kind."""
    found: dict[str, set[int]] = {}
    for task in assembly.resources("AWS::ECS::TaskDefinition").values():
        for c in task["Properties"]["ContainerDefinitions"]:
            env = {e["Name"]: e["Value"] for e in c.get("Environment", [])}
            if "AIPP_WORKER_TASK_TYPES" in env:
                kind = "worker"
            elif c.get("Command") == ["python", "-m", "aipp.admin", "migrate"]:
                kind = "migration"
            else:
                kind = "api"
            found.setdefault(kind, set()).add(int(env["AIPP_DB_POOL_MAX"]))
    for obj in applied(assembly):  # the EKS pods (Rollouts and the migration Job)
        if obj["kind"] not in ("Rollout", "Job"):
            continue
        kind = {"Job": "migration"}.get(obj["kind"]) or (
            "api" if obj["metadata"]["name"] == "api" else "worker"
        )
        for c in obj["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e["value"] for e in c.get("env", [])}
            found.setdefault(kind, set()).add(int(env["AIPP_DB_POOL_MAX"]))
    fn = _upload_function(assembly)
    found["upload_check"] = {int(fn["Environment"]["Variables"]["AIPP_DB_POOL_MAX"])}
    return found


def test_every_connection_pool_deployed_is_the_one_the_budget_counts(
    any_phase: Assembly,
) -> None:
    config = any_phase.config
    pools = config.database.pools.model_dump()
    found = _pool_sizes(any_phase)
    for kind, sizes in found.items():
        assert sizes == {pools[kind]}, kind
    if "eks" in config.computes:
        assert {"api", "worker", "migration"} <= set(found), "the pods are counted too"
    limit = config.database.connection_limit()
    assert limit is not None
    assert sum(n * pool for _, n, pool in config.connection_users()) <= limit
