"""Redis on ElastiCache: one node, or a replication group with automatic failover.

One `CfnReplicationGroup` (cluster mode disabled) serves both modes, a single node being a
group of one, so an environment grows from phase 1 to 3 by modifying it in place: more nodes,
failover on, a larger node type, always behind the same primary endpoint. Encryption in transit
and at rest always; the AUTH token is generated in Secrets Manager and resolved by
CloudFormation, never seen by the CDK app.
"""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from cdk_constructs.nag import acknowledge
from phases.models import CacheConfig

REDIS_PORT = 6380  # not the well-known port: AwsSolutions-AEC5


class RedisCache(Construct):
    """Exposes `auth_secret`, `connections`, `endpoint`, `port`, `tls`, and health metrics."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: CacheConfig, vpc: ec2.IVpc
    ) -> None:
        super().__init__(scope, construct_id)
        self.port = REDIS_PORT
        self.auth_secret = self._auth_token()
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Redis", allow_all_outbound=False
        )
        subnets = elasticache.CfnSubnetGroup(
            self,
            "Subnets",
            description="Isolated data subnets",
            subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )

        failover = config.mode != "single"
        group = elasticache.CfnReplicationGroup(
            self,
            "ReplicationGroup",
            replication_group_description="Results cache, idempotency locks and rate limits",
            engine="redis",
            engine_version=config.engine_version,
            cache_node_type=config.node_type,
            cache_subnet_group_name=subnets.ref,
            security_group_ids=[self.security_group.security_group_id],
            port=REDIS_PORT,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            auth_token=self.auth_secret.secret_value.unsafe_unwrap(),
            automatic_failover_enabled=failover,
            multi_az_enabled=failover,
            cluster_mode="disabled",
            num_cache_clusters=1 + config.replicas,
            snapshot_retention_limit=config.snapshot_retention_days,
            auto_minor_version_upgrade=True,
        )
        if not failover:
            acknowledge(
                group,
                "AwsSolutions-AEC4",
                "A single node is this phase's documented choice (DESIGN.md phase table): the "
                "cache holds results that are also in PostgreSQL/S3 and short-lived locks.",
            )
        self.group = group
        self.tls = True
        self.endpoint = group.attr_primary_end_point_address
        self.connections = ec2.Connections(
            security_groups=[self.security_group], default_port=ec2.Port.tcp(REDIS_PORT)
        )
        self._metrics(group)

    def _auth_token(self) -> sm.Secret:
        secret = sm.Secret(
            self,
            "AuthToken",
            description="AUTH token of the platform's Redis",
            generate_secret_string=sm.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
        )
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            "ElastiCache accepts a new AUTH token only through a ROTATE/SET modification of the "
            "replication group; rotation is an operator runbook step (docs/operations.md).",
        )
        return secret

    def _metrics(self, group: elasticache.CfnReplicationGroup) -> None:
        # ElastiCache publishes per node; watch the first one.
        first_node = Fn.join("-", [group.ref, "001"])
        self.cpu_metric = cw.Metric(
            namespace="AWS/ElastiCache",
            metric_name="EngineCPUUtilization",
            dimensions_map={"CacheClusterId": first_node},
        )
        self.memory_metric = cw.Metric(
            namespace="AWS/ElastiCache",
            metric_name="DatabaseMemoryUsagePercentage",
            dimensions_map={"CacheClusterId": first_node},
        )
