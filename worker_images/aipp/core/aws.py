"""boto3 clients built from Settings (moto's server locally via AWS_ENDPOINT_URL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from aipp.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_transcribe import TranscribeServiceClient


def _client_kwargs(
    settings: Settings, *, s3: bool = False, read_timeout: float | None = None
) -> dict[str, Any]:
    config = Config(
        region_name=settings.aws_region,
        connect_timeout=settings.dependency_timeout_seconds,
        read_timeout=read_timeout or max(10.0, settings.dependency_timeout_seconds),
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=64,
        signature_version="s3v4" if s3 else None,
        s3={"addressing_style": "path"} if s3 and settings.aws_endpoint_url else None,
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": settings.aws_region}
    if settings.aws_endpoint_url:
        kwargs["endpoint_url"] = settings.aws_endpoint_url
        if not settings.aws_access_key_id:
            # moto's server accepts any credentials; never used against real AWS.
            kwargs["aws_access_key_id"] = "testing"
            kwargs["aws_secret_access_key"] = "testing"  # noqa: S105
    return kwargs


def s3_client(settings: Settings) -> S3Client:
    return boto3.session.Session().client("s3", **_client_kwargs(settings, s3=True))


def sqs_client(settings: Settings, *, read_timeout: float | None = None) -> SQSClient:
    """`read_timeout` must exceed the long poll's WaitTimeSeconds (the workers pass it)."""
    return boto3.session.Session().client(
        "sqs", **_client_kwargs(settings, read_timeout=read_timeout)
    )


def transcribe_client(settings: Settings) -> TranscribeServiceClient:
    return boto3.session.Session().client("transcribe", **_client_kwargs(settings))


def bedrock_runtime_client(settings: Settings, *, read_timeout: float) -> BedrockRuntimeClient:
    """Converse calls on long inputs take minutes: the caller passes a long read timeout."""
    return boto3.session.Session().client(
        "bedrock-runtime", **_client_kwargs(settings, read_timeout=read_timeout)
    )


def secrets_client(settings: Settings) -> SecretsManagerClient:
    return boto3.session.Session().client("secretsmanager", **_client_kwargs(settings))


def db_secret_string(settings: Settings) -> str:
    """The current value (AWSCURRENT) of AIPP_DB_SECRET_ARN: one GetSecretValue call."""
    if not settings.db_secret_arn:
        raise ValueError("AIPP_DB_SECRET_ARN is not set")
    secret = secrets_client(settings).get_secret_value(SecretId=settings.db_secret_arn)
    return secret["SecretString"]


def resolve_db_secret(settings: Settings) -> Settings:
    """Fill the DB_* settings from AIPP_DB_SECRET_ARN once (unless AIPP_DATABASE_URL is set): for
    one-off commands.

    Long-running processes (API, workers, the upload Lambda) do not call this: their pools read
    the secret through `aipp.core.db.Credentials`, which also follows a rotation.
    """
    if not settings.db_secret_arn or settings.database_url:
        return settings
    return settings.with_db_secret(db_secret_string(settings))
