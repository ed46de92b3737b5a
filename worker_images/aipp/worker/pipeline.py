"""Steps 4-8 of the task flow, one handler per task type. Every step is idempotent.

Handlers are registered per task type with `@step(<type>)` (`STEPS`); `Pipeline.handle`
dispatches a message to the handler of its `task_type` attribute, so a new task type is a new
handler, not another branch.

STT (steps 4-6): lock → `queued → transcribing` → provider → transcript to S3 →
`transcribing → summarizing` (with the transcript's key) → LLM message → done.
LLM (steps 7-8): lock → provider → `summarizing → completed` (with the summary and which
summarizer wrote it) → result cached in Redis → webhook → done.

A redelivered message finds the task where the last attempt left it and carries on from there:
`transcribing` with the lock free means the previous worker died, so this one continues;
`summarizing` seen by the STT handler means the LLM message may not have been sent, so it is sent
again (the LLM handler ignores the extra one). The Redis lock keeps two deliveries of one message
from working at once; the compare-and-set keeps any state change from happening twice.

Each step takes its lock first and then touches the task once: the STT step starts with the
compare-and-set itself (reading the task only when it is not `queued`), the LLM step reads it
once. Per task that is four database statements, one S3 write (and a read of the transcript
when another process wrote it), one message sent, and five Redis commands (lock and unlock per
step, the cached result); `make bench-pipeline` counts them and
tests/runtime/aipp/worker/test_call_budget.py keeps them from growing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, Any, TypeAlias

from aipp.core.cache import Cache
from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import Task, TaskState, TaskType
from aipp.core.queue import Queue, TaskMessage
from aipp.core.storage import Storage
from aipp.worker.errors import JobError
from aipp.worker.lock import TaskLocks
from aipp.worker.providers import AudioInput, Summarizer, Transcriber
from aipp.worker.webhook import Webhook
from aipp_contract.keys import task_prefixes, transcript_key

log = logging.getLogger("aipp.worker.pipeline")
TERMINAL = frozenset({TaskState.COMPLETED, TaskState.FAILED})
# Where a task is once its STT message has nothing left to do (awaiting_upload: a stale message
# after a compensation).
STT_PAST = TERMINAL | {TaskState.SUMMARIZING, TaskState.AWAITING_UPLOAD}


class Outcome(Enum):
    DONE = "done"  # delete the message
    BUSY = "busy"  # another job holds the task: look again later
    NOT_READY = "not_ready"  # the task is not yet at this step: look again later


@dataclass
class Job:
    message: TaskMessage
    receive_count: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    provider_seconds: float = 0.0
    heartbeats: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    deleted: bool = False


Step: TypeAlias = Callable[["Pipeline", Job], Awaitable[Outcome]]
# The handler of each task type; `step` fills it as the class below is defined.
STEPS: dict[TaskType, Step] = {}


def step(task_type: TaskType) -> Callable[[Step], Step]:
    """Register a `Pipeline` method as the handler of `task_type` (one handler per type)."""

    def register(handler: Step) -> Step:
        if task_type in STEPS:
            raise ValueError(f"a handler of {task_type} messages is already registered")
        STEPS[task_type] = handler
        return handler

    return register


class RecentTranscripts:
    """The transcripts this process wrote lately, for its own LLM step of the same task: in
    phase 1 one worker program runs both steps, and the summary then needs no S3 read of what
    the process just wrote. An entry counts only for the attempt that wrote it (a requeued
    task is transcribed again) and for its key; each is taken once; a miss reads S3."""

    def __init__(self, max_entries: int = 64, max_chars: int = 256 * 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._entries: OrderedDict[uuid.UUID, tuple[int, str | None, str]] = OrderedDict()

    def put(self, task: Task, text: str) -> None:
        if len(text) > self.max_chars:
            return
        self._entries[task.id] = (task.attempts, task.transcript_key, text)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def take(self, task: Task) -> str | None:
        entry = self._entries.pop(task.id, None)
        if entry is None or entry[:2] != (task.attempts, task.transcript_key):
            return None
        return entry[2]


@dataclass
class Pipeline:
    settings: Settings
    db: Database
    storage: Storage
    queue: Queue
    cache: Cache
    locks: TaskLocks
    transcriber: Transcriber | None
    summarizer: Summarizer | None
    webhook: Webhook | None = None
    transcripts: RecentTranscripts = field(default_factory=RecentTranscripts)

    async def handle(self, job: Job) -> Outcome:
        """Run the handler registered for the message's task type."""
        return await STEPS[job.message.task_type](self, job)

    # --- shared -----------------------------------------------------------------------------
    async def _locked(self, job: Job, task_type: TaskType) -> bool:
        task_id = job.message.task_id
        if not await self.locks.acquire(task_type, task_id, job.token):
            return False

        async def refresh() -> None:
            await self.locks.refresh(task_type, task_id, job.token)

        job.heartbeats.append(refresh)
        return True

    async def _unlock(self, job: Job, task_type: TaskType) -> None:
        job.heartbeats.clear()
        try:
            await self.locks.release(task_type, job.message.task_id, job.token)
        except Exception:  # the lock expires by itself
            log.warning("lock not released", extra={"task_id": str(job.message.task_id)})

    async def _move(self, task: Task, target: TaskState, **fields: Any) -> tuple[Task | None, bool]:
        """Compare-and-set `task.state → target`: (task now, True if this call made the change).

        When the answer is lost (connection dropped after the commit), a re-read that finds the
        task in `target` means it happened; the caller holds the lock, so no one else did it.
        """
        moved = await self.db.transition(task.id, task.state, target, **fields)
        if moved is not None:
            return moved, True
        return await self.db.get_task(task.id), False

    async def notify(self, task: Task) -> None:
        if self.webhook is not None:
            await self.webhook.send(task)

    async def fail(
        self, task_id: uuid.UUID, code: str, message: str, *, retryable: bool = False
    ) -> Task | None:
        """Mark a task `failed` with a reason the client can read, from whatever state it is in.
        `retryable`: a retry could fix it (`admin requeue` may put it back in the queue)."""
        for _ in range(5):
            task = await self.db.get_task(task_id)
            if task is None or task.state in TERMINAL:
                return None
            failed = await self.db.transition(
                task.id,
                task.state,
                TaskState.FAILED,
                error_code=code,
                error_message=message[:1000],
                retryable=retryable,
            )
            if failed is not None:
                log.info("task failed", extra={"task_id": str(task_id), "code": code})
                await self.notify(failed)
                return failed
        return None

    async def discard(self, job: Job) -> None:
        """The task was deleted while this job ran: remove every object of it that the job (or
        its provider, e.g. Transcribe's output) wrote, so nothing outlives the deletion."""
        message = job.message
        if self.transcriber is not None and message.task_type is TaskType.STT:
            discard = getattr(self.transcriber, "discard", None)
            if discard is not None:
                try:
                    await discard(message.task_id, message.tenant_id)
                except Exception as exc:  # the prefix sweep below still runs
                    log.warning("provider output not discarded", extra={"error": repr(exc)})
        for prefix in task_prefixes(message.tenant_id, message.task_id):
            try:
                await self.storage.delete_prefix(prefix)
            except Exception as exc:  # the bucket's lifecycle rules remove it in the end
                log.warning("objects of a deleted task not removed", extra={"error": repr(exc)})
        try:
            await self.cache.drop_result(message.tenant_id, message.task_id)
        except Exception:  # expires by itself
            log.warning("cached result not dropped", extra={"task_id": str(message.task_id)})

    # --- STT: steps 4-6 ---------------------------------------------------------------------
    async def _send_llm(self, task: Task) -> None:
        await self.queue.send(
            TaskMessage(
                task_id=task.id,
                tenant_id=task.tenant_id,
                object_key=task.transcript_key or transcript_key(task.tenant_id, task.id),
                task_type=TaskType.LLM,
                language=task.language,
            )
        )

    async def _held_elsewhere(self, job: Job, past: frozenset[TaskState]) -> Outcome:
        """Another job holds this step's lock. A message for a task already past the step (a
        duplicate delivery) is done: the holder does what is left. Otherwise look again later.
        (Only here, when the lock is taken, is the task read before the step's own work.)"""
        task = await self.db.get_task(job.message.task_id)
        return Outcome.DONE if task is None or task.state in past else Outcome.BUSY

    @step(TaskType.STT)
    async def transcribe(self, job: Job) -> Outcome:
        if not await self._locked(job, TaskType.STT):
            return await self._held_elsewhere(job, STT_PAST)
        try:
            task = await self._start_stt(job)
            if task is None or task.state in TERMINAL or task.state is TaskState.AWAITING_UPLOAD:
                return Outcome.DONE  # deleted, finished, or a stale message after a compensation
            if task.state is TaskState.SUMMARIZING:
                await self._send_llm(task)  # the previous attempt may not have sent it
                return Outcome.DONE
            if task.state is not TaskState.TRANSCRIBING:
                return Outcome.BUSY  # moved back meanwhile: look again later
            return await self._run_stt(job, task)
        finally:
            await self._unlock(job, TaskType.STT)

    async def _start_stt(self, job: Job) -> Task | None:
        """`queued → transcribing` (one attempt more) in one compare-and-set, without reading
        the task first; when the task is not `queued`, where it is instead (None: gone).
        `transcribing` then means a previous attempt died mid-step: this one carries on."""
        task_id = job.message.task_id
        started = await self.db.transition(
            task_id, TaskState.QUEUED, TaskState.TRANSCRIBING, count_attempt=True
        )
        return started if started is not None else await self.db.get_task(task_id)

    async def _run_stt(self, job: Job, task: Task) -> Outcome:
        storage = self.storage
        version = task.object_version or job.message.object_version

        async def download(file: IO[bytes]) -> None:
            # Exactly the version the upload check accepted: a later PUT cannot swap the audio.
            if not await storage.download(task.object_key, file, version):
                raise JobError(
                    "audio_missing", "the uploaded audio no longer exists", retryable=False
                )

        assert self.transcriber is not None
        audio = AudioInput(
            task_id=task.id,
            tenant_id=task.tenant_id,
            bucket=storage.bucket,
            key=task.object_key,
            content_type=task.content_type,
            language=task.language,
            version_id=version,
            download=download,
        )
        started = time.perf_counter()
        transcript = await self.transcriber.transcribe(audio)
        job.provider_seconds += time.perf_counter() - started
        key = transcript_key(task.tenant_id, task.id)
        await storage.put_json(
            key,
            {
                "text": transcript.text,
                "language": transcript.language,
                "provider": self.transcriber.name,
                **({"details": transcript.details} if transcript.details else {}),
            },
        )
        moved, changed = await self._move(
            task,
            TaskState.SUMMARIZING,
            transcript_key=key,
            audio_seconds=transcript.duration_seconds,
        )
        if moved is None:  # deleted meanwhile: what was just written must not outlive it
            await self.discard(job)
            return Outcome.DONE
        if moved.state is not TaskState.SUMMARIZING:
            return Outcome.DONE  # failed meanwhile
        if changed:
            self.transcripts.put(moved, transcript.text)
        await self._send_llm(moved)
        return Outcome.DONE

    # --- LLM: steps 7-8 ---------------------------------------------------------------------
    @step(TaskType.LLM)
    async def summarize(self, job: Job) -> Outcome:
        if not await self._locked(job, TaskType.LLM):
            return await self._held_elsewhere(job, TERMINAL)
        try:
            # One read, under the lock: the summarizer runs only for a task still waiting for
            # its summary (a duplicate message of a finished task calls no provider).
            task = await self.db.get_task(job.message.task_id)
            if task is None or task.state in TERMINAL:
                return Outcome.DONE
            if task.state is not TaskState.SUMMARIZING:
                return Outcome.NOT_READY
            return await self._run_llm(job, task)
        finally:
            await self._unlock(job, TaskType.LLM)

    async def _run_llm(self, job: Job, task: Task) -> Outcome:
        assert self.summarizer is not None
        text = self.transcripts.take(task)
        if text is None:
            document = (
                await self.storage.get_json(task.transcript_key) if task.transcript_key else None
            )
            if not isinstance(document, dict) or not isinstance(document.get("text"), str):
                raise JobError("transcript_missing", "the transcript is gone", retryable=False)
            text = document["text"]
        started = time.perf_counter()
        summary = await self.summarizer.summarize(text, task.language)
        job.provider_seconds += time.perf_counter() - started
        # The summary and where it came from go in the row that completes the task (no
        # result document in S3: migration 0008).
        details = json.dumps({"provider": self.summarizer.name, **summary.details})
        done, changed = await self._move(
            task, TaskState.COMPLETED, summary=summary.text, summary_details=details
        )
        if done is None:  # deleted meanwhile: none of its objects may outlive it
            await self.discard(job)
            return Outcome.DONE
        if done.state is not TaskState.COMPLETED:
            return Outcome.DONE
        try:
            await self.cache.set_result(
                done.tenant_id,
                done.id,
                {"id": str(done.id), "transcript": text, "summary": done.summary or ""},
            )
        except Exception:  # the API falls back to the DB and S3
            log.warning("result not cached", extra={"task_id": str(done.id)})
        if changed:
            await self.notify(done)
        log.info("task completed", extra={"task_id": str(done.id)})
        return Outcome.DONE
