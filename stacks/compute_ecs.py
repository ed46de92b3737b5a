"""Compute on ECS Fargate (phase 1, and one side of a switch to or from EKS): the cluster, the
migration run, the API service behind its load balancer and the worker service(s), with their
own alarms and dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from aipp_contract.messages import Kind
from cdk_constructs.access import allow_ingress
from cdk_constructs.alarms import Alarms
from cdk_constructs.audio_bucket import AudioBucket
from cdk_constructs.database import Database
from cdk_constructs.fargate_services import ApiService, WorkerService
from cdk_constructs.grants import grant_api, grant_worker
from cdk_constructs.migration import MigrationRun
from cdk_constructs.nag import acknowledge, nag_resource_id
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.retention import retention
from cdk_constructs.runtime_env import platform_endpoints, runtime_environment
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig, TaskType
from stacks.edge import ApiOutputs, EdgeStack, api_outputs, hosted_zone

FIVE_MINUTES = Duration.minutes(5)


class ComputeEcsStack(Stack):
    """Exposes `cluster`, `migration`, `api`, `workers` (one per queue it consumes), `alarms`
    and `outputs` (the API's URL and release, for the delivery pipeline)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        edge: EdgeStack,
        audio: AudioBucket,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        alarm_topic: sns.ITopic,
        webhook_key: sm.ISecret | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.ecs is None:
            raise ValueError("ComputeEcsStack needs the `ecs` config section")
        self.webhook_key = webhook_key
        self.config = config
        api_logs = self._cluster_and_logs(vpc)
        # No credential appears in a task definition: the runtime reads each secret by ARN
        # with its task role (the database's, the Redis AUTH token, the webhook key).
        self.endpoints = platform_endpoints(
            region=self.region,
            bucket=audio.bucket_name,
            queues=queues,
            serving=config.serving_queue_mode,
            database=database,
            cache=cache,
            webhook_secret_arn=webhook_key.secret_arn if webhook_key else None,
        )
        send_to = {t: queues.for_type(t, config.serving_queue_mode).queue for t in TaskType}
        self.migration = self._migration(database, api_logs)
        self.api = self._api(
            edge=edge,
            audio=audio,
            database=database,
            cache=cache,
            log_group=api_logs,
            send_to=send_to,
        )
        self.workers = self._workers(
            queues=queues,
            audio=audio,
            database=database,
            cache=cache,
            send_to=list(dict.fromkeys(send_to.values())),
        )
        for service in (self.api.service, *(w.service for w in self.workers)):
            service.node.add_dependency(self.migration.run)
        self.outputs = self._outputs(edge)
        self.alarms = Alarms(self, alarm_topic)
        self._observe()

    def _outputs(self, edge: EdgeStack) -> ApiOutputs:
        """The API's URL and release, for the delivery pipeline."""
        return api_outputs(
            self,
            self.config,
            host=self.api.load_balancer.load_balancer_dns_name,
            https=edge.certificate_arn is not None,
            release=self.api.release,
        )

    def _cluster_and_logs(self, vpc: ec2.IVpc) -> logs.ILogGroup:
        """The cluster, the workers' log group (`worker_logs`); returns the API's log group,
        which the migration shares."""
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
            enable_fargate_capacity_providers=True,
        )
        keep = retention(self.config.observability.log_retention_days)
        api_logs = logs.LogGroup(self, "ApiLogs", retention=keep)
        self.worker_logs = logs.LogGroup(self, "WorkerLogs", retention=keep)
        return api_logs

    def _migration(self, database: Database, log_group: logs.ILogGroup) -> MigrationRun:
        """The schema migration the services wait for; the only reader of the master secret."""
        config = self.config
        migration = MigrationRun(
            self,
            "Migrate",
            cluster=self.cluster,
            environment=runtime_environment(
                config,
                self.endpoints,
                kind=Kind.MIGRATION,
                ai=config.ai_for("ecs"),
                master_secret_arn=database.master_secret.secret_arn,
            ),
            log_group=log_group,
            log_retention_days=config.observability.log_retention_days,
        )
        allow_ingress(database.connections, migration.security_group, "Migration task")
        database.master_secret.grant_read(migration.task_definition.task_role)
        database.secret.grant_read(migration.task_definition.task_role)
        return migration

    def _api(
        self,
        *,
        edge: EdgeStack,
        audio: AudioBucket,
        database: Database,
        cache: RedisCache,
        log_group: logs.ILogGroup,
        send_to: Mapping[TaskType, sqs.IQueue],
    ) -> ApiService:
        config = self.config
        assert config.ecs is not None
        api = ApiService(
            self,
            "Api",
            config=config.ecs.api,
            cluster=self.cluster,
            environment=runtime_environment(
                config, self.endpoints, kind=Kind.API, ai=config.ai_for("ecs")
            ),
            log_group=log_group,
            access_logs=audio.log_bucket,
            certificate_arn=edge.certificate_arn,
        )
        role = api.task_definition.task_role
        database.secret.grant_read(role)
        cache.auth_secret.grant_read(role)
        grant_api(role, bucket=audio.bucket_name, send_to=send_to)
        allow_ingress(database.connections, api.service, "Task API")
        allow_ingress(cache.connections, api.service, "Task API")
        wafv2.CfnWebACLAssociation(
            self,
            "ApiWaf",
            resource_arn=api.load_balancer.load_balancer_arn,
            web_acl_arn=edge.web_acl_arn,
        )
        domain = config.edge.domain
        if domain is not None:
            # This compute's share of the API's stable address; the other compute of a switch
            # holds the other weighted record of the same name.
            route53.ARecord(
                self,
                "ApiRecord",
                zone=hosted_zone(self, domain),
                record_name=domain.name,
                target=route53.RecordTarget.from_alias(
                    route53_targets.LoadBalancerTarget(api.load_balancer)
                ),
                set_identifier="ecs",
                weight=config.traffic_percent("ecs"),
            )
        return api

    def _workers(
        self,
        *,
        queues: TaskQueues,
        audio: AudioBucket,
        database: Database,
        cache: RedisCache,
        send_to: list[sqs.IQueue],
    ) -> list[WorkerService]:
        config = self.config
        assert config.ecs is not None
        pairs = queues.layout(config.queue_mode_of("ecs"))
        workers = []
        for pair in pairs:
            worker = WorkerService(
                self,
                "Worker" + ("" if len(pairs) == 1 else pair.name.capitalize()),
                config=config.ecs.worker,
                cluster=self.cluster,
                queues=pair,
                environment=runtime_environment(
                    config,
                    self.endpoints,
                    kind=Kind.WORKER,
                    ai=config.ai_for("ecs"),
                    worker=pair,
                    concurrency=config.ecs.worker.concurrency,
                ),
                log_group=self.worker_logs,
            )
            role = worker.task_definition.task_role
            allow_ingress(database.connections, worker.service, "Workers")
            allow_ingress(cache.connections, worker.service, "Workers")
            database.secret.grant_read(role)
            cache.auth_secret.grant_read(role)
            if self.webhook_key is not None:
                self.webhook_key.grant_read(role)
            grant_worker(
                role,
                ai=config.ai_for("ecs"),
                bucket=audio.bucket_name,
                consumes=pair,
                send_to=send_to,
            )
            self._grant_task_protection(role)
            workers.append(worker)
        return workers

    def _grant_task_protection(self, role: iam.IRole) -> None:
        """Scale-in protection of the worker's own task while jobs run (aipp/worker/ecs.py)."""
        tasks = self.format_arn(
            service="ecs", resource="task", resource_name=f"{self.cluster.cluster_name}/*"
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"], resources=[tasks]
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource_id(self, tasks)}]",
            "Task ids are assigned by ECS at run time; the wildcard covers the tasks of this "
            "cluster only, for the two scale-in protection actions.",
        )

    def _observe(self) -> None:
        """The API's and workers' alarms, on the platform's topic, and this compute's dashboard."""
        obs = self.config.observability
        metrics = self.api.load_balancer.metrics
        api_5xx = metrics.http_code_target(
            elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
        )
        elb_5xx = metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
        )
        latency = metrics.target_response_time(period=FIVE_MINUTES, statistic="p99")
        # The runtime logs JSON lines; every `"level": "ERROR"` line counts as a worker error.
        errors = logs.MetricFilter(
            self,
            "WorkerErrorLines",
            log_group=self.worker_logs,
            filter_pattern=logs.FilterPattern.string_value("$.level", "=", "ERROR"),
            metric_namespace=f"{self.config.project}/workers",
            metric_name="ErrorLines",
            metric_value="1",
            default_value=0,
        ).metric(statistic="Sum", period=FIVE_MINUTES)
        self.alarms.add_compute_alarms(
            obs, api_5xx=api_5xx, api_latency_p99=latency, worker_errors=errors
        )
        self._dashboard(api_5xx, elb_5xx, latency, errors)

    def _dashboard(
        self, api_5xx: cw.IMetric, elb_5xx: cw.IMetric, latency: cw.IMetric, errors: cw.IMetric
    ) -> None:
        cpu = [
            cw.Metric(
                namespace="AWS/ECS",
                metric_name="CPUUtilization",
                dimensions_map={
                    "ClusterName": self.cluster.cluster_name,
                    "ServiceName": w.service.service_name,
                },
                period=FIVE_MINUTES,
                label=f"worker {w.queues.name} CPU %",
            )
            for w in self.workers
        ]
        cw.Dashboard(
            self,
            "Dashboard",
            default_interval=Duration.hours(6),
            widgets=[
                [
                    cw.GraphWidget(
                        title="API 5xx (target / ALB)", left=[api_5xx, elb_5xx], width=8
                    ),
                    cw.GraphWidget(title="API latency p99 (s)", left=[latency], width=8),
                    cw.GraphWidget(
                        title="Worker backlog per task",
                        left=[w.backlog_per_task for w in self.workers],
                        width=8,
                    ),
                ],
                [cw.GraphWidget(title="Worker errors / CPU %", left=[errors], right=cpu, width=24)],
                [self.alarms.status_widget("ECS compute alarms")],
            ],
        )
