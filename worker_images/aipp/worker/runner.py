"""The receive loop: long-poll SQS, run up to N jobs at once, heartbeat, retry, shut down cleanly.

- Dispatch by the `task_type` message attribute to the handler registered for that type
  (`aipp.worker.pipeline.STEPS`); a type this worker is not configured for is `misrouted`.
- Heartbeat: every third of the visibility timeout the message's visibility and the task lock
  are extended, so a long job keeps its message.
- Retries: a failed attempt hides the message for a backoff delay (10 s, 20 s, 40 s… by default); on
  the queue's final receive (AIPP_MAX_RECEIVE_COUNT) the task is marked `failed` with the reason and
  the message is released, so SQS moves it to the DLQ. Outages of PostgreSQL/Redis/S3 are waited out
  in-process (receiving pauses) instead of using up receives, and so are providers that throttle,
  answer 5xx or refuse connections (backoff from AIPP_PROVIDER_RETRY_BASE_SECONDS up to
  AIPP_PROVIDER_RETRY_MAX_SECONDS).
- Deadline: one attempt, provider waits included, ends after AIPP_WORKER_JOB_DEADLINE_SECONDS
  (`job_timeout`, retryable: it spends one receive).
- Deletion: while a job runs its task is looked up every few seconds; once the task is deleted
  the job is cancelled, whatever it wrote is removed and its message deleted.
- Tenants read stable codes and our own messages; exception text goes to the log only.
- DLQ: when the worker knows its dead-letter queue it marks the tasks it finds there `failed`
  (a worker killed on the final attempt leaves nobody else to do it) and keeps the messages.
- Background loops (the upload-expiry sweep) run beside the receive loop until it stops.
- Deletion of handled messages: in batches of up to ten (`DeleteBatcher`), off the job's path.
- SIGTERM/SIGINT: stop receiving, let in-flight jobs finish within the grace period, then cancel
  the rest and make their messages visible again at once (visibility 0); send the deletes left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from aipp.core.models import TaskState, TaskType
from aipp.core.queue import TASK_TYPE_ATTRIBUTE, TaskMessage
from aipp.worker.deletes import DeleteBatcher
from aipp.worker.ecs import ScaleInProtection
from aipp.worker.errors import (
    INTERNAL_ERROR,
    INTERNAL_MESSAGE,
    JOB_TIMEOUT,
    JobError,
    ProviderUnavailable,
    is_dependency_error,
)
from aipp.worker.pipeline import Job, Outcome, Pipeline

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger("aipp.worker")
MAX_DELAY = 900  # longest backoff between attempts
KEEP_IN_DLQ = 43000  # a handled dead letter stays hidden ~12 h (SQS allows 12 h in total)
DEPENDENCY_RETRIES = 3
HEALTH_WAIT_SECONDS = 120.0
DELETION_CHECK_SECONDS = 5.0

# The states in which each step's message is still owed work (the DLQ consumer fails a task only
# when the dead message is for the step the task is at).
STEP_STATES = {
    TaskType.STT: frozenset({TaskState.QUEUED, TaskState.TRANSCRIBING}),
    TaskType.LLM: frozenset({TaskState.SUMMARIZING}),
}


class TaskDeleted(Exception):
    """The task was deleted while its job ran."""


class Worker:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        sqs: SQSClient,
        queue_url: str,
        task_types: tuple[TaskType, ...],
        concurrency: int,
        visibility: int,
        wait_seconds: int,
        max_receive_count: int,
        retry_base: int,
        grace_seconds: float,
        dlq_url: str | None = None,
        job_deadline: float = 4 * 3600.0,
        provider_retry_base: float = 2.0,
        provider_retry_max: float = 60.0,
        deletion_check_seconds: float = DELETION_CHECK_SECONDS,
        heartbeat_file: str | None = None,
        protection: ScaleInProtection | None = None,
        health_checks: tuple[Callable[[], Awaitable[Any]], ...] = (),
        background: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = (),
    ) -> None:
        self.pipeline = pipeline
        self.sqs = sqs
        self.queue_url = queue_url
        self.task_types = task_types
        self.concurrency = concurrency
        self.visibility = visibility
        self.wait_seconds = wait_seconds
        self.max_receive_count = max_receive_count
        self.retry_base = retry_base
        self.grace_seconds = grace_seconds
        self.dlq_url = dlq_url
        self.job_deadline = job_deadline
        self.provider_retry_base = provider_retry_base
        self.provider_retry_max = provider_retry_max
        self.deletion_check_seconds = deletion_check_seconds
        self.heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        self.protection = protection or ScaleInProtection(None)
        self.health_checks = health_checks
        self.background = background
        self.deletes = DeleteBatcher(sqs, queue_url)
        self._jobs: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._unhealthy = False

    @property
    def heartbeat_interval(self) -> float:
        return max(0.5, self.visibility / 3)

    def stop(self) -> None:
        if not self._stop.is_set():
            log.info("shutting down: no new messages", extra={"in_flight": len(self._jobs)})
            self._stop.set()

    # --- SQS calls (boto3 is synchronous: each runs in a thread) --------------------------------
    async def _receive(self, url: str, count: int, wait: int, visibility: int) -> list[Any]:
        answer = await asyncio.to_thread(
            self.sqs.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(10, count)),
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=[TASK_TYPE_ATTRIBUTE],
        )
        return list(answer.get("Messages", []))

    async def _set_visibility(self, receipt: str, seconds: int, url: str | None = None) -> None:
        try:
            await asyncio.to_thread(
                self.sqs.change_message_visibility,
                QueueUrl=url or self.queue_url,
                ReceiptHandle=receipt,
                VisibilityTimeout=max(0, min(KEEP_IN_DLQ, seconds)),
            )
        except Exception as exc:  # the message reappears on its own
            log.warning("visibility not changed", extra={"error": repr(exc)})

    # --- the loop -----------------------------------------------------------------------------
    def _touch(self) -> None:
        if self.heartbeat_file is None:
            return
        try:
            self.heartbeat_file.touch()
        except OSError as exc:
            log.warning("heartbeat file not writable", extra={"error": repr(exc)})
            self.heartbeat_file = None

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _healthy(self) -> bool:
        try:
            for check in self.health_checks:
                await check()
        except Exception:  # any failure means not yet
            return False
        return True

    async def _wait_healthy(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        delay = 0.25
        while not await self._healthy():
            if time.monotonic() >= deadline:
                return False
            self._touch()
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 2)
        self._unhealthy = False
        return True

    async def run(self) -> None:
        helpers = [asyncio.create_task(self.protection.run())]
        helpers.extend(asyncio.create_task(job()) for job in self.background)
        if self.dlq_url:
            helpers.append(asyncio.create_task(self._dead_letters(self.dlq_url)))
        log.info(
            "worker started",
            extra={"queue": self.queue_url, "types": [t.value for t in self.task_types]},
        )
        pending_receive: asyncio.Task[list[Any]] | None = None
        delay = 1.0
        while not self._stop.is_set():
            self._touch()
            if self._unhealthy and not await self._wait_healthy(5.0):
                continue
            free = self.concurrency - len(self._jobs)
            if free <= 0:
                self._slot_free.clear()
                stop = asyncio.create_task(self._stop.wait())
                slot = asyncio.create_task(self._slot_free.wait())
                await asyncio.wait({stop, slot}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                slot.cancel()
                continue
            receive = asyncio.create_task(
                self._receive(self.queue_url, free, self.wait_seconds, self.visibility)
            )
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not receive.done():
                pending_receive = receive  # SIGTERM during the long poll
                break
            try:
                messages = receive.result()
            except Exception as exc:  # SQS unreachable: back off and go on
                log.warning("receive failed", extra={"error": repr(exc)})
                await self._sleep_unless_stopped(delay)
                delay = min(30.0, delay * 2)
                continue
            delay = 1.0
            if self._stop.is_set():
                await self._release_all(messages)
                break
            for message in messages:
                self._start(message)
        await self._shutdown(pending_receive)
        await self.deletes.close()
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        log.info("worker stopped")

    def _start(self, message: dict[str, Any]) -> None:
        job = asyncio.create_task(self._job(message))
        self._jobs.add(job)
        self.protection.set_busy(True)

        def done(task: asyncio.Task[None]) -> None:
            self._jobs.discard(task)
            self._slot_free.set()
            if not self._jobs:
                self.protection.set_busy(False)

        job.add_done_callback(done)

    async def _release_all(self, messages: list[Any]) -> None:
        await asyncio.gather(*(self._set_visibility(m["ReceiptHandle"], 0) for m in messages))

    async def _shutdown(self, pending_receive: asyncio.Task[list[Any]] | None) -> None:
        if self._jobs:
            _, late = await asyncio.wait(set(self._jobs), timeout=self.grace_seconds)
            for job in late:
                job.cancel()  # each cancelled job releases its message (visibility 0)
            if late:
                log.warning("jobs released at shutdown", extra={"count": len(late)})
                await asyncio.gather(*late, return_exceptions=True)
        if pending_receive is not None:
            try:
                await self._release_all(await pending_receive)
            except Exception as exc:
                log.warning("receive failed at shutdown", extra={"error": repr(exc)})

    # --- one message --------------------------------------------------------------------------
    def _parse(self, message: dict[str, Any]) -> Job:
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        body = TaskMessage.model_validate_json(message["Body"])
        attribute = message.get("MessageAttributes", {}).get(TASK_TYPE_ATTRIBUTE, {})
        task_type = TaskType(attribute.get("StringValue", body.task_type.value))
        if task_type is not body.task_type:
            body = body.model_copy(update={"task_type": task_type})
        return Job(message=body, receive_count=count)

    def retry_delay(self, receive_count: int, retry_after: float | None = None) -> int:
        if retry_after is not None:
            return int(min(MAX_DELAY, max(1.0, retry_after)))
        return int(min(MAX_DELAY, self.retry_base * 2 ** max(0, receive_count - 1)))

    async def _heartbeat(self, receipt: str, job: Job) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await self._set_visibility(receipt, self.visibility)
            for hook in list(job.heartbeats):
                try:
                    await hook()
                except Exception as exc:  # the next beat tries again
                    log.warning("lock not refreshed", extra={"error": repr(exc)})

    async def _attempt(self, job: Job) -> Outcome:
        """Run the handler within the job deadline; wait out dependency and provider outages
        and try again with the message held (no receive is spent on them)."""
        try:
            async with asyncio.timeout(self.job_deadline):
                return await self._attempt_until_done(job)
        except TimeoutError:
            raise JobError(
                JOB_TIMEOUT,
                f"the {job.message.task_type.value} step did not finish within"
                f" {self.job_deadline:.0f} s",
                retryable=True,
            ) from None

    async def _attempt_until_done(self, job: Job) -> Outcome:
        dependency_failures = 0
        provider_wait = self.provider_retry_base
        while True:
            try:
                return await self.pipeline.handle(job)
            except ProviderUnavailable as exc:
                wait = min(self.provider_retry_max, exc.retry_after or provider_wait)
                provider_wait = min(self.provider_retry_max, provider_wait * 2)
                log.warning(
                    "provider unavailable; waiting for it",
                    extra={
                        "task_id": str(job.message.task_id),
                        "code": exc.code,
                        "detail": exc.detail,
                        "wait_s": round(wait, 2),
                    },
                )
                await asyncio.sleep(wait * random.uniform(0.9, 1.1))  # noqa: S311 - jitter
            except Exception as exc:
                dependency_failures += 1
                if not is_dependency_error(exc) or dependency_failures >= DEPENDENCY_RETRIES:
                    raise
                log.warning(
                    "dependency failed; waiting for it",
                    extra={"task_id": str(job.message.task_id), "error": repr(exc)},
                )
                self._unhealthy = True
                await self._wait_healthy(HEALTH_WAIT_SECONDS)

    async def _watch_deletion(self, job: Job, work: asyncio.Task[Outcome]) -> None:
        """Cancel `work` once its task no longer exists (deleted through the API)."""
        while not work.done():
            await asyncio.sleep(self.deletion_check_seconds)
            try:
                exists = await self.pipeline.db.exists(job.message.task_id)
            except Exception as exc:  # the job itself meets the outage
                log.debug("deletion check failed", extra={"error": repr(exc)})
                continue
            if not exists:
                job.deleted = True
                work.cancel()
                return

    async def _run_watched(self, job: Job) -> Outcome:
        work = asyncio.create_task(self._attempt(job))
        watch = asyncio.create_task(self._watch_deletion(job, work))
        try:
            return await work
        except asyncio.CancelledError:
            if job.deleted:
                raise TaskDeleted from None
            raise
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)

    async def _job(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            job = self._parse(message)
        except (ValidationError, ValueError, KeyError) as exc:
            # Not ours to understand: let it go to the DLQ after its receives, for a human.
            count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            log.error("unreadable message", extra={"error": repr(exc), "body": message.get("Body")})
            await self._set_visibility(receipt, self.retry_delay(count))
            return
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._heartbeat(receipt, job))
        outcome = "error"
        try:
            if job.message.task_type not in self.task_types:
                raise JobError(
                    "misrouted",
                    f"a {job.message.task_type.value} message reached a worker for "
                    f"{','.join(t.value for t in self.task_types)}",
                    retryable=True,
                )
            result = await self._run_watched(job)
            outcome = result.value
            if result is Outcome.DONE:
                self.deletes.add(receipt)
            else:
                await self._set_visibility(receipt, self.retry_delay(job.receive_count))
        except TaskDeleted:
            outcome = "deleted"
            log.info("task deleted while in flight", extra={"task_id": str(job.message.task_id)})
            await self.pipeline.discard(job)
            self.deletes.add(receipt)
        except asyncio.CancelledError:
            outcome = "released"
            await self._set_visibility(receipt, 0)
            raise
        except Exception as exc:  # every failure ends in retry or `failed`
            await self._failed(job, receipt, exc)
        finally:
            heartbeat.cancel()
            elapsed = time.perf_counter() - started
            log.info(
                "job finished",
                extra={
                    "task_id": str(job.message.task_id),
                    "task_type": job.message.task_type.value,
                    "outcome": outcome,
                    "receive_count": job.receive_count,
                    "elapsed_ms": round(elapsed * 1000, 2),
                    "provider_ms": round(job.provider_seconds * 1000, 2),
                },
            )

    async def _failed(self, job: Job, receipt: str, exc: Exception) -> None:
        if isinstance(exc, JobError):
            code, reason, retryable, after = exc.code, exc.message, exc.retryable, exc.retry_after
            detail = exc.detail
        else:
            code, reason, retryable, after = INTERNAL_ERROR, INTERNAL_MESSAGE, True, None
            detail = f"{type(exc).__name__}: {exc}"[:2000]
        task_id = job.message.task_id
        final = job.receive_count >= self.max_receive_count
        log.log(
            logging.ERROR if (final or not retryable) else logging.WARNING,
            "job failed",
            extra={
                "task_id": str(task_id),
                "code": code,
                "reason": reason,
                "detail": detail,
                "receive_count": job.receive_count,
                "final": final or not retryable,
            },
            exc_info=not isinstance(exc, JobError),
        )
        try:
            if not retryable:
                await self.pipeline.fail(task_id, code, reason)
                self.deletes.add(receipt)
                return
            if final:
                attempts = f"after {job.receive_count} attempts"
                await self.pipeline.fail(task_id, code, f"{reason} ({attempts})", retryable=True)
                await self._set_visibility(receipt, 0)  # on to the DLQ at its next receive
                return
        except Exception as inner:  # the DLQ consumer records it later
            log.error("could not record the failure", extra={"error": repr(inner)})
        await self._set_visibility(receipt, self.retry_delay(job.receive_count, after))

    # --- the dead-letter queue ----------------------------------------------------------------
    async def _dead_letters(self, url: str) -> None:
        wait = max(1, self.wait_seconds)
        while True:
            try:
                messages = await self._receive(url, 10, wait, 60)
                for message in messages:
                    await self._dead_letter(url, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # try again later
                log.warning("dead-letter queue not read", extra={"error": repr(exc)})
                await asyncio.sleep(5)

    async def _dead_letter(self, url: str, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        try:
            job = self._parse(message)
        except (ValidationError, ValueError, KeyError):
            await self._set_visibility(receipt, KEEP_IN_DLQ, url)
            return
        task = await self.pipeline.db.get_task(job.message.task_id)
        # A dead duplicate of a step the task is already past says nothing about the task.
        if task is not None and task.state in STEP_STATES[job.message.task_type]:
            locks = self.pipeline.locks
            if await locks.held(TaskType.STT, task.id) or await locks.held(TaskType.LLM, task.id):
                await self._set_visibility(receipt, 60, url)  # still being worked on
                return
            await self.pipeline.fail(
                task.id,
                "processing_failed",
                f"the {job.message.task_type.value} step did not succeed after "
                f"{self.max_receive_count} attempts",
                retryable=True,
            )
        await self._set_visibility(receipt, KEEP_IN_DLQ, url)
