"""What is reachable and who can read what: HTTPS and WAF at the edge, least-privilege data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from phases import ConfigError, load_config
from tests.infra.conftest import Assembly


def test_prod_serves_https_only_behind_the_web_acl(any_phase: Assembly) -> None:
    """The ECS load balancer: HTTPS, and port 80 only as a redirect; WAF in front of it."""
    listeners = [
        r["Properties"]
        for r in any_phase.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    ]
    associations = any_phase.resources("AWS::WAFv2::WebACLAssociation")
    if "ecs" not in any_phase.config.computes:
        assert not listeners
        return
    (acl_id,) = [k.split("/")[1] for k in any_phase.resources("AWS::WAFv2::WebACL")]
    (association,) = associations.values()
    assert association["Properties"]["ResourceArn"]["Ref"].startswith("ApiAlb")
    assert acl_id in json.dumps(association["Properties"]["WebACLArn"])
    if any_phase.config.is_prod:
        by_port = {x["Port"]: x for x in listeners}
        assert sorted(by_port) == [80, 443]
        assert by_port[443]["Protocol"] == "HTTPS"
        assert [a["Type"] for a in by_port[80]["DefaultActions"]] == ["redirect"]


def test_the_web_acl_blocks_floods_and_logs_without_api_keys(any_phase: Assembly) -> None:
    (acl,) = any_phase.resources("AWS::WAFv2::WebACL").values()
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert "AWSManagedRulesCommonRuleSet" in rules
    rate = rules["RatePerIp"]["Statement"]["RateBasedStatement"]
    assert rate == {"AggregateKeyType": "IP", "Limit": any_phase.config.edge.waf.rate_limit_per_ip}
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}} in common[
        "RuleActionOverrides"
    ], "multipart audio uploads are larger than the 8 KB body rule allows"
    (logging,) = any_phase.resources("AWS::WAFv2::LoggingConfiguration").values()
    redacted = [f["SingleHeader"]["Name"] for f in logging["Properties"]["RedactedFields"]]
    assert sorted(redacted) == ["authorization", "x-api-key"]


def _policies_reading(assembly: Assembly, secret_hint: str) -> list[str]:
    found = []
    for key, policy in assembly.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"]) and (
                secret_hint in json.dumps(statement["Resource"])
            ):
                found.append(key)
    return found


def test_only_the_migration_reads_the_master_secret(any_phase: Assembly) -> None:
    master = _policies_reading(any_phase, "DatabaseMasterSecret")
    app = _policies_reading(any_phase, "DatabaseAppSecret")
    if "ecs" in any_phase.config.computes:
        assert master and all("MigrateTaskTaskRole" in k for k in master)
        assert any("ApiTaskTaskRole" in k for k in app)
        assert any("WorkerTaskTaskRole" in k for k in app)
    assert any("UploadCheck" in k or "UploadRole" in k for k in app)
    # ECS: MigrateTaskTaskRole; EKS: the migration Job's service account role
    assert not [k for k in master if "MigrateTask" not in k and "MigrationSa" not in k]


def test_database_forces_tls_and_services_verify_it(any_phase: Assembly) -> None:
    (params,) = any_phase.resources("AWS::RDS::DBParameterGroup").values()
    assert params["Properties"]["Parameters"] == {"rds.force_ssl": "1"}
    envs: list[dict[str, Any]] = [
        {e["Name"]: e["Value"] for e in c.get("Environment", [])}
        for t in any_phase.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
    ]
    envs += [
        f["Properties"]["Environment"]["Variables"]
        for f in any_phase.resources("AWS::Lambda::Function").values()
        if "AIPP_DB_SECRET_ARN" in json.dumps(f["Properties"].get("Environment", {}))
    ]
    assert envs
    for env in envs:
        assert env["AIPP_DB_SSLMODE"] == "verify-full"
        assert env["AIPP_DB_SSL_ROOT_CERT"] == "/opt/aipp/certs/rds-global-bundle.pem"


def test_the_upload_check_may_delete_what_it_rejects(phase1: Assembly) -> None:
    statements = [
        s
        for key, policy in phase1.resources("AWS::IAM::Policy").items()
        if "UploadRole" in key
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    s3 = [s for s in statements if "s3:DeleteObject" in json.dumps(s["Action"])]
    assert s3 and all("/uploads/*" in json.dumps(s["Resource"]) for s in s3)
    (actions,) = [set(s["Action"]) for s in s3]
    # It reads the exact version the event names, and removes every version of what it rejects.
    assert actions == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
    }


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        (
            "prod",
            '{"observability": {"alarm_email": "a@example.com"}}',
            "invalid config: edge: prod serves the API over HTTPS only; set edge.domain or "
            "edge.certificate_arn (config/prod.example.json shows both)",
        ),
        (
            "prod",
            '{"observability": {"alarm_email": "a@example.com"}, "edge": {"plain_http": true}}',
            "invalid config: edge: prod serves the API over HTTPS only",
        ),
        (
            "staging",
            '{"edge": {"plain_http": false}}',
            "invalid config: edge: set edge.domain or edge.certificate_arn for HTTPS, or "
            "edge.plain_http=true to serve plain HTTP (staging only)",
        ),
    ],
)
def test_plain_http_is_an_explicit_staging_opt_out(env: str, overrides: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config("1", env, overrides)
    assert str(caught.value).startswith(message)
