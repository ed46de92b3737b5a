"""The Kubernetes objects of the platform's workloads, built in Python from typed inputs.

One module per workload (`migration`, `api`, `workers`); each returns plain manifests (dicts)
that `cdk_constructs.eks_workloads` applies with `KubernetesManifest`. Nothing here imports CDK:
values that exist only at deploy time (queue URLs, role ARNs) arrive as strings, which may be
CDK tokens. Every object is validated in the tests against the Kubernetes 1.34 OpenAPI schema
(core kinds) or the vendored KEDA and Argo Rollouts CRD schemas (tests/infra/crds/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Manifest = dict[str, Any]

NAMESPACE = "aipp"
PART_OF = "aipp"
API_PORT = 8000
MODEL_SERVER_PORT = 8001
RUNTIME_UID = 10001  # the images' non-root user (worker_images/Dockerfile, model_server/)


def labels(component: str, **extra: str) -> dict[str, str]:
    """The labels every object of a workload carries; `app.kubernetes.io/name` selects pods."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "aws-cdk",
        **extra,
    }


def selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component}


def metadata(name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": labels(component), **extra}


def namespace() -> Manifest:
    """The workloads' namespace: Pod Security `restricted` enforced, audited and warned."""
    level = "restricted"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/part-of": PART_OF,
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": level,
                "pod-security.kubernetes.io/warn": level,
            },
        },
    }


def pod_security() -> dict[str, Any]:
    """Pod-level security context: non-root, the runtime's user, RuntimeDefault seccomp."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(*, read_only_root: bool = True) -> dict[str, Any]:
    """Container security context the `restricted` Pod Security Standard requires, and more."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    """Container `env` from `runtime_environment`'s mapping, sorted for stable diffs."""
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def resources(cpu_millicores: int, memory_mib: int, **extra_limits: str) -> dict[str, Any]:
    """Requests; memory is also the limit (no overcommit), CPU is not limited (no throttling)."""
    return {
        "requests": {"cpu": f"{cpu_millicores}m", "memory": f"{memory_mib}Mi", **extra_limits},
        "limits": {"memory": f"{memory_mib}Mi", **extra_limits},
    }


def http_probe(path: str, port: int, *, period: int, failures: int, timeout: int = 3) -> Manifest:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def tmp_volume(name: str = "tmp", size: str = "1Gi") -> dict[str, Any]:
    return {"name": name, "emptyDir": {"sizeLimit": size}}
