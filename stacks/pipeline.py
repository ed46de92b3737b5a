"""Pipeline: step 3 of the task flow, the upload-check Lambda fed by the bucket's events.

S3 sends "Object Created" events for the audio bucket to EventBridge; a rule matching the
`uploads/` prefix puts them on an SQS queue, and the Lambda consumes that queue, checks each
object and queues the STT message. EventBridge rather than a bucket notification keeps the
dependency one-way (Data <- Pipeline): a notification would make the bucket's stack point at
this stack's function and form a cycle. The queue between them:
- bounds the Lambda's concurrency (the event source mapping's maximum concurrency) and with it
  its database connections, without reserving any of the account's concurrency;
- keeps events through a Lambda or database outage for the queue's retention (4 days), where
  EventBridge alone retries for at most 24 hours;
- hands an event that keeps failing to the DLQ (`failed_events`), alarmed, for a redrive.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from aipp_contract.keys import UPLOADS
from aipp_contract.messages import Kind
from cdk_constructs.access import allow_ingress
from cdk_constructs.audio_bucket import AudioBucket
from cdk_constructs.database import Database
from cdk_constructs.grants import grant_upload_check
from cdk_constructs.images import lambda_image
from cdk_constructs.nag import acknowledge
from cdk_constructs.retention import retention
from cdk_constructs.runtime_env import Endpoints, runtime_environment
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig, TaskType


class PipelineStack(Stack):
    """Exposes `upload_function` and `failed_events` (where undeliverable or failed events go)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        audio: AudioBucket,
        database: Database,
        queues: TaskQueues,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # New uploads go to the layout that takes new work (the old one until a cutover).
        stt = queues.for_type(TaskType.STT, config.serving_queue_mode).queue
        llm = queues.for_type(TaskType.LLM, config.serving_queue_mode).queue
        role = self._role()
        timeout = Duration.seconds(30)
        self._event_queues(timeout)
        upload = config.upload_check
        self.upload_function = self._function(
            config,
            role=role,
            vpc=vpc,
            timeout=timeout,
            audio=audio,
            database=database,
            stt=stt,
            llm=llm,
        )
        self.upload_function.add_event_source(
            sources.SqsEventSource(
                self.upload_events,
                batch_size=10,
                max_batching_window=Duration.seconds(1),
                max_concurrency=upload.max_concurrency,
                report_batch_item_failures=True,
            )
        )
        allow_ingress(database.connections, self.upload_function, "Upload check Lambda")
        grant_upload_check(role, bucket=audio.bucket_name)
        stt.grant_send_messages(self.upload_function)
        database.secret.grant_read(self.upload_function)
        self._rule(audio)

    def _function(
        self,
        config: PhaseConfig,
        *,
        role: iam.IRole,
        vpc: ec2.IVpc,
        timeout: Duration,
        audio: AudioBucket,
        database: Database,
        stt: sqs.IQueue,
        llm: sqs.IQueue,
    ) -> lambda_.DockerImageFunction:
        return lambda_.DockerImageFunction(
            self,
            "UploadCheck",
            description="Checks an uploaded object (type by magic bytes, size) and queues STT",
            code=lambda_image("upload-lambda"),
            role=role,
            architecture=lambda_.Architecture.X86_64,
            memory_size=256,
            timeout=timeout,
            reserved_concurrent_executions=config.upload_check.reserved_concurrency,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            log_group=logs.LogGroup(
                self,
                "UploadCheckLogs",
                retention=retention(config.observability.log_retention_days),
            ),
            environment=runtime_environment(
                config,
                Endpoints(
                    region=self.region,
                    bucket=audio.bucket_name,
                    send_to={TaskType.STT: stt.queue_url, TaskType.LLM: llm.queue_url},
                    db_secret_arn=database.secret.secret_arn,
                ),
                kind=Kind.UPLOAD_CHECK,
                ai=config.ai,
            ),
        )

    def _role(self) -> iam.Role:
        role = iam.Role(
            self,
            "UploadRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Upload check Lambda: reads uploads, moves the task, queues STT",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSLambdaVPCAccessExecutionRole"
                )
            ],
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaVPCAccessExecutionRole]",
            "The AWS-maintained minimal policy for a Lambda in a VPC (ENI management and "
            "its own log stream); a copy of it would only drift.",
        )
        return role

    def _event_queues(self, timeout: Duration) -> None:
        """The queue of upload events the function consumes, and its alarmed DLQ."""
        self.failed_events = sqs.Queue(
            self,
            "UploadEventsDlq",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.failed_events,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the upload events: events the rule "
            "could not deliver and events the check failed on after every retry.",
        )
        self.upload_events = sqs.Queue(
            self,
            "UploadEvents",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(4),
            # Lambda's guidance for SQS sources: at least six times the function's timeout.
            visibility_timeout=Duration.seconds(timeout.to_seconds() * 6),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.failed_events, max_receive_count=5),
        )

    def _rule(self, audio: AudioBucket) -> None:
        events.Rule(
            self,
            "UploadedAudio",
            description="Audio objects created under uploads/ in the audio bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [audio.bucket_name]},
                    "object": {"key": [{"prefix": UPLOADS}]},
                },
            ),
            targets=[
                targets.SqsQueue(
                    self.upload_events,
                    dead_letter_queue=self.failed_events,
                    retry_attempts=185,
                    max_event_age=Duration.hours(24),
                )
            ],
        )
