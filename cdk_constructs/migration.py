"""The schema migration of the ECS compute: a one-off Fargate task that gates the deployment.

Whenever the migration's task definition changes (a new image), a custom resource runs
`python -m aipp.admin migrate` as one Fargate task and waits for it to stop
(`lambda_src/migration_gate`, CDK's provider framework with an is-complete check). Exit code 0
lets the deployment go on; the services depend on the resource, so they roll onto the new image
only after the schema is there. A failed migration fails the resource with its exit code and
log group, and CloudFormation rolls the deployment back.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import CustomResource, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_constructs.fargate_services import task_definition
from cdk_constructs.nag import acknowledge, nag_resource_id
from cdk_constructs.paths import REPO_ROOT
from cdk_constructs.retention import retention

GATE_SOURCE = REPO_ROOT / "lambda_src" / "migration_gate"
CONTAINER = "App"  # the container `task_definition` makes


class MigrationRun(Construct):
    """Exposes `task_definition`, `security_group` and `run` (what the services depend on)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        environment: dict[str, str],
        log_group: logs.ILogGroup,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_definition = task_definition(
            self,
            "Task",
            cpu=256,
            memory_mib=512,
            target="api",
            command=["python", "-m", "aipp.admin", "migrate"],
            environment=environment,
            log_group=log_group,
        )
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=cluster.vpc, description="Database migration task"
        )
        subnets = cluster.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        keep = retention(log_retention_days)
        start, check = self._functions(keep)
        self._grant(cluster, start, check)
        provider = self._provider(start, check, keep)
        self.run = CustomResource(
            self,
            "Run",
            service_token=provider.service_token,
            resource_type="Custom::SchemaMigration",
            properties={
                "Cluster": cluster.cluster_arn,
                "TaskDefinition": self.task_definition.task_definition_arn,
                "Container": CONTAINER,
                "Subnets": subnets.subnet_ids,
                "SecurityGroups": [self.security_group.security_group_id],
                "LogGroup": log_group.log_group_name,
            },
        )
        self._acknowledge(provider, start, check)

    def _functions(self, keep: logs.RetentionDays) -> tuple[lambda_.Function, lambda_.Function]:
        """The gate's two handlers (`lambda_src/migration_gate`): start the task, check it."""
        start, check = (
            lambda_.Function(
                self,
                name,
                description=description,
                runtime=lambda_.Runtime.PYTHON_3_14,
                architecture=lambda_.Architecture.ARM_64,
                handler=f"handler.{entry}",
                code=lambda_.Code.from_asset(str(GATE_SOURCE)),
                timeout=Duration.seconds(30),
                log_group=logs.LogGroup(self, f"{name}Logs", retention=keep),
            )
            for name, entry, description in (
                ("Start", "on_event", "Starts the schema migration task at deploy time"),
                ("Check", "is_complete", "Waits for the schema migration task's exit"),
            )
        )
        return start, check

    def _provider(
        self, start: lambda_.Function, check: lambda_.Function, keep: logs.RetentionDays
    ) -> cr.Provider:
        """CDK's provider framework: polls `check` every 15 s for up to 30 minutes."""
        return cr.Provider(
            self,
            "Gate",
            on_event_handler=start,
            is_complete_handler=check,
            query_interval=Duration.seconds(15),
            total_timeout=Duration.minutes(30),
            log_group=logs.LogGroup(self, "GateLogs", retention=keep),
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=logs.LogGroup(self, "WaiterLogs", retention=keep),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,
            ),
        )

    def _grant(
        self, cluster: ecs.ICluster, start: lambda_.Function, check: lambda_.Function
    ) -> None:
        roles = [self.task_definition.task_role, self.task_definition.obtain_execution_role()]
        start.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:RunTask"],
                resources=[self.task_definition.task_definition_arn],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )
        start.add_to_role_policy(
            iam.PolicyStatement(actions=["iam:PassRole"], resources=[r.role_arn for r in roles])
        )
        self.tasks = Stack.of(self).format_arn(
            service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
        )
        check.add_to_role_policy(
            iam.PolicyStatement(
                actions=["ecs:DescribeTasks"],
                resources=[self.tasks],
                conditions={"ArnEquals": {"ecs:cluster": cluster.cluster_arn}},
            )
        )

    def _acknowledge(
        self, provider: cr.Provider, start: lambda_.Function, check: lambda_.Function
    ) -> None:
        basic = (
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]"
        )
        for function in (start, check):
            acknowledge(
                function,
                basic,
                "The migration gate's functions log with the AWS-maintained basic execution "
                "policy; what they may call is their own, narrowly scoped policy.",
            )
        acknowledge(
            check,
            f"AwsSolutions-IAM5[Resource::{nag_resource_id(self, self.tasks)}]",
            "Task ids are assigned by ECS at run time; DescribeTasks is limited to this "
            "cluster's tasks by resource and condition.",
        )
        acknowledge(
            provider,
            basic,
            "CDK's provider framework functions log with the AWS-maintained basic policy.",
        )
        framework = [
            cast(lambda_.IFunction, provider.node.find_child(name))
            for name in ("framework-onEvent", "framework-isComplete", "framework-onTimeout")
        ]
        invoked: list[lambda_.IFunction] = [start, check, *framework]
        for target in invoked:
            arn = f"{target.function_arn}:*"
            acknowledge(
                provider,
                f"AwsSolutions-IAM5[Resource::{nag_resource_id(self, arn)}]",
                "CDK's provider framework invokes any version of the gate's functions and of "
                "its own; the wildcard is the version suffix of one function's ARN.",
            )
        acknowledge(
            provider,
            "AwsSolutions-IAM5[Resource::*]",
            "The waiter state machine's log delivery actions (logs:CreateLogDelivery and the "
            "like) have no resource-level permissions; Step Functions documents `*` for them.",
        )
        acknowledge(
            provider,
            "AwsSolutions-SF2",
            "CDK's waiter state machine offers no X-Ray tracing option; it only alternates two "
            "Lambda calls, whose logs and the machine's own (level ALL) are kept.",
        )
