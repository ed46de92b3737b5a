"""Shared fixtures: each cloud assembly is built once per test run and shared by every test
(and every pytest-xdist worker) that reads it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks

from app import build_delivery_app, cdk_json_context, config_from_context
from phases import Env, PhaseConfig
from phases.loader import deep_merge, example_overrides
from stacks.delivery import DeliveryStack

# Bound here: tests of `make synth` replace `synth_all.synth_one` with `shared_synth_one`.
from tools.synth_all import SynthResult, synth_one

HASH = re.compile(r"[0-9a-f]{64}")
# The migration Job is named by the first 12 hex of its image's asset hash
# (cdk_constructs/k8s/migration.py): a new image, a new Job.
MIGRATION_JOB = re.compile(r"\bmigrate-[0-9a-f]{12}\b")


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
    """Synthesize like `make synth` (`tools.synth_all.synth_one`): the environment's example
    overrides, then `overrides`."""
    result = synth_one(int(phase), env, outdir, overrides=overrides)
    assert result.config is not None
    return _load(result.outdir, result.config, [_finding(f) for f in result.findings])


def _finding(text: str) -> str:
    """`rule: logical id` of a finding (synth_one adds where in the tree it is)."""
    return text.split(" (", 1)[0]


def _load(outdir: Path, config: PhaseConfig, findings: list[str]) -> Assembly:
    manifest = json.loads((outdir / "manifest.json").read_text())
    prefix = config.stack_prefix + "-"
    templates = {
        # A stack named as its artifact id has no `stackName` (the cloud assembly schema).
        artifact["properties"].get("stackName", artifact_id).removeprefix(prefix): json.loads(
            (outdir / artifact["properties"]["templateFile"]).read_text()
        )
        for artifact_id, artifact in manifest["artifacts"].items()
        if artifact["type"] == "aws:cloudformation:stack"
    }
    return Assembly(config=config, outdir=outdir, templates=templates, findings=findings)


class SharedAssemblies:
    """Each assembly is synthesized once per test run, whichever pytest-xdist worker asks
    first: under a lock file in the directory every worker shares, it is built into that
    directory with a small record beside it (its findings); the other workers wait for the
    lock and read the templates from disk. The config is rebuilt from the same context, which
    takes milliseconds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._loaded: dict[str, Assembly] = {}

    def get(self, phase: str, env: str, overrides: dict[str, Any] | None) -> Assembly:
        key = json.dumps([phase, env, overrides], sort_keys=True)
        if key not in self._loaded:
            self._loaded[key] = self._build_or_read(key, phase, env, overrides)
        return self._loaded[key]

    def _build_or_read(
        self, key: str, phase: str, env: str, overrides: dict[str, Any] | None
    ) -> Assembly:
        name = f"p{phase}-{env}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        outdir, record = self.root / name, self.root / f"{name}.json"
        with (self.root / f"{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if record.exists():
                config = config_from_context(_context(phase, env, overrides))
                return _load(outdir, config, json.loads(record.read_text()))
            assembly = synthesize(outdir, phase, env, overrides)
            record.write_text(json.dumps(assembly.findings))
            return assembly


def _context(phase: str, env: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The context synth_one gives the app (the environment's example overrides first)."""
    context: dict[str, Any] = {**cdk_json_context(), "phase": phase, "env": env}
    merged = deep_merge(example_overrides(Env(env)), overrides or {})
    if merged:
        context["overrides"] = json.dumps(merged)
    return context


# cfn-lint findings that describe CDK's own output, not our choices.
CFN_LINT_IGNORED = (
    "W3005",  # DependsOn that a Ref already implies (CDK adds both)
    "W3010",  # AZ names come from config on purpose (network.availability_zones)
)


class CfnLint:
    """cfn-lint's default rules (errors and warnings, as the `cfn-lint` command), run in this
    process with the rules loaded once; each distinct template is linted once per test run
    (its findings kept by content hash in the directory the xdist workers share)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._runner: Any = None

    def findings(self, outdir: Path) -> list[str]:
        """Every finding in the templates of the assembly in `outdir`, as `file: rule message
        (line)`."""
        templates = sorted(outdir.glob("*.template.json"))
        assert templates, f"no templates in {outdir}"
        return [f"{path.name}: {f}" for path in templates for f in self._template(path)]

    def _template(self, path: Path) -> list[str]:
        text = path.read_text()
        digest = hashlib.sha256(f"{CFN_LINT_IGNORED}\n{text}".encode()).hexdigest()
        record = self.root / f"{digest}.json"
        with (self.root / f"{digest}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not record.exists():
                record.write_text(json.dumps(self._lint(text)))
        found: list[str] = json.loads(record.read_text())
        return found

    def _lint(self, text: str) -> list[str]:
        from cfnlint.config import ConfigMixIn  # noqa: PLC0415 - loads its schemas on import
        from cfnlint.decode.decode import decode_str  # noqa: PLC0415
        from cfnlint.runner import Runner  # noqa: PLC0415

        if self._runner is None:
            self._runner = Runner(ConfigMixIn(ignore_checks=list(CFN_LINT_IGNORED)))
        template, errors = decode_str(text)
        matches = errors or list(self._runner.validate_template(template))
        return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


@pytest.fixture(scope="session")
def cfn_lint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CfnLint:
    return CfnLint(shared_tmp(request, tmp_path_factory) / "cfn-lint")


def normalize(value: Any) -> Any:
    """Replace every 64-hex asset hash (and the migration Job's name made from one), in keys
    and values, so sources can change freely."""
    if isinstance(value, dict):
        return {HASH.sub("<hash>", k): normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return MIGRATION_JOB.sub("migrate-<hash>", HASH.sub("<hash>", value))
    return value


def shared_tmp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory every pytest-xdist worker of this run shares (this run's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base


@pytest.fixture(scope="session")
def assemble(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Assembly]:
    """Build (once per run, see SharedAssemblies) and return the assembly for a phase, env and
    overrides."""
    shared = SharedAssemblies(shared_tmp(request, tmp_path_factory) / "assemblies")

    def get(
        phase: str = "1", env: str = "staging", overrides: dict[str, Any] | None = None
    ) -> Assembly:
        return shared.get(phase, env, overrides)

    return get


@pytest.fixture(scope="session")
def shared_synth_one(assemble: Callable[..., Assembly]) -> Callable[[int, str, Path], SynthResult]:
    """`synth_all.synth_one(phase, env, outdir)` served from this run's shared assemblies
    (each built by that same call, once per run), copied into `outdir`: for tests of what is
    done with the results (`make synth`'s table and exit code)."""

    def shared(phase: int, env: str, outdir: Path) -> SynthResult:
        assembly = assemble(str(phase), env)
        shutil.copytree(assembly.outdir, outdir)
        return SynthResult(
            phase=phase,
            env=env,
            outdir=outdir,
            stacks=len(assembly.templates),
            resources=sum(len(t.get("Resources", {})) for t in assembly.templates.values()),
            findings=assembly.findings,
            seconds=0.0,
            config=assembly.config,
        )

    return shared


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
