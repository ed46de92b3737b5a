"""Fixed monthly cost of a synthesized CDK cloud assembly (``cdk.out/phase<N>-<env>``).

Reads every ``*.template.json`` of the assembly, prices the resources that cost money whether or
not traffic flows (instances, nodes, NAT, load balancers, endpoints, Fargate tasks at their
desired count, alarms, keys, secrets) with the same price table as the planner, and lists each
line. Resources that bill only by usage (S3, SQS, Lambda, logs, ...) are counted, not priced;
anything the model does not know is listed as "unpriced", never dropped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from capacity.assumptions import AssumptionError, Assumptions, FixedItem
from capacity.pricing import item_monthly_usd

_USAGE_BASED_PREFIXES = (
    "AWS::IAM::",
    "AWS::Logs::",
    "AWS::S3::",
    "AWS::SQS::",
    "AWS::SNS::",
    "AWS::Lambda::",
    "AWS::Events::",
    "AWS::ApplicationAutoScaling::",
    "AWS::ECR::",
    "AWS::SSM::",
    "AWS::StepFunctions::",
    "AWS::ServiceDiscovery::",
    "AWS::CodeDeploy::",
    "AWS::CDK::",
)
_USAGE_BASED = frozenset(
    {
        "AWS::EC2::VPC",
        "AWS::EC2::Subnet",
        "AWS::EC2::RouteTable",
        "AWS::EC2::Route",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::EIP",  # its public IPv4 charge is counted with the NAT gateway it serves
        "AWS::EC2::FlowLog",
        "AWS::EC2::LaunchTemplate",
        "AWS::EC2::NetworkAcl",
        "AWS::EC2::NetworkAclEntry",
        "AWS::EC2::SubnetNetworkAclAssociation",
        "AWS::ECS::Cluster",
        "AWS::ECS::ClusterCapacityProviderAssociations",
        "AWS::ECS::TaskDefinition",  # priced through the service that runs it
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        "AWS::ElasticLoadBalancingV2::ListenerCertificate",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::DBParameterGroup",
        "AWS::RDS::DBClusterParameterGroup",
        "AWS::ElastiCache::SubnetGroup",
        "AWS::ElastiCache::ParameterGroup",
        "AWS::EKS::Addon",
        "AWS::EKS::FargateProfile",
        "AWS::EKS::AccessEntry",
        "AWS::EKS::PodIdentityAssociation",
        "AWS::EKS::IdentityProviderConfig",
        "AWS::KMS::Alias",
        "AWS::SecretsManager::SecretTargetAttachment",
        "AWS::SecretsManager::RotationSchedule",
        "AWS::SecretsManager::ResourcePolicy",
        "AWS::CloudFormation::CustomResource",
        "AWS::CloudFormation::WaitCondition",
        "AWS::CloudFormation::WaitConditionHandle",
        "AWS::CloudFormation::Stack",  # its resources are in its own nested template
        "AWS::CertificateManager::Certificate",  # public ACM certificates are free
        "AWS::WAFv2::LoggingConfiguration",  # log ingestion is usage
        "AWS::WAFv2::WebACLAssociation",
        "AWS::Route53::RecordSet",  # alias queries to AWS resources are free
        "AWS::Serverless::Application",  # the rotation function: invocations are usage
    }
)
_EKS_CLUSTER_TYPES = frozenset({"AWS::EKS::Cluster", "Custom::AWSCDK-EKS-Cluster"})


class CostLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stack: str = Field(description="stack (template) the resource is in")
    logical_id: str
    resource_type: str
    detail: str = Field(description="what was priced, e.g. '2 x db.t4g.small Multi-AZ'")
    quantity: float
    monthly_usd: float | None = Field(description="USD per month; None when unpriced")
    priced: bool


class AssemblyCost(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    assembly: str
    total_monthly_usd: float = Field(description="sum of the priced lines, USD per month")
    lines: tuple[CostLine, ...] = Field(description="priced lines, then unpriced ones")
    usage_based: dict[str, int] = Field(
        description="resource types with no fixed monthly cost (usage-billed or free), counted"
    )


class _Unpriced(Exception):
    """Raised while pricing a resource whose properties we cannot read."""


def _literal_number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise _Unpriced(f"{what} is not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _Unpriced(f"{what} is not a literal number ({json.dumps(value)[:60]})")


def _literal_str(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    raise _Unpriced(f"{what} is not a literal string ({json.dumps(value)[:60]})")


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _ref_target(value: Any) -> str | None:
    if isinstance(value, Mapping):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        att = value.get("Fn::GetAtt")
        if isinstance(att, list) and att and isinstance(att[0], str):
            return att[0]
    return None


class _Pricer:
    def __init__(self, a: Assumptions) -> None:
        self.a = a
        self.hours = a.load.hours_per_month

    def item(self, item: FixedItem) -> float:
        return item_monthly_usd(item, self.a)

    def _sized(self, table: Mapping[str, float], size: str, what: str) -> str:
        if size not in table:
            raise _Unpriced(f"no price for {what} {size}")
        return size

    def price(  # noqa: PLR0911, PLR0912 - one flat branch per resource type reads best
        self, rtype: str, props: Mapping[str, Any], resources: Mapping[str, Any]
    ) -> tuple[str, float, float]:
        """(detail, quantity, USD/month) for one resource; raises _Unpriced."""
        p = self.a.infra
        if rtype in _EKS_CLUSTER_TYPES:
            return "EKS control plane", 1, self.item(FixedItem(name="", kind="eks_control_plane"))
        if rtype == "AWS::EC2::NatGateway":
            return (
                "NAT gateway + its public IPv4",
                1,
                self.item(FixedItem(name="", kind="nat_gateway")),
            )
        if rtype in (
            "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "AWS::ElasticLoadBalancing::LoadBalancer",
        ):
            lb_type = props.get("Type", "application")
            if lb_type == "gateway":
                raise _Unpriced("gateway load balancers are not in the price table")
            return (
                f"{lb_type} load balancer",
                1,
                self.item(FixedItem(name="", kind="load_balancer")),
            )
        if rtype == "AWS::EC2::VPCEndpoint":
            if props.get("VpcEndpointType", "Gateway") != "Interface":
                return "gateway endpoint (free)", 1, 0.0
            subnets = props.get("SubnetIds")
            if not isinstance(subnets, list) or not subnets:
                raise _Unpriced("interface endpoint without a literal SubnetIds list")
            service = props.get("ServiceName")
            name = service if isinstance(service, str) else "interface endpoint"
            item = FixedItem(name="", kind="interface_endpoint", azs=len(subnets))
            return f"{name} in {len(subnets)} AZs", 1, self.item(item)
        if rtype == "AWS::RDS::DBInstance":
            return self._db_instance(props, resources)
        if rtype == "AWS::RDS::DBCluster":
            size = props.get("DBClusterInstanceClass")
            if size is None:
                return "Aurora cluster (storage and I/O are usage-billed)", 1, 0.0
            size = self._sized(
                p.rds_usd_per_hour, _literal_str(size, "DBClusterInstanceClass"), "RDS class"
            )
            storage = _literal_number(props.get("AllocatedStorage", 0), "AllocatedStorage")
            item = FixedItem(name="", kind="rds", size=size, count=3, storage_gb=storage)
            return f"Multi-AZ DB cluster, 3 x {size}, {storage:g} GB", 3, self.item(item)
        if rtype == "AWS::ElastiCache::ReplicationGroup":
            return self._replication_group(props)
        if rtype == "AWS::ElastiCache::CacheCluster":
            size = self._sized(
                p.elasticache_usd_per_hour,
                _literal_str(props.get("CacheNodeType"), "CacheNodeType"),
                "cache node type",
            )
            n = _literal_number(props.get("NumCacheNodes", 1), "NumCacheNodes")
            return (
                f"{n:g} x {size}",
                n,
                self.item(FixedItem(name="", kind="elasticache", size=size, count=n)),
            )
        if rtype == "AWS::ECS::Service":
            return self._ecs_service(props, resources)
        if rtype == "AWS::EKS::Nodegroup":
            return self._nodegroup(props)
        if rtype == "AWS::EC2::Instance":
            itype = self._sized(
                p.ec2_usd_per_hour,
                _literal_str(props.get("InstanceType"), "InstanceType"),
                "EC2 instance type",
            )
            return itype, 1, self.item(FixedItem(name="", kind="ec2", size=itype))
        if rtype == "AWS::AutoScaling::AutoScalingGroup":
            return self._asg(props, resources)
        if rtype == "AWS::EC2::Volume":
            size_gb = _literal_number(props.get("Size"), "Size")
            return f"EBS volume {size_gb:g} GB", 1, size_gb * p.ebs_gp3_usd_per_gb_month
        if rtype in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::CompositeAlarm"):
            return "alarm", 1, p.cloudwatch_alarm_usd_per_month
        if rtype == "AWS::CloudWatch::Dashboard":
            return "dashboard", 1, p.cloudwatch_dashboard_usd_per_month
        if rtype == "AWS::KMS::Key":
            return "customer managed key", 1, p.kms_key_usd_per_month
        if rtype == "AWS::SecretsManager::Secret":
            return "secret", 1, p.secret_usd_per_month
        if rtype == "AWS::WAFv2::WebACL":
            rules = props.get("Rules", [])
            n = len(rules) if isinstance(rules, list) else 0
            return (
                f"web ACL with {n} rules (requests are usage)",
                1,
                p.waf_web_acl_usd_per_month + n * p.waf_rule_usd_per_month,
            )
        raise _Unpriced("no price in the model for this resource type")

    def _db_instance(
        self, props: Mapping[str, Any], resources: Mapping[str, Any]
    ) -> tuple[str, float, float]:
        p = self.a.infra
        size = _literal_str(props.get("DBInstanceClass"), "DBInstanceClass")
        cluster_id = _ref_target(props.get("DBClusterIdentifier"))
        if props.get("DBClusterIdentifier") is not None:
            if size == "db.serverless":
                cluster = resources.get(cluster_id or "", {}).get("Properties", {})
                scaling = cluster.get("ServerlessV2ScalingConfiguration", {})
                acu = _literal_number(scaling.get("MinCapacity", 0.5), "MinCapacity")
                cost = acu * p.aurora_acu_usd_per_hour * self.hours
                return f"Aurora Serverless v2 at its minimum {acu:g} ACU", 1, cost
            size = self._sized(p.aurora_usd_per_hour, size, "Aurora class")
            return (
                f"Aurora instance {size}",
                1,
                self.item(FixedItem(name="", kind="aurora", size=size)),
            )
        size = self._sized(p.rds_usd_per_hour, size, "RDS class")
        multi_az = _flag(props.get("MultiAZ", False))
        storage = _literal_number(props.get("AllocatedStorage", 20), "AllocatedStorage")
        item = FixedItem(name="", kind="rds", size=size, multi_az=multi_az, storage_gb=storage)
        az = "Multi-AZ" if multi_az else "single-AZ"
        return f"{size} {az}, {storage:g} GB", 1, self.item(item)

    def _replication_group(self, props: Mapping[str, Any]) -> tuple[str, float, float]:
        p = self.a.infra
        size = _literal_str(props.get("CacheNodeType"), "CacheNodeType")
        size = self._sized(p.elasticache_usd_per_hour, size, "cache node type")
        if "NumCacheClusters" in props:
            nodes = _literal_number(props["NumCacheClusters"], "NumCacheClusters")
            shape = f"{nodes:g} nodes"
        elif isinstance(props.get("NodeGroupConfiguration"), list):
            groups = props["NodeGroupConfiguration"]
            nodes = sum(
                1 + _literal_number(g.get("ReplicaCount", 0), "ReplicaCount") for g in groups
            )
            shape = f"{len(groups)} shards, {nodes:g} nodes"
        elif "NumNodeGroups" in props:
            shards = _literal_number(props["NumNodeGroups"], "NumNodeGroups")
            replicas = _literal_number(props.get("ReplicasPerNodeGroup", 0), "ReplicasPerNodeGroup")
            nodes = shards * (1 + replicas)
            shape = f"{shards:g} shards x (1 + {replicas:g} replicas)"
        else:
            nodes, shape = 1, "1 node (no node count given)"
        item = FixedItem(name="", kind="elasticache", size=size, count=nodes)
        return f"{shape} of {size}", nodes, self.item(item)

    def _ecs_service(
        self, props: Mapping[str, Any], resources: Mapping[str, Any]
    ) -> tuple[str, float, float]:
        p = self.a.infra
        strategy = props.get("CapacityProviderStrategy")
        providers = (
            {s.get("CapacityProvider") for s in strategy if isinstance(s, Mapping)}
            if isinstance(strategy, list)
            else set()
        )
        launch = props.get(
            "LaunchType", "FARGATE" if providers & {"FARGATE", "FARGATE_SPOT"} else None
        )
        if launch != "FARGATE":
            return "runs on the cluster's EC2 capacity (priced there)", 0, 0.0
        target = _ref_target(props.get("TaskDefinition"))
        task = resources.get(target or "")
        if not isinstance(task, Mapping) or task.get("Type") != "AWS::ECS::TaskDefinition":
            raise _Unpriced("TaskDefinition does not Ref a task definition in this template")
        tprops = task.get("Properties", {})
        vcpu = _literal_number(tprops.get("Cpu"), "TaskDefinition Cpu") / 1024
        gb = _literal_number(tprops.get("Memory"), "TaskDefinition Memory") / 1024
        arm = tprops.get("RuntimePlatform", {}).get("CpuArchitecture") == "ARM64"
        count = _literal_number(props.get("DesiredCount", 1), "DesiredCount")
        if arm:
            per_task = vcpu * p.fargate_arm_vcpu_usd_per_hour + gb * p.fargate_arm_gb_usd_per_hour
            cost = count * per_task * self.hours
        else:
            item = FixedItem(name="", kind="fargate", count=count, vcpu=vcpu, memory_gb=gb)
            cost = self.item(item)
        arch = "ARM64" if arm else "x86"
        return f"{count:g} Fargate tasks x {vcpu:g} vCPU, {gb:g} GB ({arch})", count, cost

    def _node_price(self, itype: str, spot: bool) -> float:
        gpus = self.a.gpu.instances
        if spot and itype in gpus:
            return gpus[itype].spot_usd_per_hour
        if not spot and itype in gpus:
            return gpus[itype].on_demand_usd_per_hour
        table = self.a.infra.ec2_usd_per_hour
        self._sized(table, itype, "EC2 instance type")
        discount = self.a.infra.ec2_spot_discount if spot else 0.0
        return table[itype] * (1 - discount)

    def _nodegroup(self, props: Mapping[str, Any]) -> tuple[str, float, float]:
        scaling = props.get("ScalingConfig")
        if not isinstance(scaling, Mapping):
            raise _Unpriced("node group without a ScalingConfig")
        desired = _literal_number(
            scaling.get("DesiredSize", scaling.get("MinSize", 0)), "DesiredSize"
        )
        types = props.get("InstanceTypes") or ["t3.medium"]
        itype = _literal_str(types[0], "InstanceTypes")
        spot = props.get("CapacityType") == "SPOT"
        hourly = self._node_price(itype, spot)
        disk = _literal_number(props.get("DiskSize", 20), "DiskSize")
        cost = desired * (hourly * self.hours + disk * self.a.infra.ebs_gp3_usd_per_gb_month)
        bounds = f"min {scaling.get('MinSize', '?')}, max {scaling.get('MaxSize', '?')}"
        kind = "Spot" if spot else "On-Demand"
        return f"{desired:g} x {itype} {kind} at desired size ({bounds})", desired, cost

    def _asg(
        self, props: Mapping[str, Any], resources: Mapping[str, Any]
    ) -> tuple[str, float, float]:
        spec = props.get("LaunchTemplate", {})
        target = _ref_target(spec.get("LaunchTemplateId")) if isinstance(spec, Mapping) else None
        lt = resources.get(target or "", {}).get("Properties", {})
        itype = lt.get("LaunchTemplateData", {}).get("InstanceType")
        if not isinstance(itype, str):
            raise _Unpriced("instance type not found in a launch template of this template")
        count = _literal_number(
            props.get("DesiredCapacity", props.get("MinSize", 0)), "DesiredCapacity"
        )
        return f"{count:g} x {itype}", count, count * self._node_price(itype, False) * self.hours


def _usage_based(rtype: str) -> bool:
    if rtype in _EKS_CLUSTER_TYPES:
        return False
    return (
        rtype in _USAGE_BASED
        or rtype.startswith(_USAGE_BASED_PREFIXES)
        or rtype.startswith("Custom::")
    )


def _stack_names(directory: Path) -> dict[str, str]:
    """templateFile -> stack artifact id, from manifest.json."""
    try:
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AssumptionError(
            f"invalid assembly {directory}: no readable manifest.json ({exc})"
        ) from None
    names: dict[str, str] = {}
    for artifact_id, artifact in (manifest.get("artifacts") or {}).items():
        if artifact.get("type") == "aws:cloudformation:stack":
            template = artifact.get("properties", {}).get("templateFile")
            if isinstance(template, str):
                names[template] = artifact_id
    return names


def estimate_assembly(directory: Path | str, a: Assumptions) -> AssemblyCost:
    """Price every template of a cloud assembly directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AssumptionError(f"invalid assembly: {directory} is not a directory")
    names = _stack_names(directory)
    templates = sorted(directory.glob("*.template.json"))
    if not templates:
        raise AssumptionError(f"invalid assembly {directory}: no *.template.json files")
    pricer = _Pricer(a)
    priced: list[CostLine] = []
    unpriced: list[CostLine] = []
    usage: Counter[str] = Counter()
    for path in templates:
        try:
            template = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise AssumptionError(
                f"invalid assembly: {path.name} is not valid JSON ({exc})"
            ) from None
        stack = names.get(path.name, path.name.removesuffix(".template.json"))
        resources: Mapping[str, Any] = template.get("Resources") or {}
        for logical_id, res in resources.items():
            rtype = str(res.get("Type", "?"))
            if _usage_based(rtype):
                usage[rtype] += 1
                continue
            try:
                detail, qty, usd = pricer.price(rtype, res.get("Properties") or {}, resources)
            except _Unpriced as why:
                unpriced.append(
                    CostLine(
                        stack=stack,
                        logical_id=logical_id,
                        resource_type=rtype,
                        detail=str(why),
                        quantity=1,
                        monthly_usd=None,
                        priced=False,
                    )
                )
                continue
            priced.append(
                CostLine(
                    stack=stack,
                    logical_id=logical_id,
                    resource_type=rtype,
                    detail=detail,
                    quantity=qty,
                    monthly_usd=round(usd, 2),
                    priced=True,
                )
            )
    priced.sort(key=lambda line: (line.stack, -(line.monthly_usd or 0), line.logical_id))
    total = round(sum(line.monthly_usd or 0 for line in priced), 2)
    return AssemblyCost(
        assembly=str(directory),
        total_monthly_usd=total,
        lines=(*priced, *unpriced),
        usage_based=dict(sorted(usage.items())),
    )
