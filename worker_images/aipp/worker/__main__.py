"""`python -m aipp.worker`: consume the queue in AIPP_WORKER_QUEUE_URL until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aipp.core.aws import sqs_client
from aipp.core.cache import Cache, create_redis
from aipp.core.config import Settings, SettingsError, load_settings
from aipp.core.db import Database, create_pool
from aipp.core.logging import configure_logging
from aipp.core.models import TaskType
from aipp.core.queue import Queue
from aipp.core.storage import Storage
from aipp.core.upload_check import UploadCheck
from aipp.worker.ecs import ScaleInProtection
from aipp.worker.lock import TaskLocks
from aipp.worker.pipeline import Pipeline
from aipp.worker.providers import build_summarizer, build_transcriber
from aipp.worker.reconciler import Reconciler
from aipp.worker.runner import Worker
from aipp.worker.sweeper import UploadSweeper
from aipp.worker.webhook import Webhook
from aipp_contract.messages import Kind

log = logging.getLogger("aipp.worker")
APPLICATION_NAME = "aipp-worker"
DEFAULT_VISIBILITY = 300


async def _visibility(settings: Settings, queue: Queue, url: str) -> int:
    if settings.worker_visibility_timeout:
        return settings.worker_visibility_timeout
    try:
        attrs = await asyncio.to_thread(
            queue.client.get_queue_attributes, QueueUrl=url, AttributeNames=["VisibilityTimeout"]
        )
        return int(attrs["Attributes"]["VisibilityTimeout"])
    except Exception as exc:  # fall back to a safe default
        log.warning("queue visibility unknown", extra={"error": repr(exc)})
        return DEFAULT_VISIBILITY


async def _turn_prefix(db: Database, prefix: str) -> str:
    """One sweep and one reconcile turn per database, whoever else shares the Redis."""
    try:
        name = await asyncio.wait_for(db.pool.fetchval("SELECT current_database()"), 10)
    except Exception as exc:  # the turn key only saves duplicate work
        log.warning("database name unknown at start", extra={"error": repr(exc)})
        return prefix
    return f"{prefix}:{name}"


@dataclass
class Parts:
    """What one worker process is made of, built from its settings."""

    settings: Settings
    storage: Storage
    queue: Queue
    db: Database
    cache: Cache
    locks: TaskLocks
    webhook: Webhook | None
    visibility: int

    def pipeline(self, types: tuple[TaskType, ...]) -> Pipeline:
        """The handlers of `types`, with a provider for each type this worker handles."""
        settings = self.settings
        return Pipeline(
            settings=settings,
            db=self.db,
            storage=self.storage,
            queue=self.queue,
            cache=self.cache,
            locks=self.locks,
            transcriber=build_transcriber(settings, self.storage)
            if TaskType.STT in types
            else None,
            summarizer=build_summarizer(settings) if TaskType.LLM in types else None,
            webhook=self.webhook,
        )

    def background(self, turn_prefix: str) -> tuple[Callable[[], Coroutine[Any, Any, None]], ...]:
        """The upload-expiry sweep and the reconciler, unless switched off (interval 0)."""
        settings = self.settings
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if settings.upload_sweep_interval_seconds > 0:
            sweeper = UploadSweeper(
                db=self.db,
                storage=self.storage,
                redis=self.cache.redis,
                interval_seconds=settings.upload_sweep_interval_seconds,
                presign_seconds=settings.presign_expires_seconds,
                grace_seconds=settings.upload_grace_seconds,
                prefix=turn_prefix,
                webhook=self.webhook,
                check=UploadCheck(settings, self.db, self.storage, self.queue),
            )
            loops.append(sweeper.run)
        if settings.reconcile_interval_seconds > 0:
            reconciler = Reconciler(
                db=self.db,
                queue=self.queue,
                locks=self.locks,
                redis=self.cache.redis,
                interval_seconds=settings.reconcile_interval_seconds,
                after_seconds=settings.reconcile_after_seconds,
                prefix=turn_prefix,
            )
            loops.append(reconciler.run)
        return tuple(loops)


async def _parts(settings: Settings) -> Parts:
    storage = Storage(settings)
    queue = Queue(
        settings,
        client=sqs_client(settings, read_timeout=settings.worker_wait_seconds + 15),
        kind=Kind.WORKER,
    )
    visibility = await _visibility(settings, queue, settings.worker_queue())
    # `application_name` lets operators (and tests) tell worker sessions apart.
    db = Database(await create_pool(settings, application_name=APPLICATION_NAME))
    cache = Cache(create_redis(settings))
    webhook = (
        Webhook(settings.webhook_url, settings.webhook_secret) if settings.webhook_url else None
    )
    lock_ttl_ms = visibility * 1000 - min(1000, visibility * 250)
    locks = TaskLocks(cache.redis, ttl_ms=lock_ttl_ms, prefix=cache.prefix)
    return Parts(settings, storage, queue, db, cache, locks, webhook, visibility)


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(settings.worker_concurrency * 2 + 8))
    types = tuple(TaskType(t) for t in settings.worker_task_types)
    parts = await _parts(settings)
    visibility = parts.visibility
    worker = Worker(
        pipeline=parts.pipeline(types),
        sqs=parts.queue.client,
        queue_url=settings.worker_queue(),
        task_types=types,
        concurrency=settings.worker_concurrency,
        visibility=visibility,
        wait_seconds=settings.worker_wait_seconds,
        max_receive_count=settings.max_receive_count,
        retry_base=settings.worker_retry_base_seconds,
        grace_seconds=settings.worker_shutdown_grace_seconds,
        dlq_url=settings.worker_dlq_url,
        job_deadline=settings.worker_job_deadline_seconds,
        provider_retry_base=settings.provider_retry_base_seconds,
        provider_retry_max=settings.provider_retry_max_seconds,
        deletion_check_seconds=min(5.0, visibility / 3),
        heartbeat_file=settings.worker_heartbeat_file,
        protection=ScaleInProtection(settings.ecs_agent_uri),
        health_checks=(parts.db.ping, parts.cache.ping),
        background=parts.background(await _turn_prefix(parts.db, parts.cache.prefix)),
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        if parts.webhook is not None:
            await parts.webhook.close()
        for close in (parts.db.close, parts.cache.close):
            with contextlib.suppress(Exception):  # exiting anyway
                await asyncio.wait_for(close(), 5)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc.code, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(serve(settings))
    except ImportError:  # pragma: no cover - uvloop is in the image
        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
