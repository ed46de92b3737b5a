"""The delivery pipeline's stack (stacks/delivery.py), from `config/delivery.example.json`: the
pipeline in one account, staging (phase 2) and prod (phase 1) in two others."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.infra.conftest import CfnLint, DeliveryAssembly, normalize

STAGES = ["Source", "Synth", "Assets", "Staging", "Prod"]
QUALIFIER = "hnb659fds"


def pipeline_stages(template: dict[str, Any]) -> list[dict[str, Any]]:
    (pipeline,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"
    ]
    stages: list[dict[str, Any]] = pipeline["Properties"]["Stages"]
    return stages


def project_of(template: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    project: dict[str, Any] = template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]
    return project


def buildspec(template: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(
        project_of(template, action)["Properties"]["Source"]["BuildSpec"]
    )
    return spec


def deploys_to(template: dict[str, Any], action: dict[str, Any]) -> str | None:
    """The environment an action deploys (`cdk deploy --app .../<env>`), if it deploys."""
    if action["ActionTypeId"]["Category"] != "Build":
        return None
    for command in buildspec(template, action)["phases"]["build"]["commands"]:
        if command.startswith("npx cdk deploy "):
            return str(command.split('--app "')[1].split('"')[0].rsplit("/", 1)[-1])
    return None


def prod_gate_problems(template: dict[str, Any]) -> list[str]:
    """Why prod could be deployed without a person approving (empty: it cannot).

    CodePipeline runs its stages in order and, within a stage, actions by RunOrder; so prod is
    gated when every action that deploys prod runs after an approval of its own stage, strictly.
    """
    problems = []
    for stage in pipeline_stages(template):
        approvals = [
            a["RunOrder"] for a in stage["Actions"] if a["ActionTypeId"]["Category"] == "Approval"
        ]
        for action in stage["Actions"]:
            if deploys_to(template, action) != "prod":
                continue
            if not approvals or action["RunOrder"] <= min(approvals):
                problems.append(f"{stage['Name']}/{action['Name']} deploys prod unapproved")
    return problems


def test_source_synth_assets_staging_then_prod(delivery: DeliveryAssembly) -> None:
    stages = pipeline_stages(delivery.template)
    assert [s["Name"] for s in stages] == STAGES
    (source,) = stages[0]["Actions"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": "arn:aws:codeconnections:us-east-1:111111111111:connection/"
        "0f6e2d4c-8a1b-4c3d-9e7f-5a6b7c8d9e0f",
        "FullRepositoryId": "example-org/ai-processing-platform",
        "BranchName": "main",
    }
    (synth,) = stages[1]["Actions"]
    assert buildspec(delivery.template, synth)["phases"]["build"]["commands"] == [
        ".venv/bin/python -m tools.delivery synth --delivery @config/delivery.example.json "
        "--out cdk.out"
    ]
    (publish,) = stages[2]["Actions"]
    assert buildspec(delivery.template, publish)["phases"]["build"]["commands"] == [
        'npx cdk publish-assets --app "$CODEBUILD_SRC_DIR_Assemblies/staging" --all',
        'npx cdk publish-assets --app "$CODEBUILD_SRC_DIR_Assemblies/prod" --all',
    ]
    assert project_of(delivery.template, publish)["Properties"]["Environment"]["PrivilegedMode"]


def test_prod_cannot_be_reached_without_the_manual_approval(delivery: DeliveryAssembly) -> None:
    template = delivery.template
    where = {
        (stage["Name"], action["Name"]): deploys_to(template, action)
        for stage in pipeline_stages(template)
        for action in stage["Actions"]
    }
    assert {k for k, env in where.items() if env == "prod"} == {("Prod", "Deploy")}
    assert {k for k, env in where.items() if env == "staging"} == {("Staging", "Deploy")}
    assert prod_gate_problems(template) == []
    prod = {a["Name"]: a for a in pipeline_stages(template)[-1]["Actions"]}
    assert prod["PromoteToProd"]["ActionTypeId"]["Category"] == "Approval"
    assert [prod[n]["RunOrder"] for n in ("PromoteToProd", "Deploy", "Smoke")] == [1, 2, 3]


@pytest.mark.parametrize("mutation", ["after", "beside", "removed", "earlier stage"])
def test_the_gate_check_catches_a_pipeline_without_its_approval(
    delivery: DeliveryAssembly, mutation: str
) -> None:
    """The check above can fail: the approval moved after or beside the deploy, dropped, or
    the prod deploy moved into a stage before the approval."""
    template = copy.deepcopy(delivery.template)
    stages = pipeline_stages(template)
    prod = stages[-1]["Actions"]
    approval = next(a for a in prod if a["Name"] == "PromoteToProd")
    deploy = next(a for a in prod if a["Name"] == "Deploy")
    if mutation == "after":
        approval["RunOrder"] = 9
    elif mutation == "beside":
        approval["RunOrder"] = deploy["RunOrder"]
    elif mutation == "removed":
        prod.remove(approval)
    else:
        prod.remove(deploy)
        stages[-2]["Actions"].append(deploy)
    assert prod_gate_problems(template)


def test_each_environment_ends_with_its_smoke_task(delivery: DeliveryAssembly) -> None:
    for stage in pipeline_stages(delivery.template)[3:]:
        env = stage["Name"].lower()
        smoke = stage["Actions"][-1]
        assert smoke["Name"] == "Smoke"
        assert smoke["RunOrder"] == max(a["RunOrder"] for a in stage["Actions"])
        assert [i["Name"] for i in smoke["InputArtifacts"]] == [
            "Source",
            "Assemblies",
            f"{stage['Name']}Outputs",
        ]
        spec = buildspec(delivery.template, smoke)
        assert spec["phases"]["build"]["commands"] == [
            "/tmp/smoke/bin/python -m tools.delivery smoke "
            f'--plan "$CODEBUILD_SRC_DIR_Assemblies/{env}.plan.json" '
            f'--outputs "$CODEBUILD_SRC_DIR_{stage["Name"]}Outputs/{env}.json"'
        ]
        assert "--require-hashes" in spec["phases"]["install"]["commands"][1]


def role_statements(template: dict[str, Any], action: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of the policies attached to an action's CodeBuild project role."""
    role = project_of(template, action)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    return [
        statement
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
        for statement in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def bootstrap(account: str, kind: str) -> str:
    return f"arn:aws:iam::{account}:role/cdk-{QUALIFIER}-{kind}-role-{account}-us-east-1"


def test_each_role_reaches_only_its_own_environment(delivery: DeliveryAssembly) -> None:
    """Deploy roles assume the bootstrap roles of their environment only; the smoke roles read
    one secret; the synth role reaches no account at all."""
    accounts = {"Staging": "222222222222", "Prod": "333333333333"}
    stages = {s["Name"]: s for s in pipeline_stages(delivery.template)}

    def extra(action: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            s
            for s in role_statements(delivery.template, action)
            if not str(s["Action"]).startswith(("['s3:", "['kms:", "['logs:"))
        ]

    assert extra(stages["Synth"]["Actions"][0]) == []
    publishing = [
        bootstrap(a, k) for a in accounts.values() for k in ("file-publishing", "image-publishing")
    ]
    assert extra(stages["Assets"]["Actions"][0]) == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": publishing}
    ]
    for name, account in accounts.items():
        actions = {a["Name"]: a for a in stages[name]["Actions"]}
        kinds = ("deploy", "file-publishing", "image-publishing")
        assert extra(actions["Deploy"]) == [
            {
                "Action": "sts:AssumeRole",
                "Effect": "Allow",
                "Resource": [bootstrap(account, k) for k in kinds],
            }
        ]
        assert extra(actions["Smoke"]) == [
            {
                "Action": "secretsmanager:GetSecretValue",
                "Effect": "Allow",
                "Resource": "arn:aws:secretsmanager:us-east-1:111111111111:secret:"
                f"aipp/{name.lower()}/smoke-api-key-??????",
            }
        ]


def test_artifacts_are_encrypted_with_a_rotating_key_and_logged(delivery: DeliveryAssembly) -> None:
    resources = delivery.template["Resources"]
    (key,) = [r for r in resources.values() if r["Type"] == "AWS::KMS::Key"]
    assert key["Properties"]["EnableKeyRotation"] is True
    buckets = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::S3::Bucket"]
    artifacts = next(b for b in buckets if "LoggingConfiguration" in b)
    rule = artifacts["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    for bucket in buckets:
        assert bucket["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    for project in (r for r in resources.values() if r["Type"] == "AWS::CodeBuild::Project"):
        assert "EncryptionKey" in project["Properties"]


def test_no_nag_findings_left(delivery: DeliveryAssembly) -> None:
    assert delivery.findings == []


def test_the_pipeline_template_is_lint_clean(delivery: DeliveryAssembly, cfn_lint: CfnLint) -> None:
    assert cfn_lint.findings(delivery.outdir) == []


def test_delivery_matches_snapshot(delivery: DeliveryAssembly, snapshot: SnapshotAssertion) -> None:
    assert normalize(delivery.template) == snapshot.use_extension(JSONSnapshotExtension)
