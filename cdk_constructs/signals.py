"""What a compute stack tells the observability stack, whichever compute it runs on."""

from __future__ import annotations

from dataclasses import dataclass, field

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_elasticloadbalancingv2 as elbv2


@dataclass(frozen=True)
class ComputeSignals:
    """Metrics of the API and workers for the dashboard and alarms."""

    load_balancer: elbv2.ApplicationLoadBalancer | None = None
    scaling: list[cw.IMetric] = field(default_factory=list)
    worker_errors: cw.IMetric | None = None
    utilisation: list[cw.IMetric] = field(default_factory=list)
    utilisation_title: str = "Utilisation"
