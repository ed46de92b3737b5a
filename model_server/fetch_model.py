"""Copy one model's weights from the models bucket to a local directory: the init step of every
GPU pod, so that nothing is pulled from a public model hub at start.

    python3 fetch_model.py s3://<bucket>/<org>/<model>/ /models/<org>/<model>

Objects already present with the same size are skipped (a restarted pod keeps its volume).
Exits 1 with one line when the prefix holds no object: the bucket has not been filled
(docs/operations.md, "Filling the models bucket").
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import boto3


def fetch(source: str, destination: Path) -> int:
    parts = urlsplit(source)
    if parts.scheme != "s3" or not parts.netloc:
        raise SystemExit(f"fetch_model: {source!r} is not an s3://bucket/prefix/ URL")
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    s3 = boto3.client("s3")
    copied = seen = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key, size = item["Key"], item["Size"]
            if key.endswith("/"):
                continue
            seen += 1
            target = destination / key[len(prefix) :]
            if target.is_file() and target.stat().st_size == size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            copied += 1
    if seen == 0:
        raise SystemExit(f"fetch_model: no objects under {source}: fill the models bucket first")
    print(f"fetch_model: {seen} files under {source}, {copied} copied to {destination}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: fetch_model.py s3://<bucket>/<prefix>/ <directory>")
    sys.exit(fetch(sys.argv[1], Path(sys.argv[2])))
