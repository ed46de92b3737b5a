"""What one request costs the services behind the API, counted on the real ones (PostgreSQL,
Redis, moto): the hot paths make one database round trip each and at most one Redis round trip
(the rate limit, leased a few tokens at a time, so a busy key makes far fewer), and presigning
an upload URL makes no call at all. A change that adds a call fails here (`make bench-api`
measures what the calls cost)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aipp.core.db import Database
from aipp.dev.calls import CallCounter

from ...conftest import ON_SESSION_LOOP, new_key, wav_bytes

pytestmark = ON_SESSION_LOOP

UPLOAD = {"filename": "call.mp3", "content_type": "audio/mpeg", "size_bytes": 4096}
# Calls per request once the key is known (the auth cache holds it), by service: at most.
BUDGET = {
    "create-task": {"db": 1, "redis": 1},
    "get-task": {"db": 1, "redis": 1},
}


def within(services: dict[str, int], budget: dict[str, int]) -> bool:
    return set(services) <= set(budget) and all(services[s] <= budget[s] for s in services)


@pytest.fixture
def counter() -> Iterator[CallCounter]:
    counting = CallCounter().install()
    try:
        yield counting
    finally:
        counting.uninstall()


async def test_create_and_get_stay_within_their_call_budget(
    client: httpx.AsyncClient, db: Database, counter: CallCounter
) -> None:
    auth = await new_key(db)
    warm = await client.post("/v1/tasks", json=UPLOAD, headers=auth)  # the key's first lookup
    assert warm.status_code == 201, warm.text

    counter.reset()
    created = await client.post("/v1/tasks", json=UPLOAD, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["upload"]["url"]
    calls = counter.snapshot()["services"]
    assert calls["db"] == 1 and within(calls, BUDGET["create-task"]), calls

    counter.reset()
    got = await client.get(f"/v1/tasks/{created.json()['id']}", headers=auth)
    assert got.status_code == 200, got.text
    calls = counter.snapshot()["services"]
    assert calls["db"] == 1 and within(calls, BUDGET["get-task"]), calls

    # A key in steady use: one database call per request, and a Redis call per lease of
    # tokens (1, 2, 4, 8, then a tenth of the default burst of 100), not per request.
    counter.reset()
    for _ in range(30):
        assert (await client.get(f"/v1/tasks/{created.json()['id']}", headers=auth)).is_success
    calls = counter.snapshot()["services"]
    assert calls["db"] == 30 and calls.get("redis", 0) <= 5, calls


async def test_the_counter_sees_every_kind_of_call(
    client: httpx.AsyncClient, db: Database, counter: CallCounter
) -> None:
    """The counts above can only be trusted if each hook fires: a request that touches all
    four services is seen in each of them, and each call seen is timed."""
    auth = await new_key(db)
    counter.reset()
    response = await client.post(
        "/v1/tasks",
        files={"file": ("memo.wav", wav_bytes(), "audio/wav")},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    snapshot = counter.snapshot()
    seen = snapshot["operations"]
    assert set(snapshot["seconds"]) == set(seen), snapshot
    assert all(seconds > 0 for seconds in snapshot["seconds"].values()), snapshot
    assert seen.get("s3:PutObject", 0) >= 1, seen
    assert seen.get("sqs:SendMessage", 0) == 1, seen
    assert sum(n for op, n in seen.items() if op.startswith("db:")) >= 1, seen
    assert sum(n for op, n in seen.items() if op.startswith("redis:")) >= 1, seen
