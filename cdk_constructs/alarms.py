"""Alarms that notify the platform's alarm topic, kept by name.

The Observability stack owns the topic and the alarms on what every phase shares (queues, the
upload check, the database, Redis); each compute stack adds the alarms on its own API and
workers to the same topic. So nothing reads a compute stack's outputs, and a compute can be
retired without touching the rest (docs/phase-switch.md).
"""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from phases.models import ObservabilityConfig


class Alarms:
    """`add(...)` creates an alarm that notifies `topic` when it fires and when it clears."""

    def __init__(self, scope: Construct, topic: sns.ITopic) -> None:
        self._scope = scope
        self._action = cw_actions.SnsAction(topic)
        self.by_name: dict[str, cw.Alarm] = {}

    def add(self, name: str, metric: cw.IMetric, threshold: float, description: str) -> cw.Alarm:
        """Alarm when `metric` reaches `threshold` in one period; missing data is not a breach."""
        alarm = cw.Alarm(
            self._scope,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.by_name[name] = alarm
        return alarm

    def add_compute_alarms(
        self,
        obs: ObservabilityConfig,
        *,
        api_5xx: cw.IMetric,
        api_latency_p99: cw.IMetric,
        worker_errors: cw.IMetric,
    ) -> None:
        """What every compute alarms on: the API's 5xx and p99 latency at its load balancer
        (latency in seconds), and the workers' error log lines."""
        self.add(
            "Api5xx",
            api_5xx,
            obs.api_5xx_alarm_count,
            "The task API answered 5xx: a dependency is down (see /readyz) or a bug.",
        )
        self.add(
            "ApiLatencyP99",
            api_latency_p99,
            obs.api_p99_latency_alarm_ms / 1000,
            f"API p99 latency above {obs.api_p99_latency_alarm_ms} ms.",
        )
        self.add(
            "WorkerErrors",
            worker_errors,
            obs.worker_error_alarm_lines,
            "Workers logged errors: jobs are failing or retrying; read the worker logs.",
        )

    def status_widget(self, title: str = "Alarms") -> cw.AlarmStatusWidget:
        return cw.AlarmStatusWidget(title=title, alarms=list(self.by_name.values()), width=24)
