"""Network: a VPC over N AZs with public, private (compute) and isolated (data) subnets."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_constructs.retention import retention
from phases import PhaseConfig

_ENDPOINTS = {
    "ecr.api": ec2.InterfaceVpcEndpointAwsService.ECR,
    "ecr.dkr": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "sqs": ec2.InterfaceVpcEndpointAwsService.SQS,
    "secretsmanager": ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER,
    "sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
}


MAX_AZS = 3
AGNOSTIC_AZS = 2


class NetworkStack(Stack):
    """VPC, NAT, endpoints and flow logs. Exposes `vpc`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PhaseConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        net = config.network

        # Address space for three AZs is always laid out (`reserved_azs`): an environment that
        # grows from 2 AZs to 3 adds subnets and keeps every existing subnet's CIDR.
        # An environment-agnostic stack can address 2 AZs only (see PhaseConfig).
        zones = list(net.availability_zones[: net.max_azs])
        used = len(zones) if zones else min(net.max_azs, AGNOSTIC_AZS)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(net.cidr),
            **({"availability_zones": zones} if zones else {"max_azs": used}),
            reserved_azs=MAX_AZS - used,
            nat_gateways=net.nat_gateways,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="Compute", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
                ec2.SubnetConfiguration(
                    name="Data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )

        self._flow_logs(config)
        self._interface_endpoints(config)

    def _flow_logs(self, config: PhaseConfig) -> None:
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=retention(config.network.flow_log_retention_days),
            removal_policy=RemovalPolicy.RETAIN if config.is_prod else RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _interface_endpoints(self, config: PhaseConfig) -> None:
        """The interface endpoints config asks for, in the compute subnets, HTTPS from the VPC."""
        net = config.network
        if not net.interface_endpoints:
            return
        endpoint_sg = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="HTTPS from inside the VPC to the interface endpoints",
            allow_all_outbound=False,
        )
        endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(net.cidr), ec2.Port.tcp(443), "VPC")
        for name in net.interface_endpoints:
            self.vpc.add_interface_endpoint(
                "Endpoint" + name.replace(".", " ").title().replace(" ", ""),
                service=_ENDPOINTS[name],
                subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                private_dns_enabled=True,
                security_groups=[endpoint_sg],
                open=False,
            )
