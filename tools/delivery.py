"""What the delivery pipeline's build steps run (stacks/delivery.py); each also works by hand.

`python -m tools.delivery synth --delivery @config/delivery.json --out cdk.out`
    Every environment of the delivery config, at its phase, with its overrides, in its account
    and region, into `<out>/<env>/`: the same cloud assembly `cdk synth -c phase= -c env=
    -c overrides=` makes for a hand deploy (and that `make diff-base` reviews). cdk-nag's
    findings fail it, as in `make synth`. Beside each assembly, `<out>/<env>.plan.json` tells
    the smoke step what to expect: the stack whose outputs name the API, how long the release
    may take, the smoke tenant's secret.

`python -m tools.delivery smoke --plan <out>/staging.plan.json --outputs outputs.json`
    tools/smoke.py against the environment just deployed, from its plan and the outputs
    `cdk deploy --outputs-file` wrote (`ApiUrl`, `ApiRelease` of the serving compute stack).

Exit status: 0 done; 1 cdk-nag findings left, or the smoke task failed; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from phases import ConfigError, Env, PhaseConfig
from phases.delivery import DeliveryConfig, load_delivery
from tools import smoke
from tools.synth_all import synth_one

# How long the API may take to give all of its traffic to a new release, beyond the canary's
# pauses (new pods start, pass readiness, the ALB registers them).
RELEASE_MARGIN_SECONDS = 15 * 60


@dataclass(frozen=True)
class Plan:
    """What the smoke step after an environment's deploy checks."""

    env: str
    phase: int
    serving_stack: str  # the compute stack whose ApiUrl / ApiRelease outputs to use
    smoke_secret: str
    smoke_timeout_seconds: int
    api_url: str | None = None  # instead of the ApiUrl output
    release_wait_seconds: int | None = None  # None: mid-switch, two releases share the address


def release_wait_seconds(config: PhaseConfig) -> int | None:
    """Until the new release takes all of the API's traffic: the canary's pauses on EKS; on
    ECS CloudFormation already waited for the rolling update. None during a staged switch."""
    if config.transition is not None:
        return None
    eks = config.eks
    if config.compute != "eks" or eks is None:
        return RELEASE_MARGIN_SECONDS
    return eks.canary_pause_minutes * 60 * (len(eks.canary_steps) - 1) + RELEASE_MARGIN_SECONDS


def serving_stack(config: PhaseConfig) -> str:
    """The compute stack that serves the API (during a switch: the one with more traffic)."""
    compute = max(config.computes, key=lambda c: (config.traffic_percent(c), c == config.compute))
    return f"{config.stack_prefix}-Compute{compute.capitalize()}"


def plan_for(delivery: DeliveryConfig, env: Env) -> Plan:
    environment = delivery.environment(env)
    config = environment.platform(env)
    return Plan(
        env=env.value,
        phase=int(config.phase),
        serving_stack=serving_stack(config),
        smoke_secret=environment.smoke.secret_name or f"{config.project}/{env.value}/smoke-api-key",
        smoke_timeout_seconds=environment.smoke.timeout_minutes * 60,
        api_url=environment.api_url,
        release_wait_seconds=release_wait_seconds(config),
    )


def synth(delivery: DeliveryConfig, out: Path) -> list[str]:
    """Every environment's assembly and plan into `out`; the cdk-nag findings left."""
    left = []
    for env in Env:
        environment = delivery.environment(env)
        print(f"==> {env.value}: phase {int(environment.phase)}", flush=True)
        result = synth_one(
            int(environment.phase),
            env.value,
            out / env.value,
            overrides=environment.placed_overrides(),
            examples=False,
        )
        left += [f"{env.value}: {finding}" for finding in result.findings]
        plan = plan_for(delivery, env)
        manifest = json.loads((out / env.value / "manifest.json").read_text())
        missing = [m["key"] for m in manifest.get("missing", [])]
        if missing:  # CDK put placeholders where a lookup would have answered
            raise ConfigError(f"{env.value}: the assembly needs AWS lookups: {', '.join(missing)}")
        if plan.serving_stack not in manifest["artifacts"]:
            raise ConfigError(f"{env.value}: no stack {plan.serving_stack} in the assembly")
        (out / f"{env.value}.plan.json").write_text(json.dumps(asdict(plan), indent=2) + "\n")
        print(f"    {result.stacks} stacks, {result.resources} resources -> {out / env.value}")
    return left


def smoke_arguments(plan: Plan, outputs: dict[str, dict[str, str]]) -> list[str]:
    """tools/smoke.py's command line for a deployed environment."""
    stack = outputs.get(plan.serving_stack, {})
    url = plan.api_url or stack.get("ApiUrl")
    if not url:
        raise ConfigError(f"no ApiUrl output of {plan.serving_stack} in the deploy's outputs")
    argv = ["--url", url, "--api-key-secret", plan.smoke_secret]
    argv += ["--timeout", str(plan.smoke_timeout_seconds)]
    if plan.release_wait_seconds is not None:
        release = stack.get("ApiRelease")
        if not release:
            raise ConfigError(f"no ApiRelease output of {plan.serving_stack} in the outputs")
        argv += ["--release", release, "--release-timeout", str(plan.release_wait_seconds)]
    return argv


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("synth", help="every environment's assembly and smoke plan")
    make.add_argument("--delivery", required=True, help="the delivery config: @file or JSON")
    make.add_argument("--out", type=Path, default=Path("cdk.out"), help="output root")
    check = commands.add_parser("smoke", help="the smoke task against a deployed environment")
    check.add_argument("--plan", type=Path, required=True, help="<out>/<env>.plan.json")
    check.add_argument("--outputs", type=Path, required=True, help="cdk deploy --outputs-file")
    args = parser.parse_args(argv)
    try:
        if args.command == "synth":
            left = synth(load_delivery(args.delivery), args.out)
            if left:
                print(f"{len(left)} cdk-nag finding(s) left:", file=sys.stderr)
                print("\n".join(f"  {line}" for line in left), file=sys.stderr)
                return 1
            return 0
        plan = Plan(**_read_json(args.plan, "plan"))
        arguments = smoke_arguments(plan, _read_json(args.outputs, "outputs"))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return smoke.main(arguments)


if __name__ == "__main__":
    sys.exit(main())
