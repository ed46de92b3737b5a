"""Dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aipp.api.errors import ApiError
from aipp.api.services import Services
from aipp.core.db import Principal


async def get_services(request: Request) -> Services:
    """`async`, as every dependency here: FastAPI runs a plain `def` dependency in its thread
    pool, a hand-off between threads on every request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyDep = Annotated[str | None, Depends(_api_key)]


def client_address(request: Request) -> str:
    """The caller's address: the last X-Forwarded-For entry (the one the load balancer added;
    earlier ones are the client's word), else the peer."""
    forwarded = request.headers.get("x-forwarded-for", "")
    if forwarded.strip():
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.client.host if request.client else "unknown"


def _invalid_key() -> ApiError:
    return ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})


async def authenticate(
    request: Request, services: ServicesDep, bearer: BearerDep, api_key: ApiKeyDep
) -> Principal:
    """The caller's tenant, after the API key check and the per-key rate limit.

    Unknown keys cost at most one database lookup per AIPP_AUTH_NEGATIVE_CACHE_SECONDS each, and
    at most AIPP_AUTH_FAILURES_PER_MINUTE lookups per client address: past that, 429.
    """
    key = (bearer.credentials if bearer else api_key or "").strip() or None
    if key is None or len(key) > 200:
        raise ApiError(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            {"WWW-Authenticate": "Bearer"},
        )
    known, principal = services.cached_principal(key)
    if known and principal is None:
        raise _invalid_key()
    if not known:
        client = client_address(request)
        budget = services.failure_budget(client, take=False)
        if not budget.allowed:
            services.metrics.auth_failures_limited.inc()
            raise ApiError(
                429,
                "rate_limited",
                "too many requests with an invalid API key from this address",
                {"Retry-After": str(budget.retry_after_seconds)},
            )
        principal = await services.principal(key)
        if principal is None:
            services.failure_budget(client, take=True)
            raise _invalid_key()
    assert principal is not None
    request.state.api_key_prefix = principal.prefix  # logged with the request, never the key
    settings = services.settings
    decision = await services.take_token(principal)
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {settings.rate_limit_per_minute} requests/minute exceeded",
            {"Retry-After": str(decision.retry_after_seconds)},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
