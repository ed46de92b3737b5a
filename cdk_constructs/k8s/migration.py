"""The database migration: one Job per image, which the API rollout waits for.

The Job's name carries the image's content hash, so a new image is a new Job (a Job's pod
template cannot change) and the old one is pruned when the new one is applied.
"""

from __future__ import annotations

from collections.abc import Mapping

from cdk_constructs.k8s import (
    Manifest,
    container_security,
    env_list,
    metadata,
    pod_security,
    resources,
    tmp_volume,
)

COMPONENT = "migration"
SERVICE_ACCOUNT = "migration"


def job_name(image_hash: str) -> str:
    """`migrate-<first 12 hex of the image asset hash>`."""
    return f"migrate-{image_hash[:12]}"


def migration_job(
    *, image: str, image_hash: str, env: Mapping[str, str], system_pool: str
) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(job_name(image_hash), COMPONENT),
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 900,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": COMPONENT}},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "restartPolicy": "Never",
                    "securityContext": pod_security(),
                    "nodeSelector": {"aipp.io/pool": system_pool},
                    "containers": [
                        {
                            "name": "migrate",
                            "image": image,
                            "command": ["python", "-m", "aipp.admin", "migrate"],
                            "env": env_list(env),
                            "resources": resources(250, 512),
                            "securityContext": container_security(),
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                        }
                    ],
                    "volumes": [tmp_volume()],
                },
            },
        },
    }
