"""Amazon Bedrock through the Converse API (`bedrock-runtime` converse), model id from config."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aipp.worker.errors import ProviderError, ProviderUnavailable
from aipp.worker.providers.base import Summary
from aipp.worker.providers.chunked import load_prompts, summarize_chunked

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

RETRYABLE = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
    "ModelTimeoutException",
    "ServiceQuotaExceededException",
}


class BedrockSummarizer:
    name = "bedrock"

    def __init__(
        self,
        client: BedrockRuntimeClient,
        *,
        model_id: str,
        max_tokens: int = 1024,
        chunk_chars: int = 12000,
    ) -> None:
        self.client = client
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.chunk_chars = chunk_chars

    def _converse(self, system: str, user: str) -> str:
        try:
            response = self.client.converse(
                modelId=self.model_id,
                system=[{"text": system}],
                messages=[{"role": "user", "content": [{"text": user}]}],
                inferenceConfig={"maxTokens": self.max_tokens, "temperature": 0.2},
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "ClientError"))
            detail = f"Bedrock {code}: {error.get('Message', '')}".strip()
            if code in RETRYABLE:
                raise ProviderUnavailable(
                    "summarization_failed", f"the model is unavailable ({code})", detail=detail
                ) from None
            raise ProviderError(
                "summarization_failed",
                f"the model rejected the request ({code})",
                retryable=False,
                detail=detail,
            ) from None
        content: list[Any] = list(response.get("output", {}).get("message", {}).get("content", []))
        texts = [part["text"] for part in content if isinstance(part, dict) and "text" in part]
        if not texts:
            raise ProviderError(
                "summarization_failed",
                "the model answered without text",
                retryable=True,
                detail=f"stopReason {response.get('stopReason')}",
            )
        return "".join(texts)

    async def _complete(self, system: str, user: str) -> str:
        return await asyncio.to_thread(self._converse, system, user)

    async def summarize(self, transcript: str, language: str | None) -> Summary:
        prompts = load_prompts()
        text, calls = await summarize_chunked(
            self._complete, transcript, max_chars=self.chunk_chars, prompts=prompts
        )
        return Summary(
            text=text,
            details={"model": self.model_id, "prompt": prompts.version, "calls": calls},
        )
