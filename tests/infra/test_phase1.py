"""What must never change in phase 1, asserted on the synthesized templates of both envs."""

from __future__ import annotations

import json
from collections.abc import Callable

from aws_cdk.assertions import Match

from tests.infra.conftest import Assembly

# Two worker services double the workers' database connections: a class with room for them.
PER_TYPE = {"queues": {"mode": "per_type"}, "database": {"instance_class": "t4g.small"}}


def test_network_spans_two_azs_with_nat_per_env_and_flow_logs(phase1: Assembly) -> None:
    network = phase1.template("Network")
    nat = 2 if phase1.config.is_prod else 1
    network.resource_count_is("AWS::EC2::NatGateway", nat)
    network.resource_count_is("AWS::EC2::Subnet", 6)  # public, compute, data x 2 AZs
    network.resource_count_is("AWS::EC2::FlowLog", 1)
    network.has_resource_properties(
        "AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway", "ServiceName": Match.any_value()}
    )
    interface = [
        r
        for r in phase1.resources("AWS::EC2::VPCEndpoint").values()
        if r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert len(interface) == len(phase1.config.network.interface_endpoints)


def test_audio_bucket_is_private_encrypted_tls_only_and_expires_uploads(phase1: Assembly) -> None:
    buckets = phase1.resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # audio, models (filled before a switch to phase 2) + access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert bucket["DeletionPolicy"] == (
            "RetainExceptOnCreate" if phase1.config.is_prod else "Delete"
        )
    (audio,) = [b["Properties"] for b in buckets.values() if "CorsConfiguration" in b["Properties"]]
    assert audio["VersioningConfiguration"] == {"Status": "Enabled"}
    assert audio["LoggingConfiguration"]["LogFilePrefix"] == "audio/"
    assert {
        "Id": "ExpireRawUploads",
        "Prefix": "uploads/",
        "ExpirationInDays": phase1.config.bucket.raw_upload_expiry_days,
        "Status": "Enabled",
    } in audio["LifecycleConfiguration"]["Rules"]
    (cors,) = audio["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["PUT"]
    (models,) = [
        b["Properties"]
        for b in buckets.values()
        if b["Properties"].get("LoggingConfiguration", {}).get("LogFilePrefix") == "models/"
    ]
    assert models["BucketName"]["Fn::Join"][1][0] == f"aipp-{phase1.config.env.value}-models-"
    assert models["VersioningConfiguration"] == {"Status": "Enabled"}
    for policy in phase1.resources("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), "every bucket denies requests without TLS"
        assert not any(s.get("Principal") == "*" and s["Effect"] == "Allow" for s in statements)


def test_database_is_encrypted_private_backed_up_and_protected_in_prod(phase1: Assembly) -> None:
    prod = phase1.config.is_prod
    (db,) = phase1.resources("AWS::RDS::DBInstance").values()
    props = db["Properties"]
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert props["MultiAZ"] is False  # phase 1 is single-AZ by design
    assert props["BackupRetentionPeriod"] >= 7
    assert props["DeletionProtection"] is prod
    assert db["DeletionPolicy"] == ("RetainExceptOnCreate" if prod else "Delete")
    assert "MasterUserPassword" in props and "resolve:secretsmanager" in json.dumps(
        props["MasterUserPassword"]
    )
    # The master user (the migration's) and the application user (the services') rotate.
    phase1.template("Data").resource_count_is("AWS::SecretsManager::RotationSchedule", 2)


def test_redis_encrypts_in_transit_and_at_rest_with_auth_token(phase1: Assembly) -> None:
    (group,) = phase1.resources("AWS::ElastiCache::ReplicationGroup").values()
    props = group["Properties"]
    assert props["TransitEncryptionEnabled"] is True
    assert props["AtRestEncryptionEnabled"] is True
    assert props["NumCacheClusters"] == 1
    assert "resolve:secretsmanager" in json.dumps(props["AuthToken"])


def test_one_queue_with_encrypted_dlq_redrive_and_visibility_over_longest_job(
    phase1: Assembly,
) -> None:
    queues = phase1.config.queues
    messaging = phase1.template("Messaging")
    messaging.resource_count_is("AWS::SQS::Queue", 2)
    messaging.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "SqsManagedSseEnabled": True,
            "VisibilityTimeout": queues.visibility_timeout_seconds,
            "RedrivePolicy": {
                "deadLetterTargetArn": Match.any_value(),
                "maxReceiveCount": queues.max_receive_count,
            },
        },
    )
    assert queues.visibility_timeout_seconds > queues.longest_job_seconds
    for queue in phase1.resources("AWS::SQS::Queue").values():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True


def test_services_roll_back_failed_deployments_and_workers_scale_to_zero(
    phase1: Assembly,
) -> None:
    compute = phase1.template("ComputeEcs")
    compute.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enhanced"}]},
    )
    services = phase1.resources("AWS::ECS::Service")
    assert len(services) == 2  # API + one worker program for both task types
    for service in services.values():
        config = service["Properties"]["DeploymentConfiguration"]
        assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    targets = phase1.resources("AWS::ApplicationAutoScaling::ScalableTarget")
    mins = sorted(t["Properties"]["MinCapacity"] for t in targets.values())
    assert mins[0] == 0, "the worker service scales to zero"
    policies = [
        p["Properties"]
        for p in phase1.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    ]
    assert any(p["PolicyType"] == "TargetTrackingScaling" for p in policies), "API on CPU"
    assert any(p["PolicyType"] == "StepScaling" for p in policies), "workers on backlog"
    alarms = phase1.resources("AWS::CloudWatch::Alarm")
    backlog = [a for a in alarms.values() if "Metrics" in a["Properties"]]
    assert backlog and all("IF(FILL(" in json.dumps(a["Properties"]["Metrics"]) for a in backlog), (
        "scaling alarms use backlog per task, with a path from zero tasks"
    )


def test_api_is_public_only_through_the_alb(phase1: Assembly) -> None:
    (lb,) = phase1.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert lb["Properties"]["Scheme"] == "internet-facing"
    for service in phase1.resources("AWS::ECS::Service").values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
    listeners = phase1.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    ports = sorted(listener["Properties"]["Port"] for listener in listeners)
    # Staging has no certificate by default; prod's example has a domain and its certificate.
    assert ports == ([80, 443] if phase1.config.edge.https else [80])


def test_https_listener_when_a_certificate_is_configured(
    assemble: Callable[..., Assembly],
) -> None:
    cert = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0e0d0c-1111-2222-3333-444455556666"
    assembly = assemble("1", "staging", {"edge": {"certificate_arn": cert}})
    listeners = {
        r["Properties"]["Port"]: r["Properties"]
        for r in assembly.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": cert}]
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    assert assembly.findings == []


def test_iam_is_least_privilege(phase1: Assembly) -> None:
    statements = [
        s
        for policy in phase1.resources("AWS::IAM::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    text = [json.dumps(s) for s in statements]
    bedrock = [s for s, t in zip(statements, text, strict=True) if "bedrock:" in t]
    assert bedrock, "the worker may call Bedrock"
    for s in bedrock:
        assert s["Resource"] != "*"
        assert "foundation-model/amazon.nova-lite-v1:0" in json.dumps(s["Resource"])
    s3_actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if a.startswith("s3:")
    }
    object_versions = {"s3:GetObjectVersion", "s3:DeleteObjectVersion", "s3:ListBucketVersions"}
    assert s3_actions <= {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        *object_versions,
    } | {a for a in s3_actions if a.startswith("s3:PutBucketNotification")}
    star = [s for s in statements if s.get("Resource") == "*"]
    allowed_star = {
        "ecr:GetAuthorizationToken",  # no resource-level permissions
        "s3:PutBucketNotification",  # CDK's deploy-time notifications handler
        "logs:PutRetentionPolicy",  # CDK's deploy-time log retention handler
        "logs:DeleteRetentionPolicy",
        "ec2:DescribeSecurityGroups",
        "ec2:AuthorizeSecurityGroupIngress",
        # The migration gate's waiter state machine delivering its own logs (no resource-level
        # permissions for log delivery).
        "logs:CreateLogDelivery",
        "logs:CreateLogStream",
        "logs:DeleteLogDelivery",
        "logs:DescribeLogGroups",
        "logs:DescribeResourcePolicies",
        "logs:GetLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutLogEvents",
        "logs:PutResourcePolicy",
        "logs:UpdateLogDelivery",
    }
    for s in star:
        actions = {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
        assert actions <= allowed_star, f"unexpected Resource '*' for {actions}"


def test_upload_events_reach_the_lambda_through_a_queue_with_a_dead_letter_queue(
    phase1: Assembly,
) -> None:
    (rule,) = phase1.resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "uploads/"}]
    (target,) = rule["Properties"]["Targets"]
    assert "DeadLetterConfig" in target, "undeliverable events are kept"
    pipeline = phase1.templates["Pipeline"]["Resources"]
    assert pipeline[target["Arn"]["Fn::GetAtt"][0]]["Type"] == "AWS::SQS::Queue"
    (fn,) = [
        f
        for f in phase1.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("PackageType") == "Image"
    ]
    variables = fn["Properties"]["Environment"]["Variables"]
    assert {"AIPP_AUDIO_BUCKET", "AIPP_STT_QUEUE_URL", "AIPP_DB_SECRET_ARN"} <= set(variables)
    assert "VpcConfig" in fn["Properties"]


def test_alarms_notify_an_encrypted_topic(phase1: Assembly) -> None:
    obs = phase1.template("Observability")
    obs.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    alarms = phase1.resources("AWS::CloudWatch::Alarm")
    names = " ".join(alarms)
    for expected in (
        "UploadEventsFailed",
        "QueueAge",
        "DlqNotEmpty",
        "Api5xx",
        "ApiLatencyP99",
        "WorkerErrors",
        "UploadCheckErrors",
        "DatabaseCpu",
        "RedisMemory",
    ):
        assert expected in names
    age = next(a for k, a in alarms.items() if "QueueAge" in k)["Properties"]
    assert age["Threshold"] == phase1.config.observability.queue_age_alarm_seconds
    obs.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_per_type_queues_give_one_queue_dlq_and_worker_per_task_type(
    assemble: Callable[..., Assembly],
) -> None:
    assembly = assemble("1", "staging", PER_TYPE)
    assert assembly.findings == []
    queues = assembly.resources("AWS::SQS::Queue")
    assert (
        len(
            [
                k
                for k, q in queues.items()
                if k.startswith("Messaging/") and "RedrivePolicy" in q["Properties"]
            ]
        )
        == 2
    )
    assert len([k for k in queues if k.startswith("Messaging/")]) == 4
    services = assembly.resources("AWS::ECS::Service")
    assert len(services) == 3  # API + STT worker + LLM worker
    env_by_service = {
        e["Value"]
        for t in assembly.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        for e in c.get("Environment", [])
        if e["Name"] == "AIPP_WORKER_TASK_TYPES"
    }
    assert env_by_service == {"stt", "llm"}
    step_alarms = [
        json.dumps(a["Properties"]["Metrics"])
        for a in assembly.resources("AWS::CloudWatch::Alarm").values()
        if "Metrics" in a["Properties"]
    ]
    assert any("visible_stt" in m for m in step_alarms)
    assert any("visible_llm" in m for m in step_alarms)


def test_migrations_gate_the_services(phase1: Assembly) -> None:
    """The migration runs as a one-off task that the deploy waits for; the services depend on
    it, so a failed migration fails the deploy before any service rolls."""
    compute = phase1.templates["ComputeEcs"]["Resources"]
    (gate_id,) = [k for k, r in compute.items() if r["Type"] == "Custom::SchemaMigration"]
    gate = compute[gate_id]["Properties"]
    assert gate["Container"] == "App"
    assert gate["TaskDefinition"]["Ref"].startswith("MigrateTask")
    commands = [
        c.get("Command")
        for r in compute.values()
        if r["Type"] == "AWS::ECS::TaskDefinition"
        for c in r["Properties"]["ContainerDefinitions"]
    ]
    assert ["python", "-m", "aipp.admin", "migrate"] in commands
    for r in compute.values():
        if r["Type"] == "AWS::ECS::Service":
            assert gate_id in r.get("DependsOn", []), "services start after the migration"
    machines = [r for r in compute.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    (waiter,) = machines  # the provider's is-complete loop
    assert waiter["Properties"]["LoggingConfiguration"]["Level"] == "ALL"
    handlers = {
        r["Properties"]["Handler"]
        for r in compute.values()
        if r["Type"] == "AWS::Lambda::Function"
        and "migration" in str(r["Properties"].get("Description", "")).lower()
    }
    assert handlers == {"handler.on_event", "handler.is_complete"}


def test_metrics_are_not_served_to_the_internet(phase1: Assembly) -> None:
    (rule,) = phase1.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    conditions = rule["Properties"]["Conditions"]
    assert conditions == [
        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/metrics", "/metrics/*"]}}
    ]
    (action,) = rule["Properties"]["Actions"]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "404"


def test_failed_upload_events_are_kept_not_dropped(phase1: Assembly) -> None:
    """An event the check keeps failing on ends in the alarmed DLQ, never in the void; each
    message of a batch fails alone (its neighbours are not checked again)."""
    pipeline = phase1.templates["Pipeline"]["Resources"]
    (mapping,) = [r for r in pipeline.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    source = pipeline[mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]]["Properties"]
    redrive = source["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    alarms = phase1.resources("AWS::CloudWatch::Alarm")
    (failed,) = [a for k, a in alarms.items() if "UploadEventsFailed" in k]
    watched = json.dumps(failed["Properties"]["Dimensions"])
    assert "UploadEventsDlq" in dlq and "UploadEventsDlq" in watched


def test_api_container_has_a_health_check(phase1: Assembly) -> None:
    checks = [
        c.get("HealthCheck")
        for t in phase1.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if any(p.get("ContainerPort") == 8000 for p in c.get("PortMappings", []))
    ]
    assert checks and all(c and "/healthz" in " ".join(c["Command"]) for c in checks)


def test_workers_know_their_dlq_and_have_a_health_check(phase1: Assembly) -> None:
    workers = [
        c
        for t in phase1.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if any(e["Name"] == "AIPP_WORKER_TASK_TYPES" for e in c.get("Environment", []))
    ]
    assert workers
    for c in workers:
        names = {e["Name"] for e in c["Environment"]}
        assert {"AIPP_WORKER_QUEUE_URL", "AIPP_WORKER_DLQ_URL", "AIPP_MAX_RECEIVE_COUNT"} <= names
        assert c["HealthCheck"]["Command"] == ["CMD", "python", "-m", "aipp.worker.health"]
        assert c["ReadonlyRootFilesystem"] is True
        assert {"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": "tmp"} in c[
            "MountPoints"
        ]


def test_completion_webhook_is_signed_with_a_generated_key(
    assemble: Callable[..., Assembly],
) -> None:
    assembly = assemble("1", "staging", {"webhook": {"url": "https://hooks.example.com/aipp"}})
    assert assembly.findings == []
    workers = [
        c
        for t in assembly.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if any(e["Name"] == "AIPP_WORKER_TASK_TYPES" for e in c.get("Environment", []))
    ]
    (worker,) = workers
    env = {e["Name"]: e["Value"] for e in worker["Environment"]}
    assert env["AIPP_WEBHOOK_URL"] == "https://hooks.example.com/aipp"
    assert "WebhookSigningKey" in json.dumps(env["AIPP_WEBHOOK_SECRET_ARN"]), (
        "the key is read by ARN"
    )
    assert not worker.get("Secrets"), "no secret value is injected into the task definition"
    reads = [
        s
        for key, policy in assembly.resources("AWS::IAM::Policy").items()
        if "Worker" in key
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "WebhookSigningKey" in json.dumps(s["Resource"])
    ]
    assert reads, "the worker's role may read the key"
    api = [
        c
        for t in assembly.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if c not in workers
    ]
    assert api and all("WEBHOOK" not in json.dumps(c) for c in api), "only workers get the key"


def test_containers_read_database_credentials_from_the_secret(phase1: Assembly) -> None:
    containers = [
        c
        for t in phase1.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
    ]
    assert len(containers) == 3  # API, worker, migration
    for c in containers:
        names = {e["Name"] for e in c["Environment"]}
        assert "AIPP_DB_SECRET_ARN" in names and "AIPP_DATABASE_URL" not in names
        injected = {s["Name"] for s in c.get("Secrets", [])}
        assert not injected & {"AIPP_DB_PASSWORD", "AIPP_DB_USER"}, (
            "credentials are read, not injected"
        )
    reads = [
        s
        for key, policy in phase1.resources("AWS::IAM::Policy").items()
        if "TaskRole" in key
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])
    ]
    assert len(reads) >= 3  # API, worker and migration task roles
