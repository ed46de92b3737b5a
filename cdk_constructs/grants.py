"""What each kind of platform process may do, whichever compute runs it.

The same functions grant an ECS task role (phase 1) and an EKS service account's IRSA role
(phases 2-3), so the two computes cannot drift apart in what they allow. Object prefixes and
which queues each kind may send to come from `aipp_contract`, the runtime's side of the same
line; tests/infra/test_contract.py reads the synthesized policies against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sqs as sqs

from aipp_contract.keys import AUDIO_PREFIXES, RESULTS, TRANSCRIBE_JOB_PREFIX, TRANSCRIPTS, UPLOADS
from aipp_contract.messages import QUEUE_USE, Kind
from cdk_constructs.audio_bucket import grant_objects
from cdk_constructs.nag import acknowledge, nag_resource_id
from cdk_constructs.task_queues import QueuePair
from phases import TaskType
from phases.models import AiConfig

# Deleting a task removes every version of every object of it (the bucket is versioned).
DELETE_ALL_VERSIONS = ["s3:DeleteObject", "s3:DeleteObjectVersion"]


def _list_bucket(role: iam.IRole, bucket: str) -> None:
    """`/readyz`'s HeadBucket (authorised as s3:ListBucket) and listing a task's versions."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket", "s3:ListBucketVersions"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"],
        )
    )


def grant_api(role: iam.IRole, *, bucket: str, send_to: Mapping[TaskType, sqs.IQueue]) -> None:
    """The task API: presign and stream uploads, read a task's objects, delete all of them,
    queue new work (the types it creates: STT), and read the attributes of every queue of new
    work for `/readyz`."""
    grant_objects(role, bucket=bucket, actions=["s3:PutObject"], prefixes=[UPLOADS])
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", *DELETE_ALL_VERSIONS],
        prefixes=AUDIO_PREFIXES,
    )
    _list_bucket(role, bucket)
    sends = QUEUE_USE[Kind.API].sends
    sent_to = [queue for task_type, queue in send_to.items() if task_type in sends]
    for queue in dict.fromkeys(send_to.values()):  # one layout may use one queue for both
        if queue in sent_to:  # SendMessage, plus GetQueueAttributes for `/readyz`
            queue.grant_send_messages(role)
        else:
            queue.grant(role, "sqs:GetQueueAttributes")


def grant_upload_check(role: iam.IRole, *, bucket: str) -> None:
    """The upload check (the Lambda, and the workers' expiry sweep): read the exact version an
    event names, delete what it rejects (every version of it) or what no task owns."""
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", "s3:GetObjectVersion", *DELETE_ALL_VERSIONS],
        prefixes=[UPLOADS],
    )


def grant_worker(
    role: iam.IRole,
    *,
    ai: AiConfig,
    bucket: str,
    consumes: QueuePair,
    send_to: Sequence[sqs.IQueue],
) -> None:
    """A queue worker: read the audio version the upload check accepted, write and read
    transcripts (and remove a task's objects when it was deleted meanwhile, a result document
    of a task completed before migration 0008 included), run the expiry sweep's upload check,
    consume its own queue (and fail the tasks whose messages reached its DLQ), hand work on and
    re-send stuck tasks to either queue (the reconciler), call the AI services."""
    grant_upload_check(role, bucket=bucket)
    grant_objects(
        role,
        bucket=bucket,
        actions=["s3:GetObject", "s3:PutObject", *DELETE_ALL_VERSIONS],
        prefixes=[TRANSCRIPTS],
    )
    grant_objects(role, bucket=bucket, actions=DELETE_ALL_VERSIONS, prefixes=[RESULTS])
    _list_bucket(role, bucket)
    for queue in send_to:
        queue.grant_send_messages(role)
    consumes.queue.grant_consume_messages(role)
    consumes.dlq.grant_consume_messages(role)
    grant_ai(role, ai=ai, types=consumes.task_types)


def grant_ai(role: iam.IRole, *, ai: AiConfig, types: Sequence[TaskType]) -> None:
    """Transcribe jobs (STT) and Bedrock models (LLM), where the phase's providers use them or
    `ai.managed_fallback` lets the workers overflow to them; the configured models only."""
    stack = Stack.of(role)
    transcribe = TaskType.STT in types and (ai.stt_provider == "transcribe" or ai.managed_fallback)
    if transcribe:
        jobs = stack.format_arn(
            service="transcribe",
            resource="transcription-job",
            resource_name=f"{TRANSCRIBE_JOB_PREFIX}*",
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
