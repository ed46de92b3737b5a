"""A queue worker per task type on its GPU pool, with its model server beside it.

Each pod: an init container copies the model's weights from the models bucket to a local
volume; the model server (vLLM, one GPU) runs as a native sidecar (an init container that keeps
running), so it is up before the worker starts and is stopped only after the worker has
finished its in-flight jobs; the worker calls it on localhost with the `openai` provider. KEDA
scales the Rollout on the depth of the type's own queue. Decision record 0010 says why a sidecar
rather than a shared model Service.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aipp_contract.keys import model_prefix
from cdk_constructs.k8s import (
    MODEL_SERVER_PORT,
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
from cdk_constructs.k8s.api import Canary, canary_steps

GPU_RESOURCE = "nvidia.com/gpu"
MODELS_DIR = "/models"
TRIGGER_AUTHENTICATION = "keda-aws"
SHUTDOWN_MARGIN_SECONDS = 60


def name(task_type: str) -> str:
    """`worker-stt`, `worker-llm`: the Rollout, its service account and its ScaledObject."""
    return f"worker-{task_type}"


def termination_grace_seconds(longest_job_seconds: int, visibility_timeout_seconds: int) -> int:
    """Longer than the longest job (the worker finishes it after SIGTERM), never longer than
    the queue's visibility timeout (a message must not reappear while its job still runs)."""
    return min(longest_job_seconds + SHUTDOWN_MARGIN_SECONDS, visibility_timeout_seconds)


@dataclass(frozen=True)
class ModelServerSpec:
    image: str
    model: str  # served name and key prefix in the models bucket
    models_bucket: str
    args: Sequence[str]
    cpu_millicores: int
    memory_mib: int
    startup_minutes: int
    region: str


@dataclass(frozen=True)
class GpuPlacement:
    pool: str
    models_disk_gib: int


def model_server_args(
    model: str, *, gpu_memory_utilization: float, max_model_len: int | None, extra: Sequence[str]
) -> list[str]:
    """`vllm serve` arguments: the local copy of the weights under the served model name."""
    args = [
        f"{MODELS_DIR}/{model}",
        "--served-model-name",
        model,
        "--host",
        "0.0.0.0",  # noqa: S104 - the kubelet probes the pod IP; nothing routes to it
        "--port",
        str(MODEL_SERVER_PORT),
        "--gpu-memory-utilization",
        str(gpu_memory_utilization),
        "--disable-log-requests",
    ]
    if max_model_len is not None:
        args += ["--max-model-len", str(max_model_len)]
    return args + list(extra)


def _model_containers(server: ModelServerSpec) -> list[Manifest]:
    """The weight copy (plain init container) and the model server (native sidecar)."""
    writable = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        {"name": "home", "mountPath": "/home/aipp"},
    ]
    # Read by the libraries of the model-server image (aipp_contract.env.MODEL_SERVER_VARIABLES).
    offline = {
        "HOME": "/home/aipp",
        "XDG_CACHE_HOME": "/home/aipp/.cache",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "AWS_REGION": server.region,
    }
    fetch = {
        "name": "fetch-model",
        "image": server.image,
        "command": ["python3", "/opt/aipp/fetch_model.py"],
        "args": [
            f"s3://{server.models_bucket}/{model_prefix(server.model)}",
            f"{MODELS_DIR}/{server.model}",
        ],
        "env": env_list(offline),
        "resources": resources(500, 1024),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, *writable],
    }
    budget = max(1, server.startup_minutes * 60 // 10)
    gpu = {GPU_RESOURCE: "1"}
    serve = {
        "name": "model-server",
        "image": server.image,
        "restartPolicy": "Always",  # a sidecar: started before, stopped after the worker
        "command": ["vllm", "serve"],
        "args": list(server.args),
        "ports": [{"name": "model", "containerPort": MODEL_SERVER_PORT}],
        "env": env_list(offline),
        "resources": resources(server.cpu_millicores, server.memory_mib, **gpu),
        "startupProbe": http_probe("/health", MODEL_SERVER_PORT, period=10, failures=budget),
        "readinessProbe": http_probe("/health", MODEL_SERVER_PORT, period=10, failures=3),
        "livenessProbe": http_probe("/health", MODEL_SERVER_PORT, period=15, failures=4, timeout=5),
        # Triton, torch.compile and FlashInfer write kernels under paths the image decides.
        "securityContext": container_security(read_only_root=False),
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108 - a memory-backed volume
            *writable,
        ],
    }
    return [fetch, serve]


def _gpu_affinity(pool: str) -> Manifest:
    """On the nodes of the task type's GPU pool only; Spot first, On-Demand nodes of the pool
    when Spot has none free."""

    def expression(key: str, value: str) -> Manifest:
        return {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}

    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [expression("aipp.io/pool", pool)]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": expression("aipp.io/capacity-type", "spot")}
            ],
        }
    }


def _worker_container(
    image: str, env: Mapping[str, str], cpu_millicores: int, memory_mib: int
) -> Manifest:
    return {
        "name": "worker",
        "image": image,
        "env": env_list(env),
        "resources": resources(cpu_millicores, memory_mib),
        "livenessProbe": {
            "exec": {"command": ["python", "-m", "aipp.worker.health"]},
            "periodSeconds": 30,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
    }


def rollout(
    *,
    task_type: str,
    image: str,
    env: Mapping[str, str],
    server: ModelServerSpec,
    placement: GpuPlacement,
    canary: Canary,
    grace_seconds: int,
    cpu_millicores: int,
    memory_mib: int,
) -> Manifest:
    """The worker pods of one task type: replicas are KEDA's (no `replicas` here), a canary by
    replica ratio (no traffic to route), one new GPU pod at a time and none taken away early."""
    component = name(task_type)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": metadata(component, component),
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(component)},
            "template": {
                "metadata": {"labels": labels(component, **{"aipp.io/task-type": task_type})},
                "spec": {
                    "serviceAccountName": component,
                    "securityContext": pod_security(),
                    "terminationGracePeriodSeconds": grace_seconds,
                    "tolerations": [
                        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "affinity": _gpu_affinity(placement.pool),
                    "initContainers": _model_containers(server),
                    "containers": [_worker_container(image, env, cpu_millicores, memory_mib)],
                    "volumes": [
                        {
                            "name": "models",
                            "emptyDir": {"sizeLimit": f"{placement.models_disk_gib}Gi"},
                        },
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
                        {"name": "home", "emptyDir": {"sizeLimit": "20Gi"}},
                        tmp_volume(),
                    ],
                },
            },
            "strategy": {
                "canary": {"maxSurge": 1, "maxUnavailable": 0, "steps": canary_steps(canary)}
            },
        },
    }


def trigger_authentication() -> Manifest:
    """KEDA reads queue depth with its operator's own IRSA role (no credentials in manifests)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata(TRIGGER_AUTHENTICATION, "keda"),
        "spec": {"podIdentity": {"provider": "aws"}},
    }


def scaled_object(
    *,
    task_type: str,
    queue_url: str,
    region: str,
    queue_length: int,
    min_replicas: int,
    max_replicas: int,
) -> Manifest:
    """Scale the type's Rollout on its own queue: visible + in-flight messages per pod."""
    component = name(task_type)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(component, component),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Rollout",
                "name": component,
            },
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "minReplicaCount": min_replicas,
            "maxReplicaCount": max_replicas,
            "triggers": [
                {
                    "type": "aws-sqs-queue",
                    "authenticationRef": {"name": TRIGGER_AUTHENTICATION},
                    "metadata": {
                        "queueURL": queue_url,
                        "queueLength": str(queue_length),
                        "activationQueueLength": "0",
                        "awsRegion": region,
                        "scaleOnInFlight": "true",
                    },
                }
            ],
        },
    }
