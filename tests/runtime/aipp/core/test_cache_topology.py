"""The runtime against the cache topology phases 2 and 3 deploy: a Redis primary with a replica
behind one primary endpoint, and an automatic failover.

ElastiCache's primary endpoint is a DNS name that follows the primary. Here a local TCP proxy
plays that endpoint in front of two real `redis-server` processes (a primary and its replica);
a failover promotes the replica, demotes the old primary to a replica of it and moves the
endpoint. Phase 1's single node is what every other runtime test runs against.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aipp.core.cache import Cache, create_redis
from aipp.core.config import Settings
from aipp.core.models import TaskType
from aipp.worker.lock import TaskLocks
from redis.asyncio import Redis

from ...conftest import ON_SESSION_LOOP, free_port, wait_listening

pytestmark = ON_SESSION_LOOP


class Endpoint:
    """A TCP proxy standing for the primary endpoint: it forwards to `target`; `move` points it
    at another node and drops the open connections, as a failover does."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target)
        self._open |= {writer, upstream}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))

    def move(self, target: int, *, drop: bool = True) -> None:
        self.target = target
        if drop:
            for writer in self._open:
                writer.close()
            self._open.clear()

    async def stop(self) -> None:
        self.move(self.target)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(primary port, replica port): two redis-server processes, the second replicating."""
    ports = [free_port(), free_port()]
    procs = []
    for port, extra in ((ports[0], []), (ports[1], ["--replicaof", "127.0.0.1", str(ports[0])])):
        proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        wait_listening(port, proc)
    _wait_in_sync(ports[1])
    try:
        yield ports[0], ports[1]
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _wait_in_sync(replica: int, seconds: float = 20) -> None:
    """Until the replica reports its link to the primary up (the first full sync done)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = subprocess.run(
            ["redis-cli", "-p", str(replica), "INFO", "replication"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if "master_link_status:up" in info:
            return
        time.sleep(0.1)
    raise AssertionError(f"the replica on {replica} never synced with its primary")


@pytest_asyncio.fixture(loop_scope="session")
async def endpoint(nodes: tuple[int, int]) -> AsyncIterator[Endpoint]:
    proxy = Endpoint(nodes[0])
    await proxy.start()
    yield proxy
    await proxy.stop()


async def _replicated(port: int, key: str) -> bytes | None:
    node = Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(50):
            value: bytes | None = await node.get(key)
            if value is not None:
                return value
            await asyncio.sleep(0.05)
        return None
    finally:
        await node.aclose()


async def _role(port: int) -> str:
    node = Redis(host="127.0.0.1", port=port)
    try:
        info = await node.info("replication")
        return str(info["role"])
    finally:
        await node.aclose()


async def _failover(endpoint: Endpoint, nodes: tuple[int, int], *, drop: bool) -> None:
    old, new = nodes
    promoted, demoted = Redis(host="127.0.0.1", port=new), Redis(host="127.0.0.1", port=old)
    try:
        await promoted.execute_command("REPLICAOF", "NO", "ONE")
        await demoted.execute_command("REPLICAOF", "127.0.0.1", str(new))
    finally:
        await promoted.aclose()
        await demoted.aclose()
    endpoint.move(new, drop=drop)


def _settings(endpoint: Endpoint) -> Settings:
    return Settings(redis_url=f"redis://127.0.0.1:{endpoint.port}/0", dependency_timeout_seconds=2)


async def test_results_locks_and_rate_limits_reach_the_replica(
    endpoint: Endpoint, nodes: tuple[int, int]
) -> None:
    redis = create_redis(_settings(endpoint))
    cache, locks = Cache(redis), TaskLocks(redis, ttl_ms=30_000)
    tenant, task = uuid.uuid4(), uuid.uuid4()
    try:
        await cache.set_result(tenant, task, {"summary": "s"})
        assert await cache.get_result(tenant, task) == {"summary": "s"}
        assert await locks.acquire(TaskType.STT, task, "me")
        assert not await locks.acquire(TaskType.STT, task, "someone else")
        assert (await cache.take_token(tenant, per_minute=60, burst=1)).allowed
        assert not (await cache.take_token(tenant, per_minute=60, burst=1)).allowed
        assert await _replicated(nodes[1], locks.key(TaskType.STT, task)) == b"me"
        assert await _replicated(nodes[1], cache.result_key(tenant, task)) is not None
    finally:
        await cache.close()


@pytest.mark.parametrize("drop", [True, False], ids=["connections-dropped", "connections-kept"])
async def test_the_runtime_follows_a_failover_to_the_new_primary(
    endpoint: Endpoint, nodes: tuple[int, int], drop: bool
) -> None:
    """After a failover the same client writes to the new primary: whether its open
    connections were dropped, or kept to the old primary, which now answers READONLY."""
    redis = create_redis(_settings(endpoint))
    cache, locks = Cache(redis), TaskLocks(redis, ttl_ms=30_000)
    tenant, before, after = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        assert await locks.acquire(TaskType.LLM, before, "held")
        await _replicated(nodes[1], locks.key(TaskType.LLM, before))
        await _failover(endpoint, nodes, drop=drop)
        assert await _role(nodes[1]) == "master"
        # The lock taken before the failover survived it (it was replicated) ...
        assert not await locks.acquire(TaskType.LLM, before, "another worker")
        # ... and new writes land on the new primary.
        assert await locks.acquire(TaskType.LLM, after, "new")
        await cache.set_result(tenant, after, {"summary": "after"})
        assert await cache.get_result(tenant, after) == {"summary": "after"}
        assert (await cache.take_token(tenant, per_minute=60, burst=5)).allowed
    finally:
        await cache.close()
