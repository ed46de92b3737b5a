"""Phases 2-3: the EKS cluster, its node groups, add-ons and data tier.

cdk-nag's EKS rules do not fire on aws-eks-v2 clusters, so the cluster's security properties
are asserted here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns

from app import cdk_json_context
from cdk_constructs.eks_addons import (
    AddonDependencyError,
    ArgoRollouts,
    MetricsServer,
    default_addons,
)
from cdk_constructs.eks_cluster import gpu_nodegroup_name
from cdk_constructs.task_queues import TaskQueues
from phases import ConfigError, load_config
from phases.eks_facts import CLUSTER_AUTOSCALER_RELEASES
from stacks.compute_eks import ComputeEksStack
from stacks.data import DataStack
from stacks.edge import EdgeStack
from stacks.network import NetworkStack
from tests.infra.conftest import Assembly


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["Properties"]


def test_cluster_endpoint_is_private_with_all_logs_and_encrypted_secrets(
    eks_phase: Assembly,
) -> None:
    (cluster,) = eks_phase.resources("AWS::EKS::Cluster").values()
    p = props(cluster)
    assert p["Version"] == eks_phase.config.eks.kubernetes_version  # type: ignore[union-attr]
    vpc = p["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True
    assert vpc["EndpointPublicAccess"] is False
    enabled = {t["Type"] for t in p["Logging"]["ClusterLogging"]["EnabledTypes"]}
    assert enabled == {"api", "audit", "authenticator", "controllerManager", "scheduler"}
    (encryption,) = p["EncryptionConfig"]
    assert encryption["Resources"] == ["secrets"]
    assert "KeyArn" in encryption["Provider"]
    keys = eks_phase.resources("AWS::KMS::Key")
    assert any(k["Properties"].get("EnableKeyRotation") for k in keys.values())


def test_public_endpoint_only_when_asked_and_only_from_given_cidrs(
    assemble: Callable[..., Assembly],
) -> None:
    assembly = assemble(
        "2",
        "staging",
        {"eks": {"endpoint_public": True, "public_access_cidrs": ["203.0.113.0/24"]}},
    )
    (cluster,) = assembly.resources("AWS::EKS::Cluster").values()
    vpc = props(cluster)["ResourcesVpcConfig"]
    assert vpc["EndpointPublicAccess"] is True
    assert vpc["PublicAccessCidrs"] == ["203.0.113.0/24"]
    assert assembly.findings == []


def nodegroups(assembly: Assembly) -> dict[str, dict[str, Any]]:
    return {
        props(n).get("NodegroupName", key): props(n)
        for key, n in assembly.resources("AWS::EKS::Nodegroup").items()
    }


def test_gpu_pools_have_spot_and_on_demand_groups_on_the_nvidia_al2023_ami(
    eks_phase: Assembly,
) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    groups = nodegroups(eks_phase)
    system = [g for g in groups.values() if g["Labels"] == {"aipp.io/pool": "system"}]
    assert len(system) == 1
    assert system[0]["CapacityType"] == "ON_DEMAND"
    assert system[0]["ScalingConfig"]["MinSize"] == eks.system_nodes.size.min
    for pool in eks.gpu_pools:
        for capacity, bounds in (("spot", pool.spot), ("ondemand", pool.on_demand)):
            label = "spot" if capacity == "spot" else "on-demand"
            found = [
                (name, g)
                for name, g in groups.items()
                if g["Labels"].get("aipp.io/pool") == pool.name
                and g["Labels"].get("aipp.io/capacity-type") == label
            ]
            if bounds.max == 0:
                assert not found
                continue
            ((name, group),) = found
            assert re.fullmatch(rf"{pool.name}-{capacity}-[0-9a-f]{{8}}", name)
            assert group["AmiType"] == "AL2023_x86_64_NVIDIA"
            assert group["CapacityType"] == ("SPOT" if capacity == "spot" else "ON_DEMAND")
            assert group["Taints"] == [
                {"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NO_SCHEDULE"}
            ]
            assert group["Labels"]["aipp.io/pool"] == pool.name
            assert group["Labels"]["aipp.io/capacity-type"] == (
                "spot" if capacity == "spot" else "on-demand"
            )
            assert group["ScalingConfig"] == {"MinSize": bounds.min, "MaxSize": bounds.max}
            assert group["InstanceTypes"] == list(pool.instance_types)
            assert group["Labels"]["k8s.amazonaws.com/accelerator"].startswith("nvidia-")


def test_no_node_group_has_a_template_desired_size(eks_phase: Assembly) -> None:
    """A DesiredSize in the template is sent again whenever the bounds change, resetting the
    group to it and draining the nodes Cluster Autoscaler added."""
    for group in nodegroups(eks_phase).values():
        assert "DesiredSize" not in group["ScalingConfig"]


def test_llm_pools_have_one_gpu_memory_size() -> None:
    with pytest.raises(ConfigError, match="one GPU memory size"):
        load_config(
            "3",
            "staging",
            {
                "eks": {
                    "gpu_pools": [
                        {
                            "name": "stt",
                            "purpose": "stt",
                            "instance_types": ["g6.xlarge"],
                            "spot": {"min": 0, "max": 1},
                            "on_demand": {"min": 0, "max": 1},
                        },
                        {
                            "name": "llm",
                            "purpose": "llm",
                            "instance_types": ["g6e.xlarge", "g5.xlarge"],
                            "spot": {"min": 0, "max": 1},
                            "on_demand": {"min": 0, "max": 1},
                        },
                    ]
                }
            },
        )


def test_staging_and_prod_sizes_follow_the_design(assemble: Callable[..., Assembly]) -> None:
    staging, prod = assemble("2", "staging"), assemble("2", "prod")

    def gpus_at_min(a: Assembly) -> int:
        return sum(
            g["ScalingConfig"]["MinSize"]
            for g in nodegroups(a).values()
            if g["AmiType"] == "AL2023_x86_64_NVIDIA"
        )

    def system_min(a: Assembly) -> int:
        (g,) = [g for g in nodegroups(a).values() if g["Labels"] == {"aipp.io/pool": "system"}]
        return int(g["ScalingConfig"]["MinSize"])

    assert (system_min(staging), gpus_at_min(staging)) == (3, 1)
    assert system_min(prod) >= 6 and gpus_at_min(prod) >= 4


def test_gpu_pools_can_scale_from_zero_with_node_template_tags(eks_phase: Assembly) -> None:
    if eks_phase.config.env.value == "staging":
        stt = [
            g for g in nodegroups(eks_phase).values() if g["Labels"].get("aipp.io/purpose") == "stt"
        ]
        assert stt and all(g["ScalingConfig"]["MinSize"] == 0 for g in stt), "STT starts at zero"
    tag_calls = [
        json.dumps(props(r))
        for r in eks_phase.resources("Custom::AWS").values()
        if "createOrUpdateTags" in json.dumps(props(r))
    ]
    gpu_groups = [
        g for g in nodegroups(eks_phase).values() if g["AmiType"] == "AL2023_x86_64_NVIDIA"
    ]
    assert len(tag_calls) == len(gpu_groups)
    prefix = "k8s.io/cluster-autoscaler/node-template"
    for call in tag_calls:
        for key in (
            f"{prefix}/resources/nvidia.com/gpu",
            f"{prefix}/taint/nvidia.com/gpu",
            f"{prefix}/label/aipp.io/pool",
            f"{prefix}/label/aipp.io/capacity-type",
        ):
            assert key in call
        assert "true:NoSchedule" in call


def test_launch_templates_require_imdsv2_and_encrypt_volumes(eks_phase: Assembly) -> None:
    templates = eks_phase.resources("AWS::EC2::LaunchTemplate")
    assert len(templates) == len(eks_phase.resources("AWS::EKS::Nodegroup"))
    for template in templates.values():
        data = props(template)["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        # Pods cannot reach the node's credentials: they act with their IRSA role only.
        assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        for device in data["BlockDeviceMappings"]:
            assert device["Ebs"]["Encrypted"] is True


def test_every_chart_version_is_pinned(eks_phase: Assembly) -> None:
    charts = {
        props(c)["Chart"]: props(c)
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
    }
    assert {
        "nvidia-device-plugin",
        "cluster-autoscaler",
        "keda",
        "metrics-server",
        "argo-rollouts",
        "aws-load-balancer-controller",
    } <= set(charts)
    for name, chart in charts.items():
        assert chart.get("Version"), f"chart {name} has no pinned version"
        assert chart["Repository"].startswith("https://")
    assert charts["keda"]["Version"] == "2.20.2", "2.16 does not support Kubernetes 1.34"
    assert charts["argo-rollouts"]["Version"] == "2.41.0"
    assert charts["aws-load-balancer-controller"]["Version"] == "3.2.2"


def test_cluster_autoscaler_matches_the_kubernetes_version(eks_phase: Assembly) -> None:
    (chart,) = [
        props(c)
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if props(c)["Chart"] == "cluster-autoscaler"
    ]
    version = eks_phase.config.eks.kubernetes_version  # type: ignore[union-attr]
    tag = rendered_json(chart["Values"])["image"]["tag"]
    assert tag.startswith(f"v{version}."), "CA's minor version is the cluster's"
    assert (chart["Version"], tag) == CLUSTER_AUTOSCALER_RELEASES[version]


def test_a_kubernetes_version_without_a_pinned_autoscaler_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"no Cluster Autoscaler release is pinned for Kubernetes 1\.36"
    ):
        load_config("2", "staging", {"eks": {"kubernetes_version": "1.36"}})


def test_argo_rollouts_reads_cloudwatch_with_its_own_role(eks_phase: Assembly) -> None:
    (chart,) = [
        props(c)
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if props(c)["Chart"] == "argo-rollouts"
    ]
    values = rendered_json(chart["Values"])
    assert values["serviceAccount"] == {"create": False, "name": "argo-rollouts"}
    (env,) = values["controller"]["extraEnv"]
    assert env["name"] == "AWS_REGION"
    argo = [s for key, s in statements(eks_phase) if "ArgoRollouts" in key]
    assert [s["Action"] for s in argo] == ["cloudwatch:GetMetricData"]


def test_replacing_a_gpu_group_gets_a_new_name_and_keeps_its_priority() -> None:
    config = load_config("2", "staging")
    assert config.eks is not None
    pool = config.eks.gpu_pools[0]
    bigger = pool.model_copy(update={"instance_types": ("g5.2xlarge",)})
    assert gpu_nodegroup_name(pool, spot=True) != gpu_nodegroup_name(bigger, spot=True)
    assert gpu_nodegroup_name(pool, spot=True) == gpu_nodegroup_name(pool, spot=True)
    # A third AZ changes the group's subnets, which EKS can only do by replacing it.
    two, three = ["us-east-1a", "us-east-1b"], ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert gpu_nodegroup_name(pool, True, two) != gpu_nodegroup_name(pool, True, three)
    asg = f"eks-{gpu_nodegroup_name(pool, spot=True)}-0ac5f1c2-1d2e-4f60-9a1b-2c3d4e5f6a7b"
    assert re.fullmatch(".*-spot-.*", asg) and not re.fullmatch(".*-ondemand-.*", asg)


def test_cluster_autoscaler_prefers_spot_then_on_demand(eks_phase: Assembly) -> None:
    (chart,) = [
        props(c)
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if props(c)["Chart"] == "cluster-autoscaler"
    ]
    values = rendered_json(chart["Values"])
    assert values["extraArgs"]["expander"] == "priority"
    assert values["expanderPriorities"] == {
        "50": [".*-spot-.*"],
        "10": [".*-ondemand-.*"],
        "1": [".*"],
    }
    c = eks_phase.config
    assert values["autoDiscovery"] == {"clusterName": f"aipp-{c.env.value}"}
    assert values["rbac"]["serviceAccount"] == {"create": False, "name": "cluster-autoscaler"}


def rendered_json(value: Any) -> Any:
    """Helm values CDK renders as a JSON string joined with tokens; tokens become `<token>`."""
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        value = sep.join(p if isinstance(p, str) else "<token>" for p in parts)
    return json.loads(value) if isinstance(value, str) else value


def statements(assembly: Assembly) -> list[tuple[str, dict[str, Any]]]:
    """Every IAM policy statement, with the `<stack>/<logical id>` of its policy."""
    return [
        (key, s)
        for key, policy in assembly.resources("AWS::IAM::Policy").items()
        for s in props(policy)["PolicyDocument"]["Statement"]
    ]


def test_keda_may_read_queue_attributes_of_our_queues_only(eks_phase: Assembly) -> None:
    keda = [s for key, s in statements(eks_phase) if "Keda" in key]
    assert keda
    for s in keda:
        resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        assert len(resources) == 2  # the stt and llm queues
        assert "*" not in json.dumps(resources)


def test_no_star_resource_unless_the_action_needs_it(eks_phase: Assembly) -> None:
    needs_star = {
        # no resource-level permissions (AWS service authorization reference)
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "autoscaling:DescribeTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceTypesFromInstanceRequirements",
        "eks:DescribeNodegroup",
        "ecr:GetAuthorizationToken",
        "s3:PutBucketNotification",
        "logs:PutRetentionPolicy",
        "logs:DeleteRetentionPolicy",
        "cloudwatch:GetMetricData",  # Argo Rollouts' canary analysis
        "elasticloadbalancing:DescribeLoadBalancers",  # finding the Ingress ALB by name
        "route53:ListHostedZones",  # ExternalDNS; its record changes are on the zone only
        "route53:ListTagsForResources",
    }
    conditioned = {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
    }
    for key, s in statements(eks_phase):
        if s.get("Resource") != "*" or "AwsLoadBalancerController" in key:
            continue  # the controller's published policy is acknowledged finding by finding
        actions = {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
        if actions <= conditioned:
            assert "Condition" in s, f"{actions} on '*' must be conditioned"
            continue
        assert actions <= needs_star, f"unexpected Resource '*' for {sorted(actions)} in {key}"


def test_phase2_data_tier_is_multi_az_with_redis_failover(
    assemble: Callable[..., Assembly],
) -> None:
    prod = assemble("2", "prod")
    (db,) = prod.resources("AWS::RDS::DBInstance").values()
    assert props(db)["MultiAZ"] is True and props(db)["StorageEncrypted"] is True
    (redis,) = prod.resources("AWS::ElastiCache::ReplicationGroup").values()
    assert props(redis)["AutomaticFailoverEnabled"] is True
    assert props(redis)["MultiAZEnabled"] is True
    assert props(redis)["NumCacheClusters"] == 2
    queues = prod.resources("AWS::SQS::Queue")
    assert (
        len(
            [
                k
                for k, q in queues.items()
                if k.startswith("Messaging/") and "RedrivePolicy" in props(q)
            ]
        )
        == 2
    )


def test_phase3_grows_the_phase2_data_tier_in_place(assemble: Callable[..., Assembly]) -> None:
    """RDS PostgreSQL Multi-AZ with a read replica (the brief rejects Aurora) and a larger
    Redis replication group, under the logical ids phase 2 uses: modified, never replaced."""
    two, three = assemble("2", "prod"), assemble("3", "prod")
    assert not three.resources("AWS::RDS::DBCluster")
    instances = three.resources("AWS::RDS::DBInstance")
    (primary,) = [k for k, r in instances.items() if "SourceDBInstanceIdentifier" not in props(r)]
    (replica,) = [k for k, r in instances.items() if "SourceDBInstanceIdentifier" in props(r)]
    assert primary in two.resources("AWS::RDS::DBInstance")
    assert props(instances[primary])["MultiAZ"] is True
    assert props(instances[primary])["DBInstanceClass"] == "db.r7g.large"
    assert props(instances[replica])["DBInstanceClass"] == "db.r7g.large"
    ((key, redis),) = three.resources("AWS::ElastiCache::ReplicationGroup").items()
    assert key in two.resources("AWS::ElastiCache::ReplicationGroup")
    assert props(redis)["ClusterMode"] == "disabled"
    assert props(redis)["NumCacheClusters"] == 3
    assert props(redis)["AutomaticFailoverEnabled"] is True


def test_dashboards_and_alarms_cover_each_queue_and_gpus(eks_phase: Assembly) -> None:
    alarms = " ".join(eks_phase.resources("AWS::CloudWatch::Alarm"))
    for name in ("QueueAgeSTT", "QueueAgeLLM", "DlqNotEmptySTT", "DlqNotEmptyLLM"):
        assert name in alarms
    bodies = {
        key.split("/")[0]: json.dumps(props(d)["DashboardBody"])
        for key, d in eks_phase.resources("AWS::CloudWatch::Dashboard").items()
    }
    assert "node_gpu_utilization" in bodies["ComputeEks"]
    assert "Queue stt" in bodies["Observability"] and "Queue llm" in bodies["Observability"]


def test_a_missing_addon_dependency_fails_synth_clearly(tmp_path: Path) -> None:
    config = load_config("2", "staging")
    assert config.eks is not None
    without_alb = [
        a for a in default_addons(config.eks) if a.name != "aws-load-balancer-controller"
    ]
    app = cdk.App(outdir=str(tmp_path), context=cdk_json_context())
    with pytest.raises(AddonDependencyError) as caught:
        build_with_addons(app, without_alb)
    assert str(caught.value) == (
        "add-on 'argo-rollouts' depends on 'aws-load-balancer-controller', which is not enabled; "
        "enabled: nvidia-device-plugin, cluster-autoscaler, metrics-server, keda, "
        "argo-rollouts, container-insights"
    )


def build_with_addons(app: cdk.App, addons: list[Any]) -> None:
    config = load_config("2", "staging")
    network = NetworkStack(app, "N", config=config)
    data = DataStack(app, "D", config=config, vpc=network.vpc)
    shared = cdk.Stack(app, "Q")
    queues = TaskQueues(shared, "Queues", config=config.queues)
    ComputeEksStack(
        app,
        "C",
        config=config,
        vpc=network.vpc,
        edge=EdgeStack(app, "E", config=config),
        audio=data.audio,
        models=data.models,
        database=data.database,
        cache=data.cache,
        queues=queues,
        alarm_topic=sns.Topic(shared, "Alarms"),
        addons=addons,
    )


def test_addons_are_small_classes_with_declared_dependencies() -> None:
    assert ArgoRollouts.depends_on == ("aws-load-balancer-controller",)
    assert MetricsServer.depends_on == ()


def test_admin_roles_from_config_get_cluster_admin_access_entries(
    assemble: Callable[..., Assembly],
) -> None:
    arn = "arn:aws:iam::123456789012:role/Platform-Admins"
    assembly = assemble("2", "staging", {"eks": {"admin_role_arns": [arn]}})
    entries = [
        props(e)
        for e in assembly.resources("AWS::EKS::AccessEntry").values()
        if props(e).get("PrincipalArn") == arn
    ]
    (entry,) = entries
    (policy,) = entry["AccessPolicies"]
    assert policy["AccessScope"] == {"Type": "cluster"}
    assert "AmazonEKSClusterAdminPolicy" in json.dumps(policy["PolicyArn"])
    assert assembly.findings == []
