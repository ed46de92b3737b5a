"""The `bedrock` provider against botocore's Stubber: the Converse request shape and its errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aipp.worker.errors import ProviderError
from aipp.worker.providers.bedrock import BedrockSummarizer
from aipp.worker.providers.chunked import load_prompts
from botocore.stub import ANY, Stubber

from tests.runtime.conftest import ON_SESSION_LOOP

from .stubs import stubbed_client

pytestmark = ON_SESSION_LOOP
MODEL = "amazon.nova-lite-v1:0"


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    with stubbed_client("bedrock-runtime") as pair:
        yield pair


def answer(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
        "metrics": {"latencyMs": 100},
    }


async def test_converse_request_uses_the_configured_model_and_the_versioned_prompt(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    prompts = load_prompts()
    transcript = "We decided to move the launch to March. Ana will send the plan."
    stub.add_response(
        "converse",
        answer("Launch moves to March; Ana sends the plan."),
        {
            "modelId": MODEL,
            "system": [{"text": prompts.system}],
            "messages": [
                {"role": "user", "content": [{"text": prompts.single.format(text=transcript)}]}
            ],
            "inferenceConfig": {"maxTokens": 512, "temperature": 0.2},
        },
    )
    summary = await BedrockSummarizer(client, model_id=MODEL, max_tokens=512).summarize(
        transcript, "en-US"
    )
    assert summary.text == "Launch moves to March; Ana sends the plan."
    assert summary.details == {"model": MODEL, "prompt": "summary-v1", "calls": 1}


async def test_long_transcripts_take_one_call_per_chunk_and_one_to_merge(
    stubbed: tuple[Any, Stubber],
) -> None:
    client, stub = stubbed
    transcript = " ".join(f"Point {i} is about budget line {i}." for i in range(100))
    for i in range(4):
        stub.add_response(
            "converse",
            answer(f"chunk {i}"),
            {"modelId": MODEL, "system": ANY, "messages": ANY, "inferenceConfig": ANY},
        )
    stub.add_response(
        "converse",
        answer("the whole"),
        {"modelId": MODEL, "system": ANY, "messages": ANY, "inferenceConfig": ANY},
    )
    summary = await BedrockSummarizer(client, model_id=MODEL, chunk_chars=1000).summarize(
        transcript, None
    )
    assert summary.text == "the whole" and summary.details["calls"] == 5


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("ThrottlingException", True),
        ("ServiceUnavailableException", True),
        ("ValidationException", False),
        ("AccessDeniedException", False),
    ],
)
async def test_errors_are_classified(
    stubbed: tuple[Any, Stubber], code: str, retryable: bool
) -> None:
    client, stub = stubbed
    stub.add_client_error(
        "converse", service_error_code=code, service_message="nope", http_status_code=400
    )
    with pytest.raises(ProviderError) as failure:
        await BedrockSummarizer(client, model_id=MODEL).summarize("Hello.", None)
    assert failure.value.retryable is retryable
    assert code in failure.value.message
