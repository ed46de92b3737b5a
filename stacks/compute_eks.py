"""Compute on EKS (phases 2-3, and one side of a switch to or from ECS): the cluster, its node
groups and the add-ons, with this compute's own dashboard."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.access import allow_ingress
from cdk_constructs.alarms import Alarms
from cdk_constructs.database import Database
from cdk_constructs.eks_addons import AddonContext, ClusterAddon, default_addons, deploy_addons
from cdk_constructs.eks_cluster import PlatformCluster
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig


class ComputeEksStack(Stack):
    """Exposes `platform` (`PlatformCluster`), `addons` (by name) and `alarms`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        alarm_topic: sns.ITopic,
        addons: list[ClusterAddon] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.eks is None:
            raise ValueError("ComputeEksStack needs the `eks` config section")
        name = config.name_prefix  # the cluster keeps its name from phase 2 to 3

        self.platform = PlatformCluster(self, "Eks", config=config.eks, vpc=vpc, name=name)
        cluster = self.platform.cluster
        self.addons = deploy_addons(
            AddonContext(
                scope=self,
                cluster=cluster,
                cluster_name=name,
                config=config.eks,
                queues=[pair.queue for pair in queues.layout(config.queue_mode_of("eks"))],
            ),
            default_addons(config.eks) if addons is None else addons,
        )
        allow_ingress(database.connections, cluster, "EKS nodes and pods")
        allow_ingress(cache.connections, cluster, "EKS nodes and pods")

        self.alarms = Alarms(self, alarm_topic)
        insights = {"ClusterName": name}
        utilisation = [
            cw.Metric(
                namespace="ContainerInsights",
                metric_name=metric,
                dimensions_map=insights,
                period=Duration.minutes(5),
                statistic="Average",
                label=label,
            )
            for metric, label in (
                ("node_gpu_utilization", "GPU utilisation %"),
                ("node_cpu_utilization", "node CPU %"),
            )
        ]
        cw.Dashboard(
            self,
            "Dashboard",
            default_interval=Duration.hours(6),
            widgets=[[cw.GraphWidget(title="GPU and node CPU %", left=utilisation, width=24)]],
        )
