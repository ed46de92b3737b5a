"""`make synth`: every implemented phase x environment into `cdk.out/phase<N>-<env>/`.

An environment's documented example overrides (`config/<env>.example.json`: prod's alarm
address, certificate) are applied, as a real deployment would apply its own.

Builds each cloud assembly in this one process (one jsii runtime for all of them), runs
cdk-nag's AwsSolutions checks on it, and prints one table. Exits non-zero when any assembly
fails to build or has a nag finding left.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from app import build_app, cdk_json_context
from phases import ConfigError, Env
from phases.loader import example_overrides
from stacks import IMPLEMENTED_PHASES, PhaseNotBuiltError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SynthResult:
    phase: int
    env: str
    outdir: Path
    stacks: int
    resources: int
    findings: list[str]
    seconds: float


def synth_one(phase: int, env: str, outdir: Path) -> SynthResult:
    """Synthesize one phase/env into `outdir` and count what is left for cdk-nag to say."""
    started = time.perf_counter()
    context = {**cdk_json_context(), "phase": str(phase), "env": env}
    example = example_overrides(Env(env))
    if example:
        context["overrides"] = json.dumps(example)
    app = cdk.App(outdir=str(outdir), context=context)
    build_app(app, nag=False)
    report = AwsSolutionsChecks().validate_scope(app)
    findings = [
        f"{violation.rule_name}: {resource.resource_logical_id} ({', '.join(resource.locations)})"
        for violation in report.violations
        for resource in violation.violating_resources
    ]
    assembly = app.synth()
    resources = sum(
        len(json.loads(Path(stack.template_full_path).read_text()).get("Resources", {}))
        for stack in assembly.stacks
    )
    return SynthResult(
        phase=phase,
        env=env,
        outdir=outdir,
        stacks=len(assembly.stacks),
        resources=resources,
        findings=findings,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cdk.out", help="output root")
    args = parser.parse_args(argv)

    combos = [(int(phase), env.value) for phase in IMPLEMENTED_PHASES for env in Env]
    results: list[SynthResult] = []
    for i, (phase, env) in enumerate(combos, start=1):
        print(f"[{i}/{len(combos)}] synthesizing phase {phase} / {env} ...", flush=True)
        try:
            results.append(synth_one(phase, env, args.out / f"phase{phase}-{env}"))
        except (ConfigError, PhaseNotBuiltError) as exc:
            print(f"error: phase {phase} / {env}: {exc}", file=sys.stderr)
            return 2

    header = f"{'phase':<6}{'env':<9}{'stacks':>7}{'resources':>11}{'nag findings left':>19}"
    header += f"{'seconds':>9}  assembly"
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        where = r.outdir.relative_to(ROOT) if r.outdir.is_relative_to(ROOT) else r.outdir
        print(
            f"{r.phase:<6}{r.env:<9}{r.stacks:>7}{r.resources:>11}{len(r.findings):>19}"
            f"{r.seconds:>9.1f}  {where}"
        )
    left = [f"phase {r.phase}/{r.env}: {f}" for r in results for f in r.findings]
    if left:
        print(f"\n{len(left)} cdk-nag finding(s) left:", file=sys.stderr)
        for line in left:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
