"""`make phase-diff ENV=<env> FROM=<n> TO=<n>`: moving one environment between phases, checked.

Synthesizes every step of the documented switch (docs/phase-switch.md) for the environment and
compares each step with the one before it (`tools.assembly_diff`). A switch that changes the
compute (ECS <-> EKS) is staged:

    FROM  ->  TO with transition FROM:expand   (new compute and queues beside the old)
          ->  TO with transition FROM:cutover  (new work and traffic to the new compute)
          ->  TO with transition FROM:retire   (old compute stack deleted first; old queues unread)
          ->  TO                               (old queues removed)

A switch within one compute (2 <-> 3) is one step. Each step must be safe on its own:

- no stateful resource is replaced, and none is removed except in the retire steps, and there
  only what nothing else read at the step before (drained and detached);
- no stack that stays deployed loses an output it reads, or has it point at a replaced resource.

Exit status 0 when every step passes, 1 when one does not (named, stateful losses first), 2 on
bad input. `--direct` compares FROM and TO in one jump instead (what *not* to do).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phases import ConfigError, Env, Phase, PhaseConfig
from phases.loader import deep_merge, parse_env, parse_overrides, parse_phase
from phases.models import TRANSITION_STEPS
from tools.assembly_diff import AssemblyDiff, diff_assemblies, load_assembly, references, report
from tools.synth_all import synth_one


@dataclass(frozen=True)
class Step:
    """One deploy of a switch: a phase, possibly mid-transition."""

    phase: Phase
    transition: str | None = None  # "<from phase>:<step>"

    @property
    def label(self) -> str:
        return f"phase {int(self.phase)}" + (f" ({self.transition})" if self.transition else "")

    @property
    def retires(self) -> bool:
        return self.transition is not None and self.transition.endswith(":retire")


def plan(start: Phase, end: Phase) -> list[Step]:
    """The documented sequence of deploys from `start` to `end`."""
    if PhaseConfig.compute_of(start) == PhaseConfig.compute_of(end):
        return [Step(start), Step(end)]
    staged = [Step(end, f"{int(start)}:{step}") for step in TRANSITION_STEPS]
    return [Step(start), *staged, Step(end)]


def _reads(templates: dict[str, dict[str, Any]]) -> dict[str, set[tuple[str, str]]]:
    """(producer stack, output) pairs each stack reads with Fn::GetStackOutput."""
    return {
        name: {(t, o) for t, o, kind in references(template) if kind == "output" and o}
        for name, template in templates.items()
    }


def _output_resources(templates: dict[str, dict[str, Any]], producer: str, output: str) -> set[str]:
    spec = templates.get(producer, {}).get("Outputs", {}).get(output, {})
    return {t for t, _, kind in references(spec) if kind is None}


def _read_resources(templates: dict[str, dict[str, Any]]) -> set[tuple[str, str]]:
    """(stack, logical id) of every resource another stack reads through an output."""
    return {
        (producer, resource)
        for consumer, outputs in _reads(templates).items()
        for producer, output in outputs
        if producer != consumer
        for resource in _output_resources(templates, producer, output)
    }


def check_step(
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
    diff: AssemblyDiff,
    *,
    retire_allowed: bool,
) -> list[str]:
    """What makes this deploy unsafe on its own, one line each (empty: safe).

    Outputs come and go with their readers (CDK writes an output only while a stack reads it),
    so an output disappearing is harmless; what is not is the resource behind an output being
    replaced or removed while a stack that stays deployed still uses the value it read.
    """
    problems = []
    read_before = _read_resources(before)
    for change in diff.stateful_losses:
        removable = (
            retire_allowed
            and change.action == "remove"
            and (change.stack, change.logical_id) not in read_before
        )
        if not removable:
            verb = "replaced" if change.action == "replace" else "removed"
            why = f" ({'; '.join(change.reasons)})" if change.reasons else ""
            problems.append(
                f"{change.stack}: {change.type} {change.logical_id} is {verb} "
                f"[{change.stateful}]{why}"
            )
    gone = {
        (c.stack, c.logical_id): c.action for c in diff.changes if c.action in ("replace", "remove")
    }
    for consumer, outputs in sorted(_reads(before).items()):
        if consumer not in after:
            continue  # retired: deleted before this deploy
        for producer, output in sorted(outputs):
            for resource in sorted(_output_resources(before, producer, output)):
                action = gone.get((producer, resource))
                if action:
                    problems.append(
                        f"{consumer} reads {producer}.{output}, and this step "
                        f"{'replaces' if action == 'replace' else 'removes'} {resource} behind it "
                        f"while {consumer} is still deployed with the old value"
                    )
    return problems


def synthesize(index: int, step: Step, env: Env, root: Path, overrides: dict[str, Any]) -> Path:
    """`<root>/<index>-phase<N>-<env>[-from<M>-<step>]`, one directory per step."""
    name = f"{index}-phase{int(step.phase)}-{env.value}"
    if step.transition:
        source, kind = step.transition.split(":")
        name += f"-from{source}-{kind}"
    outdir = root / name
    synth_one(int(step.phase), env.value, outdir, overrides=overrides, transition=step.transition)
    return outdir


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="staging | prod")
    parser.add_argument("--from", dest="start", required=True, help="the phase deployed now")
    parser.add_argument("--to", dest="end", required=True, help="the phase to move to")
    parser.add_argument(
        "--overrides",
        default="",
        help="the environment's own overrides (JSON or @file), applied to every step",
    )
    parser.add_argument(
        "--to-overrides", default="", help="extra overrides for the last step only (JSON or @file)"
    )
    parser.add_argument("--direct", action="store_true", help="compare FROM and TO in one jump")
    parser.add_argument("--out", type=Path, help="keep the assemblies here (default: temporary)")
    parser.add_argument("--json", action="store_true", help="machine-readable summary")
    return parser


def _synthesize_all(
    steps: list[Step], env: Env, root: Path, overrides: dict[str, Any], last: dict[str, Any]
) -> list[Path]:
    """Every step's assembly; the last step also gets `last` (a change under review)."""
    dirs = []
    for i, step in enumerate(steps, start=1):
        print(f"[{i}/{len(steps)}] synthesizing {step.label} / {env.value} ...", flush=True)
        extra = overrides if i < len(steps) else deep_merge(overrides, last)
        try:
            dirs.append(synthesize(i, step, env, root, extra))
        except RuntimeError as exc:  # CDK's own validation, raised through jsii
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{step.label}: {first}") from None
    return dirs


def _compare(steps: list[Step], dirs: list[Path], *, as_json: bool, env: Env) -> bool:
    """Print each step's verdict and diff; True when every step is safe on its own."""
    safe = True
    summary = []
    for i in range(1, len(steps)):
        before, after = load_assembly(dirs[i - 1]), load_assembly(dirs[i])
        diff = diff_assemblies(before, after)
        retire_allowed = steps[i].retires or steps[i - 1].retires
        problems = check_step(before, after, diff, retire_allowed=retire_allowed)
        safe &= not problems
        title = f"step {i}: {steps[i - 1].label} -> {steps[i].label}"
        summary.append({"step": title, "problems": problems})
        if not as_json:
            print(f"\n=== {title} ===")
            if problems:
                print(f"UNSAFE ({len(problems)}):")
                print("\n".join(f"  {p}" for p in problems))
            print(report(diff))
    if as_json:
        print(json.dumps({"env": env.value, "steps": summary}, indent=2))
    else:
        verdict = "every step is safe on its own" if safe else "UNSAFE: see the steps above"
        print(f"\n{env.value} {steps[0].label} -> {steps[-1].label}: {verdict}")
    return safe


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        env = parse_env(args.env)
        start, end = parse_phase(args.start), parse_phase(args.end)
        overrides = parse_overrides(args.overrides)
        to_overrides = parse_overrides(args.to_overrides)
        steps = [Step(start), Step(end)] if args.direct else plan(start, end)
        with tempfile.TemporaryDirectory(prefix="phase-diff-") as tmp:
            dirs = _synthesize_all(steps, env, args.out or Path(tmp), overrides, to_overrides)
            safe = _compare(steps, dirs, as_json=args.json, env=env)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if safe else 1


if __name__ == "__main__":
    sys.exit(main())
