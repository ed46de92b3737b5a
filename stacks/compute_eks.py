"""Compute on EKS (phases 2-3): the cluster, its node groups and the add-ons.

The workloads that run on it (API, workers, Whisper and vLLM servers, KEDA scaled objects,
rollouts) are deployed onto this cluster by the workloads stack of a later phase step.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk_constructs.access import allow_ingress
from cdk_constructs.database import Database
from cdk_constructs.eks_addons import AddonContext, ClusterAddon, default_addons, deploy_addons
from cdk_constructs.eks_cluster import PlatformCluster
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.signals import ComputeSignals
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig


class ComputeEksStack(Stack):
    """Exposes `platform` (`PlatformCluster`), `addons` (by name) and `signals`."""

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
        addons: list[ClusterAddon] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.eks is None:
            raise ValueError("ComputeEksStack needs the `eks` config section")
        name = f"{config.project}-p{int(config.phase)}-{config.env.value}"

        self.platform = PlatformCluster(self, "Eks", config=config.eks, vpc=vpc, name=name)
        cluster = self.platform.cluster
        self.addons = deploy_addons(
            AddonContext(
                scope=self,
                cluster=cluster,
                cluster_name=name,
                config=config.eks,
                queues=[pair.queue for pair in queues.pairs],
            ),
            default_addons(config.eks) if addons is None else addons,
        )
        allow_ingress(database.connections, cluster, "EKS nodes and pods")
        allow_ingress(cache.connections, cluster, "EKS nodes and pods")

        insights = {"ClusterName": name}
        self.signals = ComputeSignals(
            utilisation=[
                cw.Metric(
                    namespace="ContainerInsights",
                    metric_name="node_gpu_utilization",
                    dimensions_map=insights,
                    period=Duration.minutes(5),
                    statistic="Average",
                    label="GPU utilisation %",
                ),
                cw.Metric(
                    namespace="ContainerInsights",
                    metric_name="node_cpu_utilization",
                    dimensions_map=insights,
                    period=Duration.minutes(5),
                    statistic="Average",
                    label="node CPU %",
                ),
            ],
            utilisation_title="GPU and node CPU %",
        )
