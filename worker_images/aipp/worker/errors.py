"""How a job can fail, and what the worker does about it.

- `JobError(retryable=False)`: the input can never succeed (unsupported audio, a provider that
  rejects it): the task is marked `failed` with the code and message at once.
- `JobError(retryable=True)`: try again later (backoff by message visibility); on the queue's
  final receive the task is marked `failed` with this reason before the message goes to the DLQ.
- A dependency error (PostgreSQL, Redis, S3 unreachable, or the database refusing the credentials
  in AIPP_DB_SECRET_ARN even after re-reading it): the job is retried in-process once the
  dependency answers again, so an outage does not use up the message's receives.
- `ProviderUnavailable`: the provider throttles, answers 5xx or refuses connections (a model
  server still loading its weights): waited out in-process with backoff while the message is
  held, until the job deadline, instead of spending the message's receives.
- Anything else is a bug or an unknown failure: treated like a retryable error.

What a tenant reads in `error` is the code and the `message` of a JobError, which is always our
own wording; provider answers and exception text go to `detail`, which is only logged.
"""

from __future__ import annotations

import asyncio

import asyncpg
import botocore.exceptions
import redis.exceptions


class JobError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.detail = detail


class ProviderError(JobError):
    """A speech-to-text or LLM provider failed."""


class ProviderUnavailable(ProviderError):
    """The provider is throttling or down for now: wait and call it again."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(code, message, retryable=True, retry_after=retry_after, detail=detail)


# What a tenant reads for a failure that was not one of ours (a bug, an unexpected exception).
INTERNAL_ERROR = "processing_error"
INTERNAL_MESSAGE = "the task could not be processed because of an internal error"
JOB_TIMEOUT = "job_timeout"


_DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # pg_terminate_backend, shutdown
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # credentials refused (rotation)
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    ConnectionError,
    asyncio.TimeoutError,
)


def is_dependency_error(exc: BaseException) -> bool:
    return isinstance(exc, _DEPENDENCY_ERRORS) and not isinstance(exc, JobError)
