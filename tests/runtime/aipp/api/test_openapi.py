"""docs/openapi.json is the document the API serves; a stale copy fails here."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from aipp.api.openapi import render

from ...conftest import ON_SESSION_LOOP

CHECKED_IN = Path(__file__).resolve().parents[4] / "docs" / "openapi.json"


def test_checked_in_openapi_is_current() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `make openapi` and commit the result"
    )


@ON_SESSION_LOOP
async def test_served_openapi_documents_the_contract(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert served == json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    paths = served["paths"]
    assert set(paths) == {
        "/v1/tasks",
        "/v1/tasks/{task_id}",
        "/v1/tasks/{task_id}/result",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    create = paths["/v1/tasks"]["post"]["requestBody"]["content"]
    assert set(create) == {"application/json", "multipart/form-data"}
    assert set(served["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
