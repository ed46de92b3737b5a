"""Fargate services of phase 1: the task API behind an ALB and the queue workers, and the
one-container task definition they (and the migration run) share."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack, Token, Validations
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk_constructs.images import image_asset
from cdk_constructs.nag import acknowledge
from cdk_constructs.runtime_env import RELEASE
from cdk_constructs.task_queues import QueuePair
from phases.models import ApiServiceConfig, WorkerServiceConfig

API_PORT = 8000
HEALTH_PATH = "/healthz"


def task_definition(
    scope: Construct,
    construct_id: str,
    *,
    cpu: int,
    memory_mib: int,
    target: str,
    environment: dict[str, str],
    log_group: logs.ILogGroup,
    command: list[str] | None = None,
    port: int | None = None,
    health_check: list[str] | None = None,
    image: ecr_assets.DockerImageAsset | None = None,
) -> ecs.FargateTaskDefinition:
    """A one-container task definition for a Dockerfile target (its image made here unless
    given), logging to `log_group`; the process learns its release (`AIPP_APP_RELEASE`)."""
    image = image or image_asset(scope, f"{construct_id}Image", target=target)
    task = ecs.FargateTaskDefinition(
        scope,
        construct_id,
        cpu=cpu,
        memory_limit_mib=memory_mib,
        runtime_platform=ecs.RuntimePlatform(
            cpu_architecture=ecs.CpuArchitecture.X86_64,
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        ),
    )
    # The root filesystem is read-only; /tmp is a task-local scratch volume (multipart uploads
    # spool there, the worker writes its heartbeat file there).
    task.add_volume(name="tmp")
    container = task.add_container(
        "App",
        image=ecs.ContainerImage.from_docker_image_asset(image),
        command=command,
        environment={**environment, RELEASE: image.asset_hash},
        logging=ecs.LogDriver.aws_logs(stream_prefix=target, log_group=log_group),
        port_mappings=[ecs.PortMapping(container_port=port)] if port else None,
        readonly_root_filesystem=True,
        stop_timeout=Duration.seconds(120),
        # ECS ignores the image's HEALTHCHECK: restate it so a hung process is replaced.
        health_check=ecs.HealthCheck(
            command=["CMD", *health_check],
            interval=Duration.seconds(30),
            timeout=Duration.seconds(5),
            retries=3,
            start_period=Duration.seconds(60),
        )
        if health_check
        else None,
    )
    container.add_mount_points(
        ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False)  # noqa: S108 - a private per-task volume
    )
    _acknowledge_task(task)
    return task


def _acknowledge_task(task: ecs.FargateTaskDefinition) -> None:
    acknowledge(
        task.obtain_execution_role(),
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; every other action of "
        "the execution role is scoped to the image repository and the log group.",
    )
    acknowledge(
        task,
        "AwsSolutions-ECS2",
        "Only non-secret settings (endpoints, queue URLs, limits, secret ARNs) are plain "
        "environment variables; the runtime reads every credential from Secrets Manager by "
        "ARN with its task role.",
    )


def rolling_service(
    scope: Construct,
    *,
    cluster: ecs.ICluster,
    task: ecs.FargateTaskDefinition,
    desired: int,
    **options: Any,
) -> ecs.FargateService:
    """A Fargate service in the private subnets, rolling updates that keep full capacity, and
    the deployment circuit breaker rolling back a deployment that does not stabilise."""
    return ecs.FargateService(
        scope,
        "Service",
        cluster=cluster,
        task_definition=task,
        desired_count=desired,
        min_healthy_percent=100,
        max_healthy_percent=200,
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        enable_execute_command=False,
        **options,
    )


class ApiService(Construct):
    """The task API on Fargate behind an internet-facing ALB, autoscaled on CPU.

    Exposes `service`, `load_balancer`, `target_group`, `task_definition` and `release` (the
    image's asset hash, which `/healthz` reports).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ApiServiceConfig,
        cluster: ecs.ICluster,
        environment: dict[str, str],
        log_group: logs.ILogGroup,
        access_logs: s3.IBucket,
        certificate_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        vpc = cluster.vpc
        image = image_asset(self, "Image", target="api")
        self.release = image.asset_hash
        self.task_definition = task_definition(
            self,
            "Task",
            cpu=config.cpu,
            memory_mib=config.memory_mib,
            target="api",
            image=image,
            environment=environment,
            log_group=log_group,
            port=API_PORT,
            health_check=[
                "python",
                "-c",
                "import sys, urllib.request; sys.exit(urllib.request.urlopen("
                f"'http://127.0.0.1:{API_PORT}{HEALTH_PATH}', timeout=3).status != 200)",
            ],
        )

        self._load_balancer(vpc, access_logs)
        self.service = rolling_service(
            self,
            cluster=cluster,
            task=self.task_definition,
            desired=config.count.min,
            health_check_grace_period=Duration.seconds(60),
        )

        self._listeners(vpc, certificate_arn)
        self._scale(config)

    def _load_balancer(self, vpc: ec2.IVpc, access_logs: s3.IBucket) -> None:
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            drop_invalid_header_fields=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        )
        if Token.is_unresolved(Stack.of(self).region):
            acknowledge(
                self.load_balancer,
                "AwsSolutions-ELB2",
                "Environment-agnostic synth: ALB log delivery needs the region's ELB account in "
                "the bucket policy, so access logs are on only when config sets `region`.",
            )
        else:
            self.load_balancer.log_access_logs(access_logs, prefix="alb")
        for sg in self.load_balancer.connections.security_groups:
            acknowledge(
                sg,
                "AwsSolutions-EC23",
                "The ALB is the public entry point of the task API; it accepts HTTP(S) from "
                "anywhere and every request is authenticated by API key behind it.",
            )

    def _listeners(self, vpc: ec2.IVpc, certificate_arn: str | None) -> None:
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=vpc,
            port=API_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH, healthy_http_codes="200", interval=Duration.seconds(15)
            ),
        )
        # One port-80 listener for the life of the load balancer: it forwards while there is no
        # certificate and redirects to HTTPS once there is. Adding a second port-80 listener
        # (CDK's `add_redirect`) beside the old one would be rejected as a duplicate port and
        # roll the update back.
        http = self.load_balancer.add_listener(
            "Http",
            port=80,
            protocol=elbv2.ApplicationProtocol.HTTP,
            default_action=elbv2.ListenerAction.redirect(
                protocol="HTTPS", port="443", permanent=True
            )
            if certificate_arn
            else elbv2.ListenerAction.forward([self.target_group]),
        )
        if certificate_arn:
            listener = self.load_balancer.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_action=elbv2.ListenerAction.forward([self.target_group]),
            )
        else:
            listener = http
            # No nag rule covers a plain HTTP listener; record the choice as a warning and
            # acknowledge it so it shows in the validation report with its reason.
            Validations.of(listener).add_warning(
                "aipp:PlainHttpListener", "The task API listener serves plain HTTP."
            )
            acknowledge(
                listener,
                "annotation::aipp:PlainHttpListener",
                "No certificate is configured (`edge.certificate_arn` or `edge.domain`): the "
                "listener serves plain HTTP until one is, after which HTTP redirects to HTTPS.",
            )
        _hide_metrics(listener)

    def _scale(self, config: ApiServiceConfig) -> None:
        scaling = self.service.auto_scale_task_count(
            min_capacity=config.count.min, max_capacity=config.count.max
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=config.target_cpu_percent,
            scale_in_cooldown=Duration.seconds(120),
            scale_out_cooldown=Duration.seconds(60),
        )


def _hide_metrics(listener: elbv2.ApplicationListener) -> None:
    # Prometheus scrapes `/metrics` inside the VPC; the internet gets a 404 for it.
    listener.add_action(
        "HideMetrics",
        priority=1,
        conditions=[elbv2.ListenerCondition.path_patterns(["/metrics", "/metrics/*"])],
        action=elbv2.ListenerAction.fixed_response(
            404,
            content_type="application/json",
            message_body='{"error": {"code": "not_found", "message": "Not found"}}',
        ),
    )


class WorkerService(Construct):
    """Queue workers on Fargate, step-scaled on backlog per running task, from and to zero.

    backlog per task = (visible + in-flight messages) / running tasks. With no task running,
    any message counts as a full backlog so the service starts one; with nothing to do, it
    scales in one task at a time down to `count.min` (0 by default).
    Exposes `service`, `task_definition`, `queues`, `backlog_per_task` (the scaling metric).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: WorkerServiceConfig,
        cluster: ecs.ICluster,
        queues: QueuePair,
        environment: dict[str, str],
        log_group: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.queues = queues
        self.task_definition = task_definition(
            self,
            "Task",
            cpu=config.cpu,
            memory_mib=config.memory_mib,
            target="worker",
            environment=environment,
            log_group=log_group,
            health_check=["python", "-m", "aipp.worker.health"],
        )
        capacity = "FARGATE_SPOT" if config.spot else "FARGATE"
        self.service = rolling_service(
            self,
            cluster=cluster,
            task=self.task_definition,
            desired=config.count.min,
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=capacity, weight=1)
            ],
        )

        self._scale_on_backlog(config, cluster, queues)

    def _scale_on_backlog(
        self, config: WorkerServiceConfig, cluster: ecs.ICluster, queues: QueuePair
    ) -> None:
        target = config.backlog_per_task
        period = Duration.minutes(1)
        running = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": cluster.cluster_name,
                "ServiceName": self.service.service_name,
            },
            statistic="Average",
            period=period,
        )
        # Metric ids are unique per queue so several workers can share one graph.
        v, f, r = (f"{x}_{queues.name.replace('-', '_')}" for x in ("visible", "inflight", "tasks"))
        self.backlog_per_task = cw.MathExpression(
            label=f"Backlog per task ({queues.name})",
            expression=(
                f"IF(FILL({r}, 0) > 0, ({v} + {f}) / FILL({r}, 0), IF({v} + {f} > 0, {target}, 0))"
            ),
            using_metrics={
                v: queues.queue.metric_approximate_number_of_messages_visible(
                    period=period, statistic="Maximum"
                ),
                f: queues.queue.metric_approximate_number_of_messages_not_visible(
                    period=period, statistic="Maximum"
                ),
                r: running,
            },
            period=period,
        )
        scaling = self.service.auto_scale_task_count(
            min_capacity=config.count.min, max_capacity=config.count.max
        )
        scaling.scale_on_metric(
            "Backlog",
            metric=self.backlog_per_task,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            scaling_steps=[
                appscaling.ScalingInterval(upper=target / 2, change=-1),
                appscaling.ScalingInterval(lower=target, change=+1),
                appscaling.ScalingInterval(lower=target * 3, change=+3),
            ],
            cooldown=Duration.seconds(60),
            evaluation_periods=1,
            datapoints_to_alarm=1,
        )
