"""Edge: what clients reach, the same whatever phase serves them.

- The AWS WAF web ACL that every public load balancer of the API is associated with (the ECS
  ALB through an association, the EKS Ingress ALB through its annotation): AWS managed rules and
  a per-IP rate limit, logged with the API-key headers redacted.
- With `edge.domain`: the hosted zone of the API's stable address and, unless
  `edge.certificate_arn` names one, an ACM certificate for it validated through that zone. Each
  compute stack points a weighted record of that name at its own load balancer, so traffic moves
  between computes by weights and clients keep the address (docs/phase-switch.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from cdk_constructs.retention import retention
from phases import PhaseConfig
from phases.models import DomainConfig, WafConfig

# Headers that carry API keys: never written to WAF logs.
CREDENTIAL_HEADERS = ("authorization", "x-api-key")


def hosted_zone(scope: Construct, domain: DomainConfig) -> route53.IHostedZone:
    """The zone of the API's address, from config (no lookup, no credentials at synth)."""
    return route53.HostedZone.from_hosted_zone_attributes(
        scope, "Zone", hosted_zone_id=domain.hosted_zone_id, zone_name=domain.hosted_zone_name
    )


@dataclass(frozen=True)
class ApiOutputs:
    """A compute stack's `ApiUrl` and `ApiRelease` outputs: where the delivery pipeline's smoke
    step reaches that compute's API, and the release every answer must report after a deploy."""

    url: CfnOutput
    release: CfnOutput


def api_outputs(
    stack: Stack, config: PhaseConfig, *, host: str, https: bool, release: str
) -> ApiOutputs:
    """The API's stable address with `edge.domain`, else its load balancer's DNS name."""
    domain = config.edge.domain
    url = f"https://{domain.name}" if domain else f"{'https' if https else 'http'}://{host}"
    return ApiOutputs(
        url=CfnOutput(stack, "ApiUrl", value=url, description="the task API's base URL"),
        release=CfnOutput(
            stack,
            "ApiRelease",
            value=release,
            description="the API image's asset hash, which GET /healthz reports",
        ),
    )


class EdgeStack(Stack):
    """Exposes `web_acl_arn` and `certificate_arn` (None without HTTPS)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PhaseConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        edge = config.edge
        self.certificate_arn = edge.certificate_arn
        if edge.domain is not None and edge.certificate_arn is None:
            certificate = acm.Certificate(
                self,
                "Certificate",
                domain_name=edge.domain.name,
                validation=acm.CertificateValidation.from_dns(hosted_zone(self, edge.domain)),
            )
            self.certificate_arn = certificate.certificate_arn
        self.web_acl_arn = self._web_acl(config)

    def _web_acl(self, config: PhaseConfig) -> str:
        waf = config.edge.waf
        name = f"{config.name_prefix}-api"
        rules = [_managed_rule(group, i, waf) for i, group in enumerate(waf.managed_rule_groups)]
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="RatePerIp",
                priority=len(rules),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=waf.rate_limit_per_ip
                    )
                ),
                visibility_config=_visibility("RatePerIp"),
            )
        )
        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            description="Public load balancers of the task API",
            rules=rules,
            visibility_config=_visibility(name),
        )
        self._log(acl, name, waf.log_retention_days)
        return acl.attr_arn

    def _log(self, acl: wafv2.CfnWebACL, name: str, retention_days: int) -> None:
        """Every request WAF sees, to a log group (WAF delivers only to `aws-waf-logs-*`), with
        the headers that carry API keys redacted."""
        log_name = f"aws-waf-logs-{name}"
        group = logs.LogGroup(
            self, "WafLogs", log_group_name=log_name, retention=retention(retention_days)
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                self.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=log_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": header})
                for header in CREDENTIAL_HEADERS
            ],
        ).node.add_dependency(group)


def _visibility(metric: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric, sampled_requests_enabled=True
    )


def _managed_rule(group: str, priority: int, waf: WafConfig) -> wafv2.CfnWebACL.RuleProperty:
    """An AWS managed rule group; in the common rule set, `count_only_rules` only count."""
    overrides = (
        [
            wafv2.CfnWebACL.RuleActionOverrideProperty(
                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
            )
            for rule in waf.count_only_rules
        ]
        if group == "AWSManagedRulesCommonRuleSet" and waf.count_only_rules
        else None
    )
    return wafv2.CfnWebACL.RuleProperty(
        name=group,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS", name=group, rule_action_overrides=overrides
            )
        ),
        visibility_config=_visibility(group),
    )
