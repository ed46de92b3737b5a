"""docker-compose.yml: valid against the Compose specification (offline, check-jsonschema's
vendored schema), and the same dev pipeline `make dev` runs (worker_images/dev-api.sh)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from aipp.core.config import Settings

from aipp_contract.env import env_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
CHECK = [
    str(Path(sys.executable).parent / "check-jsonschema"),
    "--builtin-schema",
    "vendor.compose-spec",
]


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


def test_the_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = subprocess.run([*CHECK, str(COMPOSE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("service_healthy", "when_it_feels_like_it"))
    refused = subprocess.run([*CHECK, str(broken)], capture_output=True, text=True, check=False)
    assert refused.returncode != 0  # the check can fail


def test_it_runs_what_make_dev_runs() -> None:
    """PostgreSQL, Redis, moto, the API, a worker with the local providers and the S3 events."""
    found = services()
    assert set(found) == {
        "postgres",
        "redis",
        "moto",
        "migrate",
        "init-aws",
        "api",
        "worker",
        "s3-events",
    }
    script = (ROOT / "worker_images" / "dev-api.sh").read_text()
    for name in ("AIPP_STT_PROVIDER", "AIPP_LLM_PROVIDER"):
        (default,) = re.findall(rf"{name}=\$\{{{name}:-(\w+)\}}", script)
        assert found["worker"]["environment"][name] == default
    assert found["s3-events"]["entrypoint"] == ["python", "-m", "aipp.dev.s3_events"]
    assert "aipp.dev.s3_events" in script


def test_every_variable_is_one_the_runtime_reads() -> None:
    """Every name is a setting (a misspelt `AIPP_` one would stop the runtime at start)."""
    known = {env_name(name) for name in Settings.model_fields}
    known |= {"AWS_SECRET_ACCESS_KEY"}  # boto3's own
    for name, service in services().items():
        if name in ("postgres", "redis", "moto"):
            continue
        assert set(service["environment"]) <= known, name


def test_moto_runs_with_the_fixes_make_dev_runs_it_with() -> None:
    """The same module as `make dev`, from the mounted source, on the moto version the tests
    use: the image's tag is the version requirements-dev.txt pins."""
    moto = services()["moto"]
    assert moto["entrypoint"][:3] == ["python", "-m", "aipp.dev.moto_server"]
    assert '"$PY" -m aipp.dev.moto_server' in (ROOT / "worker_images" / "dev-api.sh").read_text()
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in moto["volumes"])
    package = Path(moto["environment"]["PYTHONPATH"]) / "aipp"
    assert mounts == {"./worker_images/aipp": str(package)}
    assert (ROOT / "worker_images" / "aipp" / "dev" / "moto_server.py").is_file()
    (pinned,) = re.findall(
        r"^moto\[server\]==(\S+)$", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE
    )
    assert moto["image"] == f"motoserver/moto:{pinned}"
