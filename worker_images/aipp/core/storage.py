"""S3 access. boto3 is synchronous: each call runs in a worker thread."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError, NoCredentialsError

from aipp.core.aws import s3_client
from aipp.core.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# Streams to and from S3 hold at most max_concurrency parts of multipart_chunksize in memory.
TRANSFER = TransferConfig(
    multipart_threshold=8 * 1024 * 1024,
    multipart_chunksize=8 * 1024 * 1024,
    max_concurrency=2,
)


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}


class DeleteFailed(Exception):
    """Some keys of a DeleteObjects call were not deleted; `errors` says which and why."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        shown = ", ".join(f"{key} ({code})" for key, code in errors[:5])
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} object(s) not deleted: {shown}{more}")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Head:
    """The first bytes of an object, its size and the version that was read."""

    data: bytes
    size: int
    version_id: str | None


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def _quoted(value: str, safe: str) -> str:
    """`value` percent-encoded as Signature V4 wants it (`safe` kept as is); most values need
    no encoding at all, and checking for that is cheaper than encoding."""
    unreserved = _UNRESERVED_PATH if safe == "/" else _UNRESERVED
    return value if unreserved.fullmatch(value) else quote(value, safe=safe + "~")


def _amz_date(now: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ` (UTC)."""
    return f"{now.year:04}{now.month:02}{now.day:02}T{now.hour:02}{now.minute:02}{now.second:02}Z"


@dataclass(frozen=True, slots=True)
class _Signing:
    """The parts of a presigned URL that one set of credentials shares for a day."""

    made_for: tuple[object, ...]  # the credentials, the day and the expiry
    key: bytes
    scope: str
    head: str  # the query string up to the X-Amz-Date value (digits, T and Z: never quoted)
    canonical_tail: str  # after the date, in the canonical request (sorted)
    url_tail: str  # after the date, in the URL (botocore's order)


class PutPresigner:
    """Presigned PUT URLs of one bucket: the URL botocore's `generate_presigned_url` makes (the
    tests compare them, character for character), at a tenth of its CPU. Every create presigns,
    so this is on the API's hot path, and botocore spends most of a create's own CPU on it.

    The client resolves the bucket's base URL once (endpoint, addressing style); each URL is
    then signed by AWS Signature V4 in query-string form for this one request shape (PUT,
    signed Content-Length, Content-Type and Host, unsigned payload). The signing key and the
    fixed part of the query string are made once per credentials, day and expiry. Credentials
    are read from the client at each call, so refreshed role credentials (and their session
    token) are used as botocore would.
    """

    ALGORITHM = "AWS4-HMAC-SHA256"
    SIGNED_HEADERS = "content-length;content-type;host"

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        probe = client.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1, HttpMethod="PUT"
        )
        base = urlsplit(probe.split("?", 1)[0].removesuffix("k"))
        self._origin = f"{base.scheme}://{base.netloc}"
        self._path = base.path  # "/<bucket>/" (path style) or "/" (virtual host)
        self._host = base.netloc
        self._region = client.meta.region_name
        # The client's credential provider (a refreshing one under a task or pod role).
        self._credentials = client._request_signer._credentials  # type: ignore[attr-defined]
        self._cache: _Signing | None = None

    def _signing(self, credentials: ReadOnlyCredentials, day: str, expires: int) -> _Signing:
        """What every URL signed with these credentials on `day` shares; kept until either
        changes (the derived key is HMAC-SHA256 four times over)."""
        cached = self._cache
        if cached is not None and cached.made_for == (*credentials, day, expires):
            return cached
        if credentials.access_key is None or credentials.secret_key is None:
            raise NoCredentialsError
        key = ("AWS4" + credentials.secret_key).encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        scope = f"{day}/{self._region}/s3/aws4_request"
        head = (
            f"X-Amz-Algorithm={self.ALGORITHM}"
            f"&X-Amz-Credential={_quoted(f'{credentials.access_key}/{scope}', '')}&X-Amz-Date="
        )
        expiry = f"&X-Amz-Expires={expires}"
        signed = f"&X-Amz-SignedHeaders={_quoted(self.SIGNED_HEADERS, '')}"
        token = (
            ""
            if credentials.token is None
            else f"&X-Amz-Security-Token={_quoted(credentials.token, '')}"
        )
        # The canonical query string sorts the parameters; botocore's URL puts the token last.
        self._cache = _Signing(
            made_for=(*credentials, day, expires),
            key=key,
            scope=scope,
            head=head,
            canonical_tail=expiry + token + signed,
            url_tail=expiry + signed + token,
        )
        return self._cache

    def __call__(self, key: str, content_type: str, size_bytes: int, expires: int) -> str:
        stamp = _amz_date(self._clock())
        signing = self._signing(self._credentials.get_frozen_credentials(), stamp[:8], expires)
        path = self._path + _quoted(key, "/")
        canonical = (
            f"PUT\n{path}\n{signing.head}{stamp}{signing.canonical_tail}\n"
            f"content-length:{size_bytes}\ncontent-type:{content_type.strip()}\n"
            f"host:{self._host}\n\n{self.SIGNED_HEADERS}\nUNSIGNED-PAYLOAD"
        )
        to_sign = (
            f"{self.ALGORITHM}\n{stamp}\n{signing.scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(signing.key, to_sign.encode(), hashlib.sha256).hexdigest()
        return (
            f"{self._origin}{path}?{signing.head}{stamp}{signing.url_tail}"
            f"&X-Amz-Signature={signature}"
        )


class Storage:
    def __init__(self, settings: Settings, client: S3Client | None = None) -> None:
        self.bucket = settings.audio_bucket
        self.client = client or s3_client(settings)
        self._presign: PutPresigner | None = None

    def presign_put(self, key: str, content_type: str, size_bytes: int, expires: int) -> str:
        """A PUT URL whose signature covers Content-Type and Content-Length."""
        if self._presign is None:
            self._presign = PutPresigner(self.client, self.bucket)
        return self._presign(key, content_type, size_bytes, expires)

    async def put(self, key: str, body: bytes, content_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object, Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
        )

    async def put_file(self, key: str, file: IO[bytes], content_type: str) -> str | None:
        """Stream a file object to S3 (multipart above 8 MiB, a few parts in memory at most);
        returns the new object's version id (None when the bucket is not versioned)."""
        await asyncio.to_thread(
            self.client.upload_fileobj,
            file,
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
            Config=TRANSFER,
        )
        head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        version: str | None = head.get("VersionId")
        return version if version and version != "null" else None

    async def download(self, key: str, file: IO[bytes], version_id: str | None = None) -> bool:
        """Stream one version (default: the current one) into `file`; False when it is gone."""
        extra = {"VersionId": version_id} if version_id else None
        try:
            await asyncio.to_thread(
                self.client.download_fileobj,
                self.bucket,
                key,
                file,
                ExtraArgs=extra,
                Config=TRANSFER,
            )
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    async def current_version(self, key: str) -> str | None:
        """The version id of the object now at `key` (None when absent or unversioned)."""
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        version: str | None = head.get("VersionId")
        return version if version and version != "null" else None

    async def head_size(self, key: str) -> int | None:
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def read_head(self, key: str, length: int, version_id: str | None = None) -> Head | None:
        """The first `length` bytes (one ranged GET), the object's total size and the version
        that answered (pass `version_id` to read that one); None if gone."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            obj = await asyncio.to_thread(
                self.client.get_object,
                Bucket=self.bucket,
                Key=key,
                Range=f"bytes=0-{length - 1}",
                **extra,
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return Head(b"", 0, version_id)  # an empty object has no byte 0
            raise
        head = await asyncio.to_thread(obj["Body"].read)
        content_range = obj.get("ContentRange", "")
        total = (
            int(content_range.rsplit("/", 1)[1])
            if "/" in content_range
            else int(obj["ContentLength"])
        )
        version = obj.get("VersionId")
        return Head(head, total, version if version and version != "null" else None)

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

    async def delete(self, keys: Iterable[str], *, version_id: str | None = None) -> None:
        """Delete the current version of each key (a delete marker in a versioned bucket), or
        with `version_id` that one version of the single key given, for good. Raises
        `DeleteFailed` naming every key S3 did not delete."""
        objects: list[Any] = [
            {"Key": k, **({"VersionId": version_id} if version_id else {})} for k in keys
        ]
        await self._delete_objects(objects)

    async def _delete_objects(self, objects: list[Any]) -> None:
        errors: list[tuple[str, str]] = []
        for start in range(0, len(objects), 1000):  # DeleteObjects takes 1000 keys at most
            answer = await asyncio.to_thread(
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": objects[start : start + 1000], "Quiet": True},
            )
            errors.extend(
                (str(e.get("Key", "?")), str(e.get("Code", "Error")))
                for e in answer.get("Errors", [])
            )
        if errors:
            raise DeleteFailed(errors)

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every object under `prefix`, every version and delete marker included, so
        nothing of it is left to restore (on an unversioned bucket: every object)."""
        paginator = self.client.get_paginator("list_object_versions")

        def listing() -> list[Any]:
            found: list[Any] = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    entry: dict[str, Any] = {"Key": item["Key"]}
                    if item.get("VersionId") and item["VersionId"] != "null":
                        entry["VersionId"] = item["VersionId"]
                    found.append(entry)
            return found

        await self._delete_objects(await asyncio.to_thread(listing))

    async def ping(self) -> None:
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
