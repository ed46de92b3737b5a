"""The container images the stacks run, all built from `worker_images/Dockerfile`.

The build context is the repository root so that the API, the workers and the upload Lambda
share one core package (`worker_images/aipp`), the Lambda handler (`lambda_src/`) and the
contract with the stacks (`aipp_contract/`). The root `.dockerignore` admits only those three
folders, which also keeps asset hashing fast. Images are
built by `cdk deploy` (or CI); `cdk synth` only fingerprints the sources and needs no Docker.
"""

from __future__ import annotations

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from cdk_constructs.paths import DOCKERFILE, REPO_ROOT

PLATFORM = ecr_assets.Platform.LINUX_AMD64


def image_asset(scope: Construct, construct_id: str, *, target: str) -> ecr_assets.DockerImageAsset:
    """The image of a Dockerfile target (`api`, `worker`) for ECS or EKS. Its `asset_hash`
    names the release: it changes exactly when what goes into the image changes."""
    return ecr_assets.DockerImageAsset(
        scope,
        construct_id,
        directory=str(REPO_ROOT),
        file=DOCKERFILE,
        target=target,
        platform=PLATFORM,
    )


def lambda_image(target: str) -> lambda_.DockerImageCode:
    """A Lambda container image for a Dockerfile target (`upload-lambda`)."""
    return lambda_.DockerImageCode.from_image_asset(
        str(REPO_ROOT), file=DOCKERFILE, target=target, platform=PLATFORM
    )
