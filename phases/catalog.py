"""The three phases of DESIGN.md's table and the staging/prod overlays on each.

A phase is a complete, plain-data description; an environment overlay changes sizes, counts,
retention, deletion protection and alarm thresholds. Both are merged, then validated once by
`phases.loader.load_config`. Plain dicts keep overrides and overlays one mechanism.
"""

from __future__ import annotations

from typing import Any

from phases.models import Env, Phase

Tree = dict[str, Any]


def _pool(
    purpose: str, types: tuple[str, ...], spot: tuple[int, int], on_demand: tuple[int, int]
) -> Tree:
    """A GPU pool named after the workload it serves: (min, max) Spot and On-Demand nodes."""
    return {
        "name": purpose,
        "purpose": purpose,
        "instance_types": types,
        "spot": {"min": spot[0], "max": spot[1]},
        "on_demand": {"min": on_demand[0], "max": on_demand[1]},
    }


_OBSERVABILITY: Tree = {
    "queue_age_alarm_seconds": 900,
    "api_5xx_alarm_count": 10,
    "api_p99_latency_alarm_ms": 2000,
}

PHASES: dict[Phase, Tree] = {
    Phase.MVP: {
        "compute": "ecs",
        "network": {"nat_gateways": 1, "flow_log_retention_days": 30},
        "bucket": {"raw_upload_expiry_days": 30, "access_log_retention_days": 90},
        "database": {
            "engine": "rds-postgres",
            "instance_class": "t4g.micro",
            "multi_az": False,
            "backup_retention_days": 7,
            "deletion_protection": False,
        },
        "cache": {"mode": "single", "node_type": "cache.t4g.micro"},
        "queues": {"mode": "single"},
        "ecs": {
            "api": {"cpu": 512, "memory_mib": 1024, "count": {"min": 1, "max": 4}},
            "worker": {
                "cpu": 512,
                "memory_mib": 1024,
                "count": {"min": 0, "max": 10},
                "backlog_per_task": 10,
            },
        },
        "ai": {"stt_provider": "transcribe", "llm_provider": "bedrock"},
        "observability": {"log_retention_days": 30, **_OBSERVABILITY},
    },
    Phase.GROWTH: {
        "compute": "eks",
        "network": {"nat_gateways": 2, "flow_log_retention_days": 30},
        "bucket": {"raw_upload_expiry_days": 30, "access_log_retention_days": 90},
        "database": {
            "engine": "rds-postgres",
            "instance_class": "t4g.medium",
            "multi_az": True,
            "backup_retention_days": 7,
            "deletion_protection": False,
        },
        "cache": {"mode": "replication", "node_type": "cache.t4g.small", "replicas": 1},
        "queues": {
            "mode": "per_type",
            "longest_job_seconds": 600,
            "visibility_timeout_seconds": 720,
        },
        "eks": {
            "kubernetes_version": "1.34",
            "system_nodes": {"instance_types": ("m7i.large",), "size": {"min": 3, "max": 6}},
            "gpu_pools": (
                _pool("stt", ("g5.xlarge",), spot=(0, 2), on_demand=(1, 2)),
                _pool("llm", ("g5.xlarge",), spot=(0, 2), on_demand=(1, 2)),
            ),
            "api_replicas": {"min": 2, "max": 6},
            "worker_max_replicas": {"stt": 4, "llm": 4},
        },
        "ai": {"stt_provider": "openai", "llm_provider": "openai"},
        "observability": {"log_retention_days": 30, **_OBSERVABILITY},
    },
    Phase.SCALE: {
        "compute": "eks",
        "network": {"nat_gateways": 3, "max_azs": 3, "flow_log_retention_days": 90},
        "bucket": {"raw_upload_expiry_days": 14, "access_log_retention_days": 90},
        # The brief's own card rejects Aurora ("3x cost, 6-way replication overkill"): the
        # phase 2 instance grows in place, Multi-AZ, with a read replica for the API's reads.
        "database": {
            "engine": "rds-postgres",
            "instance_class": "r7g.large",
            "multi_az": True,
            "read_replicas": 1,
            "backup_retention_days": 14,
            "deletion_protection": True,
        },
        # A larger replication group, not cluster mode: the same primary endpoint the runtime
        # already speaks to, grown in place from phase 2.
        "cache": {"mode": "replication", "node_type": "cache.r7g.large", "replicas": 2},
        "queues": {
            "mode": "per_type",
            "longest_job_seconds": 600,
            "visibility_timeout_seconds": 720,
        },
        "eks": {
            "kubernetes_version": "1.34",
            "system_nodes": {"instance_types": ("m7i.xlarge",), "size": {"min": 6, "max": 12}},
            "gpu_pools": (
                _pool("stt", ("g6.xlarge", "g5.xlarge"), spot=(0, 16), on_demand=(2, 8)),
                # One GPU memory size per LLM pool (48 GiB L40S): one vLLM configuration
                # serves every node; the second size widens the Spot choice.
                _pool("llm", ("g6e.xlarge", "g6e.2xlarge"), spot=(0, 16), on_demand=(2, 8)),
            ),
            "api_replicas": {"min": 3, "max": 20},
            "worker_max_replicas": {"stt": 24, "llm": 24},
        },
        "ai": {"stt_provider": "openai", "llm_provider": "openai", "managed_fallback": True},
        "observability": {
            "log_retention_days": 90,
            "queue_age_alarm_seconds": 300,
            "api_5xx_alarm_count": 25,
            "api_p99_latency_alarm_ms": 1000,
        },
    },
}

# Staging opts out of HTTPS explicitly, so that a new staging environment works before it has a
# certificate (the listener is recorded as an acknowledged warning); set `edge.domain` or
# `edge.certificate_arn` to turn it off. Prod has no such opt-out.
STAGING_PLAIN_HTTP: Tree = {"plain_http": True}

# Overlays: only what differs per environment. Staging is small and disposable; prod keeps
# data (deletion protection + RETAIN), survives an AZ loss and alarms earlier.
OVERLAYS: dict[Phase, dict[Env, Tree]] = {
    Phase.MVP: {
        Env.STAGING: {"edge": STAGING_PLAIN_HTTP},
        Env.PROD: {
            "network": {"nat_gateways": 2, "flow_log_retention_days": 90},
            "bucket": {"access_log_retention_days": 365},
            "database": {
                "instance_class": "t4g.small",
                "backup_retention_days": 14,
                "deletion_protection": True,
            },
            "ecs": {
                "api": {"cpu": 1024, "memory_mib": 2048, "count": {"min": 2, "max": 8}},
                "worker": {"cpu": 512, "memory_mib": 1024, "count": {"min": 0, "max": 20}},
            },
            "observability": {
                "log_retention_days": 90,
                "queue_age_alarm_seconds": 600,
                "api_5xx_alarm_count": 5,
                "api_p99_latency_alarm_ms": 1500,
            },
        },
    },
    Phase.GROWTH: {
        # Staging: 3 system nodes and 1 GPU (DESIGN.md's environments), real models. The warm
        # GPU is Spot: an interruption in staging costs minutes, and it keeps the environment
        # near the brief's ~$800/month (`python -m capacity cost cdk.out/phase2-staging`).
        Env.STAGING: {
            "edge": STAGING_PLAIN_HTTP,
            "network": {"nat_gateways": 1},
            "database": {"multi_az": False, "instance_class": "t4g.small"},
            "eks": {
                "gpu_pools": (
                    _pool("stt", ("g5.xlarge",), spot=(0, 1), on_demand=(0, 1)),
                    _pool("llm", ("g5.xlarge",), spot=(1, 1), on_demand=(0, 1)),
                ),
                "worker_max_replicas": {"stt": 1, "llm": 1},
            },
        },
        # Prod: 6+ system nodes and 4+ GPUs (DESIGN.md's environments): each pool keeps one
        # On-Demand and one Spot GPU warm and bursts on Spot first.
        Env.PROD: {
            "network": {"flow_log_retention_days": 90},
            "bucket": {"access_log_retention_days": 365},
            "database": {"backup_retention_days": 14, "deletion_protection": True},
            "eks": {
                "system_nodes": {"instance_types": ("m7i.large",), "size": {"min": 6, "max": 10}},
                "gpu_pools": tuple(
                    _pool(purpose, ("g5.xlarge",), spot=(1, 4), on_demand=(1, 2))
                    for purpose in ("stt", "llm")
                ),
                "worker_max_replicas": {"stt": 6, "llm": 6},
            },
            "observability": {"log_retention_days": 90, "queue_age_alarm_seconds": 600},
        },
    },
    Phase.SCALE: {
        Env.STAGING: {
            "edge": STAGING_PLAIN_HTTP,
            "network": {"nat_gateways": 1},
            "database": {"instance_class": "r7g.large", "deletion_protection": False},
            "cache": {"node_type": "cache.t4g.medium", "replicas": 1},
            "eks": {
                "system_nodes": {"instance_types": ("m7i.large",), "size": {"min": 3, "max": 6}},
                "gpu_pools": (
                    _pool("stt", ("g6.xlarge",), spot=(0, 2), on_demand=(0, 1)),
                    _pool("llm", ("g6e.xlarge",), spot=(0, 2), on_demand=(1, 1)),
                ),
                "worker_max_replicas": {"stt": 2, "llm": 2},
            },
        },
        Env.PROD: {
            "bucket": {"access_log_retention_days": 365},
            "observability": {"log_retention_days": 365},
        },
    },
}
