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


# Helm chart versions of the cluster add-ons, pinned. Config may override each one.
DEFAULT_CHARTS: dict[str, str] = {
    "nvidia_device_plugin": "0.17.1",
    "cluster_autoscaler": "9.46.6",
    "keda": "2.16.1",
    "metrics_server": "3.12.2",
    "argo_rollouts": "2.39.0",
    "aws_load_balancer_controller": "v2.8.2",
}
