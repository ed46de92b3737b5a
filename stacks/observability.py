"""Observability: the alarm topic, the alarms and dashboard of what every phase shares (queues,
the upload check, the database, Redis). Each compute stack adds its own API and worker alarms to
this topic and keeps its own dashboard, so this stack reads nothing from a compute stack."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.alarms import Alarms
from cdk_constructs.database import Database
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.task_queues import QueuePair, TaskQueues
from phases import PhaseConfig

FIVE_MINUTES = Duration.minutes(5)


class ObservabilityStack(Stack):
    """Exposes `topic`, `alarms` (`Alarms`) and `dashboard`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        queues: TaskQueues,
        upload_function: lambda_.IFunction,
        failed_uploads: sqs.IQueue,
        database: Database,
        cache: RedisCache,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        obs = config.observability
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="Encrypts the alarm topic",
            enable_key_rotation=True,
        )
        key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        self.topic = sns.Topic(self, "Alarms", master_key=key, enforce_ssl=True)
        if obs.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(obs.alarm_email))
        self.alarms = Alarms(self, self.topic)

        # Queues that carry work: at the retire step of a switch the old layout is drained and
        # read by nothing, so that the next deploy can remove it.
        live = dict.fromkeys(config.queue_mode_of(c) for c in config.computes)
        rows = [self._queue_row(obs, pair) for mode in live for pair in queues.layout(mode)]
        rows.append(self._platform_row(config, upload_function, failed_uploads, database, cache))
        rows.append([self.alarms.status_widget()])
        self.dashboard = cw.Dashboard(
            self, "Dashboard", default_interval=Duration.hours(6), widgets=rows
        )

    def _queue_row(self, obs: Any, pair: QueuePair) -> list[cw.IWidget]:
        label = pair.name.upper()
        depth = pair.queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES)
        age = pair.queue.metric_approximate_age_of_oldest_message(
            period=FIVE_MINUTES, statistic="Maximum"
        )
        dlq_depth = pair.dlq.metric_approximate_number_of_messages_visible(
            period=FIVE_MINUTES, statistic="Maximum"
        )
        self.alarms.add(
            f"QueueAge{label}",
            age,
            obs.queue_age_alarm_seconds,
            f"The oldest {pair.name} message waits longer than {obs.queue_age_alarm_seconds}s: "
            "workers are down, stuck or too few.",
        )
        self.alarms.add(
            f"DlqNotEmpty{label}",
            dlq_depth,
            obs.dlq_alarm_messages,
            f"{pair.name} messages reached the DLQ: their tasks failed; see the runbook.",
        )
        return [
            cw.GraphWidget(
                title=f"Queue {pair.name}: depth / DLQ", left=[depth, dlq_depth], width=12
            ),
            cw.GraphWidget(title=f"Queue {pair.name}: age of oldest (s)", left=[age], width=12),
        ]

    def _platform_row(
        self,
        config: PhaseConfig,
        upload_function: lambda_.IFunction,
        failed_uploads: sqs.IQueue,
        database: Database,
        cache: RedisCache,
    ) -> list[cw.IWidget]:
        obs = config.observability
        upload_errors = upload_function.metric_errors(period=FIVE_MINUTES, statistic="Sum")
        self.alarms.add(
            "UploadCheckErrors",
            upload_errors,
            1,
            "The upload-check Lambda failed: uploaded tasks are not being queued.",
        )
        self.alarms.add(
            "UploadEventsFailed",
            failed_uploads.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            1,
            "Upload events failed for good and wait in the upload events DLQ: their tasks stay "
            "awaiting_upload until the events are redriven (see the runbook).",
        )
        self.alarms.add(
            "DatabaseCpu",
            database.cpu_metric,
            obs.rds_cpu_alarm_percent,
            f"Database CPU above {obs.rds_cpu_alarm_percent}%.",
        )
        self.alarms.add(
            "RedisMemory",
            cache.memory_metric,
            80,
            "Redis memory above 80%: results and locks may be evicted.",
        )
        return [
            cw.GraphWidget(title="Upload check errors", left=[upload_errors], width=8),
            cw.GraphWidget(
                title="Database CPU % / connections",
                left=[database.cpu_metric],
                right=[database.connections_metric],
                width=8,
            ),
            cw.GraphWidget(
                title="Redis CPU % / memory %",
                left=[cache.cpu_metric],
                right=[cache.memory_metric],
                width=8,
            ),
        ]
