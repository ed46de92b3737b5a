"""S3 access. boto3 is synchronous: each call runs in a worker thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aipp.core.aws import s3_client
from aipp.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


class Storage:
    def __init__(self, settings: Settings, client: S3Client | None = None) -> None:
        self.bucket = settings.audio_bucket
        self.client = client or s3_client(settings)

    def presign_put(self, key: str, content_type: str, size_bytes: int, expires: int) -> str:
        """A PUT URL whose signature covers Content-Type and Content-Length."""
        return self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size_bytes,
            },
            ExpiresIn=expires,
            HttpMethod="PUT",
        )

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
        )

    async def head_size(self, key: str) -> int | None:
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def read_head(self, key: str, length: int) -> tuple[bytes, int] | None:
        """The first `length` bytes (one ranged GET) and the object's total size; None if gone."""
        try:
            obj = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes=0-{length - 1}"
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b"", 0  # an empty object has no byte 0
            raise
        head = await asyncio.to_thread(obj["Body"].read)
        content_range = obj.get("ContentRange", "")
        total = (
            int(content_range.rsplit("/", 1)[1])
            if "/" in content_range
            else int(obj["ContentLength"])
        )
        return head, total

    async def get_bytes(self, key: str) -> bytes | None:
        """The whole object, or None when it does not exist."""
        try:
            obj = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        data: bytes = await asyncio.to_thread(obj["Body"].read)
        return data

    async def get_json(self, key: str) -> Any:
        try:
            obj = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return json.loads(await asyncio.to_thread(obj["Body"].read))

    async def put_json(self, key: str, value: Any) -> None:
        await self.put(key, json.dumps(value).encode(), "application/json")

    async def delete(self, keys: Iterable[str]) -> None:
        objects: list[Any] = [{"Key": k} for k in keys]
        if objects:
            await asyncio.to_thread(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": objects, "Quiet": True},
            )

    async def delete_prefix(self, prefix: str) -> None:
        listing = await asyncio.to_thread(
            self.client.list_objects_v2, Bucket=self.bucket, Prefix=prefix
        )
        await self.delete(obj["Key"] for obj in listing.get("Contents", []) if "Key" in obj)

    async def ping(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
