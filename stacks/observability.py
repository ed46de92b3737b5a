"""Observability: one CloudWatch dashboard and the alarms, which notify an SNS topic."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_constructs.database import Database
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.signals import ComputeSignals
from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig

FIVE_MINUTES = Duration.minutes(5)


class ObservabilityStack(Stack):
    """Exposes `topic`, `dashboard` and `alarms` (by name)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        queues: TaskQueues,
        compute: ComputeSignals,
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
        action = cw_actions.SnsAction(self.topic)
        self.alarms: dict[str, cw.Alarm] = {}

        def alarm(name: str, metric: cw.IMetric, threshold: float, description: str) -> None:
            created = cw.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms[name] = created

        rows: list[list[cw.IWidget]] = []
        for pair in queues.pairs:
            label = pair.name.upper()
            depth = pair.queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES)
            age = pair.queue.metric_approximate_age_of_oldest_message(
                period=FIVE_MINUTES, statistic="Maximum"
            )
            dlq_depth = pair.dlq.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            )
            alarm(
                f"QueueAge{label}",
                age,
                obs.queue_age_alarm_seconds,
                f"The oldest {pair.name} message waits longer than "
                f"{obs.queue_age_alarm_seconds}s: workers are down, stuck or too few.",
            )
            alarm(
                f"DlqNotEmpty{label}",
                dlq_depth,
                obs.dlq_alarm_messages,
                f"{pair.name} messages reached the DLQ: their tasks failed; see the runbook.",
            )
            rows.append(
                [
                    cw.GraphWidget(
                        title=f"Queue {pair.name}: depth / DLQ", left=[depth, dlq_depth], width=12
                    ),
                    cw.GraphWidget(
                        title=f"Queue {pair.name}: age of oldest (s)", left=[age], width=12
                    ),
                ]
            )

        service_row: list[cw.IWidget] = []
        if compute.load_balancer is not None:
            metrics = compute.load_balancer.metrics
            api_5xx = metrics.http_code_target(
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
            )
            elb_5xx = metrics.http_code_elb(
                elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
            )
            latency = metrics.target_response_time(period=FIVE_MINUTES, statistic="p99")
            alarm(
                "Api5xx",
                api_5xx,
                obs.api_5xx_alarm_count,
                "The task API answered 5xx: a dependency is down (see /readyz) or a bug.",
            )
            alarm(
                "ApiLatencyP99",
                latency,
                obs.api_p99_latency_alarm_ms / 1000,
                f"API p99 latency above {obs.api_p99_latency_alarm_ms} ms.",
            )
            service_row += [
                cw.GraphWidget(title="API 5xx (target / ALB)", left=[api_5xx, elb_5xx], width=8),
                cw.GraphWidget(title="API latency p99 (s)", left=[latency], width=8),
            ]
        if compute.scaling:
            service_row.append(
                cw.GraphWidget(title="Worker backlog per task", left=compute.scaling, width=8)
            )
        if service_row:
            rows.append(service_row)

        upload_errors = upload_function.metric_errors(period=FIVE_MINUTES, statistic="Sum")
        alarm(
            "UploadCheckErrors",
            upload_errors,
            1,
            "The upload-check Lambda failed: uploaded tasks are not being queued.",
        )
        alarm(
            "UploadEventsFailed",
            failed_uploads.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            1,
            "Upload events failed for good and wait in the upload events DLQ: their tasks stay "
            "awaiting_upload until the events are redriven (see the runbook).",
        )
        errors: list[cw.IMetric] = [upload_errors]
        if compute.worker_errors is not None:
            alarm(
                "WorkerErrors",
                compute.worker_errors,
                obs.worker_error_alarm_lines,
                "Workers logged errors: jobs are failing or retrying; read the worker logs.",
            )
            errors.insert(0, compute.worker_errors)
        alarm(
            "DatabaseCpu",
            database.cpu_metric,
            obs.rds_cpu_alarm_percent,
            f"Database CPU above {obs.rds_cpu_alarm_percent}%.",
        )
        alarm(
            "RedisMemory",
            cache.memory_metric,
            80,
            "Redis memory above 80%: results and locks may be evicted.",
        )
        rows.append(
            [
                cw.GraphWidget(
                    title=f"Errors / {compute.utilisation_title}",
                    left=errors,
                    right=compute.utilisation,
                    width=8,
                ),
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
        )
        rows.append(
            [cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24)]
        )
        self.dashboard = cw.Dashboard(
            self, "Dashboard", default_interval=Duration.hours(6), widgets=rows
        )
