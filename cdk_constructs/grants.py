"""What each kind of platform process may do, whichever compute runs it.

The same functions grant an ECS task role (phase 1) and an EKS service account's IRSA role
(phases 2-3), so the two computes cannot drift apart in what they allow.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs

from cdk_constructs.audio_bucket import (
    RESULTS_PREFIX,
    TRANSCRIPTS_PREFIX,
    UPLOADS_PREFIX,
    grant_objects,
)
from cdk_constructs.nag import acknowledge, nag_resource_id
from cdk_constructs.task_queues import QueuePair
from phases import TaskType
from phases.models import AiConfig


def grant_api(role: iam.IRole, *, bucket: str, send_to: Sequence[sqs.IQueue]) -> None:
    """The task API: presign uploads, read and delete a task's objects, queue new work."""
    grant_objects(role, bucket=bucket, actions=["s3:PutObject"], prefixes=[UPLOADS_PREFIX])
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", "s3:DeleteObject"],
        prefixes=[UPLOADS_PREFIX, TRANSCRIPTS_PREFIX, RESULTS_PREFIX],
    )
    # `/readyz` checks the bucket with HeadBucket, which S3 authorises as s3:ListBucket.
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"], resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"]
        )
    )
    for queue in send_to:  # SendMessage, plus GetQueueAttributes for `/readyz`
        queue.grant_send_messages(role)


def grant_worker(
    role: iam.IRole,
    *,
    project: str,
    ai: AiConfig,
    bucket: str,
    consumes: QueuePair,
    send_to: Sequence[sqs.IQueue],
) -> None:
    """A queue worker: read the audio, write transcripts and results, consume its own queue
    (and fail the tasks whose messages reached its DLQ), hand work on, call the AI services."""
    # Read the audio; delete uploads that arrive after their task expired (the sweeper).
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", "s3:DeleteObject"],
        prefixes=[UPLOADS_PREFIX],
    )
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", "s3:PutObject"],
        prefixes=[TRANSCRIPTS_PREFIX, RESULTS_PREFIX],
    )
    for queue in send_to:
        queue.grant_send_messages(role)
    consumes.queue.grant_consume_messages(role)
    consumes.dlq.grant_consume_messages(role)
    grant_ai(role, project=project, ai=ai, types=consumes.task_types)


def grant_ai(role: iam.IRole, *, project: str, ai: AiConfig, types: Sequence[TaskType]) -> None:
    """Transcribe jobs (STT) and Bedrock models (LLM), where the phase's providers use them or
    `ai.managed_fallback` lets the workers overflow to them; the configured models only."""
    stack = Stack.of(role)
    transcribe = TaskType.STT in types and (ai.stt_provider == "transcribe" or ai.managed_fallback)
    if transcribe:
        jobs = stack.format_arn(
            service="transcribe", resource="transcription-job", resource_name=f"{project}-*"
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "transcribe:StartTranscriptionJob",
                    "transcribe:GetTranscriptionJob",
                    "transcribe:DeleteTranscriptionJob",
                ],
                resources=[jobs],
            )
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::{nag_resource_id(role, jobs)}]",
            "Transcription job names are made per task at run time; the wildcard is "
            "limited to this platform's job-name prefix.",
        )
    if TaskType.LLM in types and (ai.llm_provider == "bedrock" or ai.managed_fallback):
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                resources=[
                    stack.format_arn(
                        service="bedrock",
                        account="",
                        resource="foundation-model",
                        resource_name=model_id,
                    )
                    for model_id in ai.bedrock_model_ids
                ],
            )
        )
