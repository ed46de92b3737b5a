"""A boto3 client wrapped in botocore's Stubber, shared by the AWS provider contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.stub import Stubber


@contextmanager
def stubbed_client(service: str) -> Iterator[tuple[Any, Stubber]]:
    """The client and its Stubber; every queued response must have been used at the end."""
    client = boto3.session.Session().client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
