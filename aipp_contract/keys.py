"""Object keys: where each object of a task lives in the audio bucket, and a model's weights in
the models bucket. The IAM grants scope themselves to these prefixes; the runtime builds every
key with these functions.

    uploads/<tenant>/<task>/<filename>           the client's audio (expires by lifecycle rule)
    transcripts/<tenant>/<task>.json             our transcript
    transcripts/<tenant>/<task>.transcribe.json  AWS Transcribe's own output (phase 1)
    results/<tenant>/<task>.json                 the summary (tasks completed before migration 0008)
    <org>/<model>/...                            a model's weights (models bucket)
"""

from __future__ import annotations

import uuid

UPLOADS = "uploads/"
TRANSCRIPTS = "transcripts/"
RESULTS = "results/"
# Every audio-bucket key starts with one of these.
AUDIO_PREFIXES = (UPLOADS, TRANSCRIPTS, RESULTS)


def upload_key(tenant_id: uuid.UUID, task_id: uuid.UUID, filename: str) -> str:
    return f"{UPLOADS}{tenant_id}/{task_id}/{filename}"


def transcript_key(tenant_id: uuid.UUID, task_id: uuid.UUID) -> str:
    return f"{TRANSCRIPTS}{tenant_id}/{task_id}.json"


def transcribe_output_key(tenant_id: uuid.UUID, task_id: uuid.UUID) -> str:
    """Where an AWS Transcribe job writes its own JSON, beside our transcript."""
    return f"{TRANSCRIPTS}{tenant_id}/{task_id}.transcribe.json"


def result_key(tenant_id: uuid.UUID, task_id: uuid.UUID) -> str:
    return f"{RESULTS}{tenant_id}/{task_id}.json"


def task_prefixes(tenant_id: uuid.UUID, task_id: uuid.UUID) -> tuple[str, ...]:
    """Every key prefix under which a task's objects live: its upload, our transcript and
    result, and Transcribe's own output."""
    return (
        f"{UPLOADS}{tenant_id}/{task_id}/",
        f"{TRANSCRIPTS}{tenant_id}/{task_id}.",
        f"{RESULTS}{tenant_id}/{task_id}.",
    )


def parse_upload_key(key: str) -> tuple[uuid.UUID, uuid.UUID, str] | None:
    """(tenant_id, task_id, filename) from `uploads/<tenant>/<task>/<filename>`, else None."""
    parts = key.split("/")
    if len(parts) != 4 or f"{parts[0]}/" != UPLOADS or not parts[3]:
        return None
    try:
        return uuid.UUID(parts[1]), uuid.UUID(parts[2]), parts[3]
    except ValueError:
        return None


def model_prefix(model: str) -> str:
    """A model's weights in the models bucket: `<org>/<name>/`, the model's own name."""
    return f"{model.strip('/')}/"


def audio_keys(tenant_id: uuid.UUID, task_id: uuid.UUID, filename: str) -> tuple[str, ...]:
    """Every key the builders make for one task: what the IAM prefixes must cover, no more."""
    return (
        upload_key(tenant_id, task_id, filename),
        transcript_key(tenant_id, task_id),
        transcribe_output_key(tenant_id, task_id),
        result_key(tenant_id, task_id),
    )


# AWS Transcribe job names: IAM allows `transcription-job/<prefix>*` only.
TRANSCRIBE_JOB_PREFIX = "aipp-"


def transcribe_job_name(task_id: uuid.UUID) -> str:
    return f"{TRANSCRIBE_JOB_PREFIX}{task_id}"
