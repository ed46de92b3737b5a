"""Deleting handled messages in batches: one DeleteMessageBatch call for up to ten of them.

A job that is done hands its receipt handle over and frees its slot at once; the handles are
deleted together after a short linger (or as soon as ten are waiting). Nothing is lost when a
process dies before its deletes are sent: the messages reappear after their visibility timeout
and find their tasks done (every step is idempotent). At shutdown `close` sends what is left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

log = logging.getLogger("aipp.worker")
BATCH = 10  # SQS takes at most ten entries per batch call


class DeleteBatcher:
    def __init__(self, sqs: SQSClient, queue_url: str, *, linger_seconds: float = 0.05) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.linger_seconds = linger_seconds
        self._pending: list[str] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, receipt: str) -> None:
        """Delete this message soon (within the linger, or now when a batch is full)."""
        self._pending.append(receipt)
        if len(self._pending) >= BATCH:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self.linger_seconds, self._flush_now
            )

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            flush = asyncio.create_task(self._send(batch))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _send(self, receipts: list[str]) -> None:
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)
        ]
        try:
            answer = await asyncio.to_thread(
                self.sqs.delete_message_batch,
                QueueUrl=self.queue_url,
                Entries=entries,
            )
        except Exception as exc:  # a redelivery finds the tasks done
            log.warning("messages not deleted", extra={"count": len(receipts), "error": repr(exc)})
            return
        failed = answer.get("Failed", [])
        if failed:
            log.warning(
                "messages not deleted",
                extra={"count": len(failed), "codes": sorted({f.get("Code", "") for f in failed})},
            )

    async def close(self) -> None:
        """Send every delete still waiting and wait for those under way."""
        self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
