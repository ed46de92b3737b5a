"""Many tasks through the pipeline with instant providers and two worker processes, every
message delivered twice: each task completes once, each provider is called once per step."""

from __future__ import annotations

from collections import Counter

from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState

from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames

from .conftest import (
    Procs,
    Webhooks,
    all_settled,
    eventually,
    make_queues,
    provider_calls,
    queued_tasks,
    send_stt,
    states,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP
TASKS = 200


async def test_tasks_sent_twice_each_complete_exactly_once(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs, webhooks: Webhooks
) -> None:
    queues = make_queues(aws)
    calls = procs.tmp / "calls.log"
    ids = await queued_tasks(db, TASKS)
    tasks = [await db.get_task(i) for i in ids]
    messages = [stt_message(t.id, t.tenant_id, t.object_key) for t in tasks if t]
    send_stt(aws.endpoint, queues.url, messages + messages)  # SQS is at-least-once
    env = worker_env(
        settings,
        queues,
        worker_concurrency=16,
        instant_provider_log=calls,
        webhook_url=webhooks.url,
        log_level="WARNING",
    )
    procs.worker(env)
    procs.worker(env)
    # A bound on a stuck pipeline, not a speed target (`make bench-pipeline` measures speed).
    await eventually("every task to finish", lambda: all_settled(db, ids), 300)
    assert Counter((await states(db, ids)).values()) == {TaskState.COMPLETED: TASKS}
    counted = Counter(provider_calls(calls))
    assert len(counted) == 2 * TASKS and set(counted.values()) == {1}
    assert {task_id for _, task_id in counted} == {str(i) for i in ids}
    await eventually("every webhook", lambda: _ready(len(webhooks.received) >= TASKS), 30)
    assert Counter(e["task"]["id"] for e in webhooks.events()) == {str(i): 1 for i in ids}
    await eventually("the queue to drain", lambda: _ready(queues.counts(aws.endpoint) == 0), 120)
    assert queues.counts(aws.endpoint, queues.dlq_url) == 0


async def _ready(value: bool) -> bool:
    return value
