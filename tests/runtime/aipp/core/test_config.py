"""Settings come from exactly the environment variables the stacks set."""

from __future__ import annotations

import json

import pytest
from aipp.core.config import Settings, SettingsError, load_settings
from aipp.core.db import Credentials

STACK_VARIABLES = (
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DB_SECRET_ARN",
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_TLS",
    "REDIS_AUTH_TOKEN",
    "ALLOWED_CONTENT_TYPES",
    "MAX_UPLOAD_BYTES",
    "RATE_LIMIT_PER_MINUTE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STACK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_ecs_database_variables_build_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "DB_HOST": "db.internal",
        "DB_PORT": "6432",
        "DB_NAME": "aipp",
        "DB_USER": "app",
        "DB_PASSWORD": "p@ss/word",
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().database_dsn() == "postgresql://app:p%40ss%2Fword@db.internal:6432/aipp"


def test_database_url_wins_and_defaults_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().database_dsn() == "postgresql://postgres@127.0.0.1:5432/aipp"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:1/d")
    assert load_settings().database_dsn() == "postgresql://u@h:1/d"


def test_rds_secret_fills_the_database_settings() -> None:
    secret = {"host": "h", "port": 5432, "dbname": "d", "username": "u", "password": "x"}
    settings = Settings(db_secret_arn="arn:aws:secretsmanager:...").with_db_secret(
        json.dumps(secret)
    )
    assert settings.database_dsn() == "postgresql://u:x@h:5432/d"


def test_the_secret_wins_over_db_variables_but_not_over_database_url() -> None:
    secret = {"db_secret_arn": "arn:aws:secretsmanager:x"}
    db_vars = {"db_host": "h", "db_name": "d", "db_user": "u", "db_password": "p"}
    assert Credentials.from_settings(Settings(**secret, **db_vars)).from_secret
    assert not Credentials.from_settings(
        Settings(**secret, database_url="postgresql://u@h:1/d")
    ).from_secret
    assert not Credentials.from_settings(Settings(**db_vars)).from_secret


def test_unresolved_secret_is_an_error() -> None:
    with pytest.raises(SettingsError, match="DB_SECRET_ARN"):
        Settings(db_secret_arn="arn:aws:secretsmanager:x").database_dsn()


def test_elasticache_variables_build_a_tls_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_TLS", "true")
    monkeypatch.setenv("REDIS_AUTH_TOKEN", "t0ken")
    assert load_settings().redis_dsn() == "rediss://:t0ken@cache.internal:6380/0"


def test_allowed_content_types_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", "audio/mpeg, AUDIO/WAV")
    assert load_settings().allowed_content_types == ("audio/mpeg", "audio/wav")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_UPLOAD_BYTES", "lots"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
        ("DB_HOST", "only-the-host"),
        ("ALLOWED_CONTENT_TYPES", " , "),
    ],
)
def test_bad_values_stop_start_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value.code)
    assert "invalid configuration" in message
    assert name in message or "DB_HOST, DB_NAME and DB_USER" in message


def test_secrets_are_not_in_the_repr() -> None:
    text = repr(Settings(db_password="hunter2", redis_auth_token="s3cret"))
    assert "hunter2" not in text
    assert "s3cret" not in text
