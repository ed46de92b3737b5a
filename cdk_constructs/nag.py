"""cdk-nag v3 acknowledgements, kept next to the resource they excuse."""

from __future__ import annotations

from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one AwsSolutions rule (or one finding, `Rule[Finding]`) with a true reason."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgement of {rule} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def nag_resource_id(scope: IConstruct, value: str) -> str:
    """How cdk-nag spells a resource string in a finding id, resolved as the stack renders it:
    literals as they are, `Ref`s as `<Name>`, `Fn::GetAtt` as `<Name.Attribute>`."""

    def render(part: Any) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict) and "Ref" in part:
            return f"<{part['Ref']}>"
        if isinstance(part, dict) and "Fn::GetAtt" in part:
            return f"<{'.'.join(part['Fn::GetAtt'])}>"
        if isinstance(part, dict) and "Fn::Join" in part:
            separator, parts = part["Fn::Join"]
            return str(separator).join(render(p) for p in parts)
        raise ValueError(f"cannot render {part!r} as cdk-nag does")

    return render(Stack.of(scope).resolve(value))


def acknowledge_singleton(scope: IConstruct, id_prefix: str, rule: str, reason: str) -> None:
    """Acknowledge a rule on the stack-level singleton CDK adds for us (e.g. `LogRetention...`).

    Raises when the singleton is missing, so a stale acknowledgement cannot linger.
    """
    stack = Stack.of(scope)
    found = [c for c in stack.node.children if c.node.id.startswith(id_prefix)]
    if not found:
        raise LookupError(f"no construct starting with {id_prefix!r} in {stack.stack_name}")
    for child in found:
        acknowledge(child, rule, reason)


# The id CDK gives the one Lambda function behind every `AwsCustomResource` of a stack.
AWS_CUSTOM_RESOURCE_FUNCTION = "AWS679f53fac002430cb0da5b7982bd2287"


def acknowledge_sdk_call_function(scope: IConstruct) -> None:
    """The function that runs a stack's `AwsCustomResource` SDK calls uses the basic policy."""
    acknowledge_singleton(
        scope,
        AWS_CUSTOM_RESOURCE_FUNCTION,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
        "AWSLambdaBasicExecutionRole]",
        "CDK's AwsCustomResource function logs with the AWS-maintained basic policy; what it "
        "may call is the custom resource's own, narrowly scoped policy.",
    )
