"""The task API: an Argo Rollout released by canary through the ALB of its Ingress.

Argo Rollouts moves the ALB's weights between the `api-stable` and `api-canary` services
(`trafficRouting.alb`) at each `setWeight` step, pauses between steps, and runs the `api-5xx`
analysis in the background from the first step: when the load balancer's 5xx share goes above
the threshold the rollout aborts and traffic returns to the stable pods.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cdk_constructs.k8s import (
    API_PORT,
    Manifest,
    container_security,
    env_list,
    http_probe,
    labels,
    metadata,
    pod_security,
    resources,
    selector,
    tmp_volume,
)

COMPONENT = "api"
SERVICE_ACCOUNT = "api"
STABLE = "api-stable"
CANARY = "api-canary"
INGRESS = "api"
ANALYSIS = "api-5xx"
SERVICE_PORT = 80
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class Canary:
    """Canary weights (ending at 100), the pause after each lower weight and the 5xx limit."""

    steps: Sequence[int]
    pause_minutes: int
    max_5xx_ratio: float  # 0.01 = 1% of requests


@dataclass(frozen=True)
class IngressSettings:
    """The ALB the AWS Load Balancer Controller makes for the API."""

    load_balancer_name: str
    web_acl_arn: str
    certificate_arn: str | None
    tags: Mapping[str, str]
    access_logs: tuple[str, str] | None = None  # (bucket, prefix) for the ALB's access logs
    hostname: str | None = None  # ExternalDNS's weighted record, with `edge.domain`
    dns_weight: int = 100


def _load_balancer_attributes(access_logs: tuple[str, str] | None) -> str:
    attributes = {"routing.http.drop_invalid_header_fields.enabled": "true"}
    if access_logs is not None:
        bucket, prefix = access_logs
        attributes |= {
            "access_logs.s3.enabled": "true",
            "access_logs.s3.bucket": bucket,
            "access_logs.s3.prefix": prefix,
        }
    return ",".join(f"{k}={v}" for k, v in attributes.items())


def canary_steps(canary: Canary) -> list[Manifest]:
    """`setWeight w`, then `pause` for each w below 100: 10 -> pause -> 30 -> pause -> 100."""
    steps: list[Manifest] = []
    for weight in canary.steps:
        steps.append({"setWeight": weight})
        if weight < 100:
            steps.append({"pause": {"duration": f"{canary.pause_minutes}m"}})
    return steps


def services() -> list[Manifest]:
    """The stable and canary services; Argo Rollouts adds each one's pod-template hash."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, COMPONENT),
            "spec": {
                "type": "ClusterIP",
                "selector": selector(COMPONENT),
                "ports": [
                    {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
                ],
            },
        }
        for name in (STABLE, CANARY)
    ]


def _forward(weights: Mapping[str, int]) -> str:
    groups = [
        {"serviceName": s, "servicePort": str(SERVICE_PORT), "weight": w}
        for s, w in weights.items()
    ]
    return json.dumps({"type": "forward", "forwardConfig": {"targetGroups": groups}})


def ingress(settings: IngressSettings) -> Manifest:
    """Internet-facing ALB with a fixed name, behind the Edge web ACL, HTTPS when a certificate
    is configured, `/metrics` answered 404 at the edge."""

    def path(prefix_path: str, service: str) -> Manifest:
        return {
            "path": prefix_path,
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"name": "use-annotation"}}},
        }

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(INGRESS, COMPONENT, annotations=_ingress_annotations(settings)),
        "spec": {
            "ingressClassName": "alb",
            "rules": [{"http": {"paths": [path("/metrics", "hide-metrics"), path("/", STABLE)]}}],
        },
    }


def _ingress_annotations(settings: IngressSettings) -> dict[str, str]:
    """The load balancer controller's settings of the Ingress (and external-dns's, with a
    hostname). The forward action of the stable service is seeded here (100% stable) so the
    controller can create the load balancer before the Rollout exists; from then on Argo
    Rollouts owns it."""
    prefix = "alb.ingress.kubernetes.io"
    https = settings.certificate_arn is not None
    annotations = {
        f"{prefix}/scheme": "internet-facing",
        f"{prefix}/target-type": "ip",
        f"{prefix}/load-balancer-name": settings.load_balancer_name,
        f"{prefix}/wafv2-acl-arn": settings.web_acl_arn,
        f"{prefix}/healthcheck-path": HEALTH_PATH,
        f"{prefix}/success-codes": "200",
        f"{prefix}/load-balancer-attributes": _load_balancer_attributes(settings.access_logs),
        f"{prefix}/target-group-attributes": "deregistration_delay.timeout_seconds=30",
        f"{prefix}/tags": ",".join(f"{k}={v}" for k, v in sorted(settings.tags.items())),
        f"{prefix}/listen-ports": json.dumps(
            [{"HTTP": 80}, {"HTTPS": 443}] if https else [{"HTTP": 80}]
        ),
        f"{prefix}/actions.{STABLE}": _forward({STABLE: 100, CANARY: 0}),
        f"{prefix}/actions.hide-metrics": json.dumps(
            {
                "type": "fixed-response",
                "fixedResponseConfig": {
                    "contentType": "application/json",
                    "statusCode": "404",
                    "messageBody": '{"error": {"code": "not_found", "message": "Not found"}}',
                },
            }
        ),
    }
    if https:
        annotations |= {
            f"{prefix}/certificate-arn": str(settings.certificate_arn),
            f"{prefix}/ssl-redirect": "443",
            f"{prefix}/ssl-policy": "ELBSecurityPolicy-TLS13-1-2-2021-06",
        }
    if settings.hostname is not None:
        dns = "external-dns.alpha.kubernetes.io"
        annotations |= {
            f"{dns}/hostname": settings.hostname,
            f"{dns}/set-identifier": "eks",
            f"{dns}/aws-weight": str(settings.dns_weight),
        }
    return annotations


def analysis_template(max_5xx_ratio: float) -> Manifest:
    """Fails when the ALB's 5xx share of requests in any minute exceeds `max_5xx_ratio`."""

    def alb_metric(metric_id: str, name: str) -> Manifest:
        return {
            "id": metric_id,
            "returnData": False,
            "metricStat": {
                "metric": {
                    "namespace": "AWS/ApplicationELB",
                    "metricName": name,
                    "dimensions": [{"name": "LoadBalancer", "value": "{{args.load-balancer}}"}],
                },
                "period": 60,
                "stat": "Sum",
            },
        }

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": metadata(ANALYSIS, COMPONENT),
        "spec": {
            "args": [{"name": "load-balancer"}],
            "metrics": [
                {
                    "name": "alb-5xx-ratio",
                    "interval": "1m",
                    "initialDelay": "1m",
                    "failureLimit": 1,
                    "successCondition": f"all(result[0].Values, {{# <= {max_5xx_ratio}}})",
                    "provider": {
                        "cloudWatch": {
                            "interval": "5m",
                            "metricDataQueries": [
                                {
                                    "id": "ratio",
                                    "expression": "IF(requests > 0, (target + elb) / requests, 0)",
                                    "returnData": True,
                                },
                                alb_metric("target", "HTTPCode_Target_5XX_Count"),
                                alb_metric("elb", "HTTPCode_ELB_5XX_Count"),
                                alb_metric("requests", "RequestCount"),
                            ],
                        }
                    },
                }
            ],
        },
    }


def rollout(
    *,
    image: str,
    env: Mapping[str, str],
    canary: Canary,
    load_balancer_dimension: str,
    migration_job: str,
    cpu_millicores: int,
    memory_mib: int,
    system_pool: str,
) -> Manifest:
    """The API pods; the annotation names the migration Job this template's image waited for."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": metadata(COMPONENT, COMPONENT),
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(COMPONENT)},
            "template": {
                "metadata": {
                    "labels": labels(COMPONENT),
                    "annotations": {"aipp.io/migration-job": migration_job},
                },
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "securityContext": pod_security(),
                    "nodeSelector": {"aipp.io/pool": system_pool},
                    "terminationGracePeriodSeconds": 45,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "topology.kubernetes.io/zone",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(COMPONENT)},
                        }
                    ],
                    "containers": [_api_container(image, env, cpu_millicores, memory_mib)],
                    "volumes": [tmp_volume()],
                },
            },
            "strategy": {
                "canary": {
                    "stableService": STABLE,
                    "canaryService": CANARY,
                    "trafficRouting": {"alb": {"ingress": INGRESS, "servicePort": SERVICE_PORT}},
                    "analysis": {
                        "templates": [{"templateName": ANALYSIS}],
                        "startingStep": 1,
                        "args": [{"name": "load-balancer", "value": load_balancer_dimension}],
                    },
                    "steps": canary_steps(canary),
                }
            },
        },
    }


def _api_container(
    image: str, env: Mapping[str, str], cpu_millicores: int, memory_mib: int
) -> Manifest:
    return {
        "name": "api",
        "image": image,
        "ports": [{"name": "http", "containerPort": API_PORT}],
        "env": env_list(env),
        "resources": resources(cpu_millicores, memory_mib),
        "startupProbe": http_probe(HEALTH_PATH, API_PORT, period=5, failures=24),
        "readinessProbe": http_probe(READY_PATH, API_PORT, period=10, failures=3),
        "livenessProbe": http_probe(HEALTH_PATH, API_PORT, period=15, failures=3),
        # The ALB keeps sending for a few seconds after deregistration starts.
        "lifecycle": {"preStop": {"sleep": {"seconds": 15}}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }


def autoscaler(*, min_replicas: int, max_replicas: int, target_cpu_percent: int) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(COMPONENT, COMPONENT),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": COMPONENT,
            },
            "minReplicas": max(min_replicas, 1),
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": target_cpu_percent},
                    },
                }
            ],
        },
    }


def disruption_budget() -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(COMPONENT, COMPONENT),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(COMPONENT)}},
    }
