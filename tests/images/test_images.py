"""What every image is: Debian bookworm's Python (the one the tests run on), uid 10001, a /tmp
that survives a read-only root file system, and the RDS CA bundle or, in a local-only build,
clearly none."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tests.images import podman
from tools.images import rds_ca

PROBE = (
    "import json, os, sys, tempfile\n"
    "with tempfile.NamedTemporaryFile(dir='/tmp') as f:\n"
    "    f.write(b'x' * 4096); f.flush(); tmp_ok = os.path.getsize(f.name) == 4096\n"
    "try:\n"
    "    open('/app/probe', 'w'); root_writable = True\n"
    "except OSError:\n"
    "    root_writable = False\n"
    "bundle = '/opt/aipp/certs/rds-global-bundle.pem'\n"
    "print(json.dumps({'python': sys.version_info[:2], 'exe': os.path.realpath(sys.executable),\n"
    "  'uid': os.getuid(), 'gid': os.getgid(), 'debian': open('/etc/debian_version').read().strip(),\n"
    "  'tmp_mode': oct(os.stat('/tmp').st_mode & 0o7777), 'tmp_ok': tmp_ok,\n"
    "  'root_writable': root_writable, 'build': os.environ.get('AIPP_BUILD'),\n"
    "  'bundle': open(bundle, 'rb').read().hex() if os.path.exists(bundle) else None}))\n"
)


@pytest.fixture(scope="module", params=podman.TARGETS)
def probe(request: pytest.FixtureRequest) -> tuple[str, dict]:
    target = request.param
    proc = podman.run_once(target, ["-c", PROBE], entrypoint="python")
    assert proc.returncode == 0, proc.stderr
    return target, json.loads(proc.stdout.strip().splitlines()[-1])


def test_debian_bookworm_python_of_the_tests(probe: tuple[str, dict]) -> None:
    target, facts = probe
    assert facts["debian"].startswith("12."), target
    assert tuple(facts["python"]) == sys.version_info[:2], target
    assert facts["exe"] == "/usr/bin/python3.11", target


def test_runs_as_uid_10001_on_a_read_only_root(probe: tuple[str, dict]) -> None:
    target, facts = probe
    assert (facts["uid"], facts["gid"]) == (podman.UID, podman.UID), target
    assert facts["root_writable"] is False, target
    assert podman.inspect(target)["Config"]["User"] == f"{podman.UID}:{podman.UID}"


@pytest.mark.parametrize("target", ["api", "worker"])
def test_tmp_is_a_volume_that_ecs_fills_with_a_sticky_world_writable_dir(target: str) -> None:
    """ECS copies a VOLUME path of the image into the task volume mounted there; without the
    declaration the Fargate volume is root-owned 0755 and uid 10001 cannot write to it."""
    assert "/tmp" in (podman.inspect(target)["Config"].get("Volumes") or {})


def test_tmp_is_writable_by_the_image_user(probe: tuple[str, dict]) -> None:
    target, facts = probe
    assert facts["tmp_ok"] is True, target
    assert facts["tmp_mode"] == "0o1777", target


def test_rds_ca_bundle_is_the_verified_one_or_absent_in_a_local_only_build(
    probe: tuple[str, dict],
) -> None:
    target, facts = probe
    label = podman.inspect(target)["Config"]["Labels"].get("com.aipp.build")
    assert label == facts["build"], target
    if facts["build"] == "release":
        shipped = bytes.fromhex(facts["bundle"])
        rds_ca.verify(shipped)
        local = Path(rds_ca.DEST)
        assert hashlib.sha256(shipped).digest() == hashlib.sha256(local.read_bytes()).digest()
    else:
        assert facts["build"] == "local-only", target
        assert facts["bundle"] is None, f"{target}: a local-only image must not carry a bundle"
