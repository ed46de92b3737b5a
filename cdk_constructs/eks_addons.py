"""Cluster add-ons, one small class each, after cdk-eks-blueprints' add-on contract.

An add-on has a name, a pinned chart version (config may override it) and the names of the
add-ons it needs. `deploy_addons` refuses a set with a missing dependency, deploys the rest in
dependency order and makes each one's resources wait for what it depends on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aws_cdk import Aws, CfnJson, Stack
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.eks_cluster import GPU_TAINT_KEY, as_icluster
from cdk_constructs.nag import acknowledge
from phases import ConfigError
from phases.models import DomainConfig, EksConfig


class AddonDependencyError(ValueError):
    """An add-on needs another add-on that is not in the set."""


@dataclass(frozen=True)
class AddonContext:
    """What add-ons may use: the cluster, its name and version, the task queues KEDA reads, the
    longest a worker pod may take to stop, and the API's domain (ExternalDNS)."""

    scope: Construct
    cluster: eks.Cluster
    cluster_name: str
    config: EksConfig
    queues: Sequence[sqs.IQueue]
    max_pod_grace_seconds: int = 600
    domain: DomainConfig | None = None


class ClusterAddon(ABC):
    """One add-on: a name, its pinned version and the add-ons it depends on."""

    name: ClassVar[str]
    depends_on: ClassVar[tuple[str, ...]] = ()

    def __init__(self, version: str | None) -> None:
        self.version = version

    @abstractmethod
    def deploy(self, ctx: AddonContext) -> Construct:
        """Add the add-on's resources and return the construct others should wait for."""


def _helm(
    ctx: AddonContext,
    construct_id: str,
    *,
    chart: str,
    repository: str,
    version: str | None,
    namespace: str,
    values: dict[str, Any],
    create_namespace: bool = False,
) -> eks.HelmChart:
    return eks.HelmChart(
        ctx.scope,
        construct_id,
        cluster=as_icluster(ctx.cluster),
        chart=chart,
        repository=repository,
        version=version,
        namespace=namespace,
        release=chart,
        create_namespace=create_namespace,
        values=values,
        wait=True,
    )


def _service_account_in_namespace(
    ctx: AddonContext, construct_prefix: str, *, namespace: str, name: str, sa_id: str = ""
) -> eks.ServiceAccount:
    """An IRSA service account in a namespace of its own, created first."""
    created = ctx.cluster.add_manifest(
        f"{construct_prefix}Namespace",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    sa = ctx.cluster.add_service_account(
        sa_id or f"{construct_prefix}Sa", name=name, namespace=namespace
    )
    sa.node.add_dependency(created)
    return sa


class NvidiaDevicePlugin(ClusterAddon):
    """Advertises `nvidia.com/gpu` on GPU nodes (the AL2023 NVIDIA AMI ships the driver)."""

    name = "nvidia-device-plugin"

    def deploy(self, ctx: AddonContext) -> Construct:
        return _helm(
            ctx,
            "NvidiaDevicePlugin",
            chart="nvidia-device-plugin",
            repository="https://nvidia.github.io/k8s-device-plugin",
            version=self.version,
            namespace="kube-system",
            values={
                "tolerations": [
                    {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
                ],
                # Only GPU pools carry `aipp.io/purpose`; the chart's default affinity expects
                # node-feature-discovery labels, which EKS nodes do not have.
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "aipp.io/purpose", "operator": "Exists"}
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
        )


class ClusterAutoscaler(ClusterAddon):
    """Auto-discovers the node groups, prefers Spot then On-Demand (priority expander), and
    scales GPU groups from zero using the node-template tags on their ASGs."""

    name = "cluster-autoscaler"
    service_account = "cluster-autoscaler"

    def _service_account(self, ctx: AddonContext) -> eks.ServiceAccount:
        sa = ctx.cluster.add_service_account(
            "ClusterAutoscalerSa", name=self.service_account, namespace="kube-system"
        )
        # The policy from the Cluster Autoscaler AWS documentation: reads on all groups,
        # writes only on the groups of this cluster (by their auto-discovery tag).
        sa.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
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
                ],
                resources=["*"],
            )
        )
        sa.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "autoscaling:SetDesiredCapacity",
                    "autoscaling:TerminateInstanceInAutoScalingGroup",
                ],
                resources=["*"],
                conditions={
                    "StringEquals": {
                        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{ctx.cluster_name}": "owned"
                    }
                },
            )
        )
        acknowledge(
            sa.role,
            "AwsSolutions-IAM5[Resource::*]",
            "The Describe*/Get* actions have no resource-level permissions; the two write "
            "actions are limited by condition to ASGs tagged as owned by this cluster.",
        )
        return sa

    def deploy(self, ctx: AddonContext) -> Construct:
        sa = self._service_account(ctx)
        chart_version, image_tag = ctx.config.cluster_autoscaler_release()
        chart = _helm(
            ctx,
            "ClusterAutoscaler",
            chart="cluster-autoscaler",
            repository="https://kubernetes.github.io/autoscaler",
            version=self.version or chart_version,
            namespace="kube-system",
            values={
                "autoDiscovery": {"clusterName": ctx.cluster_name},
                "awsRegion": Stack.of(ctx.scope).region,
                "image": {"tag": image_tag},
                "rbac": {"serviceAccount": {"create": False, "name": self.service_account}},
                "extraArgs": {
                    "expander": "priority",
                    "balance-similar-node-groups": "true",
                    "skip-nodes-with-system-pods": "false",
                    # GPU pods keep model weights in emptyDir volumes; that must not pin a node.
                    "skip-nodes-with-local-storage": "false",
                    # A scale-down waits for a worker to finish its longest job (its grace).
                    "max-graceful-termination-sec": str(ctx.max_pod_grace_seconds + 60),
                },
                # ASG names are `eks-<nodegroup>-<uuid>`; GPU groups are `<pool>-spot` and
                # `<pool>-ondemand`. Higher number wins.
                "expanderPriorities": {50: [".*-spot-.*"], 10: [".*-ondemand-.*"], 1: [".*"]},
                "nodeSelector": {"aipp.io/pool": "system"},
            },
        )
        chart.node.add_dependency(sa)
        return chart


class Keda(ClusterAddon):
    """Scales workers on SQS depth; its operator may read the attributes of our queues only."""

    name = "keda"
    namespace = "keda"
    service_account = "keda-operator"

    def deploy(self, ctx: AddonContext) -> Construct:
        sa = _service_account_in_namespace(
            ctx,
            "Keda",
            namespace=self.namespace,
            name=self.service_account,
            sa_id="KedaOperatorSa",
        )
        sa.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["sqs:GetQueueAttributes"],
                resources=[q.queue_arn for q in ctx.queues],
            )
        )
        chart = _helm(
            ctx,
            "Keda",
            chart="keda",
            repository="https://kedacore.github.io/charts",
            version=self.version,
            namespace=self.namespace,
            values={
                "serviceAccount": {
                    "operator": {"create": False, "name": self.service_account},
                },
                "podIdentity": {"aws": {"irsa": {"enabled": True}}},
                "nodeSelector": {"aipp.io/pool": "system"},
            },
        )
        chart.node.add_dependency(sa)
        return chart


class MetricsServer(ClusterAddon):
    """Resource metrics for the API's CPU-based HorizontalPodAutoscaler."""

    name = "metrics-server"

    def deploy(self, ctx: AddonContext) -> Construct:
        return _helm(
            ctx,
            "MetricsServer",
            chart="metrics-server",
            repository="https://kubernetes-sigs.github.io/metrics-server/",
            version=self.version,
            namespace="kube-system",
            values={"nodeSelector": {"aipp.io/pool": "system"}},
        )


class AwsLoadBalancerController(ClusterAddon):
    """Ingress to ALBs; CDK maintains its chart mapping and IAM policy per version."""

    name = "aws-load-balancer-controller"

    def deploy(self, ctx: AddonContext) -> Construct:
        member = (self.version or "").upper().replace(".", "_")
        known = [v for v in dir(eks.AlbControllerVersion) if v.startswith("V")]
        if member not in known:
            choices = ", ".join(k.lower().replace("_", ".") for k in known)
            raise ConfigError(
                f"invalid config: eks.charts.aws_load_balancer_controller: {self.version!r} is "
                f"not a version CDK ships the IAM policy for; choose one of {choices}"
            )
        controller = eks.AlbController(
            ctx.scope,
            "AwsLoadBalancerController",
            cluster=ctx.cluster,
            version=getattr(eks.AlbControllerVersion, member),
        )
        elb = "arn:<AWS::Partition>:elasticloadbalancing:*:*"
        for resource in (
            "*",
            "arn:<AWS::Partition>:ec2:*:*:security-group/*",
            f"{elb}:loadbalancer/app/*/*",
            f"{elb}:loadbalancer/net/*/*",
            f"{elb}:targetgroup/*/*",
            f"{elb}:listener-rule/app/*/*/*",
            f"{elb}:listener-rule/net/*/*/*",
            f"{elb}:listener/app/*/*/*",
            f"{elb}:listener/net/*/*/*",
        ):
            acknowledge(
                controller,
                f"AwsSolutions-IAM5[Resource::{resource}]",
                "The controller's policy is the one its project publishes for this version: "
                "it manages load balancers, target groups and security groups whose ARNs exist "
                "only at run time; mutations are conditioned on the elbv2.k8s.aws tags.",
            )
        return controller


class ArgoRollouts(ClusterAddon):
    """Canary releases; the API's canary shifts traffic through ALB weights and its analysis
    reads CloudWatch with the controller's own IRSA role."""

    name = "argo-rollouts"
    depends_on = (AwsLoadBalancerController.name,)
    namespace = "argo-rollouts"
    service_account = "argo-rollouts"

    def deploy(self, ctx: AddonContext) -> Construct:
        sa = _service_account_in_namespace(
            ctx, "ArgoRollouts", namespace=self.namespace, name=self.service_account
        )
        # The analysis reads ALB metrics; GetMetricData has no resource-level permissions.
        sa.add_to_principal_policy(
            iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"])
        )
        acknowledge(
            sa.role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:GetMetricData has no resource-level permissions; it only reads metrics.",
        )
        chart = _helm(
            ctx,
            "ArgoRollouts",
            chart="argo-rollouts",
            repository="https://argoproj.github.io/argo-helm",
            version=self.version,
            namespace=self.namespace,
            values={
                "serviceAccount": {"create": False, "name": self.service_account},
                "controller": {
                    "nodeSelector": {"aipp.io/pool": "system"},
                    # The AWS SDK of the CloudWatch metric provider needs the region.
                    "extraEnv": [{"name": "AWS_REGION", "value": Stack.of(ctx.scope).region}],
                },
            },
        )
        chart.node.add_dependency(sa)
        return chart


class ExternalDns(ClusterAddon):
    """The EKS side of the API's weighted record: ExternalDNS writes the `eks` record of
    `edge.domain` for the Ingress's ALB. Upsert-only (it never deletes a record), limited to
    the environment's hosted zone, records owned through a TXT owner id."""

    name = "external-dns"
    namespace = "external-dns"
    service_account = "external-dns"

    def deploy(self, ctx: AddonContext) -> Construct:
        domain = ctx.domain
        if domain is None:  # pragma: no cover - default_addons adds it only with a domain
            raise ConfigError("invalid config: ExternalDNS needs edge.domain")
        sa = _service_account_in_namespace(
            ctx, "ExternalDns", namespace=self.namespace, name=self.service_account
        )
        zone = f"arn:{Aws.PARTITION}:route53:::hostedzone/{domain.hosted_zone_id}"
        sa.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"],
                resources=[zone],
            )
        )
        sa.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["route53:ListHostedZones", "route53:ListTagsForResources"],
                resources=["*"],
            )
        )
        acknowledge(
            sa.role,
            "AwsSolutions-IAM5[Resource::*]",
            "ListHostedZones and ListTagsForResources have no resource-level permissions; "
            "record changes are limited to the environment's hosted zone.",
        )
        chart = _helm(
            ctx,
            "ExternalDns",
            chart="external-dns",
            repository="https://kubernetes-sigs.github.io/external-dns/",
            version=self.version,
            namespace=self.namespace,
            values={
                "provider": {"name": "aws"},
                "serviceAccount": {"create": False, "name": self.service_account},
                "sources": ["ingress"],
                "policy": "upsert-only",
                "registry": "txt",
                "txtOwnerId": ctx.cluster_name,
                "domainFilters": [domain.hosted_zone_name],
                "extraArgs": [f"--zone-id-filter={domain.hosted_zone_id}"],
                "env": [{"name": "AWS_DEFAULT_REGION", "value": Stack.of(ctx.scope).region}],
                "nodeSelector": {"aipp.io/pool": "system"},
            },
        )
        chart.node.add_dependency(sa)
        return chart


class ContainerInsights(ClusterAddon):
    """The Amazon CloudWatch Observability EKS add-on: Container Insights and, on GPU nodes,
    NVIDIA GPU metrics (DCGM). The version is the EKS add-on version; empty means latest."""

    name = "container-insights"
    depends_on = (NvidiaDevicePlugin.name,)

    namespace = "amazon-cloudwatch"
    service_account = "cloudwatch-agent"

    def deploy(self, ctx: AddonContext) -> Construct:
        # Pods cannot reach the instance metadata service (hop limit 1), so the agent gets its
        # own IRSA role instead of the node role's credentials.
        role = iam.Role(
            ctx.scope,
            "ContainerInsightsRole",
            assumed_by=irsa_principal(ctx.cluster, self.namespace, self.service_account),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("CloudWatchAgentServerPolicy")
            ],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
            "CloudWatchAgentServerPolicy]",
            "The AWS-maintained policy the CloudWatch agent documents for Container Insights.",
        )
        addon = eks.Addon(
            ctx.scope,
            "ContainerInsights",
            cluster=as_icluster(ctx.cluster),
            addon_name="amazon-cloudwatch-observability",
            addon_version=self.version,
            configuration_values={
                "tolerations": [
                    {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
                ]
            },
        )
        cfn = addon.node.default_child
        assert isinstance(cfn, eks.CfnAddon)
        cfn.service_account_role_arn = role.role_arn
        return addon


def irsa_principal(cluster: eks.Cluster, namespace: str, name: str) -> iam.IPrincipal:
    """The cluster's OIDC identity of one service account (what `add_service_account` trusts)."""
    issuer = cluster.open_id_connect_provider.open_id_connect_provider_issuer
    return iam.OpenIdConnectPrincipal(cluster.open_id_connect_provider).with_conditions(
        {
            "StringEquals": CfnJson(
                cluster,
                f"{namespace}-{name}-Condition",
                value={
                    f"{issuer}:aud": "sts.amazonaws.com",
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                },
            )
        }
    )


def default_addons(config: EksConfig, domain: DomainConfig | None = None) -> list[ClusterAddon]:
    """Every add-on the platform runs, at the chart versions of the config; ExternalDNS only
    when the API has a domain."""
    charts = config.charts
    addons: list[ClusterAddon] = [
        NvidiaDevicePlugin(charts.nvidia_device_plugin),
        ClusterAutoscaler(charts.cluster_autoscaler),
        MetricsServer(charts.metrics_server),
        Keda(charts.keda),
        AwsLoadBalancerController(charts.aws_load_balancer_controller),
        ArgoRollouts(charts.argo_rollouts),
        ContainerInsights(charts.container_insights),
    ]
    if domain is not None:
        addons.append(ExternalDns(charts.external_dns))
    return addons


def deploy_addons(ctx: AddonContext, addons: Sequence[ClusterAddon]) -> dict[str, Construct]:
    """Deploy `addons` in dependency order; a missing dependency is an error naming both."""
    by_name = {a.name: a for a in addons}
    for addon in addons:
        for needed in addon.depends_on:
            if needed not in by_name:
                raise AddonDependencyError(
                    f"add-on {addon.name!r} depends on {needed!r}, which is not enabled; "
                    f"enabled: {', '.join(by_name)}"
                )
    deployed: dict[str, Construct] = {}

    def visit(addon: ClusterAddon, path: tuple[str, ...]) -> Construct:
        if addon.name in path:
            raise AddonDependencyError(
                f"add-on dependency cycle: {' -> '.join((*path, addon.name))}"
            )
        if addon.name not in deployed:
            needs = [visit(by_name[d], (*path, addon.name)) for d in addon.depends_on]
            construct = addon.deploy(ctx)
            for need in needs:
                construct.node.add_dependency(need)
            deployed[addon.name] = construct
        return deployed[addon.name]

    for addon in addons:
        visit(addon, ())
    return deployed
