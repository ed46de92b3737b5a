"""Compute on EKS (phases 2-3, and one side of a switch to or from ECS): the cluster, its node
groups and add-ons, the workloads (migration, API, STT and LLM workers with their model
servers), with this compute's own alarms and dashboard."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk_constructs.access import allow_ingress
from cdk_constructs.alarms import Alarms
from cdk_constructs.audio_bucket import AudioBucket, ModelsBucket
from cdk_constructs.database import Database
from cdk_constructs.eks_addons import AddonContext, ClusterAddon, default_addons, deploy_addons
from cdk_constructs.eks_cluster import PlatformCluster
from cdk_constructs.eks_workloads import PlatformWorkloads
from cdk_constructs.k8s import workers as workers_k8s
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.retention import retention
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig
from stacks.edge import ApiOutputs, EdgeStack, api_outputs

FIVE_MINUTES = Duration.minutes(5)


class ComputeEksStack(Stack):
    """Exposes `platform` (`PlatformCluster`), `addons` (by name), `workloads`
    (`PlatformWorkloads`), `application_logs`, `alarms` and `outputs` (the API's URL and
    release, for the delivery pipeline; None without workloads)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        edge: EdgeStack,
        audio: AudioBucket,
        models: ModelsBucket,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        alarm_topic: sns.ITopic,
        webhook_key: sm.ISecret | None = None,
        addons: list[ClusterAddon] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.eks is None:
            raise ValueError("ComputeEksStack needs the `eks` config section")
        self.config = config
        name = config.name_prefix  # the cluster keeps its name from phase 2 to 3

        self.platform = PlatformCluster(self, "Eks", config=config.eks, vpc=vpc, name=name)
        cluster = self.platform.cluster
        self.addons = self._addons(queues, addons)
        allow_ingress(database.connections, cluster, "EKS nodes and pods")
        allow_ingress(cache.connections, cluster, "EKS nodes and pods")

        self.application_logs = self._application_logs(name)

        self.workloads: PlatformWorkloads | None = None
        self.outputs: ApiOutputs | None = None
        required = {"aws-load-balancer-controller", "argo-rollouts", "keda", "metrics-server"}
        if required | {"nvidia-device-plugin"} <= set(self.addons):
            self.workloads = PlatformWorkloads(
                self,
                "Workloads",
                config=config,
                platform=self.platform,
                addons=self.addons,
                web_acl_arn=edge.web_acl_arn,
                certificate_arn=edge.certificate_arn,
                audio=audio,
                models=models,
                database=database,
                cache=cache,
                queues=queues,
                webhook_key=webhook_key,
            )
            self.outputs = api_outputs(
                self,
                config,
                host=self.workloads.load_balancer_dns_name,
                https=edge.certificate_arn is not None,
                release=self.workloads.images.api.asset_hash,
            )
        self.alarms = Alarms(self, alarm_topic)
        self._observe()

    def _application_logs(self, name: str) -> logs.LogGroup:
        """Container Insights' Fluent Bit writes the pods' logs here; created first, with the
        platform's retention, so the agent does not create it without one."""
        group = logs.LogGroup(
            self,
            "ApplicationLogs",
            log_group_name=f"/aws/containerinsights/{name}/application",
            retention=retention(self.config.observability.log_retention_days),
        )
        if "container-insights" in self.addons:
            self.addons["container-insights"].node.add_dependency(group)
        return group

    def _addons(
        self, queues: TaskQueues, addons: list[ClusterAddon] | None
    ) -> dict[str, Construct]:
        """The cluster's add-ons (the defaults unless a list is given), KEDA reading the queues
        of the layout the EKS workers consume."""
        config = self.config
        assert config.eks is not None
        grace = workers_k8s.termination_grace_seconds(
            config.queues.longest_job_seconds, config.queues.visibility_timeout_seconds
        )
        return deploy_addons(
            AddonContext(
                scope=self,
                cluster=self.platform.cluster,
                cluster_name=config.name_prefix,
                config=config.eks,
                queues=[pair.queue for pair in queues.layout(config.queue_mode_of("eks"))],
                max_pod_grace_seconds=grace,
                domain=config.edge.domain,
            ),
            default_addons(config.eks, config.edge.domain) if addons is None else addons,
        )

    def _observe(self) -> None:
        """API alarms on the Ingress's ALB, the worker error alarm, and the dashboard."""
        name = self.config.name_prefix
        widgets: list[list[cw.IWidget]] = []

        def per_pool(metric: str, label: str) -> cw.Metric:
            return cw.Metric(
                namespace="ContainerInsights",
                metric_name=metric,
                dimensions_map={"ClusterName": name},
                period=FIVE_MINUTES,
                statistic="Average",
                label=label,
            )

        utilisation = [
            per_pool("node_gpu_utilization", "GPU utilisation %"),
            per_pool("node_gpu_memory_utilization", "GPU memory %"),
            per_pool("node_cpu_utilization", "node CPU %"),
        ]
        if self.workloads is not None:
            widgets.append(self._workload_alarms(self.workloads))
        widgets.append(
            [cw.GraphWidget(title="GPU, GPU memory and node CPU %", left=utilisation, width=24)]
        )
        if self.alarms.by_name:
            widgets.append([self.alarms.status_widget("EKS compute alarms")])
        cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(6), widgets=widgets)

    def _workload_alarms(self, workloads: PlatformWorkloads) -> list[cw.IWidget]:
        """The API's 5xx and latency alarms on its ALB and the workers' error-line alarm; their
        dashboard row."""
        dimension = {"LoadBalancer": workloads.load_balancer_full_name}

        def alb(metric: str, statistic: str) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=metric,
                dimensions_map=dimension,
                period=FIVE_MINUTES,
                statistic=statistic,
            )

        api_5xx = alb("HTTPCode_Target_5XX_Count", "Sum")
        elb_5xx = alb("HTTPCode_ELB_5XX_Count", "Sum")
        latency = alb("TargetResponseTime", "p99")
        # The runtime logs JSON lines; Fluent Bit puts them under `log_processed`. Every
        # `"level": "ERROR"` line of a worker container counts.
        errors = logs.MetricFilter(
            self,
            "WorkerErrorLines",
            log_group=self.application_logs,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.string_value("$.log_processed.level", "=", "ERROR"),
                logs.FilterPattern.string_value("$.kubernetes.container_name", "=", "worker"),
            ),
            metric_namespace=f"{self.config.project}/workers",
            metric_name="EksErrorLines",
            metric_value="1",
            default_value=0,
        ).metric(statistic="Sum", period=FIVE_MINUTES)
        self.alarms.add_compute_alarms(
            self.config.observability,
            api_5xx=api_5xx,
            api_latency_p99=latency,
            worker_errors=errors,
        )
        return [
            cw.GraphWidget(title="API 5xx (target / ALB)", left=[api_5xx, elb_5xx], width=8),
            cw.GraphWidget(title="API latency p99 (s)", left=[latency], width=8),
            cw.GraphWidget(title="Worker errors", left=[errors], width=8),
        ]
