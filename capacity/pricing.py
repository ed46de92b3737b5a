"""Monthly price of one always-on platform line (shared by the planner and the estimator)."""

from __future__ import annotations

from typing import Literal

from capacity.assumptions import Assumptions, FixedItem


def item_monthly_usd(item: FixedItem, a: Assumptions) -> float:
    """USD per month of one fixed line (``count`` of it) at the prices in ``a.infra``."""
    p = a.infra
    hours = a.load.hours_per_month
    match item.kind:
        case "eks_control_plane":
            unit = p.eks_control_plane_usd_per_hour * hours
        case "ec2":
            unit = p.ec2_usd_per_hour[str(item.size)] * hours
        case "fargate":
            unit = (
                item.vcpu * p.fargate_vcpu_usd_per_hour + item.memory_gb * p.fargate_gb_usd_per_hour
            ) * hours
        case "rds":
            copies = 2 if item.multi_az else 1
            unit = copies * (
                p.rds_usd_per_hour[str(item.size)] * hours
                + item.storage_gb * p.rds_storage_usd_per_gb_month
            )
        case "aurora":
            # storage is shared by the cluster: count it once, not per instance
            return (
                item.count * p.aurora_usd_per_hour[str(item.size)] * hours
                + item.storage_gb * p.aurora_storage_usd_per_gb_month
            )
        case "elasticache":
            unit = p.elasticache_usd_per_hour[str(item.size)] * hours
        case "nat_gateway":
            unit = (p.nat_gateway_usd_per_hour + p.public_ipv4_usd_per_hour) * hours
        case "load_balancer":
            unit = p.load_balancer_usd_per_hour * hours + p.load_balancer_lcu_usd_per_month
        case "interface_endpoint":
            unit = p.interface_endpoint_usd_per_hour_per_az * item.azs * hours
        case "flat":
            unit = item.usd_per_month
    return item.count * unit


def phase_fixed_usd(phase: int, a: Assumptions) -> float:
    """Always-on platform cost of a phase, USD per month (no AI usage, no GPU pools)."""
    key: Literal["1", "2", "3"] = "1" if phase == 1 else "2" if phase == 2 else "3"
    return sum(item_monthly_usd(i, a) for i in a.phases.fixed[key])
