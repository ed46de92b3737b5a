"""What one completed task costs the services, counted in a real worker process on the real
services (PostgreSQL, Redis, S3 and SQS on moto's server): a change that adds a call to the
pipeline fails here. `make bench-pipeline` prints the same counts under load."""

from __future__ import annotations

import json
import sys

from aipp.core.config import Settings
from aipp.core.db import Database
from aipp.core.models import TaskState

from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames

from .conftest import (
    Procs,
    all_settled,
    eventually,
    make_queues,
    queued_tasks,
    send_stt,
    states,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP
TASKS = 20
# Calls per completed task (both steps), polls aside. STT: lock, queued -> transcribing, the
# transcript written, -> summarizing, the LLM message, unlock. LLM: lock, one read of the task
# (the transcript is the one this process just wrote: no S3 read), -> completed with the summary
# and its details, the result cached, unlock. Each message deleted (in batches of up to ten: at
# most one call each).
BUDGET = {"db": 4, "redis": 5, "s3": 1, "sqs": 3}
# The polls: receives (their number depends on timing) and the queue attributes read at start.
POLLS = {"sqs:ReceiveMessage", "sqs:GetQueueAttributes"}
# Once per process, not per task: the database's name for the sweep's turn key.
AT_START = {"db": 1}


async def test_a_task_costs_at_most_its_budget_of_calls(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs
) -> None:
    queues = make_queues(aws)
    ids = await queued_tasks(db, TASKS)
    tasks = [await db.get_task(i) for i in ids]
    send_stt(
        aws.endpoint, queues.url, [stt_message(t.id, t.tenant_id, t.object_key) for t in tasks if t]
    )
    env = worker_env(
        settings,
        queues,
        worker_concurrency=4,
        worker_dlq_url="",
        upload_sweep_interval_seconds=0,
        reconcile_interval_seconds=0,
        log_level="WARNING",
    )
    counts = procs.tmp / "calls.json"
    worker = procs.start(
        "worker", [sys.executable, "-m", "aipp.dev.calls", str(counts), "aipp.worker"], env
    )
    await eventually("every task to finish", lambda: all_settled(db, ids), 120)
    assert set((await states(db, ids)).values()) == {TaskState.COMPLETED}
    worker.stop()
    assert worker.wait(5) == 0

    operations: dict[str, int] = json.loads(counts.read_text())["operations"]
    spent = dict.fromkeys(BUDGET, 0)
    for name, n in operations.items():
        service = name.split(":", 1)[0]
        if name not in POLLS:
            spent[service] = spent.get(service, 0) + n
    assert set(spent) == set(BUDGET), f"calls to an unbudgeted service: {operations}"
    allowed = {k: v * TASKS + AT_START.get(k, 0) for k, v in BUDGET.items()}
    over = {k: f"{spent[k]} > {allowed[k]}" for k in BUDGET if spent[k] > allowed[k]}
    assert over == {}, f"over budget for {TASKS} tasks: {over}; by operation {operations}"
    # The counts are live: every service was called for every task.
    assert all(spent[k] >= TASKS for k in BUDGET), operations
    # Nothing was saved by skipping work: each task has its transcript, its summary and the
    # summary's details.
    for task_id in ids:
        task = await db.get_task(task_id)
        assert task is not None and task.summary and task.transcript_key
    assert not await db.pool.fetchval(
        "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND summary_details IS NULL", ids
    )
