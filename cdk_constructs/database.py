"""Task-state database: RDS PostgreSQL (single- or Multi-AZ) or Aurora PostgreSQL with readers."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from cdk_constructs.nag import acknowledge, acknowledge_singleton
from cdk_constructs.retention import retention
from phases.models import DatabaseConfig

DB_NAME = "aipp"
DB_PORT = 5433  # not the well-known port: AwsSolutions-RDS11
# Characters left out of generated passwords: they would need quoting in a connection URL.
EXCLUDED_CHARACTERS = "\"@/\\ '%:;?#[]"

# A major version alone is deprecated for new instances (cfn-lint W3691): pin the minor.
_RDS_VERSIONS = {
    "16": rds.PostgresEngineVersion.VER_16_13,
    "17": rds.PostgresEngineVersion.VER_17_9,
}
_AURORA_VERSIONS = {
    "16": rds.AuroraPostgresEngineVersion.VER_16_13,
    "17": rds.AuroraPostgresEngineVersion.VER_17_9,
}


class Database(Construct):
    """Exposes `secret`, `connections`, `endpoint`, `port`, `cpu_metric`, `free_storage_metric`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DatabaseConfig,
        vpc: ec2.IVpc,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.deletion_protection else RemovalPolicy.DESTROY
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        # The master secret is made here rather than by the engine construct, so that it keeps
        # its logical id whatever the engine, and lives exactly as long as the database.
        self.master_secret = rds.DatabaseSecret(
            self, "MasterSecret", username="aipp_admin", exclude_characters=EXCLUDED_CHARACTERS
        )
        self.master_secret.apply_removal_policy(removal)
        credentials = rds.Credentials.from_secret(self.master_secret)
        self.port = DB_PORT
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Task database", allow_all_outbound=False
        )

        if config.engine == "rds-postgres":
            instance = rds.DatabaseInstance(
                self,
                "Instance",
                engine=rds.DatabaseInstanceEngine.postgres(
                    version=_RDS_VERSIONS[config.postgres_version]
                ),
                instance_type=ec2.InstanceType(config.instance_class),
                vpc=vpc,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                port=DB_PORT,
                database_name=DB_NAME,
                credentials=credentials,
                multi_az=config.multi_az,
                allocated_storage=config.allocated_storage_gib,
                max_allocated_storage=config.max_allocated_storage_gib,
                storage_type=rds.StorageType.GP3,
                storage_encrypted=True,
                publicly_accessible=False,
                iam_authentication=True,
                backup_retention=Duration.days(config.backup_retention_days),
                deletion_protection=config.deletion_protection,
                removal_policy=removal,
                auto_minor_version_upgrade=True,
                cloudwatch_logs_exports=["postgresql", "upgrade"],
                cloudwatch_logs_retention=retention(log_retention_days),
                enable_performance_insights=True,
            )
            if not config.multi_az:
                acknowledge(
                    instance,
                    "AwsSolutions-RDS3",
                    "Single-AZ is this phase's documented choice (DESIGN.md phase table): task "
                    "state is recoverable from backups and the standby would double the cost.",
                )
            self.secret: sm.ISecret = _required(instance.secret)
            self.endpoint = instance.db_instance_endpoint_address
            self.rotation_target: rds.DatabaseInstance | rds.DatabaseCluster = instance
            self.cpu_metric: cw.IMetric = instance.metric_cpu_utilization()
            self.free_storage_metric: cw.IMetric = instance.metric_free_storage_space()
            self.connections_metric: cw.IMetric = instance.metric_database_connections()
        else:
            cluster = rds.DatabaseCluster(
                self,
                "Cluster",
                engine=rds.DatabaseClusterEngine.aurora_postgres(
                    version=_AURORA_VERSIONS[config.postgres_version]
                ),
                writer=rds.ClusterInstance.provisioned(
                    "Writer",
                    instance_type=ec2.InstanceType(config.instance_class),
                    enable_performance_insights=True,
                ),
                readers=[
                    rds.ClusterInstance.provisioned(
                        f"Reader{i + 1}",
                        instance_type=ec2.InstanceType(config.instance_class),
                        enable_performance_insights=True,
                    )
                    for i in range(config.readers)
                ],
                vpc=vpc,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                port=DB_PORT,
                default_database_name=DB_NAME,
                credentials=credentials,
                storage_encrypted=True,
                iam_authentication=True,
                backup=rds.BackupProps(retention=Duration.days(config.backup_retention_days)),
                deletion_protection=config.deletion_protection,
                removal_policy=removal,
                cloudwatch_logs_exports=["postgresql"],
                cloudwatch_logs_retention=retention(log_retention_days),
            )
            self.secret = _required(cluster.secret)
            self.endpoint = cluster.cluster_endpoint.hostname
            self.rotation_target = cluster
            self.cpu_metric = cluster.metric_cpu_utilization()
            self.free_storage_metric = cluster.metric_free_local_storage()
            self.connections_metric = cluster.metric_database_connections()

        if not config.deletion_protection:
            acknowledge(
                self,
                "AwsSolutions-RDS10",
                "Deletion protection is on in prod; this environment's config turns it off "
                "so a disposable staging stack can be torn down.",
            )
        self.connections = ec2.Connections(
            security_groups=[self.security_group], default_port=ec2.Port.tcp(DB_PORT)
        )
        # `cloudwatch_logs_retention` sets the retention of the RDS-created log groups through
        # CDK's LogRetention function at deploy time.
        acknowledge_singleton(
            self,
            "LogRetention",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's log-retention function logs with the AWS-maintained basic execution policy.",
        )
        acknowledge_singleton(
            self,
            "LogRetention",
            "AwsSolutions-IAM5[Resource::*]",
            "CDK's log-retention function sets retention on log groups that RDS creates and "
            "names at run time, so their ARNs are not known at synth.",
        )
        self.rotation_target.add_rotation_single_user(
            automatically_after=Duration.days(config.secret_rotation_days),
            exclude_characters=EXCLUDED_CHARACTERS,
        )


def _required(secret: sm.ISecret | None) -> sm.ISecret:
    if secret is None:  # pragma: no cover - generated credentials always make a secret
        raise RuntimeError("database credentials secret was not generated")
    return secret
