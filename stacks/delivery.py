"""The delivery pipeline (CodePipeline V2 with CodeBuild), deployed once, in its own account:

    Source (CodeConnections)
    Synth:    every environment's cloud assembly at its configured phase (tools/delivery.py)
    Assets:   the images and files of both assemblies published to the environments' CDK
              bootstrap repositories and buckets (`cdk publish-assets`)
    Staging:  `cdk deploy --all` of the staging assembly, then the smoke task
    Prod:     manual approval, then `cdk deploy --all` of the prod assembly, then the smoke task

The pipeline deploys exactly the assemblies a hand deploy would (`cdk deploy --app
cdk.out/<env>`), with the same stack names and templates, so what `make diff-base` reviewed on
the pull request is what goes out. Releases are the platform's own: phase 1's ECS rolling update
with the deployment circuit breaker (CloudFormation waits for it and rolls back), phases 2-3's
Argo canary 10% -> 30% -> 100% with its 5xx analysis (aborted: traffic returns to the stable
pods). The smoke step waits until the new release answers every `/healthz` (the end of the
canary), then sends one real task through the API (tools/smoke.py) and fails the stage when it
does not complete: workers scale to zero, so this is how a broken worker image shows before
users see it.

`cdk deploy -c delivery=@config/delivery.json` from the pipeline's account; the environments
trust it through their CDK bootstrap (docs/operations.md#the-delivery-pipeline).
"""

from __future__ import annotations

import shlex
from typing import Any

from aws_cdk import (
    ArnFormat,
    Aspects,
    DefaultStackSynthesizer,
    Duration,
    Environment,
    Stack,
    Tags,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk_constructs.audio_bucket import private_bucket
from cdk_constructs.nag import acknowledge, nag_resource_id
from cdk_constructs.removal import RetainExceptOnCreate
from cdk_constructs.retention import retention
from phases import Env
from phases.delivery import DeliveryConfig, DeliveryEnvironment

BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
# The Python of the images and the tests (the image locks hold wheels for it), and Node for npm.
RUNTIMES = {"python": "3.11", "nodejs": "20"}
ASSEMBLIES = "Assemblies"  # the synth output artifact: cdk.out/<env>/ and cdk.out/<env>.plan.json
ASSEMBLY_DIR = f"$CODEBUILD_SRC_DIR_{ASSEMBLIES}"
LOG_RETENTION_DAYS = 90
# What CodePipeline grants each action's role on the artifact bucket (read and write).
ARTIFACT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*", "s3:DeleteObject*", "s3:Abort*")


def bootstrap_role(environment: DeliveryEnvironment, kind: str) -> str:
    """A CDK bootstrap role of an environment (`deploy`, `file-publishing`, ...)."""
    qualifier = DefaultStackSynthesizer.DEFAULT_QUALIFIER
    account, region = environment.account, environment.region
    return f"arn:aws:iam::{account}:role/cdk-{qualifier}-{kind}-role-{account}-{region}"


class DeliveryStack(Stack):
    """Exposes `pipeline`, `artifacts` (its bucket), `projects` (CodeBuild, by name:
    `Synth`, `Assets`, `<Env>Deploy`, `<Env>Smoke`) and `approval` (the step before prod)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        delivery: DeliveryConfig,
        project: str,
        synth_context: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.delivery = delivery
        self.project = project
        self.key = kms.Key(self, "ArtifactKey", enable_key_rotation=True)
        self.artifacts = self._artifact_bucket()
        self.projects: dict[str, codebuild.PipelineProject] = {}
        source, assemblies = codepipeline.Artifact("Source"), codepipeline.Artifact(ASSEMBLIES)
        self.approval = actions.ManualApprovalAction(
            action_name="PromoteToProd",
            additional_information="Staging is deployed and its smoke task completed. "
            "Release this commit to prod?",
            notification_topic=self._approval_topic(),
            run_order=1,
        )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_name=f"{project}-delivery",
            pipeline_type=codepipeline.PipelineType.V2,
            artifact_bucket=self.artifacts,
            restart_execution_on_update=False,
            stages=[
                codepipeline.StageProps(stage_name="Source", actions=[self._source(source)]),
                codepipeline.StageProps(
                    stage_name="Synth", actions=[self._synth(source, assemblies, synth_context)]
                ),
                codepipeline.StageProps(
                    stage_name="Assets", actions=[self._assets(source, assemblies)]
                ),
                self._release(Env.STAGING, source, assemblies),
                self._release(Env.PROD, source, assemblies, gate=self.approval),
            ],
        )
        self._acknowledge_grants()

    # --- stages and actions ---------------------------------------------------------------------

    def _source(self, output: codepipeline.Artifact) -> actions.Action:
        owner, repo = self.delivery.repository.split("/", 1)
        return actions.CodeStarConnectionsSourceAction(
            action_name="Checkout",
            connection_arn=self.delivery.connection_arn,
            owner=owner,
            repo=repo,
            branch=self.delivery.branch,
            output=output,
        )

    def _synth(
        self, source: codepipeline.Artifact, output: codepipeline.Artifact, synth_context: str
    ) -> actions.Action:
        """The environments' assemblies, from the commit's delivery config."""
        project = self._project(
            "Synth",
            install=["make install", "make rds-ca"],  # the images ship the RDS CA bundle
            commands=[
                ".venv/bin/python -m tools.delivery synth "
                f"--delivery {shlex.quote(synth_context)} --out cdk.out"
            ],
            artifacts={"base-directory": "cdk.out", "files": ["**/*"]},
        )
        return actions.CodeBuildAction(
            action_name="Synth", project=project, input=source, outputs=[output]
        )

    def _assets(
        self, source: codepipeline.Artifact, assemblies: codepipeline.Artifact
    ) -> actions.Action:
        """Images and files of every environment, into each one's bootstrap ECR and bucket."""
        commands = [
            f'npx cdk publish-assets --app "{ASSEMBLY_DIR}/{env.value}" --all' for env in Env
        ]
        project = self._project(
            "Assets", install=["npm ci --no-audit --no-fund"], commands=commands, docker=True
        )
        for env in Env:
            environment = self.delivery.environment(env)
            self._may_assume(
                project,
                [bootstrap_role(environment, k) for k in ("file-publishing", "image-publishing")],
            )
        return actions.CodeBuildAction(
            action_name="Publish", project=project, input=source, extra_inputs=[assemblies]
        )

    def _release(
        self,
        env: Env,
        source: codepipeline.Artifact,
        assemblies: codepipeline.Artifact,
        *,
        gate: actions.Action | None = None,
    ) -> codepipeline.StageProps:
        """[gate ->] deploy the environment's assembly -> smoke task."""
        name = env.value.capitalize()
        outputs = codepipeline.Artifact(f"{name}Outputs")
        first = 2 if gate else 1
        stage_actions: list[codepipeline.IAction] = [gate] if gate else []
        stage_actions += [
            actions.CodeBuildAction(
                action_name="Deploy",
                project=self._deploy_project(env),
                input=source,
                extra_inputs=[assemblies],
                outputs=[outputs],
                run_order=first,
            ),
            actions.CodeBuildAction(
                action_name="Smoke",
                project=self._smoke_project(env),
                input=source,
                extra_inputs=[assemblies, outputs],
                run_order=first + 1,
            ),
        ]
        return codepipeline.StageProps(stage_name=name, actions=stage_actions)

    def _deploy_project(self, env: Env) -> codebuild.PipelineProject:
        """`cdk deploy --all` of the assembly, as a hand deploy, through the bootstrap roles."""
        project = self._project(
            f"{env.value.capitalize()}Deploy",
            install=["npm ci --no-audit --no-fund"],
            commands=[
                f'npx cdk deploy --app "{ASSEMBLY_DIR}/{env.value}" --all '
                f"--require-approval never --outputs-file outputs/{env.value}.json"
            ],
            artifacts={"base-directory": "outputs", "files": [f"{env.value}.json"]},
            timeout=Duration.hours(3),  # an EKS cluster and its add-ons, from scratch
        )
        environment = self.delivery.environment(env)
        kinds = ("deploy", "file-publishing", "image-publishing")
        self._may_assume(project, [bootstrap_role(environment, k) for k in kinds])
        return project

    def _smoke_project(self, env: Env) -> codebuild.PipelineProject:
        """tools/smoke.py through tools/delivery.py, reading the smoke tenant's one secret."""
        name = env.value.capitalize()
        venv = "/tmp/smoke"  # noqa: S108 - the build container's own scratch space
        project = self._project(
            f"{name}Smoke",
            install=[
                f"python3 -m venv {venv}",
                f"{venv}/bin/pip install --require-hashes --only-binary=:all: "
                "-r worker_images/requirements-worker.lock",
            ],
            commands=[
                f"{venv}/bin/python -m tools.delivery smoke "
                f'--plan "{ASSEMBLY_DIR}/{env.value}.plan.json" '
                f'--outputs "$CODEBUILD_SRC_DIR_{name}Outputs/{env.value}.json"'
            ],
            timeout=Duration.hours(2),  # the canary's pauses, then a task from cold workers
        )
        project.add_to_role_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[self.smoke_secret_arn(env)]
            )
        )
        return project

    def _acknowledge_grants(self) -> None:
        """What CodePipeline and CodeBuild grant their roles by default, finding by finding;
        our own statements name their roles and secrets exactly."""
        bucket = nag_resource_id(self, self.artifacts.bucket_arn)
        shared = [
            *(
                (f"Action::{action}", "CodePipeline's grant on the pipeline's own artifact bucket")
                for action in ARTIFACT_ACTIONS
            ),
            (f"Resource::{bucket}/*", "the objects of the pipeline's own artifact bucket"),
            *(
                (f"Action::{action}", "on the pipeline's one key (artifacts, approval topic)")
                for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*")
            ),
        ]
        for scope in (self.pipeline, *self.projects.values()):
            for finding, why in shared:
                acknowledge(scope, f"AwsSolutions-IAM5[{finding}]", f"{why}: no other resource.")
        for project in self.projects.values():
            group = f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/codebuild/"
            name = nag_resource_id(self, project.project_name)
            acknowledge(
                project,
                f"AwsSolutions-IAM5[Resource::{group}{name}:*]",
                "CodeBuild's grant on the streams of the project's own default log group "
                "(the builds log to the project's group with its retention).",
            )

    # --- building blocks ------------------------------------------------------------------------

    def smoke_secret_arn(self, env: Env) -> str:
        """The smoke tenant's key for `env`: a secret of the pipeline's account and region."""
        environment = self.delivery.environment(env)
        name = environment.smoke.secret_name or f"{self.project}/{env.value}/smoke-api-key"
        return self.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{name}-??????",  # Secrets Manager's random suffix
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _project(
        self,
        name: str,
        *,
        install: list[str],
        commands: list[str],
        artifacts: dict[str, Any] | None = None,
        docker: bool = False,
        timeout: Duration | None = None,
    ) -> codebuild.PipelineProject:
        spec: dict[str, Any] = {
            "version": "0.2",
            "phases": {
                "install": {"runtime-versions": RUNTIMES, "commands": install},
                "build": {"commands": commands},
            },
        }
        if artifacts:
            spec["artifacts"] = artifacts
        project = codebuild.PipelineProject(
            self,
            name,
            build_spec=codebuild.BuildSpec.from_object(spec),
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE,
                compute_type=codebuild.ComputeType.MEDIUM,
                privileged=docker,
            ),
            encryption_key=self.key,
            grant_report_group_permissions=False,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(
                    log_group=logs.LogGroup(
                        self, f"{name}Logs", retention=retention(LOG_RETENTION_DAYS)
                    )
                )
            ),
            timeout=timeout or Duration.minutes(60),
        )
        if docker:
            acknowledge(
                project,
                "AwsSolutions-CB3",
                "Builds the platform's container images (docker build) to publish them to the "
                "environments' ECR repositories; privileged mode is what runs the Docker daemon.",
            )
        self.projects[name] = project
        return project

    def _may_assume(self, project: codebuild.PipelineProject, roles: list[str]) -> None:
        project.add_to_role_policy(iam.PolicyStatement(actions=["sts:AssumeRole"], resources=roles))

    def _artifact_bucket(self) -> s3.Bucket:
        """Source zips, assemblies and deploy outputs: encrypted with the pipeline's rotating
        key, access-logged, expired after 30 days (a run needs its artifacts for hours)."""
        access_logs = private_bucket(
            self,
            "ArtifactAccessLogs",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
        )
        acknowledge(
            access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket itself; logging it into itself would loop.",
        )
        return s3.Bucket(
            self,
            "Artifacts",
            encryption_key=self.key,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(30))],
        )

    def _approval_topic(self) -> sns.ITopic | None:
        if self.delivery.approval_email is None:
            return None
        topic = sns.Topic(self, "Approvals", master_key=self.key, enforce_ssl=True)
        topic.add_subscription(subscriptions.EmailSubscription(self.delivery.approval_email))
        return topic


def build_delivery(scope: Construct, delivery: DeliveryConfig, synth_context: str) -> DeliveryStack:
    """The pipeline's stack, `<Project>-Delivery`, in the account and region the config names.
    Every environment's config is validated first, so a bad one fails here, not in a run."""
    configs = [delivery.environment(env).platform(env) for env in Env]
    project = configs[0].project
    name = f"{project.capitalize()}-Delivery"
    stack = DeliveryStack(
        scope,
        name,
        stack_name=name,
        delivery=delivery,
        project=project,
        synth_context=synth_context,
        env=Environment(account=delivery.account, region=delivery.region),
    )
    Tags.of(stack).add("project", project)
    Aspects.of(stack).add(RetainExceptOnCreate())
    return stack
