"""docs/openapi.json is the document the API serves; a stale copy fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from aipp.api.openapi import render
from aipp.core.audio import accepted_content_types
from aipp.core.config import Settings

from ...conftest import ON_SESSION_LOOP

CHECKED_IN = Path(__file__).resolve().parents[4] / "docs" / "openapi.json"


def test_checked_in_openapi_is_current() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render(), (
        "docs/openapi.json is stale: run `make openapi` and commit the result"
    )


def _deployment_limits(document: dict[str, Any]) -> dict[str, Any]:
    """Take out (and return) the values that come from the deployment's settings."""
    create = document["components"]["schemas"]["CreateTaskRequest"]["properties"]
    file = document["paths"]["/v1/tasks"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "schema"
    ]["properties"]["file"]
    return {
        "content_types": create["content_type"].pop("enum"),
        "max_upload_bytes": create["size_bytes"].pop("maximum"),
        "max_multipart_bytes": file.pop("maxLength"),
    }


@ON_SESSION_LOOP
async def test_served_openapi_documents_the_contract(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    served = (await client.get("/openapi.json")).json()
    checked_in = json.loads(CHECKED_IN.read_text(encoding="utf-8"))
    limits = _deployment_limits(served)
    assert limits == {
        "content_types": list(accepted_content_types(settings.allowed_content_types)),
        "max_upload_bytes": settings.max_upload_bytes,
        "max_multipart_bytes": settings.max_multipart_bytes,
    }
    assert _deployment_limits(checked_in)["max_upload_bytes"] == Settings().max_upload_bytes
    assert served == checked_in
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
