"""Dependencies as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from aipp.api.errors import ApiError
from aipp.api.services import Services
from aipp.core.config import Settings
from aipp.core.db import Principal


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyDep = Annotated[str | None, Depends(_api_key)]


async def authenticate(services: ServicesDep, bearer: BearerDep, api_key: ApiKeyDep) -> Principal:
    """The caller's tenant, after the API key check and the per-key rate limit."""
    key = (bearer.credentials if bearer else api_key or "").strip() or None
    if key is None or len(key) > 200:
        raise ApiError(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            {"WWW-Authenticate": "Bearer"},
        )
    principal = await services.principal(key)
    if principal is None:
        raise ApiError(
            401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"}
        )
    settings = services.settings
    decision = await services.cache.take_token(
        principal.key_id,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
    )
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {settings.rate_limit_per_minute} requests/minute exceeded",
            {"Retry-After": str(decision.retry_after_seconds)},
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]
