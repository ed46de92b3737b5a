"""Security-group access between services, written as ingress on the target only.

`Connections.allow_to` also writes an egress rule on the source, which CDK ignores (and warns
about) for security groups that allow all outbound traffic, as Fargate and Lambda ones do.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2


def allow_ingress(target: ec2.Connections, source: ec2.IConnectable, description: str) -> None:
    """Let `source` reach `target` on the target's default port.

    `remote_rule` puts the ingress rule in the source's stack, which already depends on the
    target's stack, so the dependency stays one-way.
    """
    port = target.default_port
    if port is None:
        raise ValueError("target connections need a default port")
    for target_sg in target.security_groups:
        for source_sg in source.connections.security_groups:
            target_sg.add_ingress_rule(source_sg, port, description, remote_rule=True)
