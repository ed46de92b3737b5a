"""Settings come from exactly the environment variables the stacks set."""

from __future__ import annotations

import json

import pytest
from aipp.core.config import Settings, SettingsError, load_settings
from aipp.core.db import Credentials

from aipp_contract.env import STANDARD, Var, env_name

STACK_VARIABLES = (
    "AIPP_DATABASE_URL",
    "AIPP_DB_HOST",
    "AIPP_DB_PORT",
    "AIPP_DB_NAME",
    "AIPP_DB_USER",
    "AIPP_DB_PASSWORD",
    "AIPP_DB_SECRET_ARN",
    "AIPP_REDIS_URL",
    "AIPP_REDIS_HOST",
    "AIPP_REDIS_PORT",
    "AIPP_REDIS_TLS",
    "AIPP_REDIS_AUTH_TOKEN",
    "AIPP_ALLOWED_CONTENT_TYPES",
    "AIPP_MAX_UPLOAD_BYTES",
    "AIPP_RATE_LIMIT_PER_MINUTE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STACK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_ecs_database_variables_build_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AIPP_DB_HOST": "db.internal",
        "AIPP_DB_PORT": "6432",
        "AIPP_DB_NAME": "aipp",
        "AIPP_DB_USER": "app",
        "AIPP_DB_PASSWORD": "p@ss/word",
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().database_dsn() == "postgresql://app:p%40ss%2Fword@db.internal:6432/aipp"


def test_database_url_wins_and_defaults_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().database_dsn() == "postgresql://postgres@127.0.0.1:5432/aipp"
    monkeypatch.setenv("AIPP_DATABASE_URL", "postgresql://u@h:1/d")
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
    with pytest.raises(SettingsError, match="AIPP_DB_SECRET_ARN"):
        Settings(db_secret_arn="arn:aws:secretsmanager:x").database_dsn()


def test_elasticache_variables_build_a_tls_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPP_REDIS_HOST", "cache.internal")
    monkeypatch.setenv("AIPP_REDIS_PORT", "6380")
    monkeypatch.setenv("AIPP_REDIS_TLS", "true")
    monkeypatch.setenv("AIPP_REDIS_AUTH_TOKEN", "t0ken")
    assert load_settings().redis_dsn() == "rediss://:t0ken@cache.internal:6380/0"


def test_allowed_content_types_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPP_ALLOWED_CONTENT_TYPES", "audio/mpeg, AUDIO/WAV")
    assert load_settings().allowed_content_types == ("audio/mpeg", "audio/wav")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AIPP_MAX_UPLOAD_BYTES", "lots"),
        ("AIPP_RATE_LIMIT_PER_MINUTE", "0"),
        ("AIPP_DB_HOST", "only-the-host"),
        ("AIPP_ALLOWED_CONTENT_TYPES", " , "),
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
    assert name in message or "AIPP_DB_HOST, AIPP_DB_NAME and AIPP_DB_USER" in message


def test_secrets_are_not_in_the_repr() -> None:
    text = repr(Settings(db_password="hunter2", redis_auth_token="s3cret"))
    assert "hunter2" not in text
    assert "s3cret" not in text


def test_a_misspelled_platform_variable_stops_the_process_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An `AIPP_` name that no setting reads is refused at start, in one line, with the closest
    known name; names outside the prefix (a library's, the shell's) are left alone."""
    monkeypatch.setenv("AIPP_WORKER_CONCURENCY", "8")
    monkeypatch.setenv("WORKER_CONCURENCY", "8")
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value.code)
    assert "\n" not in message
    assert "unknown variable AIPP_WORKER_CONCURENCY" in message
    assert "did you mean AIPP_WORKER_CONCURRENCY?" in message
    assert message.count("unknown variable") == 1, "the unprefixed name is not ours to judge"


def test_every_variable_the_stacks_set_is_a_setting() -> None:
    """The contract's names (what `cdk_constructs/runtime_env.py` writes) are all read here."""
    known = {env_name(field) for field in Settings.model_fields}
    assert {str(v) for v in Var} <= known
    assert set(STANDARD.values()) <= known


def test_standard_names_keep_their_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api/x")
    settings = load_settings()
    assert (settings.aws_region, settings.ecs_agent_uri) == (
        "eu-west-1",
        "http://169.254.170.2/api/x",
    )
    assert Settings(aws_region="ap-south-1").aws_region == "ap-south-1"
