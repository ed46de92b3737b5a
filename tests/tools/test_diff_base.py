"""`make diff-base`: real commits of a fixture app, each compared with the commit before it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import diff_base

FIXTURE = Path(__file__).resolve().parent / "fixture_app"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def commit(repo: Path, message: str, **settings: object) -> None:
    path = repo / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))
    git(repo, "commit", "--quiet", "--all", "--message", message)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three commits: the fixture app, a tag change, a bucket renamed (a replacement)."""
    repo = tmp_path_factory.mktemp("fixture") / "repo"
    shutil.copytree(FIXTURE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "--message", "the app")
    git(repo, "tag", "v1")
    commit(repo, "release two", release="two")
    git(repo, "tag", "v2")
    commit(repo, "rename the bucket", bucket="fixture-audio-renamed")
    return repo


def run(repo: Path, base: str, *pairs: str) -> tuple[int, str, str]:
    args = ["--repo", str(repo), "--base", base]
    for pair in pairs:
        args += ["--pair", pair]
    out = subprocess.run(
        [sys.executable, "-m", "tools.diff_base", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(diff_base.ROOT),
    )
    return out.returncode, out.stdout, out.stderr


def test_a_tag_change_is_a_modification_and_exits_zero(repo: Path) -> None:
    git(repo, "checkout", "--quiet", "v2")
    try:
        status, out, err = run(repo, "v1", "1:staging")
    finally:
        git(repo, "checkout", "--quiet", "main")
    assert status == 0, err
    assert out.splitlines()[2] == (
        "No stateful resource is replaced or removed in any phase x environment."
    )
    row = next(line for line in out.splitlines() if "Fixture-Staging-Data" in line)
    assert row.split()[-5:] == ["changed", "0", "2", "0", "0"]  # the bucket and the queue
    assert "[1/1] phase 1 / staging synthesized" in err  # progress on stderr, not in the report
    assert "synthesized" not in out


def test_a_stateful_replacement_is_called_out_first_and_exits_one(repo: Path) -> None:
    status, out, err = run(repo, "HEAD~1", "1:staging", "2:prod")
    assert status == 1, err
    lines = out.splitlines()
    assert lines[0].startswith("Offline diff: HEAD~1 (")
    assert lines[2] == "STATEFUL RESOURCES REPLACED OR REMOVED (2):"
    assert lines[3].startswith("  phase 1 / staging  Fixture-Staging-Data: REPLACE ")
    assert "AWS::S3::Bucket Audio" in lines[3] and "[stateful: stored objects]" in lines[3]
    assert lines[4].strip() == "BucketName changes (create-only)"
    assert lines[5].startswith("  phase 2 / prod  Fixture-Prod-Data: REPLACE ")
    # then every assembly's table row and report, with the queue untouched
    assert "=== phase 2 / prod ===" in out
    assert "AWS::SQS::Queue" not in out


def test_the_base_worktree_is_removed_afterwards(repo: Path) -> None:
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_an_unknown_ref_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert diff_base.main(["--repo", str(repo), "--base", "no-such-branch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: 'no-such-branch' is not a commit in ")
    assert len(err.splitlines()) == 1


def test_an_unknown_pair_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert diff_base.main(["--base", "HEAD", "--pair", "4:dev"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown pair '4:dev': choose from 1:staging")
