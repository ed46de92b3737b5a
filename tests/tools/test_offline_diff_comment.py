"""CI's diff comment (.github/scripts/offline-diff-comment.sh): one comment per pull request,
edited in place on each push, holding the report of `make diff-base`, and the diff's status.

`make` and `gh` are stand-ins on PATH: `make` answers as `make diff-base` does (report on
stdout, progress on stderr, its exit status), `gh` keeps the pull request's comments in a file.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_constructs.paths import REPO_ROOT

SCRIPT = REPO_ROOT / ".github" / "scripts" / "offline-diff-comment.sh"
MARKER = "<!-- aipp-offline-diff -->"

FAKE_MAKE = """#!/usr/bin/env bash
[[ "$*" == "--no-print-directory diff-base BASE=origin/main" ]] || { echo "make: unexpected $*" >&2; exit 99; }
echo "  base: [1/6] phase 1 / staging synthesized in 3.0 s" >&2
[[ $FAKE_STATUS == 2 ]] && { echo "error: 'origin/main' is not a commit" >&2; exit 2; }
printf '%s\\n' "$FAKE_REPORT"
exit "$FAKE_STATUS"
"""

# The comments of the pull request live in $FAKE_GH_STATE: [{id, user: {type}, body}].
FAKE_GH = f"""#!{sys.executable}
import json, os, sys
state = os.environ["FAKE_GH_STATE"]
comments = json.load(open(state))
args = sys.argv[1:]
assert args[0] == "api", args
if "--paginate" in args:  # list: the script's --jq filter, applied here
    for c in comments:
        if c["user"]["type"] == "Bot" and c["body"].startswith({MARKER!r}):
            print(c["id"])
    sys.exit(0)
method, path = args[args.index("--method") + 1], args[args.index("--method") + 2]
body = open(args[args.index("-F") + 1].removeprefix("body=@")).read()
if method == "POST":
    assert path == "repos/acme/aipp/issues/7/comments", path
    comments.append({{"id": 100 + len(comments), "user": {{"type": "Bot"}}, "body": body}})
else:
    assert method == "PATCH", method
    target = int(path.rsplit("/", 1)[1])
    next(c for c in comments if c["id"] == target)["body"] = body
json.dump(comments, open(state, "w"))
"""


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A pull request with one comment by a person; returns the comments file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "make", FAKE_MAKE)
    executable(bin_dir / "gh", FAKE_GH)
    state = tmp_path / "comments.json"
    state.write_text(json.dumps([{"id": 1, "user": {"type": "User"}, "body": "looks good"}]))
    return state


def post(state: Path, status: int, report: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{state.parent / 'bin'}:{os.environ['PATH']}",
        "FAKE_GH_STATE": str(state),
        "FAKE_STATUS": str(status),
        "FAKE_REPORT": report,
        "BASE_REF": "main",
        "PR_NUMBER": "7",
        "GH_TOKEN": "unused",
        "GITHUB_REPOSITORY": "acme/aipp",
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False
    )


def bot_comments(state: Path) -> list[str]:
    return [c["body"] for c in json.loads(state.read_text()) if c["user"]["type"] == "Bot"]


def test_one_comment_is_posted_then_edited_with_the_diffs_status(pull_request: Path) -> None:
    replaced = "Offline diff: origin/main (abc) -> working tree\n\nSTATEFUL RESOURCES REPLACED OR REMOVED (1):"
    first = post(pull_request, 1, replaced)
    assert first.returncode == 1, first.stderr
    (body,) = bot_comments(pull_request)
    assert body.startswith(MARKER)
    assert "A stateful resource would be replaced or removed" in body
    assert "STATEFUL RESOURCES REPLACED OR REMOVED (1):" in body
    assert "synthesized in" not in body  # progress stays in the job's log
    assert "synthesized in" in first.stderr

    second = post(pull_request, 0, "Offline diff: origin/main (def) -> working tree\n\nNo stateful")
    assert second.returncode == 0, second.stderr
    (body,) = bot_comments(pull_request)  # the same comment, edited
    assert "No stateful resource would be replaced or removed." in body
    assert "(def)" in body and "(abc)" not in body
    assert json.loads(pull_request.read_text())[0]["body"] == "looks good"


def test_a_failed_diff_says_so_with_its_last_words(pull_request: Path) -> None:
    result = post(pull_request, 2, "")
    assert result.returncode == 2
    (body,) = bot_comments(pull_request)
    assert "`make diff-base` failed (exit 2): no diff." in body
    assert "error: 'origin/main' is not a commit" in body
