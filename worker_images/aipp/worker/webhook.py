"""The optional completion webhook: one POST per task that reaches `completed` or `failed`.

Sent by the worker whose compare-and-set made the change, so at most once per task; delivery is
best effort (three tries) and never changes the task. With AIPP_WEBHOOK_SECRET the receiver can
check `X-AIPP-Signature: sha256=<hex HMAC-SHA256 of "<X-AIPP-Timestamp>.<body>">`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from aipp.core.models import Task

log = logging.getLogger("aipp.worker.webhook")
SIGNATURE_HEADER = "X-AIPP-Signature"
TIMESTAMP_HEADER = "X-AIPP-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def payload(task: Task) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": f"task.{task.state.value}",
        "task": {
            "id": str(task.id),
            "tenant_id": str(task.tenant_id),
            "state": task.state.value,
            "created_at": task.created_at.isoformat(),
            "updated_at": task.updated_at.isoformat(),
        },
    }
    if task.error_code:
        data["task"]["error"] = {"code": task.error_code, "message": task.error_message or ""}
    return data


class Webhook:
    def __init__(self, url: str, secret: str | None, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.http = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, task: Task) -> bool:
        body = json.dumps(payload(task), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        for attempt in range(3):
            try:
                response = await self.http.post(self.url, content=body, headers=headers)
                if response.status_code < 300:
                    return True
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5 * 2**attempt)
        log.warning("webhook not delivered", extra={"task_id": str(task.id)})
        return False
