"""`python -m aipp.dev.s3_events`: the S3 → EventBridge → upload Lambda hop, for `make dev` only.

moto's server emits no S3 events, so locally a presigned PUT would leave its task
`awaiting_upload`. This polls the bucket's `uploads/` prefix with ListObjectsV2 and calls the
upload Lambda's handler (`upload_handler.handler.handler`; `lambda_src/` must be on PYTHONPATH)
with the "Object Created" event EventBridge would deliver, once per object it has not sent yet
(a new key, or the same key written again: a new ETag or LastModified). A call that raises is
made again at the next poll, as Lambda retries a failed asynchronous invocation. At start it sends
every object already there once; the handler ignores the ones whose task moved on.

It refuses to run without AWS_ENDPOINT_URL: in AWS the bucket sends the real events.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from aipp.core.aws import s3_client
from aipp.core.config import SettingsError, load_settings
from aipp.core.logging import configure_logging
from aipp_contract.keys import UPLOADS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("aipp.dev.s3_events")
ACCOUNT = "123456789012"  # moto's default account
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def object_created(bucket: str, region: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge event S3 sends for one new object (keys are not URL-encoded here)."""
    now = datetime.now(UTC)
    modified: datetime = obj.get("LastModified", now)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": obj["Key"],
                "size": int(obj.get("Size", 0)),
                "etag": str(obj.get("ETag", "")).strip('"'),
                "sequencer": f"{int(modified.timestamp() * 1_000_000):016X}",
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": ACCOUNT,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


class Bridge:
    """Remembers what it sent: key → (ETag, LastModified) of the object version it announced."""

    def __init__(
        self, s3: S3Client, bucket: str, region: str, handler: Handler, prefix: str = UPLOADS
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.region = region
        self.handler = handler
        self.prefix = prefix
        self.sent: dict[str, tuple[str, str]] = {}

    def poll(self) -> int:
        """One pass over the prefix; returns how many events were delivered."""
        present: set[str] = set()
        delivered = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            for obj in page.get("Contents", []):
                key = obj.get("Key")
                if not key:
                    continue
                present.add(key)
                version = (str(obj.get("ETag", "")), str(obj.get("LastModified", "")))
                if self.sent.get(key) == version:
                    continue
                try:
                    answer = self.handler(object_created(self.bucket, self.region, dict(obj)), None)
                except Exception as exc:  # delivered again at the next poll
                    log.warning("upload check failed", extra={"key": key, "error": repr(exc)})
                    continue
                self.sent[key] = version
                delivered += 1
                log.info("object created event delivered", extra={"key": key, "answer": answer})
        self.sent = {k: v for k, v in self.sent.items() if k in present}
        return delivered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aipp.dev.s3_events", description=__doc__)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--prefix", default=UPLOADS, help="the prefix the bucket notifies on")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2
    if not settings.aws_endpoint_url:
        print("error: s3_events only runs against AWS_ENDPOINT_URL (moto)", file=sys.stderr)
        return 2
    try:
        from upload_handler.handler import handler  # noqa: PLC0415 - lambda_src/, dev only
    except ImportError:
        print("error: put lambda_src/ on PYTHONPATH (the upload Lambda's code)", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    bridge = Bridge(
        s3_client(settings), settings.audio_bucket, settings.aws_region, handler, args.prefix
    )
    log.info(
        "watching for uploads",
        extra={"bucket": settings.audio_bucket, "prefix": args.prefix, "every": args.interval},
    )
    while not stop.is_set():
        try:
            bridge.poll()
        except Exception as exc:  # moto restarting, bucket not there yet: try again
            log.warning("bucket not listed", extra={"error": repr(exc)})
        stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
