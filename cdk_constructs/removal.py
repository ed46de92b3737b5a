"""Retained resources are retained on update and delete, never after a failed first create.

A resource kept with `Retain` survives the rollback of the stack creation that made it: the
retry then fails on "already exists" (the buckets have fixed names), and a kept database would
outlive its deleted secret with nobody holding its password. `RetainExceptOnCreate` keeps it on
every later update and deletion but removes what a failed creation made, so the retry starts
clean. The aspect rewrites every `Retain` the constructs chose (CDK's own defaults included,
e.g. log groups and KMS keys), so no retained resource can slip through with the old policy.
"""

from __future__ import annotations

import jsii
from aws_cdk import CfnDeletionPolicy, CfnResource, IAspect
from constructs import IConstruct


@jsii.implements(IAspect)
class RetainExceptOnCreate:
    """Turns every `DeletionPolicy: Retain` into `RetainExceptOnCreate`."""

    def visit(self, node: IConstruct) -> None:
        if (
            isinstance(node, CfnResource)
            and node.cfn_options.deletion_policy == CfnDeletionPolicy.RETAIN
        ):
            node.cfn_options.deletion_policy = CfnDeletionPolicy.RETAIN_EXCEPT_ON_CREATE
