"""`make diff-base BASE=<git ref>`: what the working tree changes, in every phase x environment.

Checks the base ref out into a temporary `git worktree`, synthesizes it and the working tree
(each with its own code, one after the other in one process: `tools/synth_tree.py`) for every
phase x environment, and compares each pair of assemblies with `tools.assembly_diff`: per stack,
the resources added, modified, replaced and removed, with every stateful resource that would be
replaced or removed listed first, across all assemblies. Progress goes to stderr, the report to
stdout (CI posts it on the pull request: .github/scripts/offline-diff-comment.sh).

Both sides run with this checkout's installed packages (.venv): a base that needs other
versions of aws-cdk-lib or cdk-nag is synthesized with these.

Exit status:
    0  no stateful resource replaced or removed in any assembly
    1  at least one would be (listed first)
    2  bad input (unknown ref, not a git checkout) or a side failed to synthesize
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from phases import Env, Phase
from tools.assembly_diff import (
    ACTIONS,
    AssemblyDiff,
    AssemblyError,
    diff_assemblies,
    load_assembly,
    report,
)

ROOT = Path(__file__).resolve().parent.parent
SYNTH_TREE = Path(__file__).resolve().parent / "synth_tree.py"
PAIRS = [f"{int(phase)}:{env.value}" for phase in Phase for env in Env]


class DiffBaseError(RuntimeError):
    """Something the user can fix, in one line."""


@dataclass(frozen=True)
class PairDiff:
    pair: str  # "<phase>:<env>"
    diff: AssemblyDiff

    @property
    def label(self) -> str:
        phase, env = self.pair.split(":", 1)
        return f"phase {phase} / {env}"


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(  # noqa: S603 - git with arguments we built
        ["git", "-C", str(repo), *args],  # noqa: S607 - git from PATH, as the user runs it
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DiffBaseError(f"git {args[0]}: {message}")
    return result.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The commit `ref` names in `repo`, or a one-line error."""
    git(repo, "rev-parse", "--git-dir")
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except DiffBaseError:
        raise DiffBaseError(
            f"{ref!r} is not a commit in {repo} (a branch, tag or sha; in CI fetch it first)"
        ) from None


@contextmanager
def checkout(repo: Path, commit: str, where: Path) -> Iterator[Path]:
    """`commit` checked out (detached) at `where` as a temporary worktree of `repo`."""
    git(repo, "worktree", "add", "--detach", "--quiet", str(where), commit)
    try:
        yield where
    finally:
        git(repo, "worktree", "remove", "--force", str(where))


def synthesize(trees: Sequence[tuple[str, Path, Path]], pairs: Sequence[str]) -> None:
    """Synthesize each (label, checkout, out root), one after the other in one process (one
    jsii runtime for all); progress on stderr."""
    args = [str(SYNTH_TREE), "--pairs", ",".join(pairs)]
    for label, tree, out in trees:
        args += ["--tree", label, str(tree), str(out)]
    # An app's own prints are progress too: stdout is the report's.
    status = subprocess.run([sys.executable, *args], stdout=sys.stderr, check=False).returncode  # noqa: S603
    if status != 0:
        raise DiffBaseError("a side did not synthesize (its error is above)")


def compare(base_out: Path, head_out: Path, pairs: Sequence[str]) -> list[PairDiff]:
    diffs = []
    for pair in pairs:
        phase, env = pair.split(":", 1)
        name = f"phase{phase}-{env}"
        try:
            old, new = load_assembly(base_out / name), load_assembly(head_out / name)
        except AssemblyError as exc:
            raise DiffBaseError(str(exc)) from None
        diffs.append(PairDiff(pair, diff_assemblies(old, new)))
    return diffs


def render(title: str, diffs: Sequence[PairDiff]) -> str:
    """Stateful losses of every assembly first, then a per-stack table, then each report."""
    lines = [title, ""]
    losses = [(d, c) for d in diffs for c in d.diff.stateful_losses]
    if losses:
        lines.append(f"STATEFUL RESOURCES REPLACED OR REMOVED ({len(losses)}):")
        for d, change in losses:
            lines.append(f"  {d.label}  {change.stack}: {change.line()}")
    else:
        lines.append("No stateful resource is replaced or removed in any phase x environment.")
    lines += ["", _table(diffs)]
    for d in diffs:
        if any(s.status != "unchanged" for s in d.diff.stacks):
            lines += ["", f"=== {d.label} ===", report(d.diff)]
    return "\n".join(lines)


def _table(diffs: Sequence[PairDiff]) -> str:
    header = f"{'assembly':<20}{'stack':<28}{'status':<11}" + "".join(
        f"{label:>10}" for _, label in ACTIONS
    )
    rows = [header, "-" * len(header)]
    for d in diffs:
        changed = [s for s in d.diff.stacks if s.status != "unchanged"]
        if not changed:
            rows.append(f"{d.label:<20}{'(every stack)':<28}unchanged")
        for s in changed:
            counts = "".join(f"{s.count(action):>10}" for action, _ in ACTIONS)
            rows.append(f"{d.label:<20}{s.name:<28}{s.status:<11}{counts}")
    return "\n".join(rows)


def run(repo: Path, ref: str, pairs: Sequence[str], keep: Path | None = None) -> tuple[str, int]:
    """The report and the exit status for `ref` against the working tree of `repo`."""
    commit = resolve(repo, ref)
    started = time.perf_counter()
    print(
        f"==> diff-base: {ref} ({commit[:12]}) -> the working tree, {len(pairs)} assemblies each",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="diff-base-") as tmp:
        root = keep or Path(tmp) / "assemblies"
        with checkout(repo, commit, Path(tmp) / "checkout") as base:
            synthesize([("base", base, root / "base"), ("head", repo, root / "head")], pairs)
        diffs = compare(root / "base", root / "head", pairs)
    print(f"==> compared in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    title = f"Offline diff: {ref} ({commit[:12]}) -> working tree"
    status = 1 if any(d.diff.stateful_losses for d in diffs) else 0
    return render(title, diffs), status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the git ref to compare against")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout (default: this one)")
    parser.add_argument(
        "--pair",
        action="append",
        metavar="PHASE:ENV",
        help=f"only this phase:env (repeatable; default: {' '.join(PAIRS)})",
    )
    parser.add_argument("--out", type=Path, help="keep the assemblies here (base/, head/)")
    args = parser.parse_args(argv)
    pairs = args.pair or PAIRS
    bad = [p for p in pairs if p not in PAIRS]
    if bad:
        print(f"error: unknown pair {bad[0]!r}: choose from {', '.join(PAIRS)}", file=sys.stderr)
        return 2
    try:
        text, status = run(args.repo.resolve(), args.base, pairs, args.out)
    except DiffBaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
