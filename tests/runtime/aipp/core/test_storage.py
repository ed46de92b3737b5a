"""Storage.delete reports every key S3 did not delete instead of ignoring them."""

from __future__ import annotations

import asyncio

import pytest
from aipp.core.config import Settings
from aipp.core.storage import DeleteFailed, Storage

from tests.runtime.aipp.worker.providers.stubs import stubbed_client


def test_delete_raises_naming_each_key_s3_refused() -> None:
    with stubbed_client("s3") as (client, stubber):
        stubber.add_response(
            "delete_objects",
            {
                "Deleted": [{"Key": "uploads/t/a/ok.wav"}],
                "Errors": [
                    {
                        "Key": "uploads/t/b/no.wav",
                        "Code": "AccessDenied",
                        "Message": "Access Denied",
                    }
                ],
            },
        )
        storage = Storage(Settings(audio_bucket="bucket"), client=client)
        with pytest.raises(DeleteFailed) as failure:
            asyncio.run(storage.delete(["uploads/t/a/ok.wav", "uploads/t/b/no.wav"]))
    assert failure.value.errors == [("uploads/t/b/no.wav", "AccessDenied")]
    assert "uploads/t/b/no.wav (AccessDenied)" in str(failure.value)


def test_delete_without_errors_returns() -> None:
    with stubbed_client("s3") as (client, stubber):
        stubber.add_response("delete_objects", {"Deleted": [{"Key": "k"}]})
        asyncio.run(Storage(Settings(audio_bucket="bucket"), client=client).delete(["k"]))
