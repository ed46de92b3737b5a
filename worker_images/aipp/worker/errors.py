"""How a job can fail, and what the worker does about it.

- `JobError(retryable=False)`: the input can never succeed (unsupported audio, a provider that
  rejects it): the task is marked `failed` with the code and message at once.
- `JobError(retryable=True)`: try again later (backoff by message visibility); on the queue's
  final receive the task is marked `failed` with this reason before the message goes to the DLQ.
- A dependency error (PostgreSQL, Redis, S3 unreachable, or the database refusing the credentials
  in DB_SECRET_ARN even after re-reading it): the job is retried in-process once the
  dependency answers again, so an outage does not use up the message's receives.
- Anything else is a bug or an unknown failure: treated like a retryable error.
"""

from __future__ import annotations

import asyncio

import asyncpg
import botocore.exceptions
import redis.exceptions


class JobError(Exception):
    def __init__(
        self, code: str, message: str, *, retryable: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderError(JobError):
    """A speech-to-text or LLM provider failed."""


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
