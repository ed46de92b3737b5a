"""`python -m aipp.dev.moto_server [moto.server's arguments]`: moto's server for S3 and SQS,
with two fixes for running it under load (local development, tests and benchmarks only).

moto's SQS `Queue.delete_message` rebuilds the queue's message list without holding the lock
that `add_message` takes, so a SendMessage served at the same moment as a DeleteMessage (moto
serves requests on threads) can be lost: its message never arrives. A real queue does not do
that, and a pipeline that sends one task's next message while deleting another's meets it
within a few hundred tasks. Here the delete holds the same lock.

moto's server also finds which service a request is for by listing its own package directory
(`moto.backends.list_of_moto_modules`: a listdir and an isdir per entry, some 200 entries) on
every request, about a tenth of its CPU per request. The list does not change while the server
runs: here it is read once.
"""

from __future__ import annotations

import functools
from typing import Any

import moto.backends
import moto.server
from moto.sqs.models import Queue


def _locked_delete(original: Any) -> Any:
    @functools.wraps(original)
    def delete_message(queue: Queue, receipt_handle: str) -> None:
        with queue._messages_lock:  # moto's own lock, the one add_message holds
            original(queue, receipt_handle)

    return delete_message


def _read_once(original: Any) -> Any:
    modules = tuple(original())

    @functools.wraps(original)
    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    return list_of_moto_modules


def main() -> None:
    Queue.delete_message = _locked_delete(Queue.delete_message)  # type: ignore[method-assign]
    moto.backends.list_of_moto_modules = _read_once(moto.backends.list_of_moto_modules)
    moto.server.main()


if __name__ == "__main__":
    main()
