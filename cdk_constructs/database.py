"""Task-state database: RDS PostgreSQL, grown in place from single-AZ (phase 1) to Multi-AZ
(phase 2) to a larger Multi-AZ instance with read replicas (phase 3). Aurora PostgreSQL is an
explicit choice for a new environment only: switching engines replaces the database.

Two credentials: the master user, read only by the migration task, and the application user
(DML only, created by the migration) that the API, the workers and the upload check log in as.
Both secrets rotate on a schedule. The server accepts TLS connections only (`rds.force_ssl`).
"""

from __future__ import annotations

from dataclasses import dataclass

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
MASTER_USER = "aipp_admin"
APP_USER = "aipp_app"
# Enhanced monitoring (OS metrics: memory, swap, I/O per process) every minute.
MONITORING_INTERVAL = Duration.seconds(60)
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


@dataclass(frozen=True)
class _Engine:
    """What the rest of the platform needs from whichever engine runs."""

    target: rds.DatabaseInstance | rds.DatabaseCluster
    endpoint: str
    read_endpoint: str | None
    cpu: cw.IMetric
    connections: cw.IMetric


class Database(Construct):
    """Exposes `master_secret` (the migration's), `secret` (the application user's),
    `connections`, `endpoint`, `read_endpoint` (a replica's, or None), `port` and metrics."""

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
        self.port = DB_PORT
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="Task database", allow_all_outbound=False
        )
        self.connections = ec2.Connections(
            security_groups=[self.security_group], default_port=ec2.Port.tcp(DB_PORT)
        )
        # The secrets are made here rather than by the engine construct, so that they keep their
        # logical ids whatever the engine, and live exactly as long as the database.
        self.master_secret = rds.DatabaseSecret(
            self, "MasterSecret", username=MASTER_USER, exclude_characters=EXCLUDED_CHARACTERS
        )
        self.master_secret.apply_removal_policy(removal)
        app_secret = rds.DatabaseSecret(
            self,
            "AppSecret",
            username=APP_USER,
            master_secret=self.master_secret,
            exclude_characters=EXCLUDED_CHARACTERS,
        )
        app_secret.apply_removal_policy(removal)

        engine = (
            self._rds_instance(config, vpc, log_retention_days, removal)
            if config.engine == "rds-postgres"
            else self._aurora_cluster(config, vpc, log_retention_days, removal)
        )
        self.endpoint = engine.endpoint
        self.read_endpoint = engine.read_endpoint
        self.cpu_metric = engine.cpu
        self.connections_metric = engine.connections
        # Host, port and database name join the generated user and password in each secret.
        self.secret: sm.ISecret = app_secret.attach(engine.target)

        self._rotate(engine, vpc, Duration.days(config.secret_rotation_days))
        self._acknowledge(config)

    def _rotate(self, engine: _Engine, vpc: ec2.IVpc, every: Duration) -> None:
        """Both users' passwords rotate in place (single-user rotation); the runtime re-reads
        its secret when a login is refused."""
        engine.target.add_rotation_single_user(
            automatically_after=every, exclude_characters=EXCLUDED_CHARACTERS
        )
        sm.SecretRotation(
            self,
            "AppSecretRotation",
            application=sm.SecretRotationApplication.POSTGRES_ROTATION_SINGLE_USER,
            secret=self.secret,
            target=engine.target,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            automatically_after=every,
            exclude_characters=EXCLUDED_CHARACTERS,
        )

    def _parameters(self, engine: rds.IEngine) -> rds.ParameterGroup:
        return rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description="Task database: TLS only",
            parameters={"rds.force_ssl": "1"},
        )

    def _rds_instance(
        self, config: DatabaseConfig, vpc: ec2.IVpc, log_days: int, removal: RemovalPolicy
    ) -> _Engine:
        engine = rds.DatabaseInstanceEngine.postgres(version=_RDS_VERSIONS[config.postgres_version])
        parameters = self._parameters(engine)
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        instance_type = ec2.InstanceType(config.instance_class)
        instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            instance_type=instance_type,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            port=DB_PORT,
            database_name=DB_NAME,
            credentials=rds.Credentials.from_secret(self.master_secret),
            parameter_group=parameters,
            ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
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
            cloudwatch_logs_retention=retention(log_days),
            enable_performance_insights=True,
            monitoring_interval=MONITORING_INTERVAL,
        )
        if not config.multi_az:
            acknowledge(
                instance,
                "AwsSolutions-RDS3",
                "Single-AZ is this phase's documented choice (DESIGN.md phase table): task "
                "state is recoverable from backups and the standby would double the cost.",
            )
        replicas = self._replicas(config, instance, parameters, vpc, log_days)
        return _Engine(
            target=instance,
            endpoint=instance.db_instance_endpoint_address,
            read_endpoint=replicas[0].db_instance_endpoint_address if replicas else None,
            cpu=instance.metric_cpu_utilization(),
            connections=instance.metric_database_connections(),
        )

    def _replicas(
        self,
        config: DatabaseConfig,
        instance: rds.DatabaseInstance,
        parameters: rds.ParameterGroup,
        vpc: ec2.IVpc,
        log_days: int,
    ) -> list[rds.DatabaseInstanceReadReplica]:
        """Read replicas of the same class for the API's read-only queries (phase 3)."""
        subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        instance_type = ec2.InstanceType(config.instance_class)
        replicas = [
            rds.DatabaseInstanceReadReplica(
                self,
                f"Replica{i + 1}",
                source_database_instance=instance,
                instance_type=instance_type,
                vpc=vpc,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                port=DB_PORT,
                parameter_group=parameters,
                ca_certificate=rds.CaCertificate.RDS_CA_RSA2048_G1,
                storage_type=rds.StorageType.GP3,
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
                enable_performance_insights=True,
                monitoring_interval=MONITORING_INTERVAL,
                cloudwatch_logs_exports=["postgresql"],
                cloudwatch_logs_retention=retention(log_days),
                # A replica holds no data of its own: the source is Multi-AZ and backed up.
                deletion_protection=False,
                removal_policy=RemovalPolicy.DESTROY,
            )
            for i in range(config.read_replicas)
        ]
        for replica in replicas:
            _acknowledge_replica(replica)
        return replicas

    def _aurora_cluster(
        self, config: DatabaseConfig, vpc: ec2.IVpc, log_days: int, removal: RemovalPolicy
    ) -> _Engine:
        engine = rds.DatabaseClusterEngine.aurora_postgres(
            version=_AURORA_VERSIONS[config.postgres_version]
        )
        instance_type = ec2.InstanceType(config.instance_class)
        cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            writer=rds.ClusterInstance.provisioned(
                "Writer", instance_type=instance_type, enable_performance_insights=True
            ),
            monitoring_interval=MONITORING_INTERVAL,
            readers=[
                rds.ClusterInstance.provisioned(
                    f"Reader{i + 1}", instance_type=instance_type, enable_performance_insights=True
                )
                for i in range(config.read_replicas)
            ],
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            port=DB_PORT,
            default_database_name=DB_NAME,
            credentials=rds.Credentials.from_secret(self.master_secret),
            parameter_group=self._parameters(engine),
            storage_encrypted=True,
            iam_authentication=True,
            backup=rds.BackupProps(retention=Duration.days(config.backup_retention_days)),
            deletion_protection=config.deletion_protection,
            removal_policy=removal,
            cloudwatch_logs_exports=["postgresql"],
            cloudwatch_logs_retention=retention(log_days),
        )
        return _Engine(
            target=cluster,
            endpoint=cluster.cluster_endpoint.hostname,
            read_endpoint=cluster.cluster_read_endpoint.hostname if config.read_replicas else None,
            cpu=cluster.metric_cpu_utilization(),
            connections=cluster.metric_database_connections(),
        )

    def _acknowledge(self, config: DatabaseConfig) -> None:
        acknowledge(
            self,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonRDSEnhancedMonitoringRole]",
            "The AWS-maintained policy RDS enhanced monitoring requires for its role (it "
            "writes OS metrics to the RDSOSMetrics log group only).",
        )
        if not config.deletion_protection:
            acknowledge(
                self,
                "AwsSolutions-RDS10",
                "Deletion protection is on in prod; this environment's config turns it off "
                "so a disposable staging stack can be torn down.",
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


def _acknowledge_replica(replica: rds.DatabaseInstanceReadReplica) -> None:
    for rule, reason in (
        (
            "AwsSolutions-RDS3",
            "A read replica serves read-only queries that fall back to the Multi-AZ "
            "primary; a standby for it would double its cost for no durability.",
        ),
        (
            "AwsSolutions-RDS10",
            "A read replica holds no data of its own and is recreated from the "
            "protected primary; it is removed when the replica count goes down.",
        ),
        (
            "AwsSolutions-RDS2",
            "A replica inherits the encrypted storage of its encrypted primary; "
            "CloudFormation takes no StorageEncrypted on a read replica.",
        ),
        (
            "AwsSolutions-RDS11",
            "The replica listens on 5433 like its primary; CDK renders a replica's port "
            "as the string '5433', which the rule does not read as a non-default port.",
        ),
    ):
        acknowledge(replica, rule, reason)
