"""Presigned upload URLs: the same URL as botocore's `generate_presigned_url`, on AWS and on a
custom endpoint, for keys with characters that need quoting, with the credentials of the moment."""

from __future__ import annotations

import datetime
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import botocore.credentials
import botocore.exceptions
import pytest
from aipp.core.storage import PutPresigner
from botocore.config import Config

FROZEN = datetime.datetime(2026, 11, 28, 8, 0, 0)
KEYS = ["uploads/t1/k1/audio.mp3", "uploads/t1/k2/a b+c~d(1).wav", "uploads/t1/k3/é.flac"]


def _client(endpoint: str | None, token: str | None = None, region: str = "eu-west-1") -> Any:
    style = {"addressing_style": "path"} if endpoint else {}
    return boto3.session.Session().client(
        "s3",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token=token,
        config=Config(signature_version="s3v4", s3=style),
    )


def botocore_url(
    client: Any, key: str, content_type: str, size: int, expires: int, *, at: datetime.datetime
) -> str:
    """The URL botocore's own presigning makes for this upload, signed at `at`."""
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        url: str = client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": "aipp-prod-audio",
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
            },
            ExpiresIn=expires,
            HttpMethod="PUT",
        )
    return url


@pytest.mark.parametrize(
    ("endpoint", "token"),
    [(None, None), (None, "FwoGZXIvYXdzE+/session=="), ("http://127.0.0.1:5000", None)],
    ids=["aws", "aws-role-session", "endpoint"],
)
@pytest.mark.parametrize("key", KEYS)
def test_url_is_the_one_botocore_would_sign(
    endpoint: str | None, token: str | None, key: str
) -> None:
    client = _client(endpoint, token)
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: FROZEN)
    ours = presign(key, "audio/mpeg", 1234, 900)
    theirs = botocore_url(client, key, "audio/mpeg", 1234, 900, at=FROZEN)
    assert ours == theirs
    assert "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost" in ours


def test_signs_with_the_credentials_of_the_moment() -> None:
    """Role credentials refresh: each URL is signed with what the client holds at that call."""
    client = _client(None)
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: FROZEN)
    before = presign(KEYS[0], "audio/mpeg", 1, 60)
    credentials = client._request_signer._credentials
    credentials.secret_key = "rotated"
    after = presign(KEYS[0], "audio/mpeg", 1, 60)
    assert before.split("X-Amz-Signature=")[1] != after.split("X-Amz-Signature=")[1]
    assert after == botocore_url(client, KEYS[0], "audio/mpeg", 1, 60, at=FROZEN)


def test_the_signing_key_follows_the_day() -> None:
    """The derived key is kept for a day: a URL signed the next day is botocore's too."""
    client = _client(None)
    days = iter([FROZEN, FROZEN + datetime.timedelta(days=1)])
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: next(days))
    presign(KEYS[0], "audio/mpeg", 1, 60)
    ours = presign(KEYS[0], "audio/mpeg", 1, 60)
    tomorrow = FROZEN + datetime.timedelta(days=1)
    assert ours == botocore_url(client, KEYS[0], "audio/mpeg", 1, 60, at=tomorrow)


@pytest.mark.parametrize("region", ["us-east-1", "ap-southeast-2", "eu-central-1"])
def test_every_region_signs_as_botocore_does(region: str) -> None:
    client = _client(None, region=region)
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: FROZEN)
    theirs = botocore_url(client, KEYS[1], "audio/wav", 5, 900, at=FROZEN)
    assert presign(KEYS[1], "audio/wav", 5, 900) == theirs
    assert f"%2F{region}%2Fs3%2Faws4_request" in theirs


def test_a_new_expiry_signs_as_botocore_does() -> None:
    """The query string's fixed part is kept between calls: a different expiry is not served
    the previous one's."""
    client = _client(None, "FwoGZXIvYXdzE+/session==")
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: FROZEN)
    for expires in (60, 900, 60):
        ours = presign(KEYS[0], "audio/mpeg", 7, expires)
        assert ours == botocore_url(client, KEYS[0], "audio/mpeg", 7, expires, at=FROZEN)


def test_no_credentials_is_botocores_error_not_a_url() -> None:
    client = _client(None)
    presign = PutPresigner(client, "aipp-prod-audio", clock=lambda: FROZEN)
    empty = botocore.credentials.ReadOnlyCredentials(None, None, None)
    with (
        mock.patch.object(presign._credentials, "get_frozen_credentials", return_value=empty),
        pytest.raises(botocore.exceptions.NoCredentialsError, match="Unable to locate credentials"),
    ):
        presign(KEYS[0], "audio/mpeg", 1, 60)
