"""Every object key comes from one builder, under one of the audio bucket's prefixes."""

from __future__ import annotations

import uuid

from aipp_contract.keys import (
    AUDIO_PREFIXES,
    TRANSCRIBE_JOB_PREFIX,
    audio_keys,
    model_prefix,
    parse_upload_key,
    task_prefixes,
    transcribe_job_name,
    upload_key,
)

TENANT, TASK = uuid.uuid4(), uuid.uuid4()


def test_every_key_of_a_task_lies_under_an_audio_prefix_and_a_task_prefix() -> None:
    keys = audio_keys(TENANT, TASK, "meeting.wav")
    assert len(set(keys)) == 4
    for key in keys:
        assert key.startswith(AUDIO_PREFIXES)
        assert any(key.startswith(p) for p in task_prefixes(TENANT, TASK)), key
    other = audio_keys(TENANT, uuid.uuid4(), "meeting.wav")
    for key in other:  # another task's objects are not swept with this one's
        assert not any(key.startswith(p) for p in task_prefixes(TENANT, TASK)), key


def test_an_upload_key_parses_back_and_nothing_else_does() -> None:
    key = upload_key(TENANT, TASK, "réunion du lundi.wav")
    assert parse_upload_key(key) == (TENANT, TASK, "réunion du lundi.wav")
    for bad in (
        f"transcripts/{TENANT}/{TASK}.json",
        f"uploads/{TENANT}/{TASK}/",
        f"uploads/{TENANT}/not-a-uuid/a.wav",
        f"uploads/{TENANT}/{TASK}/a/b.wav",
    ):
        assert parse_upload_key(bad) is None, bad


def test_model_prefixes_and_job_names() -> None:
    assert model_prefix("openai/whisper-large-v3-turbo") == "openai/whisper-large-v3-turbo/"
    assert transcribe_job_name(TASK) == f"{TRANSCRIBE_JOB_PREFIX}{TASK}"
