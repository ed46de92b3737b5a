"""The phase configuration: every phase x env is valid, every bad value is named in one line."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from phases import ConfigError, Env, Phase, PhaseConfig, load_config
from phases.catalog import PHASES
from phases.loader import deep_merge, example_overrides, parse_overrides


def load(phase: object, env: object = "staging", overrides: object = None) -> PhaseConfig:
    """`load_config` as `make synth` calls it: the environment's example overrides first (prod
    needs an alarm address of its own)."""
    if env != "prod":
        return load_config(phase, env, overrides)
    merged = deep_merge(example_overrides(Env.PROD), parse_overrides(overrides))
    return load_config(phase, env, json.dumps(merged))


@pytest.mark.parametrize("phase", ["1", "2", "3", "mvp", "growth", "scale", "MVP", 2])
@pytest.mark.parametrize("env", ["staging", "prod"])
def test_every_phase_and_env_builds(phase: object, env: str) -> None:
    config = load(phase, env)
    assert config.env is Env(env)
    assert config.compute == ("ecs" if config.phase is Phase.MVP else "eks")


def test_phases_follow_the_design_table() -> None:
    mvp, growth, scale = (load(p, "prod") for p in ("1", "2", "3"))
    assert (mvp.queues.mode, growth.queues.mode, scale.queues.mode) == (
        "single",
        "per_type",
        "per_type",
    )
    assert (mvp.database.engine, mvp.database.multi_az) == ("rds-postgres", False)
    assert (growth.database.engine, growth.database.multi_az) == ("rds-postgres", True)
    # Phase 3 grows the phase 2 database in place (the brief rejects Aurora) ...
    assert (scale.database.engine, scale.database.multi_az) == ("rds-postgres", True)
    assert scale.database.read_replicas == 1
    # ... and Redis stays a replication group behind one primary endpoint.
    assert (mvp.cache.mode, growth.cache.mode, scale.cache.mode) == (
        "single",
        "replication",
        "replication",
    )
    assert mvp.cache.replicas < growth.cache.replicas < scale.cache.replicas
    assert (mvp.ai.stt_provider, mvp.ai.llm_provider) == ("transcribe", "bedrock")
    assert (growth.ai.stt_provider, growth.ai.llm_provider) == ("openai", "openai")
    assert scale.ai.managed_fallback is True


def test_environments_differ_in_size_retention_protection_and_alarms() -> None:
    staging, prod = load("1", "staging"), load("1", "prod")
    assert (staging.network.nat_gateways, prod.network.nat_gateways) == (1, 2)
    assert (staging.database.deletion_protection, prod.database.deletion_protection) == (
        False,
        True,
    )
    assert prod.observability.log_retention_days > staging.observability.log_retention_days
    assert prod.observability.api_5xx_alarm_count < staging.observability.api_5xx_alarm_count
    assert prod.ecs and staging.ecs and prod.ecs.api.count.min > staging.ecs.api.count.min
    eks_staging, eks_prod = load("2", "staging").eks, load("2", "prod").eks
    assert eks_staging and eks_prod
    assert eks_staging.system_nodes.size.min == 3 and eks_prod.system_nodes.size.min >= 6


def test_overrides_merge_deeply_and_validate() -> None:
    config = load("1", "staging", json.dumps({"ecs": {"worker": {"count": {"min": 1}}}}))
    assert config.ecs and config.ecs.worker.count.min == 1
    assert config.ecs.worker.count.max == 10  # untouched sibling kept
    assert config.ecs.api.cpu == 512


def test_configs_are_frozen() -> None:
    config = load("1")
    with pytest.raises(Exception, match="frozen"):
        config.env = Env.PROD  # type: ignore[misc]


def test_every_field_is_documented() -> None:
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    walk(candidate)

    walk(PhaseConfig)
    assert len(seen) > 10


BAD = [
    (
        "2",
        "prod",
        '{"eks": {"admin_role_arns": ["admin"]}}',
        "eks.admin_role_arns.0: String should match pattern",
    ),
    (
        "2",
        "prod",
        '{"eks": {"endpoint_public": true, "public_access_cidrs": ["anywhere"]}}',
        "eks.public_access_cidrs.0: String should match pattern",
    ),
    (
        "3",
        "staging",
        '{"network": {"availability_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}}',
        "network.availability_zones needs `region` to be set",
    ),
    (
        "3",
        "staging",
        '{"region": "eu-west-1", "network": {"availability_zones": ["eu-west-1a", "us-east-1b", "eu-west-1c"]}}',
        "network.availability_zones: us-east-1b is not in eu-west-1",
    ),
    (
        "3",
        "staging",
        '{"region": "eu-west-1", "network": {"availability_zones": ["eu-west-1a", "eu-west-1b"]}}',
        "network.availability_zones names 2 AZs but max_azs is 3",
    ),
    (
        "1",
        "staging",
        '{"webhook": {"url": "http://plain.example.com"}}',
        "webhook.url: String should match pattern",
    ),
    # (phase, env, overrides, the one line we expect, or a fragment of it)
    ("4", "staging", None, "unknown phase '4': choose one of 1, mvp, 2, growth, 3, scale, auto"),
    ("1", "dev", None, "unknown env 'dev': choose one of staging, prod"),
    ("1", "staging", "{bad", "overrides is not valid JSON"),
    ("1", "staging", "[1, 2]", "overrides must be a JSON object"),
    ("1", "staging", '{"env": "prod"}', "overrides cannot set 'env'"),
    (
        "1",
        "staging",
        '{"queues": {"mode": "triple"}}',
        "queues.mode: Input should be 'single' or 'per_type'",
    ),
    (
        "1",
        "staging",
        '{"queus": {}}',
        "queus: unknown field (valid: account, ai, bucket, cache, compute",
    ),
    (
        "1",
        "staging",
        '{"ecs": {"api": {"cpuu": 1}}}',
        "ecs.api.cpuu: unknown field (valid: count, cpu, memory_mib, spot, target_cpu_percent)",
    ),
    (
        "1",
        "staging",
        '{"network": {"nat_gateways": "two"}}',
        "network.nat_gateways: Input should be a valid integer",
    ),
    (
        "1",
        "staging",
        '{"bucket": {"raw_upload_expiry_days": -1}}',
        "bucket.raw_upload_expiry_days: Input should be greater than or equal to 1",
    ),
    (
        "1",
        "staging",
        '{"bucket": {"max_upload_bytes": 0}}',
        "bucket.max_upload_bytes: Input should be greater than 0",
    ),
    (
        "1",
        "staging",
        '{"ecs": {"worker": {"count": {"min": 5, "max": 2}}}}',
        "ecs.worker.count: min (5) must not exceed max (2)",
    ),
    (
        "1",
        "staging",
        '{"ecs": {"api": {"cpu": 300}}}',
        "ecs.api.cpu: Input should be 256, 512, 1024, 2048 or 4096",
    ),
    (
        "1",
        "staging",
        '{"ecs": {"api": {"memory_mib": 512}}}',
        "ecs.api: memory_mib 512 is invalid with cpu 512",
    ),
    (
        "1",
        "staging",
        '{"queues": {"visibility_timeout_seconds": 60}}',
        "queues: visibility_timeout_seconds (60) must exceed longest_job_seconds (900)",
    ),
    (
        "1",
        "staging",
        '{"network": {"nat_gateways": 3}}',
        "network: nat_gateways (3) must not exceed max_azs (2)",
    ),
    (
        "1",
        "staging",
        '{"network": {"cidr": "10.0.0.0/8"}}',
        "network.cidr: String should match pattern",
    ),
    (
        "1",
        "staging",
        '{"cache": {"mode": "single", "replicas": 2}}',
        "cache: mode 'single' takes replicas=0",
    ),
    (
        "3",
        "staging",
        '{"cache": {"mode": "cluster"}}',
        "cache.mode: Input should be 'single' or 'replication'",
    ),
    (
        "1",
        "staging",
        '{"edge": {"domain": {"name": "api.example.org", "hosted_zone_id": "Z123", "hosted_zone_name": "example.com"}}}',
        "edge.domain: name api.example.org is not in zone example.com",
    ),
    ("1", "staging", '{"region": "mars-1"}', "region: String should match pattern"),
    (
        "1",
        "staging",
        '{"edge": {"certificate_arn": "nope"}}',
        "edge.certificate_arn: String should match pattern",
    ),
    (
        "1",
        "staging",
        '{"observability": {"log_retention_days": 10}}',
        "observability.log_retention_days: Input should be 1, 3, 5, 7, 14, 30",
    ),
    ("1", "staging", '{"compute": "eks"}', "compute 'eks' needs the `eks` section"),
    (
        "2",
        "staging",
        '{"eks": {"endpoint_public": true}}',
        "eks: endpoint_public needs public_access_cidrs",
    ),
    (
        "2",
        "staging",
        '{"eks": {"gpu_pools": [{"name": "stt", "purpose": "stt", "instance_types": ["g5.xlarge"], "spot": {"min": 3, "max": 1}, "on_demand": {"min": 0, "max": 1}}]}}',
        "eks.gpu_pools.0.spot: min (3) must not exceed max (1)",
    ),
    (
        "2",
        "staging",
        '{"eks": {"gpu_pools": [{"name": "stt", "purpose": "stt", "instance_types": ["m7i.large"], "spot": {"min": 0, "max": 1}, "on_demand": {"min": 0, "max": 1}}]}}',
        "eks.gpu_pools.0: instance type m7i.large has no GPU or is unknown; GPU pools take one of g4dn.xlarge",
    ),
    (
        "2",
        "staging",
        '{"eks": {"gpu_pools": [{"name": "stt", "purpose": "stt", "instance_types": ["g5.xlarge", "g5.12xlarge"], "spot": {"min": 0, "max": 1}, "on_demand": {"min": 0, "max": 1}}]}}',
        "eks.gpu_pools.0: instance types of one pool must have the same number of GPUs",
    ),
    (
        "3",
        "prod",
        '{"eks": {"kubernetes_version": "1.31"}}',
        "eks: kubernetes_version 1.31 has no matching kubectl layer installed; supported: 1.34, 1.35, 1.36",
    ),
    (
        "2",
        "prod",
        '{"eks": {"charts": {"keda": 2}}}',
        "eks.charts.keda: Input should be a valid string",
    ),
]


@pytest.mark.parametrize(("phase", "env", "overrides", "message"), BAD)
def test_bad_config_is_rejected_with_the_field_named(
    phase: str, env: str, overrides: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(phase, env, overrides)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_phase_catalog_covers_every_phase() -> None:
    assert set(PHASES) == set(Phase)


CERT = '"arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-1111-2222-3333-444455556666"'
HTTPS = f'"edge": {{"certificate_arn": {CERT}}}'


def test_prod_alarms_must_reach_someone_or_say_they_do_not() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("1", "prod", f"{{{HTTPS}}}")
    assert str(caught.value) == (
        "invalid config: observability.alarm_email: prod alarms must reach someone; set an "
        "address, or observability.alarms_notify_nobody=true if you subscribe to the topic "
        "elsewhere"
    )
    opted_out = load_config(
        "1", "prod", f'{{{HTTPS}, "observability": {{"alarms_notify_nobody": true}}}}'
    )
    assert opted_out.observability.alarm_email is None
    assert load_config("1", "staging").observability.alarm_email is None, "staging may be quiet"


def test_connection_budget_names_every_pool_when_it_does_not_fit() -> None:
    """Phase 1 staging's t4g.micro allows about 74 connections (59 after the 20% headroom);
    a second worker service of 10 tasks x 3 connections does not fit."""
    with pytest.raises(ConfigError) as caught:
        load("1", "staging", '{"queues": {"mode": "per_type"}}')
    assert str(caught.value) == (
        "invalid config: database connections: api tasks 4 x 5 + worker tasks 20 x 3 + "
        "upload checks 5 x 1 + migration 1 x 2 + secret rotation 2 x 1 = 89 exceed 59 (80% of "
        "max_connections on t4g.micro); lower the maxima or database.pools, or choose a larger "
        "database.instance_class"
    )
    bigger = load(
        "1",
        "staging",
        '{"queues": {"mode": "per_type"}, "database": {"instance_class": "t4g.small"}}',
    )
    assert sum(n * pool for _, n, pool in bigger.connection_users()) == 89
    assert bigger.database.connection_limit() == 144


@pytest.mark.parametrize(("phase", "env"), [(p, e) for p in "123" for e in ("staging", "prod")])
def test_every_shipped_phase_fits_its_database(phase: str, env: str) -> None:
    config = load(phase, env)
    limit = config.database.connection_limit()
    assert limit is not None
    assert sum(n * pool for _, n, pool in config.connection_users()) <= limit


def test_unknown_instance_class_needs_max_connections() -> None:
    with pytest.raises(ConfigError, match=r"set database\.max_connections"):
        load("1", "staging", '{"database": {"instance_class": "x2g.large"}}')
    config = load(
        "1", "staging", '{"database": {"instance_class": "x2g.large", "max_connections": 2000}}'
    )
    assert config.database.connection_limit() == 1600


def test_overrides_from_a_file(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "prod.json"  # type: ignore[operator]
    path.write_text(f'{{{HTTPS}, "observability": {{"alarm_email": "oncall@example.org"}}}}')
    config = load_config("1", "prod", f"@{path}")
    assert config.observability.alarm_email == "oncall@example.org"
    with pytest.raises(ConfigError) as caught:
        load_config("1", "prod", f"@{path}.missing")
    assert str(caught.value) == (
        f"overrides file {path}.missing cannot be read: No such file or directory"
    )


@pytest.mark.parametrize(
    ("transition", "computes", "queues", "serving", "traffic"),
    [
        ("1:expand", ("ecs", "eks"), ("single", "per_type"), "single", {"ecs": 100, "eks": 0}),
        ("1:cutover", ("ecs", "eks"), ("single", "per_type"), "per_type", {"ecs": 0, "eks": 100}),
        (
            "1:cutover:25",
            ("ecs", "eks"),
            ("single", "per_type"),
            "per_type",
            {"ecs": 75, "eks": 25},
        ),
        ("1:retire", ("eks",), ("single", "per_type"), "per_type", {"ecs": 0, "eks": 100}),
    ],
)
def test_a_switch_step_says_what_runs_and_where_work_goes(
    transition: str,
    computes: tuple[str, ...],
    queues: tuple[str, ...],
    serving: str,
    traffic: dict[str, int],
) -> None:
    config = load_config(
        "2", "prod", f'{{{HTTPS}, "observability": {{"alarm_email": "a@example.com"}}}}', transition
    )
    assert config.computes == computes
    assert config.queue_modes == queues
    assert config.serving_queue_mode == serving
    assert {c: config.traffic_percent(c) for c in ("ecs", "eks")} == traffic
    # The old compute keeps its phase's settings; the data tier is the larger phase's.
    assert config.ecs is not None and config.ecs.api.count.max == 8
    assert config.queue_mode_of("ecs") == "single" and config.queue_mode_of("eks") == "per_type"
    assert config.ai_for("ecs").stt_provider == "transcribe"
    assert config.ai_for("eks").stt_provider == "openai"
    assert config.database.multi_az is True


def test_going_back_keeps_the_larger_data_tier_until_the_end() -> None:
    back = load_config("1", "staging", None, "2:expand")
    assert back.computes == ("eks", "ecs")
    assert (back.database.instance_class, back.cache.mode) == ("t4g.small", "replication")
    done = load_config("1", "staging")
    assert (done.database.instance_class, done.cache.mode) == ("t4g.micro", "single")


@pytest.mark.parametrize(
    ("phase", "transition", "message"),
    [
        ("2", "2:expand", "invalid config: transition.from_phase: already phase 2"),
        (
            "3",
            "2:expand",
            "invalid config: transition: phases 2 and 3 run on the same compute (eks); deploy "
            "phase 3 directly",
        ),
        ("2", "1:flip", "invalid config: transition.step: Input should be 'expand', 'cutover'"),
        ("2", "1:expand:30", "invalid config: transition.traffic_percent applies at step"),
        ("2", "9:expand", "unknown phase '9'"),
        ("2", "expand", "transition 'expand': write <from phase>:<step>[:<traffic percent>]"),
    ],
)
def test_a_bad_switch_step_is_one_line(phase: str, transition: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(phase, "staging", None, transition)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
