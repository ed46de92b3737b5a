"""Shared fixtures: each phase x env cloud assembly is built once per test session."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from app import build_app, build_delivery_app, cdk_json_context
from phases import Env, PhaseConfig
from phases.loader import deep_merge, example_overrides
from stacks.delivery import DeliveryStack

HASH = re.compile(r"[0-9a-f]{64}")


@dataclass
class Assembly:
    """A synthesized app: its config, templates by stack suffix, and the nag report."""

    config: PhaseConfig
    outdir: Path
    templates: dict[str, dict[str, Any]]
    findings: list[str]

    def template(self, suffix: str) -> Template:
        return Template.from_json(self.templates[suffix])

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        """Every resource of `cfn_type` across all stacks, by `<stack>/<logical id>`."""
        return {
            f"{stack}/{logical_id}": resource
            for stack, template in self.templates.items()
            for logical_id, resource in template.get("Resources", {}).items()
            if resource["Type"] == cfn_type
        }


def synthesize(
    outdir: Path, phase: str = "1", env: str = "staging", overrides: dict[str, Any] | None = None
) -> Assembly:
    """Synthesize like `make synth`: the environment's example overrides, then `overrides`."""
    context: dict[str, Any] = {**cdk_json_context(), "phase": phase, "env": env}
    merged = deep_merge(example_overrides(Env(env)), overrides or {})
    if merged:
        context["overrides"] = json.dumps(merged)
    app = cdk.App(outdir=str(outdir), context=context)
    config, _ = build_app(app, nag=False)
    report = AwsSolutionsChecks().validate_scope(app)
    findings = [
        f"{v.rule_name}: {r.resource_logical_id}"
        for v in report.violations
        for r in v.violating_resources
    ]
    assembly = app.synth()
    prefix = config.stack_prefix + "-"
    templates = {
        stack.stack_name.removeprefix(prefix): json.loads(
            Path(stack.template_full_path).read_text()
        )
        for stack in assembly.stacks
    }
    return Assembly(config=config, outdir=outdir, templates=templates, findings=findings)


def normalize(value: Any) -> Any:
    """Replace every 64-hex asset hash, in keys and values, so sources can change freely."""
    if isinstance(value, dict):
        return {HASH.sub("<hash>", k): normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return HASH.sub("<hash>", value)
    return value


@pytest.fixture(scope="session")
def assemble(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Assembly]:
    """Build (once) and return the assembly for a phase, env and overrides."""
    cache: dict[str, Assembly] = {}

    def get(
        phase: str = "1", env: str = "staging", overrides: dict[str, Any] | None = None
    ) -> Assembly:
        key = json.dumps([phase, env, overrides], sort_keys=True)
        if key not in cache:
            cache[key] = synthesize(
                tmp_path_factory.mktemp(f"p{phase}-{env}"), phase, env, overrides
            )
        return cache[key]

    return get


@pytest.fixture(scope="session", params=["staging", "prod"])
def phase1(request: pytest.FixtureRequest, assemble: Callable[..., Assembly]) -> Iterator[Assembly]:
    yield assemble("1", request.param)


@pytest.fixture(scope="session", params=["2-staging", "2-prod", "3-staging", "3-prod"])
def eks_phase(
    request: pytest.FixtureRequest, assemble: Callable[..., Assembly]
) -> Iterator[Assembly]:
    phase, env = request.param.split("-")
    yield assemble(phase, env)


ALL = ["1-staging", "1-prod", "2-staging", "2-prod", "3-staging", "3-prod"]


@pytest.fixture(scope="session", params=ALL)
def any_phase(
    request: pytest.FixtureRequest, assemble: Callable[..., Assembly]
) -> Iterator[Assembly]:
    phase, env = request.param.split("-")
    yield assemble(phase, env)


@dataclass
class DeliveryAssembly:
    """The delivery pipeline's app: its stack object, template and nag report."""

    stack: DeliveryStack
    outdir: Path
    template: dict[str, Any]
    findings: list[str]


@pytest.fixture(scope="session")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> DeliveryAssembly:
    """`cdk synth -c delivery=@config/delivery.example.json`, as `make synth` builds it."""
    outdir = tmp_path_factory.mktemp("delivery")
    context = {**cdk_json_context(), "delivery": "@config/delivery.example.json"}
    app = cdk.App(outdir=str(outdir), context=context)
    stack = build_delivery_app(app, nag=False)
    report = AwsSolutionsChecks().validate_scope(app)
    findings = [
        f"{v.rule_name}: {r.construct_path}"
        for v in report.violations
        for r in v.violating_resources
    ]
    path = app.synth().get_stack_by_name(stack.stack_name).template_full_path
    return DeliveryAssembly(stack, outdir, json.loads(Path(path).read_text()), findings)
