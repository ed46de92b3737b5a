"""Platform facts the EKS config is checked against. Plain data, no CDK imports."""

from __future__ import annotations

# GPUs per instance for the GPU instance types the platform knows (AWS EC2 accelerated
# computing instance table). A GPU pool may only use these; the count becomes the
# `nvidia.com/gpu` node-template hint for Cluster Autoscaler's scale-from-zero.
GPU_INSTANCES: dict[str, int] = {
    "g4dn.xlarge": 1,
    "g4dn.2xlarge": 1,
    "g4dn.4xlarge": 1,
    "g4dn.12xlarge": 4,
    "g5.xlarge": 1,
    "g5.2xlarge": 1,
    "g5.4xlarge": 1,
    "g5.12xlarge": 4,
    "g5.48xlarge": 8,
    "g6.xlarge": 1,
    "g6.2xlarge": 1,
    "g6.4xlarge": 1,
    "g6.12xlarge": 4,
    "g6e.xlarge": 1,
    "g6e.2xlarge": 1,
    "g6e.12xlarge": 4,
    "p4d.24xlarge": 8,
    "p5.48xlarge": 8,
}

# kubectl layer packages installed with the CDK app (requirements.txt) and the cluster
# versions each may drive: kubectl supports one minor version either side of its own.
KUBECTL_LAYERS: dict[str, tuple[str, ...]] = {
    "aws-cdk.lambda-layer-kubectl-v35": ("1.34", "1.35", "1.36"),
}


def kubectl_layer_for(kubernetes_version: str) -> str | None:
    """The installed kubectl layer package able to drive this cluster version, if any."""
    return next(
        (pkg for pkg, versions in KUBECTL_LAYERS.items() if kubernetes_version in versions), None
    )


# GPU model and memory per GPU (GiB) of each GPU instance type (AWS EC2 accelerated computing
# instance table). One vLLM configuration (context length, KV cache share) fits one GPU memory
# size, so an LLM pool may not mix sizes; the model is the `k8s.amazonaws.com/accelerator` label
# Cluster Autoscaler reads to know a node has a GPU before the device plugin reports it.
GPU_MODELS: dict[str, tuple[str, int]] = {
    "g4dn": ("nvidia-t4", 16),
    "g5": ("nvidia-a10g", 24),
    "g6": ("nvidia-l4", 24),
    "g6e": ("nvidia-l40s", 48),
    "p4d": ("nvidia-a100", 40),
    "p5": ("nvidia-h100", 80),
}


def gpu_model(instance_type: str) -> tuple[str, int]:
    """(accelerator label value, GiB per GPU) of a GPU instance type."""
    return GPU_MODELS[instance_type.split(".", 1)[0]]


# Helm chart versions of the cluster add-ons, pinned. Config may override each one.
DEFAULT_CHARTS: dict[str, str] = {
    "nvidia_device_plugin": "0.17.1",
    # kedacore/charts `keda` 2.20.2 (app 2.20.2): the first line that supports Kubernetes 1.34.
    "keda": "2.20.2",
    "metrics_server": "3.12.2",
    # argoproj/argo-helm `argo-rollouts` 2.41.0 (app v1.9.0).
    "argo_rollouts": "2.41.0",
    # The newest controller release aws-cdk-lib ships the IAM policy for (AlbControllerVersion).
    "aws_load_balancer_controller": "v3.2.2",
    # kubernetes-sigs/external-dns chart 1.20.0 (image v0.20.0), from the chart's changelog.
    "external_dns": "1.20.0",
}

# Cluster Autoscaler must match the cluster's Kubernetes minor version (its README's release
# table): (chart version, image tag) per minor. Chart 9.53.0 ships app 1.34.2 and 9.59.0 ships
# 1.35.0 (`helm search repo autoscaler/cluster-autoscaler --versions`, kubernetes/autoscaler#8891
# and the chart's release notes). The image comes from registry.k8s.io/autoscaling.
CLUSTER_AUTOSCALER_RELEASES: dict[str, tuple[str, str]] = {
    "1.34": ("9.53.0", "v1.34.2"),
    "1.35": ("9.59.0", "v1.35.0"),
}
