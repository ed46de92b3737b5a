"""`make leftovers PHASE=1 ENV=prod`: what deleting an environment's stacks would leave behind.

Reads the synthesized templates, offline: every resource whose `DeletionPolicy` keeps it
(`Retain`, `RetainExceptOnCreate`; `Snapshot` keeps a final snapshot), and every bucket that
CloudFormation deletes only when it is empty (no auto-delete: the stack's deletion fails on the
first object). One line per resource with its physical name where the template fixes it, and
how to remove it by hand once nothing needs it (docs/operations.md#tearing-down).

    python -m tools.leftovers --phase 1 --env prod [--overrides @prod.json]   # synthesizes
    python -m tools.leftovers --assembly cdk.out/delivery                      # reads one

Exit status 0 (a listing), 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phases import ConfigError
from phases.loader import parse_env, parse_overrides, parse_phase
from tools.assembly_diff import AssemblyError, load_assembly
from tools.synth_all import synth_one

KEEPING = {"Retain", "RetainExceptOnCreate"}
# The property holding a resource's physical name, and how to remove it by hand.
HANDLING: dict[str, tuple[str, str]] = {
    "AWS::S3::Bucket": (
        "BucketName",
        "empty every object version, then `aws s3api delete-bucket --bucket <name>`",
    ),
    "AWS::RDS::DBInstance": (
        "DBInstanceIdentifier",
        "`aws rds modify-db-instance --no-deletion-protection`, then `aws rds "
        "delete-db-instance --final-db-snapshot-identifier <name>-final` (or "
        "--skip-final-snapshot)",
    ),
    "AWS::RDS::DBSubnetGroup": (
        "DBSubnetGroupName",
        "`aws rds delete-db-subnet-group`, after the database",
    ),
    "AWS::SecretsManager::Secret": (
        "Name",
        "`aws secretsmanager delete-secret --secret-id <name>` (7-30 days to recover)",
    ),
    "AWS::Logs::LogGroup": ("LogGroupName", "`aws logs delete-log-group --log-group-name <name>`"),
    "AWS::KMS::Key": (
        "",
        "`aws kms schedule-key-deletion --key-id <id> --pending-window-in-days 30`, after "
        "everything it encrypts is gone",
    ),
    "AWS::ElastiCache::ReplicationGroup": (
        "ReplicationGroupId",
        "`aws elasticache delete-replication-group --replication-group-id <id>`",
    ),
}


@dataclass(frozen=True)
class Leftover:
    stack: str
    type: str
    logical_id: str
    name: str | None  # the physical name, where the template fixes it
    why: str  # "kept (RetainExceptOnCreate)", "final snapshot", "blocks deletion until empty"
    remove: str

    def line(self) -> str:
        name = self.name or "(named at deploy: aws cloudformation list-stack-resources)"
        return f"{self.stack}  {self.type} {self.logical_id}  {name}\n    {self.why}; {self.remove}"


def physical_name(resource: dict[str, Any]) -> str | None:
    """The name the template gives the resource: a literal, or joined from literals and the
    account and region (`aipp-prod-audio-<AWS::AccountId>-<AWS::Region>`); None when the
    name comes from elsewhere (chosen by CloudFormation, or another resource)."""
    key = HANDLING.get(resource["Type"], ("", ""))[0]
    value = resource.get("Properties", {}).get(key) if key else None
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        rendered = [_literal(part) for part in parts]
        return None if None in rendered else str(separator).join(str(p) for p in rendered)
    return _literal(value)


def _literal(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and str(value.get("Ref", "")).startswith("AWS::"):
        return f"<{value['Ref']}>"
    return None


def _auto_deleted(template: dict[str, Any]) -> set[str]:
    """Buckets CDK empties before deleting them (`autoDeleteObjects`)."""
    return {
        r["Properties"]["BucketName"]["Ref"]
        for r in template.get("Resources", {}).values()
        if r["Type"] == "Custom::S3AutoDeleteObjects"
        and isinstance(r["Properties"].get("BucketName"), dict)
        and "Ref" in r["Properties"]["BucketName"]
    }


def leftovers(templates: dict[str, dict[str, Any]]) -> Iterator[Leftover]:
    for stack, template in sorted(templates.items()):
        emptied = _auto_deleted(template)
        for logical_id, resource in template.get("Resources", {}).items():
            kind, policy = resource["Type"], resource.get("DeletionPolicy", "Delete")
            remove = HANDLING.get(kind, ("", "delete it with its service's console or CLI"))[1]
            if policy in KEEPING:
                why = f"kept ({policy})"
            elif policy == "Snapshot":
                why, remove = "deleted, its final snapshot kept", "delete the snapshot when done"
            elif kind == "AWS::S3::Bucket" and logical_id not in emptied:
                why = "blocks the stack's deletion until it is empty"
                remove = "empty every object version first; the stack then deletes it"
            else:
                continue
            yield Leftover(stack, kind, logical_id, physical_name(resource), why, remove)


def report(found: list[Leftover], where: str) -> str:
    if not found:
        return f"{where}: deleting these stacks leaves nothing behind."
    kept = [item for item in found if not item.why.startswith("blocks")]
    kinds: dict[str, int] = {}
    for item in kept:
        kinds[item.type] = kinds.get(item.type, 0) + 1
    summary = ", ".join(f"{n} {t.removeprefix('AWS::')}" for t, n in sorted(kinds.items()))
    lines = [f"{where}: deleting these stacks leaves {len(kept)} resources ({summary or 'none'})"]
    if len(found) > len(kept):
        lines.append(f"and {len(found) - len(kept)} bucket(s) must be emptied first")
    return "\n".join([*lines, "", *(item.line() for item in found)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assembly", type=Path, help="a synthesized assembly to read")
    parser.add_argument("--phase", help="synthesize this phase ...")
    parser.add_argument("--env", help="... of this environment")
    parser.add_argument("--overrides", default="", help="the environment's overrides")
    args = parser.parse_args(argv)
    try:
        if args.assembly:
            print(report(list(leftovers(load_assembly(args.assembly))), str(args.assembly)))
            return 0
        if not (args.phase and args.env):
            raise ConfigError("give --assembly, or --phase and --env")
        phase, env = parse_phase(args.phase), parse_env(args.env)
        with tempfile.TemporaryDirectory(prefix="leftovers-") as tmp:
            out = Path(tmp) / "assembly"
            synth_one(int(phase), env.value, out, overrides=parse_overrides(args.overrides))
            found = list(leftovers(load_assembly(out)))
        print(report(found, f"phase {int(phase)} / {env.value}"))
    except (ConfigError, AssemblyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
