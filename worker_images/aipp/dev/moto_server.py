"""`python -m aipp.dev.moto_server [moto.server's arguments]`: moto's server for S3 and SQS,
with one fix for running it under load (local development, tests and benchmarks only).

moto's SQS `Queue.delete_message` rebuilds the queue's message list without holding the lock
that `add_message` takes, so a SendMessage served at the same moment as a DeleteMessage (moto
serves requests on threads) can be lost: its message never arrives. A real queue does not do
that, and a pipeline that sends one task's next message while deleting another's meets it
within a few hundred tasks. Here the delete holds the same lock.
"""

from __future__ import annotations

import functools
from typing import Any

import moto.server
from moto.sqs.models import Queue


def _locked_delete(original: Any) -> Any:
    @functools.wraps(original)
    def delete_message(queue: Queue, receipt_handle: str) -> None:
        with queue._messages_lock:  # moto's own lock, the one add_message holds
            original(queue, receipt_handle)

    return delete_message


def main() -> None:
    Queue.delete_message = _locked_delete(Queue.delete_message)  # type: ignore[method-assign]
    moto.server.main()


if __name__ == "__main__":
    main()
