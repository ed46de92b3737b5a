"""The Redis AUTH token and the webhook key reach a process by ARN (AIPP_REDIS_AUTH_SECRET_ARN,
AIPP_WEBHOOK_SECRET_ARN): read at start from Secrets Manager (moto's server here) with the process's
own credentials, never passed as values."""

from __future__ import annotations

import uuid

import pytest
from aipp.core.config import SettingsError, load_settings

from tests.runtime.conftest import aws_client


def _secret(endpoint: str, value: str) -> str:
    client = aws_client(endpoint, "secretsmanager")
    created = client.create_secret(Name=f"aipp-test-{uuid.uuid4().hex[:10]}", SecretString=value)
    return str(created["ARN"])


def test_secrets_named_by_arn_are_read_at_start(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, key = uuid.uuid4().hex, uuid.uuid4().hex
    monkeypatch.setenv("AIPP_REDIS_AUTH_SECRET_ARN", _secret(moto_endpoint, token))
    monkeypatch.setenv("AIPP_WEBHOOK_SECRET_ARN", _secret(moto_endpoint, key))
    monkeypatch.setenv("AIPP_REDIS_HOST", "cache.internal")
    monkeypatch.setenv("AIPP_REDIS_TLS", "true")
    settings = load_settings(aws_endpoint_url=moto_endpoint)
    assert settings.redis_auth_token == token
    assert settings.webhook_secret == key
    assert settings.redis_dsn() == f"rediss://:{token}@cache.internal:6379/0"
    assert token not in repr(settings) and key not in repr(settings), "values never logged"


def test_without_arns_nothing_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPP_REDIS_AUTH_TOKEN", "plain")
    # An endpoint nobody listens on: any call would fail.
    settings = load_settings(aws_endpoint_url="http://127.0.0.1:9")
    assert settings.redis_auth_token == "plain"


def test_an_unreadable_secret_stops_the_process_with_one_line(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:aipp-missing-AbCdEf"
    monkeypatch.setenv("AIPP_WEBHOOK_SECRET_ARN", missing)
    with pytest.raises(SettingsError) as caught:
        load_settings(aws_endpoint_url=moto_endpoint)
    message = str(caught.value)
    assert message == (
        f"AIPP_WEBHOOK_SECRET_ARN: cannot read secret {missing}: ResourceNotFoundException"
    )
    assert "\n" not in message
