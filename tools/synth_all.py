"""`make synth`: every implemented phase x environment into `cdk.out/phase<N>-<env>/`, and the
delivery pipeline (`config/delivery.example.json`) into `cdk.out/delivery/`.

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
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from app import build_app, build_delivery_app, cdk_json_context
from phases import ConfigError, Env, Phase, PhaseConfig
from phases.loader import deep_merge, example_overrides

ROOT = Path(__file__).resolve().parent.parent
DELIVERY_EXAMPLE = "@config/delivery.example.json"


@dataclass(frozen=True)
class SynthResult:
    phase: int | None  # None: the delivery pipeline, which deploys every environment
    env: str
    outdir: Path
    stacks: int
    resources: int
    findings: list[str]
    seconds: float
    config: PhaseConfig | None = None


def synth_one(
    phase: int,
    env: str,
    outdir: Path,
    *,
    overrides: dict[str, Any] | None = None,
    transition: str | None = None,
    examples: bool = True,
) -> SynthResult:
    """Synthesize one phase/env (the environment's example overrides unless `examples` is
    False, then `overrides`, and a `transition` step if given) into `outdir`, and count what is
    left for cdk-nag to say."""
    started = time.perf_counter()
    context: dict[str, Any] = {**cdk_json_context(), "phase": str(phase), "env": env}
    merged = deep_merge(example_overrides(Env(env)) if examples else {}, overrides or {})
    if merged:
        context["overrides"] = json.dumps(merged)
    if transition:
        context["transition"] = transition
    app = cdk.App(outdir=str(outdir), context=context)
    config, _ = build_app(app, nag=False)
    return _checked(app, phase, env, outdir, started, config=config)


def synth_delivery(outdir: Path, delivery: str = DELIVERY_EXAMPLE) -> SynthResult:
    """The delivery pipeline app (`-c delivery=`) into `outdir`, checked like the others."""
    started = time.perf_counter()
    context: dict[str, Any] = {**cdk_json_context(), "delivery": delivery}
    app = cdk.App(outdir=str(outdir), context=context)
    build_delivery_app(app, nag=False)
    return _checked(app, None, "delivery", outdir, started)


def _checked(
    app: cdk.App,
    phase: int | None,
    env: str,
    outdir: Path,
    started: float,
    *,
    config: PhaseConfig | None = None,
) -> SynthResult:
    """cdk-nag's findings left on `app`, then its assembly, counted."""
    report = AwsSolutionsChecks().validate_scope(app)
    findings = [
        f"{violation.rule_name}: {resource.resource_logical_id or resource.construct_path}"
        f" ({', '.join(resource.locations or [])})"
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
        config=config,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cdk.out", help="output root")
    parser.add_argument(
        "--phase",
        action="append",
        choices=[str(int(p)) for p in Phase],
        help="only this phase (and not the delivery pipeline)",
    )
    args = parser.parse_args(argv)

    phases = [int(p) for p in args.phase] if args.phase else [int(p) for p in Phase]
    combos: list[tuple[int | None, str]] = [(p, env.value) for p in phases for env in Env]
    if not args.phase:
        combos.append((None, "delivery"))
    results: list[SynthResult] = []
    for i, (phase, env) in enumerate(combos, start=1):
        what = f"phase {phase} / {env}" if phase else "the delivery pipeline"
        print(f"[{i}/{len(combos)}] synthesizing {what} ...", flush=True)
        try:
            results.append(
                synth_one(phase, env, args.out / f"phase{phase}-{env}")
                if phase
                else synth_delivery(args.out / "delivery")
            )
        except ConfigError as exc:
            print(f"error: {what}: {exc}", file=sys.stderr)
            return 2

    header = f"{'phase':<6}{'env':<9}{'stacks':>7}{'resources':>11}{'nag findings left':>19}"
    header += f"{'seconds':>9}  assembly"
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        where = r.outdir.relative_to(ROOT) if r.outdir.is_relative_to(ROOT) else r.outdir
        print(
            f"{r.phase or '-':<6}{r.env:<9}{r.stacks:>7}{r.resources:>11}{len(r.findings):>19}"
            f"{r.seconds:>9.1f}  {where}"
        )
    left = [f"phase {r.phase or '-'}/{r.env}: {f}" for r in results for f in r.findings]
    if left:
        print(f"\n{len(left)} cdk-nag finding(s) left:", file=sys.stderr)
        for line in left:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
