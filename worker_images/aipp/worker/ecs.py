"""ECS task scale-in protection while jobs are in flight (so step scaling never kills a job).

On ECS (`ECS_AGENT_URI` set) the worker PUTs `$ECS_AGENT_URI/task-protection/v1/state` with
`ProtectionEnabled: true` when it goes from idle to busy (renewed while busy) and `false` when it
is idle again for a moment. Elsewhere this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

log = logging.getLogger("aipp.worker.ecs")
EXPIRES_MINUTES = 60
RENEW_SECONDS = 25 * 60
IDLE_GRACE_SECONDS = 2.0


class ScaleInProtection:
    def __init__(self, agent_uri: str | None) -> None:
        self.url = f"{agent_uri.rstrip('/')}/task-protection/v1/state" if agent_uri else None
        self._busy = False
        self._changed = asyncio.Event()
        self._protected = False

    def set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self._changed.set()

    async def _put(self, client: httpx.AsyncClient, enabled: bool) -> bool:
        assert self.url is not None
        body: dict[str, object] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = EXPIRES_MINUTES
        try:
            response = await client.put(self.url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("scale-in protection not updated", extra={"error": repr(exc)})
            return False
        log.info("scale-in protection", extra={"enabled": enabled})
        return True

    async def run(self) -> None:
        """Keep the agent's state in line with busy/idle until cancelled."""
        if self.url is None:
            return
        async with httpx.AsyncClient(timeout=5.0) as client:
            try:
                while True:
                    timeout = RENEW_SECONDS if self._protected else None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout)
                    self._changed.clear()
                    if not self._busy and self._protected:
                        await asyncio.sleep(IDLE_GRACE_SECONDS)  # do not flap between jobs
                        if self._busy:
                            continue
                    if (self._busy or self._protected) and await self._put(client, self._busy):
                        self._protected = self._busy
            finally:
                if self._protected:
                    await asyncio.shield(self._put(client, False))
