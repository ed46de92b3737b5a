"""On ECS the worker protects its task from scale-in while a job runs, and lifts it when idle."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aipp.core.config import Settings
from aipp.core.db import Database

from tests.runtime.conftest import ON_SESSION_LOOP, AwsNames

from .conftest import (
    Procs,
    all_settled,
    eventually,
    make_queues,
    queued_tasks,
    send_stt,
    stt_message,
    worker_env,
)

pytestmark = ON_SESSION_LOOP


class FakeAgent:
    """The ECS agent's task-protection endpoint: records every PUT body."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, dict[str, Any]]] = []
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                agent.puts.append((self.path, json.loads(body)))
                payload = b'{"protection": {"ProtectionEnabled": true}}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/api/task-123"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    fake = FakeAgent()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


async def test_scale_in_protection_is_on_while_busy_and_off_when_idle(
    settings: Settings, db: Database, aws: AwsNames, procs: Procs, agent: FakeAgent
) -> None:
    queues = make_queues(aws)
    ids = await queued_tasks(db, 2)
    tasks = [await db.get_task(i) for i in ids]
    procs.worker(
        worker_env(settings, queues, ecs_agent_uri=agent.uri, instant_provider_delay_seconds=1)
    )
    send_stt(
        aws.endpoint, queues.url, [stt_message(t.id, t.tenant_id, t.object_key) for t in tasks if t]
    )
    await eventually("the tasks to finish", lambda: all_settled(db, ids))

    async def lifted() -> bool:
        return bool(agent.puts) and agent.puts[-1][1] == {"ProtectionEnabled": False}

    await eventually("protection to be lifted", lifted, 20)
    assert all(path == "/api/task-123/task-protection/v1/state" for path, _ in agent.puts)
    assert agent.puts[0][1] == {"ProtectionEnabled": True, "ExpiresInMinutes": 60}
