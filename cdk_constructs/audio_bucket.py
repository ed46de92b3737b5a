"""The audio bucket: private, encrypted, TLS-only, versioned, with expiring raw uploads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token, region_info
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from aipp_contract.keys import UPLOADS
from cdk_constructs.nag import acknowledge, acknowledge_singleton, nag_resource_id
from phases import PhaseConfig
from phases.models import BucketConfig


def bucket_name(config: PhaseConfig, purpose: str) -> str:
    """A deterministic, globally unique bucket name: project, env, account, region.

    Known names let other stacks scope IAM to object prefixes without cross-stack tokens, and
    make `cdk diff` of a policy readable. The phase is not part of it: the bucket (and the audio
    in it) stays when the environment moves to another phase.
    """
    account = config.account or Aws.ACCOUNT_ID
    region = config.region or Aws.REGION
    return f"{config.name_prefix}-{purpose}-{account}-{region}"


def grant_objects(
    grantee: iam.IRole,
    *,
    bucket: str,
    actions: Sequence[str],
    prefixes: Sequence[str],
) -> None:
    """Allow exactly `actions` on the objects under `prefixes` of `bucket`, nothing else."""
    resources = [f"arn:{Aws.PARTITION}:s3:::{bucket}/{prefix}*" for prefix in prefixes]
    grantee.add_to_principal_policy(iam.PolicyStatement(actions=list(actions), resources=resources))
    for resource in resources:
        acknowledge(
            grantee,
            f"AwsSolutions-IAM5[Resource::{nag_resource_id(grantee, resource)}]",
            "Object keys are made per tenant and task at run time; the wildcard covers one "
            "key prefix of the audio bucket and the listed object actions only.",
        )


def private_bucket(scope: Construct, construct_id: str, **props: Any) -> s3.Bucket:
    """A bucket with the platform's defaults: S3-managed encryption, no public access, TLS
    only, bucket-owner-enforced ownership (no ACLs); `props` add the rest."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        **props,
    )


class AudioBucket(Construct):
    """Exposes `bucket` (audio, transcripts, results), `bucket_name` and `log_bucket`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PhaseConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.is_prod else RemovalPolicy.DESTROY
        self.bucket_name = bucket_name(config, "audio")
        self.log_bucket = self._log_bucket(config, removal)
        self.bucket = self._audio_bucket(config.bucket, removal)
        self._acknowledge_notifications_handler()

    def allow_load_balancer_logs(self, prefix: str) -> str | None:
        """Let Elastic Load Balancing write access logs under `prefix` in the log bucket, for a
        load balancer CDK does not own (the Ingress ALB); returns the bucket's name. Same
        principal as CDK's own `log_access_logs`: the region's ELB account, or the log delivery
        service in regions opened since August 2022. An environment-agnostic synth (no config
        `region`) cannot name that account: None, and access logs stay off, as on ECS."""
        region = Stack.of(self).region
        if Token.is_unresolved(region):
            return None
        account = region_info.RegionInfo.get(region).elbv2_account
        principal: iam.IPrincipal = (
            iam.AccountPrincipal(account)
            if account
            else iam.ServicePrincipal("logdelivery.elasticloadbalancing.amazonaws.com")
        )
        self.log_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"],
                principals=[principal],
                resources=[self.log_bucket.arn_for_objects(f"{prefix}/AWSLogs/{Aws.ACCOUNT_ID}/*")],
            )
        )
        return self.log_bucket.bucket_name

    def _log_bucket(self, config: PhaseConfig, removal: RemovalPolicy) -> s3.Bucket:
        settings: BucketConfig = config.bucket
        log_bucket = private_bucket(
            self,
            "AccessLogs",
            bucket_name=bucket_name(config, "logs"),
            removal_policy=removal,
            auto_delete_objects=False,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=Duration.days(settings.access_log_retention_days),
                )
            ],
        )
        acknowledge(
            log_bucket,
            "AwsSolutions-S1",
            "This is the access-log bucket itself; logging it into itself would loop.",
        )
        return log_bucket

    def _audio_bucket(self, settings: BucketConfig, removal: RemovalPolicy) -> s3.Bucket:
        return private_bucket(
            self,
            "Audio",
            bucket_name=self.bucket_name,
            versioned=True,
            event_bridge_enabled=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="audio/",
            removal_policy=removal,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireRawUploads",
                    prefix=UPLOADS,
                    expiration=Duration.days(settings.raw_upload_expiry_days),
                ),
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(
                        settings.noncurrent_version_expiry_days
                    ),
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.PUT],
                    allowed_origins=list(settings.cors_allowed_origins),
                    allowed_headers=["content-type", "content-length", "x-amz-*"],
                    exposed_headers=["ETag"],
                    max_age=3000,
                )
            ],
        )

    def _acknowledge_notifications_handler(self) -> None:
        # `event_bridge_enabled` is switched on by CDK's bucket-notifications handler.
        handler = "BucketNotificationsHandler"
        acknowledge_singleton(
            self,
            handler,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's bucket-notifications handler (it turns on EventBridge delivery at deploy "
            "time) logs with the AWS-maintained basic execution policy.",
        )
        acknowledge_singleton(
            self,
            handler,
            "AwsSolutions-IAM5[Resource::*]",
            "CDK's bucket-notifications handler calls s3:PutBucketNotification, which it is "
            "granted on all buckets by CDK; it runs only during deployment.",
        )


class ModelsBucket(Construct):
    """Model weights for the self-hosted servers, one key prefix per model (`<org>/<name>/`).

    Phase-independent: every phase's Data stack has it, so an environment can fill it while it
    still runs phase 1 and switch to the GPU pools with the weights in place
    (docs/operations.md, "Filling the models bucket"). Exposes `bucket` and `bucket_name`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PhaseConfig, log_bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket_name = bucket_name(config, "models")
        self.bucket = private_bucket(
            self,
            "Models",
            bucket_name=self.bucket_name,
            versioned=True,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix="models/",
            removal_policy=RemovalPolicy.RETAIN if config.is_prod else RemovalPolicy.DESTROY,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireOldVersions",
                    noncurrent_version_expiration=Duration.days(
                        config.bucket.noncurrent_version_expiry_days
                    ),
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
