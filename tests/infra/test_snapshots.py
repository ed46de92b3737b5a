"""One syrupy snapshot per stack of phase 1 x {staging, prod}, stable against asset hashes.

After an intended change: `make snapshot-update`, then read the diff before committing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

import cdk_constructs.images
from cdk_constructs.paths import REPO_ROOT
from tests.infra.conftest import HASH, Assembly, normalize, synthesize

STACKS = ["Network", "Edge", "Data", "Messaging", "Pipeline", "Observability", "Compute"]
COMBOS = [(p, e) for p in ("1", "2", "3") for e in ("staging", "prod")]


@pytest.fixture
def json_snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize(("phase", "env"), COMBOS)
@pytest.mark.parametrize("stack", STACKS)
def test_stack_matches_snapshot(
    assemble: Callable[..., Assembly],
    json_snapshot: SnapshotAssertion,
    phase: str,
    env: str,
    stack: str,
) -> None:
    templates = assemble(phase, env).templates
    if stack == "Compute":
        stack = "ComputeEcs" if phase == "1" else "ComputeEks"
    assert normalize(templates[stack]) == json_snapshot


def test_snapshots_ignore_runtime_sources(
    assemble: Callable[..., Assembly],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Changing only the Dockerfile or a Lambda source changes asset hashes, nothing else."""
    baseline = assemble("1", "staging")
    copy = tmp_path / "repo"
    for folder in ("worker_images", "lambda_src"):
        shutil.copytree(
            REPO_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO_ROOT / ".dockerignore", copy / ".dockerignore")
    dockerfile = copy / "worker_images" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "\n# a change that only rebuilds images\n")
    handler = copy / "lambda_src" / "upload_handler" / "handler.py"
    handler.write_text(handler.read_text() + "\n# a change to the handler only\n")
    monkeypatch.setattr(cdk_constructs.images, "REPO_ROOT", copy)

    changed = synthesize(tmp_path / "out")

    hashes = {s: set(HASH.findall(str(t))) for s, t in changed.templates.items()}
    before = {s: set(HASH.findall(str(t))) for s, t in baseline.templates.items()}
    assert hashes != before, "the image asset hash should follow the Dockerfile"
    assert normalize(changed.templates) == normalize(baseline.templates)
