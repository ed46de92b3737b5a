"""Every synthesized phase x env read against the contract between infrastructure and runtime.

`aipp_contract` owns what crosses the line; here the templates must agree with it:
- every variable a container, function or pod of the platform's runtime receives is a setting
  its `Settings` reads (an `AIPP_` name or a standard one); a model-server container gets only
  the library variables `MODEL_SERVER_VARIABLES` lists;
- every S3 object prefix an IAM policy allows on the audio or models bucket is one a key
  builder produces keys under (no wider, no other), and Transcribe jobs match the job names;
- every queue a process's role can reach is one its code uses: SendMessage exactly on the
  queues of the task types its kind sends (`QUEUE_USE`), ReceiveMessage exactly on the queues
  it consumes (and its event source), and nothing else.

Each check is a function of the templates; the tests at the end change one template the way a
mistake would and show the check fails on it.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aipp.core.config import Settings

from aipp_contract.env import MODEL_SERVER_VARIABLES, env_name
from aipp_contract.keys import (
    AUDIO_PREFIXES,
    TRANSCRIBE_JOB_PREFIX,
    audio_keys,
    model_prefix,
)
from aipp_contract.messages import QUEUE_USE, SEND_TO, Kind
from tests.infra.conftest import Assembly

HASH = re.compile(r"[0-9a-f]{64}")
RUNTIME_DOCKERFILE = "worker_images/Dockerfile"
TARGET_KIND = {"api": Kind.API, "worker": Kind.WORKER, "upload-lambda": Kind.UPLOAD_CHECK}
SETTINGS = frozenset(env_name(f) for f in Settings.model_fields)
MODEL_SERVER = "model-server"

Templates = dict[str, dict[str, Any]]
Ref = tuple[str, str]  # (stack suffix, logical id)


# --- reading templates -----------------------------------------------------------------------
def _joined_json(value: Any) -> tuple[Any, dict[str, Any]]:
    """A JSON document written as `Fn::Join` of text and tokens: the parsed document, with
    each token replaced by a placeholder string, and the tokens by placeholder."""
    if isinstance(value, str):
        return json.loads(value), {}
    separator, parts = value["Fn::Join"]
    tokens: dict[str, Any] = {}
    text = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
        else:
            key = f"@@token{len(tokens)}@@"
            tokens[key] = part
            text.append(key)
    return json.loads(separator.join(text)), tokens


def _detoken(value: Any, tokens: dict[str, Any]) -> Any:
    """A manifest value back as CloudFormation: the token itself when the value is one."""
    if isinstance(value, str) and value in tokens:
        return tokens[value]
    return value


@dataclass
class Process:
    """One container or function that runs our images, with what the template gives it."""

    where: str
    image: str  # a Dockerfile target of the runtime, or MODEL_SERVER
    kind: Kind | None  # None for a model server
    env: dict[str, Any]
    role: Ref | None
    event_sources: list[Any] = field(default_factory=list)


class Reader:
    """An assembly's templates, its image assets and the references between stacks."""

    def __init__(self, assembly: Assembly, templates: Templates | None = None) -> None:
        self.config = assembly.config
        self.templates = templates if templates is not None else assembly.templates
        self.prefix = self.config.stack_prefix + "-"
        self.images: dict[str, str] = {}  # asset hash -> Dockerfile target or MODEL_SERVER
        for manifest in assembly.outdir.glob("*.assets.json"):
            for digest, image in json.loads(manifest.read_text()).get("dockerImages", {}).items():
                source = image["source"]
                ours = source.get("dockerFile") == RUNTIME_DOCKERFILE
                self.images[digest] = source["dockerBuildTarget"] if ours else MODEL_SERVER

    def resources(self, cfn_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == cfn_type:
                    yield stack, logical_id, resource

    def resolve(self, stack: str, value: Any) -> Ref | None:
        """The resource a reference points at, across stacks; None for anything else."""
        if isinstance(value, dict) and "Ref" in value:
            return (stack, value["Ref"])
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return (stack, value["Fn::GetAtt"][0])
        if isinstance(value, dict) and "Fn::GetStackOutput" in value:
            out = value["Fn::GetStackOutput"]
            other = out["StackName"].removeprefix(self.prefix)
            return self.resolve(other, self.templates[other]["Outputs"][out["OutputName"]]["Value"])
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            for other, template in self.templates.items():
                for output in template.get("Outputs", {}).values():
                    if output.get("Export", {}).get("Name") == value["Fn::ImportValue"]:
                        return self.resolve(other, output["Value"])
        return None

    def type_of(self, ref: Ref) -> str | None:
        resource = self.templates.get(ref[0], {}).get("Resources", {}).get(ref[1])
        return resource["Type"] if resource else None

    def image_of(self, image: Any) -> str | None:
        found = HASH.search(json.dumps(image))
        return self.images.get(found.group(0)) if found else None

    # --- the processes -------------------------------------------------------------------------
    def processes(self) -> list[Process]:
        return [*self._ecs(), *self._functions(), *self._pods()]

    def _ecs(self) -> Iterator[Process]:
        for stack, logical_id, task in self.resources("AWS::ECS::TaskDefinition"):
            role = self.resolve(stack, task["Properties"].get("TaskRoleArn"))
            for container in task["Properties"]["ContainerDefinitions"]:
                image = self.image_of(container["Image"])
                if image is None:
                    continue
                env = {e["Name"]: e["Value"] for e in container.get("Environment", [])}
                env |= {s["Name"]: s["ValueFrom"] for s in container.get("Secrets", [])}
                migrates = "aipp.admin" in " ".join(container.get("Command", []))
                kind = Kind.MIGRATION if migrates else TARGET_KIND.get(image)
                yield Process(f"{stack}/{logical_id}", image, kind, env, role)

    def _functions(self) -> Iterator[Process]:
        sources: dict[Ref, list[Any]] = {}
        for stack, _, mapping in self.resources("AWS::Lambda::EventSourceMapping"):
            function = self.resolve(stack, mapping["Properties"]["FunctionName"])
            if function is not None:
                sources.setdefault(function, []).append(
                    self.resolve(stack, mapping["Properties"]["EventSourceArn"])
                )
        for stack, logical_id, function in self.resources("AWS::Lambda::Function"):
            image = self.image_of(function["Properties"]["Code"].get("ImageUri"))
            if image is None:
                continue  # CDK's own handlers (zip assets): not the platform runtime
            yield Process(
                f"{stack}/{logical_id}",
                image,
                TARGET_KIND.get(image),
                dict(function["Properties"].get("Environment", {}).get("Variables", {})),
                self.resolve(stack, function["Properties"]["Role"]),
                sources.get((stack, logical_id), []),
            )

    def _pods(self) -> Iterator[Process]:
        documents = []
        for stack, logical_id, resource in self.resources("Custom::AWSCDK-EKS-KubernetesResource"):
            objects, tokens = _joined_json(resource["Properties"]["Manifest"])
            documents += [(stack, logical_id, o, tokens) for o in objects]
        roles = {
            o["metadata"]["name"]: self.resolve(
                stack, _detoken(o["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], tokens)
            )
            for stack, _, o, tokens in documents
            if o["kind"] == "ServiceAccount"
            and "eks.amazonaws.com/role-arn" in o["metadata"].get("annotations", {})
        }
        for stack, logical_id, obj, tokens in documents:
            pod = obj.get("spec", {}).get("template", {}).get("spec")
            if obj["kind"] not in {"Job", "Rollout", "Deployment"} or pod is None:
                continue
            role = roles.get(pod.get("serviceAccountName", ""))
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                image = self.image_of(_detoken(container["image"], tokens))
                if image is None:
                    continue
                env = {e["name"]: _detoken(e["value"], tokens) for e in container.get("env", [])}
                kind = Kind.MIGRATION if obj["kind"] == "Job" else TARGET_KIND.get(image)
                where = f"{stack}/{logical_id}/{obj['metadata']['name']}/{container['name']}"
                yield Process(where, image, kind, env, role)

    # --- what a role may do ----------------------------------------------------------------------
    def statements(self, role: Ref) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every Allow statement of the policies attached to `role` (with their stack)."""
        stack, logical_id = role
        for policy_stack, _, policy in self.resources("AWS::IAM::Policy"):
            attached = [
                self.resolve(policy_stack, r) for r in policy["Properties"].get("Roles", [])
            ]
            if (stack, logical_id) in attached:
                for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                    if statement["Effect"] == "Allow":
                        yield policy_stack, statement

    def queue_access(self, role: Ref) -> dict[str, set[Ref]]:
        """The queues `role` may act on, by action (`sqs:SendMessage`, ...)."""
        access: dict[str, set[Ref]] = {}
        for stack, statement in self.statements(role):
            actions = _listed(statement["Action"])
            for resource in _listed(statement["Resource"]):
                queue = self.resolve(stack, resource)
                if queue is None or self.type_of(queue) != "AWS::SQS::Queue":
                    continue
                for action in actions:
                    if action.startswith("sqs:"):
                        access.setdefault(action, set()).add(queue)
        return access


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def render(value: Any) -> str:
    """A CloudFormation string as text, every token as `<token>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(p) for p in parts)
    return "<token>"


# --- the checks --------------------------------------------------------------------------------
def environment_problems(reader: Reader) -> list[str]:
    """Variables no setting reads (runtime), or no library of the model server lists."""
    problems = []
    for process in reader.processes():
        allowed = SETTINGS if process.image != MODEL_SERVER else frozenset(MODEL_SERVER_VARIABLES)
        for name in sorted(set(process.env) - allowed):
            problems.append(f"{process.where}: {name} is read by nothing")
    return problems


def _object_prefixes(reader: Reader) -> Iterator[tuple[str, str, str]]:
    """(bucket purpose, object pattern, statement's first action) of every Allow on objects of
    the audio or models bucket."""
    name = reader.config.name_prefix
    for _, _, policy in reader.resources("AWS::IAM::Policy"):
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            for resource in _listed(statement["Resource"]):
                arn = render(resource)
                for purpose in ("audio", "models"):
                    bucket, slash, pattern = arn.partition("/")
                    if f":s3:::{name}-{purpose}-" in bucket and slash:
                        yield purpose, pattern, _listed(statement["Action"])[0]


def prefix_problems(reader: Reader) -> list[str]:
    """Object patterns no key builder produces keys under, or wider than one builder's prefix."""
    sample = audio_keys(uuid.uuid4(), uuid.uuid4(), "meeting.wav")
    eks = reader.config.eks
    models = (
        {model_prefix(s.model) for s in (eks.model_servers.stt, eks.model_servers.llm)}
        if eks
        else set()
    )
    problems = []
    seen = 0
    for purpose, pattern, action in _object_prefixes(reader):
        seen += 1
        prefix, star, rest = pattern.partition("*")
        if not star or rest:
            problems.append(f"{purpose}/{pattern} ({action}): not a prefix pattern")
        elif purpose == "audio" and not (
            prefix.startswith(AUDIO_PREFIXES) and any(k.startswith(prefix) for k in sample)
        ):
            problems.append(f"{purpose}/{pattern} ({action}): no key builder makes keys there")
        elif purpose == "models" and prefix not in models:
            problems.append(f"{purpose}/{pattern} ({action}): not a deployed model's prefix")
    if not seen:
        problems.append("no object grant on the audio bucket at all")
    for _, _, policy in reader.resources("AWS::IAM::Policy"):
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            for resource in _listed(statement["Resource"]):
                _, job, pattern = render(resource).partition(":transcription-job/")
                if job and pattern != f"{TRANSCRIBE_JOB_PREFIX}*":
                    problems.append(f"transcription-job/{pattern}: not the job names' prefix")
    return problems


def queue_problems(reader: Reader) -> list[str]:
    """Queues a role reaches that its process's code does not use, and the reverse."""
    problems = []
    for process in reader.processes():
        if process.kind is None or process.role is None:
            continue
        stack = process.where.split("/")[0]
        use = QUEUE_USE[process.kind]

        def queues(names: Any, stack: str = stack, env: dict[str, Any] = process.env) -> set[Ref]:
            found = {reader.resolve(stack, env[str(n)]) for n in names if str(n) in env}
            return {q for q in found if q is not None}

        send = queues(SEND_TO[t] for t in use.sends)
        receive = queues(use.receives) | {q for q in process.event_sources if q is not None}
        read = queues(use.reads)
        access = reader.queue_access(process.role)
        reached = set().union(*access.values()) if access else set()
        checks = {
            "sends to": (access.get("sqs:SendMessage", set()), send),
            "receives from": (access.get("sqs:ReceiveMessage", set()), receive),
            "reaches": (reached, send | receive | read),
        }
        for what, (granted, used) in checks.items():
            if granted != used:
                problems.append(
                    f"{process.where} ({process.kind}) {what} {sorted(granted)}, its code uses"
                    f" {sorted(used)}"
                )
    return problems


CHECKS: dict[str, Callable[[Reader], list[str]]] = {
    "environment": environment_problems,
    "prefixes": prefix_problems,
    "queues": queue_problems,
}


# --- the synthesized phases x envs ---------------------------------------------------------------
def test_every_process_of_every_phase_is_found(any_phase: Assembly) -> None:
    """The checks below look at something: each kind of process, with its role."""
    processes = Reader(any_phase).processes()
    kinds = {p.kind for p in processes if p.kind is not None and p.role is not None}
    assert kinds == set(Kind), kinds
    if any_phase.config.eks is not None:
        assert sum(p.image == MODEL_SERVER for p in processes) == 4  # copy + server, per type


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_the_templates_keep_the_contract(any_phase: Assembly, check: str) -> None:
    assert CHECKS[check](Reader(any_phase)) == []


# --- each check fails on the mistake it is for -------------------------------------------------
def _mutated(assembly: Assembly, change: Callable[[Templates], None]) -> Reader:
    templates = copy.deepcopy(assembly.templates)
    change(templates)
    return Reader(assembly, templates)


def _task_containers(templates: Templates) -> Iterator[dict[str, Any]]:
    for resource in templates["ComputeEcs"]["Resources"].values():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            yield from resource["Properties"]["ContainerDefinitions"]


def test_a_misspelled_variable_fails_the_environment_check(phase1: Assembly) -> None:
    def misspell(templates: Templates) -> None:
        for container in _task_containers(templates):
            for variable in container["Environment"]:
                if variable["Name"] == "AIPP_WORKER_CONCURRENCY":
                    variable["Name"] = "AIPP_WORKER_CONCURENCY"

    problems = environment_problems(_mutated(phase1, misspell))
    assert len(problems) == 1 and "AIPP_WORKER_CONCURENCY is read by nothing" in problems[0]


def test_a_prefix_no_builder_makes_fails_the_prefix_check(phase1: Assembly) -> None:
    def widen(templates: Templates, into: str) -> None:
        text = json.dumps(templates["ComputeEcs"]).replace('/transcripts/*"', f'/{into}"')
        templates["ComputeEcs"] = json.loads(text)

    for wrong in ("transcript/*", "*", "transcripts/*.json.bak*"):
        problems = prefix_problems(_mutated(phase1, lambda t, w=wrong: widen(t, w)))
        assert problems and all(wrong in p for p in problems), (wrong, problems)


def test_a_queue_the_code_does_not_use_fails_the_queue_check(phase1: Assembly) -> None:
    """The API may read the dead-letter queue's attributes: its code never does."""

    def grant_the_dlq(templates: Templates) -> None:
        resources = templates["ComputeEcs"]["Resources"]
        worker_policy = next(
            r for k, r in resources.items() if k.startswith("WorkerTaskTaskRoleDefaultPolicy")
        )
        dlq = next(
            s["Resource"]
            for s in worker_policy["Properties"]["PolicyDocument"]["Statement"]
            if "sqs:ReceiveMessage" in s["Action"] and "Dlq" in json.dumps(s["Resource"])
        )
        api_policy = next(
            r for k, r in resources.items() if k.startswith("ApiTaskTaskRoleDefaultPolicy")
        )
        api_policy["Properties"]["PolicyDocument"]["Statement"].append(
            {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": dlq}
        )

    problems = queue_problems(_mutated(phase1, grant_the_dlq))
    assert len(problems) == 2 and all("(api)" in p for p in problems), problems
    assert "sends to" in problems[0] and "reaches" in problems[1]
