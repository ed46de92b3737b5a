"""Environment variables: the names the stacks set and the runtime's `Settings` reads.

Every platform variable is `AIPP_<SETTING>`: the runtime's `Settings`
(`worker_images/aipp/core/config.py`) reads its field `x` from `AIPP_X` and stops at start on an
`AIPP_` name it does not know, so a misspelled variable fails loudly instead of being dropped.
The few standard names in `STANDARD` keep their own spelling: libraries or the platform that sets
them read them too.
"""

# ruff: noqa: S105 - the names of variables holding secret ARNs, not secrets
from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

PREFIX = "AIPP_"


def env_name(setting: str) -> str:
    """The variable a setting is read from: `worker_concurrency` -> `AIPP_WORKER_CONCURRENCY`."""
    return STANDARD.get(setting) or f"{PREFIX}{setting.upper()}"


class Var(StrEnum):
    """The variables the infrastructure sets (`cdk_constructs/runtime_env.py`, the images).

    Names only: a secret is never a value here, the runtime reads it by ARN with its own role.
    """

    AUDIO_BUCKET = "AIPP_AUDIO_BUCKET"
    STT_QUEUE_URL = "AIPP_STT_QUEUE_URL"
    LLM_QUEUE_URL = "AIPP_LLM_QUEUE_URL"
    DB_SECRET_ARN = "AIPP_DB_SECRET_ARN"
    DB_APP_SECRET_ARN = "AIPP_DB_APP_SECRET_ARN"
    DB_POOL_MAX = "AIPP_DB_POOL_MAX"
    DB_SSLMODE = "AIPP_DB_SSLMODE"
    DB_SSL_ROOT_CERT = "AIPP_DB_SSL_ROOT_CERT"
    DB_READ_HOST = "AIPP_DB_READ_HOST"
    REDIS_HOST = "AIPP_REDIS_HOST"
    REDIS_PORT = "AIPP_REDIS_PORT"
    REDIS_TLS = "AIPP_REDIS_TLS"
    REDIS_AUTH_SECRET_ARN = "AIPP_REDIS_AUTH_SECRET_ARN"
    MAX_UPLOAD_BYTES = "AIPP_MAX_UPLOAD_BYTES"
    MAX_MULTIPART_BYTES = "AIPP_MAX_MULTIPART_BYTES"
    QUOTA_TASKS_IN_FLIGHT = "AIPP_QUOTA_TASKS_IN_FLIGHT"
    QUOTA_TASKS_PER_DAY = "AIPP_QUOTA_TASKS_PER_DAY"
    LOG_LEVEL = "AIPP_LOG_LEVEL"
    MAX_RECEIVE_COUNT = "AIPP_MAX_RECEIVE_COUNT"
    STT_PROVIDER = "AIPP_STT_PROVIDER"
    LLM_PROVIDER = "AIPP_LLM_PROVIDER"
    BEDROCK_MODEL_ID = "AIPP_BEDROCK_MODEL_ID"
    TRANSCRIBE_LANGUAGE = "AIPP_TRANSCRIBE_LANGUAGE"
    WORKER_TASK_TYPES = "AIPP_WORKER_TASK_TYPES"
    WORKER_QUEUE_URL = "AIPP_WORKER_QUEUE_URL"
    WORKER_DLQ_URL = "AIPP_WORKER_DLQ_URL"
    WORKER_CONCURRENCY = "AIPP_WORKER_CONCURRENCY"
    WORKER_JOB_DEADLINE_SECONDS = "AIPP_WORKER_JOB_DEADLINE_SECONDS"
    WORKER_SHUTDOWN_GRACE_SECONDS = "AIPP_WORKER_SHUTDOWN_GRACE_SECONDS"
    WEBHOOK_URL = "AIPP_WEBHOOK_URL"
    WEBHOOK_SECRET_ARN = "AIPP_WEBHOOK_SECRET_ARN"
    OPENAI_STT_BASE_URL = "AIPP_OPENAI_STT_BASE_URL"
    OPENAI_STT_MODEL = "AIPP_OPENAI_STT_MODEL"
    OPENAI_LLM_BASE_URL = "AIPP_OPENAI_LLM_BASE_URL"
    OPENAI_LLM_MODEL = "AIPP_OPENAI_LLM_MODEL"
    APP_RELEASE = "AIPP_APP_RELEASE"  # the image's asset hash, reported by /healthz
    BUILD = "AIPP_BUILD"  # the image's build kind (worker_images/Dockerfile)


# Settings read under a standard name, by field, and who else reads or sets that name.
STANDARD: Mapping[str, str] = {
    "aws_region": "AWS_REGION",  # the AWS SDKs; Lambda sets it itself
    "aws_endpoint_url": "AWS_ENDPOINT_URL",  # botocore too: moto's server, only locally
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",  # the AWS SDKs; only set locally
    "ecs_agent_uri": "ECS_AGENT_URI",  # set by ECS in every task (scale-in protection)
}

# What the model-server containers (phases 2-3) get: read by vLLM, Hugging Face and boto3 in
# that image, never by our runtime.
MODEL_SERVER_VARIABLES: Mapping[str, str] = {
    "HOME": "a writable home for the libraries' caches",
    "XDG_CACHE_HOME": "where torch, Triton and FlashInfer keep compiled kernels",
    "HF_HUB_OFFLINE": "Hugging Face: never reach the hub (weights come from the models bucket)",
    "TRANSFORMERS_OFFLINE": "transformers: the same",
    "VLLM_NO_USAGE_STATS": "vLLM: no usage reports",
    "DO_NOT_TRACK": "no telemetry from any library that honours it",
    "AWS_REGION": "boto3 in the weight copy",
}
