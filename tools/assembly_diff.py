"""Compare two synthesized cloud assemblies resource by resource, offline.

`python -m tools.assembly_diff <old assembly dir> <new assembly dir> [--json] [--cdk-diff]`

For each stack (matched by stack name): the resources added, modified, replaced and removed,
and the outputs removed or pointing at a replaced resource. A resource is *replaced* when a
property that CloudFormation can only set at creation changes (the resource provider schema's
`createOnlyProperties`, read from the schemas cfn-lint ships, so no AWS call is made), when
such a property refers to a resource that is itself replaced (in the same stack, or in another
stack through `Fn::GetStackOutput`), or when its type changes. Stateful resources (data,
messages, credentials, keys, logs, the cluster, the network they live in) that would be replaced
or removed are listed first, and the exit status says whether any would be:

    0  no stateful resource replaced or removed
    1  at least one stateful resource replaced or removed (kept ones included: see `kept`)
    2  bad input (not an assembly, unreadable)

`--cdk-diff` adds the CDK CLI's own per-stack diff (`cdk diff --template`) for the stacks
that changed, which spells out every property.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

Template = dict[str, Any]
Action = Literal["add", "modify", "replace", "remove"]

# What a replacement or removal of each stateful type loses. Read replicas hold no data of
# their own; they are recognised by `SourceDBInstanceIdentifier` below.
STATEFUL: dict[str, str] = {
    "AWS::S3::Bucket": "stored objects",
    "AWS::RDS::DBInstance": "the database",
    "AWS::RDS::DBCluster": "the database",
    "AWS::ElastiCache::ReplicationGroup": "cached results and locks",
    "AWS::SQS::Queue": "messages in flight",
    "AWS::SecretsManager::Secret": "credentials in use",
    "AWS::KMS::Key": "what the key encrypts",
    "AWS::Logs::LogGroup": "logs",
    "AWS::EKS::Cluster": "the cluster and everything running on it",
    "AWS::EC2::VPC": "the network everything else runs in",
    "AWS::EC2::Subnet": "the subnet the databases and tasks run in",
    "AWS::DynamoDB::Table": "table data",
}
KEEPING_POLICIES = {"Retain", "RetainExceptOnCreate", "Snapshot"}
# The resource provider schemas cfn-lint ships (the CloudFormation registry's, per region).
SCHEMAS = files("cfnlint.data.schemas")
ACTIONS: tuple[tuple[Action, str], ...] = (
    ("add", "added"),
    ("modify", "modified"),
    ("replace", "replaced"),
    ("remove", "removed"),
)


class AssemblyError(ValueError):
    """The path is not a readable cloud assembly."""


@dataclass(frozen=True)
class Change:
    stack: str
    logical_id: str
    type: str
    action: Action
    reasons: tuple[str, ...] = ()
    stateful: str | None = None
    kept: bool = False

    @property
    def loses_state(self) -> bool:
        return self.stateful is not None and self.action in ("replace", "remove")

    def line(self) -> str:
        what = f"{self.action.upper():<8}{self.type} {self.logical_id}"
        if self.stateful:
            what += f"  [stateful: {self.stateful}]"
        if self.kept:
            what += "  [kept in the account by its DeletionPolicy]"
        return what + "".join(f"\n            {r}" for r in self.reasons)


@dataclass
class StackDiff:
    name: str
    status: Literal["added", "removed", "changed", "unchanged"]
    changes: list[Change] = field(default_factory=list)
    outputs_removed: list[str] = field(default_factory=list)
    outputs_replaced: list[str] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)


@dataclass
class AssemblyDiff:
    stacks: list[StackDiff]

    @property
    def changes(self) -> list[Change]:
        return [c for s in self.stacks for c in s.changes]

    @property
    def stateful_losses(self) -> list[Change]:
        return [c for c in self.changes if c.loses_state]


# --- reading assemblies ---------------------------------------------------------------------


def load_assembly(path: Path) -> dict[str, Template]:
    """Templates by stack name, from a cloud assembly directory (its `manifest.json`)."""
    manifest = path / "manifest.json"
    try:
        artifacts = json.loads(manifest.read_text())["artifacts"]
    except (OSError, ValueError, KeyError) as exc:
        raise AssemblyError(
            f"{path} is not a cloud assembly (no readable manifest.json): {exc}"
        ) from None
    templates: dict[str, Template] = {}
    for artifact_id, artifact in artifacts.items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        props = artifact.get("properties", {})
        name = props.get("stackName", artifact_id)
        templates[name] = json.loads((path / props["templateFile"]).read_text())
    return templates


# --- CloudFormation knowledge -----------------------------------------------------------------


@cache
def _schema_index() -> dict[str, str]:
    index: dict[str, str] = json.loads((SCHEMAS / "providers" / "us-east-1.json").read_text())
    return index


@cache
def create_only_properties(resource_type: str) -> tuple[tuple[str, ...], ...]:
    """Property paths CloudFormation can set only when it creates the resource."""
    schema_id = _schema_index().get(resource_type)
    if schema_id is None:
        return ()
    schema = json.loads((SCHEMAS / "resources" / f"{schema_id}.json").read_text())
    paths = schema.get("createOnlyProperties", [])
    return tuple(tuple(p.split("/")[2:]) for p in paths if p.startswith("/properties/"))


def stateful_kind(resource: Mapping[str, Any]) -> str | None:
    kind = STATEFUL.get(resource["Type"])
    if resource["Type"] == "AWS::RDS::DBInstance" and "SourceDBInstanceIdentifier" in resource.get(
        "Properties", {}
    ):
        return None  # a read replica: its data is the source's
    return kind


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def references(value: Any) -> Iterator[tuple[str, str | None, str | None]]:
    """(logical id, None, None) for Ref/GetAtt, (stack, output, None) for GetStackOutput."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            if not value["Ref"].startswith("AWS::"):
                yield (value["Ref"], None, None)
            return
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            name = target[0] if isinstance(target, list) else str(target).split(".")[0]
            yield (name, None, None)
            return
        if set(value) == {"Fn::GetStackOutput"}:
            ref = value["Fn::GetStackOutput"]
            yield (str(ref.get("StackName")), str(ref.get("OutputName")), "output")
            return
        for v in value.values():
            yield from references(v)
    elif isinstance(value, list):
        for v in value:
            yield from references(v)


# --- the comparison -----------------------------------------------------------------------------


def _replaced_ids(
    old: Template, new: Template, stack: str, replaced_outputs: set[tuple[str, str]]
) -> dict[str, list[str]]:
    """Logical ids replaced in one stack, with the reasons; to a fixpoint within the stack."""
    old_res, new_res = old.get("Resources", {}), new.get("Resources", {})
    common = [k for k in new_res if k in old_res]
    reasons: dict[str, list[str]] = {}
    for key in common:
        before, after = old_res[key], new_res[key]
        if before["Type"] != after["Type"]:
            reasons[key] = [f"type {before['Type']} -> {after['Type']}"]
            continue
        for path in create_only_properties(after["Type"]):
            a, b = _at(before.get("Properties", {}), path), _at(after.get("Properties", {}), path)
            if a != b:
                reasons.setdefault(key, []).append(f"{'.'.join(path)} changes (create-only)")
    _cascade(new_res, common, reasons, replaced_outputs)
    return reasons


def _cascade(
    resources: dict[str, Any],
    keys: list[str],
    reasons: dict[str, list[str]],
    replaced_outputs: set[tuple[str, str]],
) -> None:
    """Add to `reasons` every resource whose create-only property refers to a replaced one."""
    changed = True
    while changed:
        changed = False
        for key in keys:
            if key in reasons:
                continue
            why = _replaced_reference(resources[key], reasons, replaced_outputs)
            if why:
                reasons[key] = [why]
                changed = True


def _replaced_reference(
    resource: dict[str, Any],
    reasons: dict[str, list[str]],
    replaced_outputs: set[tuple[str, str]],
) -> str | None:
    props = resource.get("Properties", {})
    for path in create_only_properties(resource["Type"]):
        where = ".".join(path)
        for target, output, kind in references(_at(props, path)):
            if kind == "output" and output and (target, output) in replaced_outputs:
                return f"{where} reads {target}.{output}, whose resource is replaced"
            if kind is None and target in reasons:
                return f"{where} refers to {target}, which is replaced"
    return None


def diff_assemblies(old: dict[str, Template], new: dict[str, Template]) -> AssemblyDiff:
    """Every stack of either assembly, compared (cross-stack replacements followed)."""
    replaced_outputs: set[tuple[str, str]] = set()
    replaced: dict[str, dict[str, list[str]]] = {}
    # Replacements can travel between stacks through outputs: iterate until nothing new.
    while True:
        replaced = {
            name: _replaced_ids(old[name], new[name], name, replaced_outputs)
            for name in new
            if name in old
        }
        outputs = {
            (name, out)
            for name, template in new.items()
            if name in old
            for out, spec in template.get("Outputs", {}).items()
            if any(kind is None and t in replaced[name] for t, _, kind in references(spec))
        }
        if outputs <= replaced_outputs:
            break
        replaced_outputs |= outputs

    stacks: list[StackDiff] = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            stacks.append(
                StackDiff(
                    name,
                    "added",
                    [_change(name, k, r, "add") for k, r in new[name].get("Resources", {}).items()],
                )
            )
            continue
        if name not in new:
            stacks.append(
                StackDiff(
                    name,
                    "removed",
                    [
                        _change(name, k, r, "remove")
                        for k, r in old[name].get("Resources", {}).items()
                    ],
                    outputs_removed=sorted(old[name].get("Outputs", {})),
                )
            )
            continue
        stacks.append(_stack_diff(name, old[name], new[name], replaced[name], replaced_outputs))
    return AssemblyDiff(stacks)


def _change(
    stack: str,
    key: str,
    resource: Mapping[str, Any],
    action: Action,
    reasons: list[str] | None = None,
) -> Change:
    kind = stateful_kind(resource)
    keeps = (
        resource.get("DeletionPolicy")
        if action == "remove"
        else resource.get("UpdateReplacePolicy")
    )
    return Change(
        stack=stack,
        logical_id=key,
        type=resource["Type"],
        action=action,
        reasons=tuple(reasons or ()),
        stateful=kind,
        kept=action in ("remove", "replace") and keeps in KEEPING_POLICIES,
    )


def _stack_diff(
    name: str,
    old: Template,
    new: Template,
    replaced: dict[str, list[str]],
    replaced_outputs: set[tuple[str, str]],
) -> StackDiff:
    old_res, new_res = old.get("Resources", {}), new.get("Resources", {})
    changes: list[Change] = []
    for key, resource in new_res.items():
        if key not in old_res:
            changes.append(_change(name, key, resource, "add"))
        elif key in replaced:
            changes.append(_change(name, key, old_res[key], "replace", replaced[key]))
        elif _comparable(old_res[key]) != _comparable(resource):
            changes.append(_change(name, key, resource, "modify"))
    changes += [_change(name, k, r, "remove") for k, r in old_res.items() if k not in new_res]
    old_out, new_out = old.get("Outputs", {}), new.get("Outputs", {})
    diff = StackDiff(
        name,
        "changed" if changes or old_out != new_out else "unchanged",
        changes,
        outputs_removed=sorted(set(old_out) - set(new_out)),
        outputs_replaced=sorted(o for s, o in replaced_outputs if s == name),
    )
    return diff


def _comparable(resource: Mapping[str, Any]) -> Any:
    return {k: v for k, v in resource.items() if k != "Metadata"}


# --- reporting ----------------------------------------------------------------------------------


def report(diff: AssemblyDiff) -> str:
    lines: list[str] = []
    losses = diff.stateful_losses
    if losses:
        lines.append(f"STATEFUL RESOURCES REPLACED OR REMOVED ({len(losses)}):")
        lines += [f"  {c.stack}: {c.line()}" for c in losses]
        lines.append("")
    else:
        lines += ["No stateful resource is replaced or removed.", ""]
    for stack in diff.stacks:
        if stack.status == "unchanged":
            lines.append(f"{stack.name}: unchanged")
            continue
        counts = ", ".join(f"{stack.count(a)} {label}" for a, label in ACTIONS if stack.count(a))
        lines.append(f"{stack.name}: {stack.status}" + (f" ({counts})" if counts else ""))
        ordered = sorted(stack.changes, key=lambda c: (not c.loses_state, c.action, c.logical_id))
        lines += [f"  {c.line()}" for c in ordered if c.action != "modify" or c.stateful]
        modified = [c for c in ordered if c.action == "modify" and not c.stateful]
        if modified:
            lines.append(f"  MODIFY  {len(modified)} other resource(s)")
        for out in stack.outputs_removed:
            lines.append(f"  output removed: {out}")
        for out in stack.outputs_replaced:
            lines.append(f"  output now names a new resource: {out}")
    return "\n".join(lines)


def cdk_diff(old_dir: Path, new_dir: Path, stack: str, old_stack: str | None = None) -> str:
    """The CDK CLI's diff of one stack of `new_dir` against its template in `old_dir`."""
    old_name = old_stack or stack
    template = next(
        (
            old_dir / art["properties"]["templateFile"]
            for art in json.loads((old_dir / "manifest.json").read_text())["artifacts"].values()
            if art.get("type") == "aws:cloudformation:stack"
            and art["properties"].get("stackName") == old_name
        ),
        None,
    )
    cdk = shutil.which("cdk")
    if cdk is None or template is None:
        return f"(cdk diff unavailable for {stack})"
    result = subprocess.run(  # noqa: S603 - the CDK CLI with paths we resolved
        [cdk, "diff", "--app", str(new_dir), "--exclusively", "--template", str(template), stack],
        capture_output=True,
        text=True,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the assembly as it is (or was)")
    parser.add_argument("new", type=Path, help="the assembly it would become")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--cdk-diff", action="store_true", help="append `cdk diff --template`")
    args = parser.parse_args(argv)
    try:
        diff = diff_assemblies(load_assembly(args.old), load_assembly(args.new))
    except AssemblyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"stacks": [asdict(s) for s in diff.stacks]}, indent=2))
    else:
        print(report(diff))
        if args.cdk_diff:
            for stack in diff.stacks:
                if stack.status == "changed":
                    print(f"\n--- cdk diff {stack.name} ---")
                    print(cdk_diff(args.old, args.new, stack.name))
    return 1 if diff.stateful_losses else 0


if __name__ == "__main__":
    sys.exit(main())
