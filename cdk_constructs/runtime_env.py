"""The environment every platform process gets, built in one place for every compute.

The ECS task definitions (phase 1), the Kubernetes manifests (phases 2-3) and the upload-check
Lambda all take their variables from `runtime_environment`, so the computes cannot drift apart
in what they tell the runtime. The names come from `aipp_contract.env`, which the runtime's
`Settings` reads too; tests/infra/test_contract.py checks every synthesized environment against
it. No credential is ever a value here: the runtime reads secrets by ARN with its own role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aipp_contract.env import STANDARD, Var
from aipp_contract.messages import SEND_TO, Kind
from cdk_constructs.database import Database
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.task_queues import QueueMode, QueuePair, TaskQueues
from phases import PhaseConfig, TaskType
from phases.models import AiConfig

# The release a process runs (its image's asset hash); the API reports it on `/healthz`, and the
# delivery pipeline's smoke step waits until every answer names the new one.
RELEASE = Var.APP_RELEASE

# Where the images keep the RDS CA bundle the runtime verifies the database's certificate with.
RDS_CA_BUNDLE = "/opt/aipp/certs/rds-global-bundle.pem"


@dataclass(frozen=True)
class Endpoints:
    """Where the runtime finds what the stacks made (literals or deploy-time tokens)."""

    region: str
    bucket: str
    send_to: Mapping[TaskType, str]  # queue URL new work of each type is sent to
    db_secret_arn: str  # the application user's secret
    redis_host: str | None = None  # every kind but the upload check needs Redis
    redis_port: int | None = None
    db_read_host: str | None = None
    # Read by the runtime itself at start with its own role (AIPP_REDIS_AUTH_SECRET_ARN,
    # AIPP_WEBHOOK_SECRET_ARN): no secret value is ever written into a task definition or manifest.
    redis_auth_secret_arn: str | None = None
    webhook_secret_arn: str | None = None  # None: completion webhooks are off


# The variables naming a worker's model server (URL, model) for each task type.
MODEL_SERVER_VARS = {
    TaskType.STT: (Var.OPENAI_STT_BASE_URL, Var.OPENAI_STT_MODEL),
    TaskType.LLM: (Var.OPENAI_LLM_BASE_URL, Var.OPENAI_LLM_MODEL),
}


@dataclass(frozen=True)
class ModelServer:
    """An OpenAI-compatible server a worker calls (self-hosted Whisper or LLM)."""

    url: str
    model: str


def platform_endpoints(
    *,
    region: str,
    bucket: str,
    queues: TaskQueues,
    serving: QueueMode,
    database: Database,
    cache: RedisCache,
    webhook_secret_arn: str | None = None,
) -> Endpoints:
    """A compute's endpoints from the platform's constructs: new work goes to the `serving`
    layout's queues; the runtime reads the Redis token and the webhook key itself, by ARN."""
    return Endpoints(
        region=region,
        bucket=bucket,
        send_to={t: queues.for_type(t, serving).queue.queue_url for t in TaskType},
        redis_host=cache.endpoint,
        redis_port=cache.port,
        db_secret_arn=database.secret.secret_arn,
        db_read_host=database.read_endpoint,
        redis_auth_secret_arn=cache.auth_secret.secret_arn,
        webhook_secret_arn=webhook_secret_arn,
    )


def runtime_environment(
    config: PhaseConfig,
    endpoints: Endpoints,
    *,
    kind: Kind,
    ai: AiConfig,
    worker: QueuePair | None = None,
    concurrency: int | None = None,
    master_secret_arn: str | None = None,
    model_servers: Mapping[TaskType, ModelServer] | None = None,
    shutdown_grace_seconds: int | None = None,
) -> dict[str, str]:
    """The variables of one process kind. A worker needs its queue pair and concurrency; the
    migration needs the master secret (it creates the application user). On EKS a worker also
    gets the model servers of its types (`openai` providers) and how long SIGTERM may take."""
    env = _common(config, endpoints, kind)
    if kind is Kind.UPLOAD_CHECK:
        return env  # Lambda sets AWS_REGION itself and reserves the name
    env |= _with_redis_and_providers(config, endpoints, kind, ai)
    if kind is Kind.API:
        env |= {
            Var.MAX_MULTIPART_BYTES: str(config.bucket.max_multipart_bytes),
            Var.QUOTA_TASKS_IN_FLIGHT: str(config.quotas.tasks_in_flight),
            Var.QUOTA_TASKS_PER_DAY: str(config.quotas.tasks_per_day),
        }
        if endpoints.db_read_host:
            env[Var.DB_READ_HOST] = endpoints.db_read_host
    if kind is Kind.MIGRATION:
        if master_secret_arn is None:
            raise ValueError("the migration needs the master secret")
        env[Var.DB_SECRET_ARN] = master_secret_arn
        env[Var.DB_APP_SECRET_ARN] = endpoints.db_secret_arn
    if kind is Kind.WORKER:
        if worker is None or concurrency is None:
            raise ValueError("a worker needs its queue pair and concurrency")
        env |= _worker(config, endpoints, worker, concurrency, model_servers or {})
        if shutdown_grace_seconds is not None:
            env[Var.WORKER_SHUTDOWN_GRACE_SECONDS] = str(shutdown_grace_seconds)
    return {str(name): value for name, value in env.items()}


def _common(config: PhaseConfig, endpoints: Endpoints, kind: Kind) -> dict[str, str]:
    """What every process reading tasks and audio needs, the upload check included."""
    return {
        Var.AUDIO_BUCKET: endpoints.bucket,
        **{SEND_TO[t]: endpoints.send_to[t] for t in TaskType},
        Var.DB_SECRET_ARN: endpoints.db_secret_arn,
        Var.DB_POOL_MAX: str(getattr(config.database.pools, kind.value)),
        Var.DB_SSLMODE: "verify-full",
        Var.DB_SSL_ROOT_CERT: RDS_CA_BUNDLE,
        Var.MAX_UPLOAD_BYTES: str(config.bucket.max_upload_bytes),
        Var.LOG_LEVEL: "INFO",
    }


def _with_redis_and_providers(
    config: PhaseConfig, endpoints: Endpoints, kind: Kind, ai: AiConfig
) -> dict[str, str]:
    if endpoints.redis_host is None or endpoints.redis_port is None:
        raise ValueError(f"a {kind} needs Redis")
    env = {
        STANDARD["aws_region"]: endpoints.region,
        Var.REDIS_HOST: endpoints.redis_host,
        Var.REDIS_PORT: str(endpoints.redis_port),
        Var.REDIS_TLS: "true",
        Var.MAX_RECEIVE_COUNT: str(config.queues.max_receive_count),
        Var.STT_PROVIDER: ai.stt_provider,
        Var.LLM_PROVIDER: ai.llm_provider,
        Var.BEDROCK_MODEL_ID: ai.bedrock_model_ids[0],
        Var.TRANSCRIBE_LANGUAGE: ai.transcribe_language,
    }
    if endpoints.redis_auth_secret_arn and kind in (Kind.API, Kind.WORKER):
        env[Var.REDIS_AUTH_SECRET_ARN] = endpoints.redis_auth_secret_arn
    return env


def _worker(
    config: PhaseConfig,
    endpoints: Endpoints,
    worker: QueuePair,
    concurrency: int,
    model_servers: Mapping[TaskType, ModelServer],
) -> dict[str, str]:
    env: dict[str, str] = {
        Var.WORKER_TASK_TYPES: ",".join(t.value for t in worker.task_types),
        Var.WORKER_QUEUE_URL: worker.queue.queue_url,
        Var.WORKER_DLQ_URL: worker.dlq.queue_url,
        Var.WORKER_CONCURRENCY: str(concurrency),
        # One attempt may run this long; the queue's visibility timeout exceeds it.
        Var.WORKER_JOB_DEADLINE_SECONDS: str(config.queues.longest_job_seconds),
    }
    if config.webhook is not None:
        env[Var.WEBHOOK_URL] = config.webhook.url
        if endpoints.webhook_secret_arn:
            env[Var.WEBHOOK_SECRET_ARN] = endpoints.webhook_secret_arn
    for task_type, server in model_servers.items():
        base_url, model = MODEL_SERVER_VARS[task_type]
        env[base_url] = server.url
        env[model] = server.model
    return env
