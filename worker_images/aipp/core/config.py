"""One `Settings` object, read from the environment and validated once at start.

Field `x` is read from `AIPP_X` (`aipp_contract.env`), a few standard names excepted
(`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `ECS_AGENT_URI`). `load_settings`
refuses an `AIPP_` variable that names no setting, with the closest known name.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from aipp_contract.env import PREFIX, STANDARD, env_name
from aipp_contract.upload import DEFAULT_ALLOWED_CONTENT_TYPES

SslMode = Literal["disable", "prefer", "require", "verify-full"]


class SettingsError(SystemExit):
    """Raised when the environment does not describe a usable configuration."""


def _standard(field: str) -> Any:
    """A setting read under its standard name (and its field name, for keyword arguments)."""
    return AliasChoices(field, STANDARD[field])


class Settings(BaseSettings):
    """Every value comes from `AIPP_<FIELD>` (upper case), or the standard name in STANDARD."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", frozen=True, case_sensitive=False
    )

    database_url: str | None = Field(
        default=None, description="postgresql://user:password@host:port/dbname"
    )
    db_host: str | None = Field(default=None, description="set by ECS from the RDS secret")
    db_port: int = Field(default=5432, ge=1, le=65535, description="database port")
    db_name: str | None = Field(default=None, description="database name")
    db_user: str | None = Field(default=None, description="database user")
    db_password: str | None = Field(default=None, repr=False, description="database password")
    db_secret_arn: str | None = Field(
        default=None,
        description="the RDS secret (JSON host, port, dbname, username, password): read at the"
        " first connection and again when the database refuses it (rotation); wins over AIPP_DB_*",
    )
    db_secret_reread_seconds: float = Field(
        default=5.0,
        ge=0,
        description="after a re-read that found the same refused credentials, wait this long"
        " before reading the secret again",
    )
    db_app_secret_arn: str | None = Field(
        default=None,
        description="migration task only: the application user's secret (JSON username,"
        " password); `admin migrate` creates that login role with DML rights only",
    )
    db_migration_role: str = Field(
        default="aipp_migrator",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="migration task only: the NOLOGIN role that owns the schema",
    )
    db_sslmode: SslMode | None = Field(
        default=None,
        description="disable | prefer | require | verify-full; unset: the client default"
        " (prefer), which keeps a local PostgreSQL without TLS working",
    )
    db_ssl_root_cert: str | None = Field(
        default=None,
        description="CA bundle that require/verify-full check the server certificate against"
        " (the image ships the RDS bundle at /opt/aipp/certs/rds-global-bundle.pem); unset:"
        " the system's trust store",
    )
    db_read_host: str | None = Field(
        default=None,
        description="API only: a read replica's host (same credentials and port); the task"
        " listing reads from it, everything else from the primary",
    )
    db_pool_min: int = Field(default=0, ge=0, description="connections opened at start")
    db_pool_max: int = Field(default=10, ge=1, description="largest connection pool")

    redis_url: str | None = Field(default=None, description="redis://host:port/db")
    redis_host: str | None = Field(default=None, description="ElastiCache endpoint")
    redis_port: int = Field(default=6379, ge=1, le=65535, description="Redis port")
    redis_tls: bool = Field(default=False, description="true in AWS")
    redis_auth_token: str | None = Field(default=None, repr=False, description="Redis AUTH")
    redis_auth_secret_arn: str | None = Field(
        default=None,
        description="Secrets Manager secret holding the Redis AUTH token: read once at start"
        " with the process's own role (wins over AIPP_REDIS_AUTH_TOKEN)",
    )

    audio_bucket: str = Field(default="aipp-audio-local", min_length=3, description="S3 bucket")
    stt_queue_url: str = Field(
        default="http://127.0.0.1:5000/123456789012/aipp-tasks", description="STT queue"
    )
    llm_queue_url: str = Field(
        default="http://127.0.0.1:5000/123456789012/aipp-tasks", description="LLM queue"
    )
    aws_region: str = Field(
        default="us-east-1", validation_alias=_standard("aws_region"), description="AWS region"
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=_standard("aws_endpoint_url"),
        description="only locally: moto's server for S3 and SQS",
    )
    aws_access_key_id: str | None = Field(
        default=None,
        repr=False,
        validation_alias=_standard("aws_access_key_id"),
        description="only locally: with AWS_ENDPOINT_URL and no key, moto's `testing` key is"
        " used; in AWS the SDK finds the role's credentials itself",
    )

    max_upload_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1, description="largest audio (presigned upload)"
    )
    max_multipart_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1,
        description="largest audio sent as multipart to POST /v1/tasks (spooled to disk and"
        " streamed to S3); larger files use the presigned upload",
    )
    max_json_body_bytes: int = Field(
        default=8 * 1024, ge=256, description="largest request body of every other request"
    )
    allowed_content_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_ALLOWED_CONTENT_TYPES, description="comma-separated MIME types"
    )
    rate_limit_per_minute: int = Field(default=600, ge=1, description="sustained rate per key")
    rate_limit_burst: int = Field(default=100, ge=1, description="bucket size per key")
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="a valid key is remembered this long per API process: a revoked key is"
        " refused at most this long after `admin revoke-api-key`",
    )
    auth_negative_cache_seconds: float = Field(
        default=10.0, ge=0, description="an unknown key is answered 401 from memory this long"
    )
    auth_failures_per_minute: int = Field(
        default=60,
        ge=1,
        description="unknown-key lookups per client address and minute before 429 (a flood"
        " of bogus keys does not become a flood of database queries)",
    )
    quota_tasks_in_flight: int = Field(
        default=100,
        ge=1,
        description="per tenant: tasks not yet completed or failed; more answers 429",
    )
    quota_tasks_per_day: int = Field(
        default=10_000, ge=1, description="per tenant: tasks created per UTC day; more answers 429"
    )
    presign_expires_seconds: int = Field(default=900, ge=1, le=604800, description="URL life")
    upload_grace_seconds: int = Field(
        default=900,
        ge=0,
        description="a task still awaiting_upload this long after its upload URL expired fails"
        " (`upload_expired`); covers an upload that started just before the expiry",
    )
    upload_sweep_interval_seconds: int = Field(
        default=60, ge=0, description="how often the workers look for expired uploads; 0: never"
    )
    reconcile_interval_seconds: float = Field(
        default=60.0,
        ge=0,
        description="how often the workers look for stranded tasks (queued, transcribing or"
        " summarizing, with no lock and no change for AIPP_RECONCILE_AFTER_SECONDS); 0: never",
    )
    reconcile_after_seconds: float = Field(
        default=900.0,
        gt=0,
        description="a task unchanged and unlocked this long gets its queue message again",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING, ERROR")
    app_release: str = Field(
        default="local",
        min_length=1,
        description="the release this process runs (the stacks set its image's asset hash);"
        " /healthz reports it",
    )
    build: Literal["release", "local-only"] | None = Field(
        default=None,
        description="set by the image: `release` ships the RDS CA bundle, `local-only` does not"
        " (worker_images/Dockerfile); unset outside an image",
    )
    max_header_bytes: int = Field(default=8192, ge=1024, description="largest request header")
    dependency_timeout_seconds: float = Field(default=3.0, gt=0, description="per call")

    # --- workers (aipp.worker): the stacks set these per worker service ---------------------
    worker_task_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("stt", "llm"), description="task types this worker handles: stt,llm | stt | llm"
    )
    worker_queue_url: str | None = Field(
        default=None, description="the queue this worker consumes (default: its first type's)"
    )
    worker_dlq_url: str | None = Field(
        default=None, description="its dead-letter queue; tasks found there are marked failed"
    )
    worker_concurrency: int = Field(default=4, ge=1, le=256, description="jobs per process")
    worker_visibility_timeout: int | None = Field(
        default=None, ge=1, le=43200, description="seconds; default: the queue's own setting"
    )
    worker_wait_seconds: int = Field(default=20, ge=0, le=20, description="SQS long poll")
    worker_shutdown_grace_seconds: float = Field(
        default=100.0, ge=0, description="SIGTERM: time to finish in-flight jobs"
    )
    worker_retry_base_seconds: int = Field(
        default=10, ge=0, le=900, description="first retry delay; doubles on each receive"
    )
    worker_heartbeat_file: str | None = Field(
        default="/tmp/aipp-worker-heartbeat",  # noqa: S108 - a liveness marker, not data
        description="touched while the receive loop runs (container HEALTHCHECK); empty: off",
    )
    worker_health_max_age_seconds: float = Field(
        default=90.0,
        gt=0,
        description="the health check (`python -m aipp.worker.health`) fails when the heartbeat"
        " file is older than this",
    )
    worker_job_deadline_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="one attempt of a job (provider waits included) ends after this; the"
        " phase config's longest_job_seconds",
    )
    provider_retry_base_seconds: float = Field(
        default=2.0,
        gt=0,
        description="first wait when a provider throttles, answers 5xx or refuses connections;"
        " doubles up to AIPP_PROVIDER_RETRY_MAX_SECONDS, until the job deadline",
    )
    provider_retry_max_seconds: float = Field(
        default=60.0, gt=0, description="longest single wait for a provider outage"
    )
    max_receive_count: int = Field(
        default=3, ge=1, le=1000, description="the queue's DLQ maxReceiveCount"
    )
    ecs_agent_uri: str | None = Field(
        default=None,
        validation_alias=_standard("ecs_agent_uri"),
        description="set by ECS: scale-in protection while jobs run",
    )
    webhook_url: str | None = Field(
        default=None, description="POSTed when a task completes or fails (optional)"
    )
    webhook_secret: str | None = Field(
        default=None, repr=False, description="HMAC-SHA256 key for the webhook signature"
    )
    webhook_secret_arn: str | None = Field(
        default=None,
        description="Secrets Manager secret holding the webhook key: read once at start with the"
        " process's own role (wins over AIPP_WEBHOOK_SECRET)",
    )

    # --- AI providers --------------------------------------------------------------------------
    stt_provider: str = Field(
        default="pocketsphinx", description="transcribe | openai | pocketsphinx (| instant)"
    )
    llm_provider: str = Field(
        default="extractive", description="bedrock | openai | extractive (| instant)"
    )
    bedrock_model_id: str = Field(
        default="amazon.nova-lite-v1:0", min_length=1, description="Converse model id"
    )
    llm_max_output_tokens: int = Field(default=1024, ge=16, description="per LLM call")
    llm_chunk_chars: int = Field(
        default=12000, ge=500, description="longer transcripts are summarized in chunks"
    )
    transcribe_language: str = Field(
        default="en-US", description="language code, or `auto` to let Transcribe identify it"
    )
    transcribe_max_wait_seconds: float = Field(
        default=4 * 3600.0, gt=0, description="give up on one Transcribe job after this"
    )
    openai_base_url: str = Field(
        default="http://127.0.0.1:8001", description="OpenAI-compatible server (vLLM, Whisper)"
    )
    openai_stt_base_url: str | None = Field(
        default=None, description="Whisper server, when not AIPP_OPENAI_BASE_URL"
    )
    openai_llm_base_url: str | None = Field(
        default=None, description="chat server, when not AIPP_OPENAI_BASE_URL"
    )
    openai_api_key: str | None = Field(default=None, repr=False, description="Bearer token")
    openai_stt_model: str = Field(
        default="openai/whisper-large-v3-turbo", description="transcription model name"
    )
    openai_llm_model: str = Field(
        default="meta-llama/Llama-3.1-8B-Instruct", description="chat model name"
    )
    openai_timeout_seconds: float = Field(default=600.0, gt=0, description="per request")
    openai_connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="per connection attempt to the model servers"
    )
    instant_provider_delay_seconds: float = Field(
        default=0.0, ge=0, description="tests and benchmarks only: the instant providers' delay"
    )
    instant_provider_log: str | None = Field(
        default=None, description="tests only: the instant providers append each call here"
    )

    @field_validator("worker_task_types", mode="before")
    @classmethod
    def _split_task_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip().lower() for v in value.split(",") if v.strip()]
        value = tuple(dict.fromkeys(value or ()))
        if not value or not set(value) <= {"stt", "llm"}:
            raise ValueError("must be stt, llm or stt,llm")
        return value

    @field_validator("stt_provider", "llm_provider")
    @classmethod
    def _provider(cls, value: str, info: Any) -> str:
        value = value.strip().lower()
        known = {
            "stt_provider": {"transcribe", "openai", "pocketsphinx", "instant"},
            "llm_provider": {"bedrock", "openai", "extractive", "instant"},
        }[info.field_name]
        if value not in known:
            raise ValueError(f"must be one of {', '.join(sorted(known))}")
        return value

    def worker_queue(self) -> str:
        """The queue this worker consumes: AIPP_WORKER_QUEUE_URL, else its first type's queue."""
        if self.worker_queue_url:
            return self.worker_queue_url
        return self.stt_queue_url if self.worker_task_types[0] == "stt" else self.llm_queue_url

    @field_validator("allowed_content_types", mode="before")
    @classmethod
    def _split_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip().lower() for v in value.split(",") if v.strip()]
        if not value:
            raise ValueError("must name at least one MIME type")
        return tuple(value)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    @model_validator(mode="after")
    def _database_source(self) -> Settings:
        parts = (self.db_host, self.db_name, self.db_user)
        if any(parts) and not all(parts):
            raise ValueError("AIPP_DB_HOST, AIPP_DB_NAME and AIPP_DB_USER must be set together")
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("AIPP_DB_POOL_MIN must not exceed AIPP_DB_POOL_MAX")
        return self

    def database_dsn(self) -> str:
        """The DSN to connect with; AIPP_DB_SECRET_ARN must be resolved first (`with_db_secret`).

        Pools do not call this directly for AIPP_DB_SECRET_ARN: `aipp.core.db.Credentials` reads the
        secret at the first connection and re-reads it after a rotation.
        """
        if self.database_url:
            return self.database_url
        if self.db_host and self.db_name and self.db_user:
            password = f":{quote(self.db_password, safe='')}" if self.db_password else ""
            return (
                f"postgresql://{quote(self.db_user, safe='')}{password}"
                f"@{self.db_host}:{self.db_port}/{quote(self.db_name, safe='')}"
            )
        if self.db_secret_arn:
            raise SettingsError("AIPP_DB_SECRET_ARN is set but the secret was not resolved")
        return "postgresql://postgres@127.0.0.1:5432/aipp"

    def with_db_secret(self, secret_string: str) -> Settings:
        """A copy with the db_* settings from an RDS secret (JSON: host, port, dbname, username,
        password)."""
        data = json.loads(secret_string)
        return self.model_copy(
            update={
                "db_host": data["host"],
                "db_port": int(data.get("port", 5432)),
                "db_name": data.get("dbname", "postgres"),
                "db_user": data["username"],
                "db_password": data.get("password"),
            }
        )

    def redis_dsn(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            scheme = "rediss" if self.redis_tls else "redis"
            auth = f":{quote(self.redis_auth_token, safe='')}@" if self.redis_auth_token else ""
            return f"{scheme}://{auth}{self.redis_host}:{self.redis_port}/0"
        return "redis://127.0.0.1:6379/0"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per `AIPP_` variable in `environ` that names no setting, with the closest
    known name: a misspelled variable stops the process instead of being ignored."""
    known = {env_name(field) for field in Settings.model_fields}
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(f"unknown variable {name}{hint}")
    return lines


def read_environment(**overrides: Any) -> Settings:
    """`Settings` from the environment, without reading any secret; exits with one line per
    unknown `AIPP_` variable or bad value."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise SettingsError("invalid configuration from the environment: " + "; ".join(unknown))
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"])
            name = env_name(field) if field in Settings.model_fields else field.upper()
            lines.append(f"  {name or 'settings'}: {err['msg']}")
        raise SettingsError(
            "invalid configuration from the environment:\n" + "\n".join(lines)
        ) from None


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the environment; exit with one clear message per bad variable.

    Secrets named by ARN (AIPP_REDIS_AUTH_SECRET_ARN, AIPP_WEBHOOK_SECRET_ARN) are read here,
    once, so a process that cannot read one stops at start with one line naming it.
    """
    return with_secrets_by_arn(read_environment(**overrides))


# Settings filled from a Secrets Manager secret named by another setting.
SECRETS_BY_ARN = {
    "redis_auth_secret_arn": "redis_auth_token",
    "webhook_secret_arn": "webhook_secret",
}


def with_secrets_by_arn(settings: Settings) -> Settings:
    """A copy with each secret named by ARN read into its value setting (the secret string)."""
    wanted = {
        arn_field: value_field
        for arn_field, value_field in SECRETS_BY_ARN.items()
        if getattr(settings, arn_field)
    }
    if not wanted:
        return settings
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - only when used

    from aipp.core.aws import secrets_client  # noqa: PLC0415 - aws imports this module

    client = secrets_client(settings)
    update = {}
    for arn_field, value_field in wanted.items():
        arn = getattr(settings, arn_field)
        try:
            secret = client.get_secret_value(SecretId=arn)
        except ClientError as exc:
            reason = exc.response.get("Error", {}).get("Code", "error")
            raise SettingsError(
                f"{env_name(arn_field)}: cannot read secret {arn}: {reason}"
            ) from None
        except BotoCoreError as exc:
            raise SettingsError(f"{env_name(arn_field)}: cannot read secret {arn}: {exc}") from None
        if "SecretString" not in secret:
            raise SettingsError(f"{env_name(arn_field)}: secret {arn} has no string value")
        update[value_field] = secret["SecretString"]
    return settings.model_copy(update=update)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
