"""The worker reads the variables the stacks set, and refuses a bad one with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aipp.core.config import Settings, SettingsError, load_settings

from .conftest import ROOT


def test_stack_variables_configure_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIPP_WORKER_TASK_TYPES", raising=False)
    assert load_settings().worker_task_types == ("stt", "llm")  # phase 1: one program, both
    for name, value in {
        "AIPP_WORKER_TASK_TYPES": "llm",
        "AIPP_LLM_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/aipp-llm",
        "AIPP_WORKER_CONCURRENCY": "8",
        "AIPP_MAX_RECEIVE_COUNT": "5",
        "AIPP_LLM_PROVIDER": "Bedrock",
        "AIPP_BEDROCK_MODEL_ID": "amazon.nova-micro-v1:0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.worker_task_types == ("llm",)
    assert settings.worker_queue() == "https://sqs.us-east-1.amazonaws.com/1/aipp-llm"
    assert (settings.worker_concurrency, settings.max_receive_count) == (8, 5)
    assert settings.llm_provider == "bedrock"
    assert settings.bedrock_model_id == "amazon.nova-micro-v1:0"
    assert Settings(worker_queue_url="q").worker_queue() == "q"


@pytest.mark.parametrize(
    ("name", "value"), [("AIPP_STT_PROVIDER", "whisperx"), ("AIPP_WORKER_TASK_TYPES", "stt,ocr")]
)
def test_unknown_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert name in str(error.value.code)


def test_the_worker_exits_2_naming_the_bad_variable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aipp.worker"],
        env={
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'worker_images'}",
            "AIPP_LLM_PROVIDER": "gpt",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "AIPP_LLM_PROVIDER" in proc.stderr and "bedrock, extractive" in proc.stderr
