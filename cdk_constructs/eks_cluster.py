"""The EKS cluster of phases 2-3: private endpoint, all control-plane logs, KMS-encrypted
secrets, an on-demand system node group and, per GPU pool, one Spot and one On-Demand group.

GPU groups use the AL2023 NVIDIA AMI explicitly (GPU instance types otherwise default to an AL2
AMI, which EKS no longer offers from 1.33), are tainted `nvidia.com/gpu=true:NoSchedule`,
labelled by pool and capacity type, and can scale from zero: the node-template tags Cluster
Autoscaler reads are put on each group's Auto Scaling group at deploy time, because managed
node group tags do not propagate to the ASG.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from aws_cdk import Stack, Token
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_function, nag_resource_id
from phases.eks_facts import kubectl_layer_for
from phases.models import EksConfig, GpuPoolConfig, NodeGroupConfig

GPU_TAINT_KEY = "nvidia.com/gpu"
ALL_LOG_TYPES = [
    eks.ClusterLoggingTypes.API,
    eks.ClusterLoggingTypes.AUDIT,
    eks.ClusterLoggingTypes.AUTHENTICATOR,
    eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
    eks.ClusterLoggingTypes.SCHEDULER,
]


@dataclass(frozen=True)
class GpuNodeGroup:
    """One capacity type of one GPU pool."""

    pool: GpuPoolConfig
    spot: bool
    nodegroup: eks.Nodegroup

    @property
    def capacity(self) -> str:
        return capacity_name(self.spot)

    @property
    def labels(self) -> dict[str, str]:
        return gpu_labels(self.pool, self.spot)


def gpu_nodegroup_name(pool: GpuPoolConfig, spot: bool, zones: Sequence[str] = ()) -> str:
    """`<pool>-spot-<digest>` / `<pool>-ondemand-<digest>`.

    The priority expander matches ASG names (`eks-<nodegroup>-<uuid>`) on `-spot-` and
    `-ondemand-`. The digest covers what EKS can only change by replacing the group (instance
    types, capacity type, AMI type, and the subnets, i.e. the AZs it spans), so a replacement
    gets a new name instead of colliding with the group it replaces.
    """
    replaced_by = json.dumps([sorted(pool.instance_types), spot, "AL2023_x86_64_NVIDIA", [*zones]])
    digest = hashlib.sha256(replaced_by.encode()).hexdigest()[:8]
    return f"{pool.name}-{'spot' if spot else 'ondemand'}-{digest}"


def capacity_name(spot: bool) -> str:
    return "spot" if spot else "on-demand"


ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"


def gpu_labels(pool: GpuPoolConfig, spot: bool) -> dict[str, str]:
    """Node labels of a GPU group: workloads select their pool and may prefer a capacity type;
    Cluster Autoscaler reads the accelerator label to treat a new node as a GPU node before the
    device plugin has advertised its GPU (so it does not add another one meanwhile)."""
    return {
        "aipp.io/pool": pool.name,
        "aipp.io/purpose": pool.purpose.value,
        "aipp.io/capacity-type": capacity_name(spot),
        ACCELERATOR_LABEL: pool.accelerator,
    }


def _node_template_tags(group: GpuNodeGroup) -> dict[str, str]:
    """Cluster Autoscaler's node-template tags of a GPU group's ASG: what a node of it would
    have, so the autoscaler can scale the group up from zero."""
    prefix = "k8s.io/cluster-autoscaler/node-template"
    capacity = group.capacity.upper().replace("-", "_")
    return {
        **{f"{prefix}/label/{k}": v for k, v in group.labels.items()},
        f"{prefix}/label/eks.amazonaws.com/capacityType": capacity,
        f"{prefix}/taint/{GPU_TAINT_KEY}": "true:NoSchedule",
        f"{prefix}/resources/{GPU_TAINT_KEY}": str(group.pool.gpus_per_node),
    }


def as_icluster(cluster: eks.Cluster) -> eks.ICluster:
    """`eks.Cluster` implements `ICluster`; jsii's generated stubs do not say so to mypy."""
    return cast(eks.ICluster, cluster)


def kubectl_layer(scope: Construct, kubernetes_version: str) -> lambda_.ILayerVersion:
    """The installed kubectl layer that matches the cluster version (config already checked)."""
    package = kubectl_layer_for(kubernetes_version)
    if package is None:  # pragma: no cover - rejected by EksConfig
        raise ValueError(f"no kubectl layer for Kubernetes {kubernetes_version}")
    suffix = package.rsplit("-", 1)[-1]  # "v35"
    module = importlib.import_module(f"aws_cdk.lambda_layer_kubectl_{suffix}")
    layer_class = getattr(module, f"Kubectl{suffix.upper()}Layer")
    layer: lambda_.ILayerVersion = layer_class(scope, "KubectlLayer")
    return layer


class PlatformCluster(Construct):
    """Exposes `cluster`, `system_nodes`, `gpu_groups` and `secrets_key`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EksConfig,
        vpc: ec2.IVpc,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secrets_key = kms.Key(
            self, "SecretsKey", description=f"{name} Kubernetes secrets", enable_key_rotation=True
        )
        self.cluster = self._cluster(config, vpc, name)
        self._acknowledge_cluster_internals()
        self._admins(config.admin_role_arns)
        self.node_role = self._node_role()
        self.system_nodes = self._nodegroup(
            "System",
            group=config.system_nodes,
            labels={"aipp.io/pool": "system"},
            ami=eks.NodegroupAmiType.AL2023_X86_64_STANDARD,
            spot=False,
        )
        self.gpu_groups = self._gpu_groups(config, vpc)
        self._tag_gpu_asgs(name)

    def _cluster(self, config: EksConfig, vpc: ec2.IVpc, name: str) -> eks.Cluster:
        """The control plane: private endpoint (unless config opens it to listed CIDRs), every
        log type, secrets encrypted with `secrets_key`, no default capacity."""
        endpoint = (
            eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*config.public_access_cidrs)
            if config.endpoint_public
            else eks.EndpointAccess.PRIVATE
        )
        private = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        return eks.Cluster(
            self,
            "Cluster",
            cluster_name=name,
            version=eks.KubernetesVersion.of(config.kubernetes_version),
            vpc=vpc,
            vpc_subnets=[private],
            endpoint_access=endpoint,
            cluster_logging=ALL_LOG_TYPES,
            secrets_encryption_key=self.secrets_key,
            default_capacity_type=eks.DefaultCapacityType.NODEGROUP,
            default_capacity=0,
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=kubectl_layer(self, config.kubernetes_version)
            ),
        )

    def _admins(self, role_arns: Sequence[str]) -> None:
        """Cluster-admin access entries for the configured IAM roles."""
        for i, arn in enumerate(role_arns):
            eks.AccessEntry(
                self,
                f"Admin{i + 1}",
                cluster=as_icluster(self.cluster),
                principal=arn,
                access_policies=[
                    eks.AccessPolicy.from_access_policy_name(
                        "AmazonEKSClusterAdminPolicy", access_scope_type=eks.AccessScopeType.CLUSTER
                    )
                ],
            )

    def _gpu_groups(self, config: EksConfig, vpc: ec2.IVpc) -> list[GpuNodeGroup]:
        """A Spot and an On-Demand group per GPU pool (those with a maximum above zero),
        tainted for GPU work only."""
        groups: list[GpuNodeGroup] = []
        # The AZs the groups span: names when known, else their count (tokens change per run).
        zones = [
            f"az{i + 1}" if Token.is_unresolved(z) else z
            for i, z in enumerate(vpc.availability_zones)
        ]
        for pool in config.gpu_pools:
            for spot in (True, False):
                bounds = pool.spot if spot else pool.on_demand
                if bounds.max == 0:
                    continue
                nodegroup = self._nodegroup(
                    f"Gpu{pool.name.title().replace('-', '')}{'Spot' if spot else 'OnDemand'}",
                    group=NodeGroupConfig(
                        instance_types=pool.instance_types, size=bounds, disk_gib=pool.disk_gib
                    ),
                    labels=gpu_labels(pool, spot),
                    ami=eks.NodegroupAmiType.AL2023_X86_64_NVIDIA,
                    spot=spot,
                    taints=[
                        eks.TaintSpec(
                            key=GPU_TAINT_KEY, value="true", effect=eks.TaintEffect.NO_SCHEDULE
                        )
                    ],
                    nodegroup_name=gpu_nodegroup_name(pool, spot, zones),
                )
                groups.append(GpuNodeGroup(pool=pool, spot=spot, nodegroup=nodegroup))
        return groups

    def _acknowledge_cluster_internals(self) -> None:
        """The roles and function aws-eks-v2 creates for the control plane and for kubectl."""
        acknowledge(
            self.cluster.role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]",
            "The AWS-maintained policy the EKS control plane's service role must have.",
        )
        provider = self.cluster.kubectl_provider
        if provider is None:  # pragma: no cover - a cluster made here always has one
            raise RuntimeError("the cluster has no kubectl provider")
        partition = "arn:<AWS::Partition>:iam::aws:policy/service-role"
        for rule, reason in (
            (
                f"AwsSolutions-IAM4[Policy::{partition}/AWSLambdaBasicExecutionRole]",
                "CDK's kubectl handler and its provider framework log with the AWS-maintained "
                "basic execution policy.",
            ),
            (
                f"AwsSolutions-IAM4[Policy::{partition}/AWSLambdaVPCAccessExecutionRole]",
                "CDK's kubectl handler runs in the VPC to reach the private API endpoint.",
            ),
            (
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                "AmazonEC2ContainerRegistryReadOnly]",
                "CDK's kubectl handler pulls Helm charts published as OCI images in ECR.",
            ),
            (
                'AwsSolutions-IAM4[Policy::{"Fn::If":["EksClusterKubectlProviderHandlerHasEcrPublic'
                'C426D1A5",{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":iam::aws:policy/'
                'AmazonElasticContainerRegistryPublicReadOnly"]]},{"Ref":"AWS::NoValue"}]}]',
                "CDK's kubectl handler reads public ECR charts only where the region has ECR "
                "Public (a condition CDK renders).",
            ),
            (
                "AwsSolutions-IAM5[Resource::<EksClusterKubectlProviderHandlerDA75FB7A.Arn>:*]",
                "The provider framework invokes any version of the kubectl handler function.",
            ),
            (
                "AwsSolutions-L1",
                "The kubectl handler's runtime is chosen by aws-cdk-lib with the kubectl layer; "
                "it moves with the aws-cdk-lib version we pin.",
            ),
        ):
            acknowledge(provider, rule, reason)

    def _node_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "NodeRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="EKS worker nodes",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(name)
                for name in (
                    "AmazonEKSWorkerNodePolicy",
                    "AmazonEC2ContainerRegistryReadOnly",
                    "AmazonEKS_CNI_Policy",
                    "CloudWatchAgentServerPolicy",
                )
            ],
        )
        for name, why in (
            ("AmazonEKSWorkerNodePolicy", "the node's own EKS permissions, maintained by AWS"),
            ("AmazonEC2ContainerRegistryReadOnly", "pulling images from ECR"),
            ("AmazonEKS_CNI_Policy", "the VPC CNI assigning pod IPs on the node"),
            ("CloudWatchAgentServerPolicy", "Container Insights and GPU metrics from the node"),
        ):
            acknowledge(
                role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{name}]",
                f"AWS-maintained policy EKS documents for worker nodes: {why}.",
            )
        return role

    def _nodegroup(
        self,
        construct_id: str,
        *,
        group: NodeGroupConfig,
        labels: dict[str, str],
        ami: eks.NodegroupAmiType,
        spot: bool,
        taints: list[eks.TaintSpec] | None = None,
        nodegroup_name: str | None = None,
    ) -> eks.Nodegroup:
        template = ec2.LaunchTemplate(
            self,
            f"{construct_id}Template",
            require_imdsv2=True,
            # One hop: the node reaches the instance metadata service, pods do not, so a pod
            # can only act with its own service account's role (IRSA), never the node role.
            http_put_response_hop_limit=1,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        group.disk_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        nodegroup = eks.Nodegroup(
            self,
            construct_id,
            cluster=as_icluster(self.cluster),
            nodegroup_name=nodegroup_name,
            node_role=self.node_role,
            ami_type=ami,
            capacity_type=eks.CapacityType.SPOT if spot else eks.CapacityType.ON_DEMAND,
            instance_types=[ec2.InstanceType(t) for t in group.instance_types],
            min_size=group.size.min,
            max_size=group.size.max,
            desired_size=group.size.min,
            labels=labels,
            taints=taints,
            subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template_spec=eks.LaunchTemplateSpec(
                id=template.launch_template_id or "",
                version=template.latest_version_number,
            ),
        )
        # Cluster Autoscaler owns the desired size. CloudFormation sends the whole scaling
        # config on every change of the bounds, so a template DesiredSize would reset the group
        # to its minimum and drain the nodes the autoscaler added; without it, EKS keeps the
        # current size ("no action occurs if you remove this parameter", EKS API reference,
        # NodegroupScalingConfig); a new group's Auto Scaling group starts at its minimum.
        cfn = nodegroup.node.default_child
        assert isinstance(cfn, eks.CfnNodegroup)
        cfn.add_property_deletion_override("ScalingConfig.DesiredSize")
        return nodegroup

    def _tag_gpu_asgs(self, cluster_name: str) -> None:
        """Put Cluster Autoscaler's node-template tags on each GPU group's ASG at deploy time."""
        if not self.gpu_groups:
            return
        stack = Stack.of(self)
        nodegroups = stack.format_arn(
            service="eks", resource="nodegroup", resource_name=f"{cluster_name}/*"
        )
        policy = cr.AwsCustomResourcePolicy.from_statements(
            [
                iam.PolicyStatement(actions=["eks:DescribeNodegroup"], resources=[nodegroups]),
                iam.PolicyStatement(
                    actions=["autoscaling:CreateOrUpdateTags"],
                    resources=["*"],
                    conditions={"StringEquals": {"aws:ResourceTag/eks:cluster-name": cluster_name}},
                ),
            ]
        )
        for group in self.gpu_groups:
            self._tag_asg(group, policy, nodegroups)
        acknowledge_sdk_call_function(self)

    def _tag_asg(
        self, group: GpuNodeGroup, policy: cr.AwsCustomResourcePolicy, nodegroups: str
    ) -> None:
        """Look one GPU group's ASG up, then tag it with its node template."""
        ng = group.nodegroup
        describe = cr.AwsCustomResource(
            self,
            f"{ng.node.id}Asg",
            on_update=cr.AwsSdkCall(
                service="EKS",
                action="describeNodegroup",
                parameters={
                    "clusterName": self.cluster.cluster_name,
                    "nodegroupName": ng.nodegroup_name,
                },
                physical_resource_id=cr.PhysicalResourceId.of(f"{ng.node.id}-asg"),
                output_paths=["nodegroup.resources.autoScalingGroups.0.name"],
            ),
            policy=policy,
            install_latest_aws_sdk=False,
        )
        asg_name = describe.get_response_field("nodegroup.resources.autoScalingGroups.0.name")
        tags = _node_template_tags(group)
        tagging = cr.AwsCustomResource(
            self,
            f"{ng.node.id}AsgTags",
            on_update=cr.AwsSdkCall(
                service="AutoScaling",
                action="createOrUpdateTags",
                parameters={
                    "Tags": [
                        {
                            "ResourceId": asg_name,
                            "ResourceType": "auto-scaling-group",
                            "Key": key,
                            "Value": value,
                            "PropagateAtLaunch": False,
                        }
                        for key, value in sorted(tags.items())
                    ]
                },
                physical_resource_id=cr.PhysicalResourceId.of(f"{ng.node.id}-asg-tags"),
            ),
            policy=policy,
            install_latest_aws_sdk=False,
        )
        tagging.node.add_dependency(describe)
        for custom in (describe, tagging):
            acknowledge(
                custom,
                f"AwsSolutions-IAM5[Resource::{nag_resource_id(self, nodegroups)}]",
                "Managed node groups get a generated id after their name; the wildcard is "
                "limited to this cluster's node groups and to DescribeNodegroup.",
            )
            acknowledge(
                custom,
                "AwsSolutions-IAM5[Resource::*]",
                "ASG names are generated by EKS; CreateOrUpdateTags is limited by condition "
                "to ASGs tagged with this cluster's name.",
            )
