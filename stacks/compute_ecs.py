"""Compute on ECS Fargate (phase 1): the cluster, the API service and the worker service(s)."""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from cdk_constructs.access import allow_ingress
from cdk_constructs.audio_bucket import (
    RESULTS_PREFIX,
    TRANSCRIPTS_PREFIX,
    UPLOADS_PREFIX,
    AudioBucket,
    grant_objects,
)
from cdk_constructs.database import Database
from cdk_constructs.fargate_services import ApiService, MigrationRun, WorkerService
from cdk_constructs.nag import acknowledge
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.retention import retention
from cdk_constructs.signals import ComputeSignals
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig, TaskType


class ComputeEcsStack(Stack):
    """Exposes `cluster`, `api`, `workers` (one `WorkerService` per queue) and `signals`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        audio: AudioBucket,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if config.ecs is None:
            raise ValueError("ComputeEcsStack needs the `ecs` config section")

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENHANCED,
            enable_fargate_capacity_providers=True,
        )
        keep = retention(config.observability.log_retention_days)
        api_logs = logs.LogGroup(self, "ApiLogs", retention=keep)
        worker_logs = logs.LogGroup(self, "WorkerLogs", retention=keep)
        # The runtime logs JSON lines; every `"level": "ERROR"` line counts as a worker error.
        errors = logs.MetricFilter(
            self,
            "WorkerErrorLines",
            log_group=worker_logs,
            filter_pattern=logs.FilterPattern.string_value("$.level", "=", "ERROR"),
            metric_namespace=f"{config.project}/workers",
            metric_name="ErrorLines",
            metric_value="1",
            default_value=0,
        )
        self.worker_errors = errors.metric(statistic="Sum")

        environment = {
            "AWS_REGION": self.region,
            "AUDIO_BUCKET": audio.bucket_name,
            "STT_QUEUE_URL": queues.for_type(TaskType.STT).queue.queue_url,
            "LLM_QUEUE_URL": queues.for_type(TaskType.LLM).queue.queue_url,
            "REDIS_HOST": cache.endpoint,
            "REDIS_PORT": str(cache.port),
            "REDIS_TLS": "true",
            "REDIS_CLUSTER": str(cache.cluster_mode).lower(),
            "MAX_UPLOAD_BYTES": str(config.bucket.max_upload_bytes),
            "MAX_RECEIVE_COUNT": str(config.queues.max_receive_count),
            "STT_PROVIDER": config.ai.stt_provider,
            "LLM_PROVIDER": config.ai.llm_provider,
            "BEDROCK_MODEL_ID": config.ai.bedrock_model_ids[0],
            "TRANSCRIBE_LANGUAGE": config.ai.transcribe_language,
            "LOG_LEVEL": "INFO",
        }
        # The database credentials are read by the runtime from the secret itself (and re-read
        # when a login is refused), so a scheduled rotation needs no task restart.
        environment["DB_SECRET_ARN"] = database.secret.secret_arn
        secrets = {"REDIS_AUTH_TOKEN": ecs.Secret.from_secrets_manager(cache.auth_secret)}

        worker_environment = {**environment, "DB_POOL_MAX": str(config.database.pools.worker)}
        worker_secrets = dict(secrets)
        if config.webhook is not None:
            signing_key = sm.Secret(
                self,
                "WebhookSigningKey",
                description="HMAC-SHA256 key the workers sign completion webhooks with",
                generate_secret_string=sm.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True
                ),
            )
            acknowledge(
                signing_key,
                "AwsSolutions-SMG4",
                "The receiver verifies signatures with this key; rotating it is coordinated "
                "with the receiver by hand (docs/operations.md), not on a timer.",
            )
            worker_environment["WEBHOOK_URL"] = config.webhook.url
            worker_secrets["WEBHOOK_SECRET"] = ecs.Secret.from_secrets_manager(signing_key)

        pools = config.database.pools
        self.migration = MigrationRun(
            self,
            "Migrate",
            cluster=self.cluster,
            environment={**environment, "DB_POOL_MAX": str(pools.migration)},
            secrets=secrets,
            log_group=api_logs,
        )
        allow_ingress(database.connections, self.migration.security_group, "Migration task")
        database.secret.grant_read(self.migration.task_definition.task_role)

        self.api = ApiService(
            self,
            "Api",
            config=config.ecs.api,
            cluster=self.cluster,
            environment={**environment, "DB_POOL_MAX": str(pools.api)},
            secrets=secrets,
            log_group=api_logs,
            access_logs=audio.log_bucket,
        )
        api_role = self.api.task_definition.task_role
        database.secret.grant_read(api_role)
        bucket = audio.bucket_name
        grant_objects(api_role, bucket=bucket, actions=["s3:PutObject"], prefixes=[UPLOADS_PREFIX])
        grant_objects(
            api_role,
            bucket=bucket,
            actions=["s3:GetObject", "s3:DeleteObject"],
            prefixes=[UPLOADS_PREFIX, TRANSCRIPTS_PREFIX, RESULTS_PREFIX],
        )
        # `/readyz` checks the bucket with HeadBucket, which S3 authorises as s3:ListBucket.
        api_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"]
            )
        )
        for pair in queues.pairs:  # SendMessage, plus GetQueueAttributes for `/readyz`
            pair.queue.grant_send_messages(api_role)

        self.workers = [
            WorkerService(
                self,
                "Worker" + ("" if len(queues.pairs) == 1 else pair.name.capitalize()),
                config=config.ecs.worker,
                cluster=self.cluster,
                queues=pair,
                environment=worker_environment,
                secrets=worker_secrets,
                log_group=worker_logs,
            )
            for pair in queues.pairs
        ]
        for worker in self.workers:
            role = worker.task_definition.task_role
            allow_ingress(database.connections, worker.service, "Workers")
            allow_ingress(cache.connections, worker.service, "Workers")
            database.secret.grant_read(role)
            # Read the audio; delete uploads that arrive after their task expired (the sweeper).
            grant_objects(
                role,
                bucket=bucket,
                actions=["s3:GetObject", "s3:DeleteObject"],
                prefixes=[UPLOADS_PREFIX],
            )
            grant_objects(
                role,
                bucket=bucket,
                actions=["s3:GetObject", "s3:PutObject"],
                prefixes=[TRANSCRIPTS_PREFIX, RESULTS_PREFIX],
            )
            for pair in queues.pairs:
                pair.queue.grant_send_messages(role)
            worker.queues.queue.grant_consume_messages(role)
            # The worker fails the tasks whose messages reached the DLQ and keeps the messages.
            worker.queues.dlq.grant_consume_messages(role)
            # Scale-in protection of its own task while jobs run (aipp/worker/ecs.py).
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                    resources=[
                        self.format_arn(
                            service="ecs",
                            resource="task",
                            resource_name=f"{self.cluster.cluster_name}/*",
                        )
                    ],
                )
            )
            cluster_id = self.get_logical_id(cast(ecs.CfnCluster, self.cluster.node.default_child))
            acknowledge(
                role,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:"
                f"<AWS::AccountId>:task/<{cluster_id}>/*]",
                "Task ids are assigned by ECS at run time; the wildcard covers the tasks of this "
                "cluster only, for the two scale-in protection actions.",
            )
            self._grant_ai(role, config, worker.queues.task_types)

        for service in (self.api.service, *(w.service for w in self.workers)):
            service.node.add_dependency(self.migration.run)
        allow_ingress(database.connections, self.api.service, "Task API")
        allow_ingress(cache.connections, self.api.service, "Task API")

        self.signals = ComputeSignals(
            load_balancer=self.api.load_balancer,
            scaling=[w.backlog_per_task for w in self.workers],
            worker_errors=self.worker_errors,
            utilisation=[
                cw.Metric(
                    namespace="AWS/ECS",
                    metric_name="CPUUtilization",
                    dimensions_map={
                        "ClusterName": self.cluster.cluster_name,
                        "ServiceName": w.service.service_name,
                    },
                    period=Duration.minutes(5),
                    label=f"worker {w.queues.name} CPU %",
                )
                for w in self.workers
            ],
            utilisation_title="worker CPU %",
        )

    def _grant_ai(self, role: iam.IRole, config: PhaseConfig, types: tuple[TaskType, ...]) -> None:
        """Transcribe job actions and Bedrock invocation on the configured models only."""
        transcribe = TaskType.STT in types and (
            config.ai.stt_provider == "transcribe" or config.ai.managed_fallback
        )
        statements = []
        if transcribe:
            statements.append(
                iam.PolicyStatement(
                    actions=[
                        "transcribe:StartTranscriptionJob",
                        "transcribe:GetTranscriptionJob",
                        "transcribe:DeleteTranscriptionJob",
                    ],
                    resources=[
                        self.format_arn(
                            service="transcribe",
                            resource="transcription-job",
                            resource_name=f"{config.project}-*",
                        )
                    ],
                )
            )
        if TaskType.LLM in types and (
            config.ai.llm_provider == "bedrock" or config.ai.managed_fallback
        ):
            statements.append(
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                    resources=[
                        self.format_arn(
                            service="bedrock",
                            account="",
                            resource="foundation-model",
                            resource_name=model_id,
                        )
                        for model_id in config.ai.bedrock_model_ids
                    ],
                )
            )
        for statement in statements:
            role.add_to_principal_policy(statement)
        if transcribe:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:transcribe:<AWS::Region>:"
                f"<AWS::AccountId>:transcription-job/{config.project}-*]",
                "Transcription job names are made per task at run time; the wildcard is "
                "limited to this platform's job-name prefix.",
            )
