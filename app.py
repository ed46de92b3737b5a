#!/usr/bin/env python3
"""CDK entry point: `cdk synth -c phase=<1|2|3|mvp|growth|scale> -c env=<staging|prod>`.

`-c transition=<from phase>:<expand|cutover|retire>[:<traffic %>]` stages a switch between ECS
and EKS (docs/phase-switch.md). `-c delivery=@config/delivery.json` builds the delivery pipeline
instead (stacks/delivery.py): deployed once per account, it deploys every environment.

Checks the context before the CDK loads (a bad value exits 2 with one line, in a fraction of a
second), then builds the validated `PhaseConfig`, adds the phase's stacks and runs cdk-nag's
AwsSolutions checks on every synth.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phases import ConfigError, PhaseConfig, load_config
from phases.delivery import load_delivery

if TYPE_CHECKING:
    import aws_cdk as cdk

    from stacks.delivery import DeliveryStack

# The CDK (a Node.js process behind jsii) takes over a second to load: it is imported where it
# is used, after `check_context` has looked at every value that needs no CDK.

CDK_JSON = Path(__file__).resolve().parent / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json (defaults and feature flags), for apps built outside the CLI."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


CONTEXT_KEYS = (
    "phase",
    "env",
    "overrides",
    "transition",
    "tasks_per_month",
    "avg_audio_minutes",
    "delivery",
)


def config_from_context(context: Mapping[str, Any]) -> PhaseConfig:
    """The `PhaseConfig` for the `phase`, `env` and `overrides` context values.

    `phase=auto` lets the capacity planner choose the phase and size the GPU pools from
    `tasks_per_month` and `avg_audio_minutes`; the figures it chose are printed.
    """
    if _auto(context):
        from stacks.sizing import auto_config  # noqa: PLC0415 - loads the CDK

        sizing = auto_config(context)
        print(sizing.summary(), file=sys.stderr)
        return sizing.config
    return load_config(
        phase=context.get("phase", "1"),
        env=context.get("env", "staging"),
        overrides=context.get("overrides"),
        transition=context.get("transition"),
    )


def _auto(context: Mapping[str, Any]) -> bool:
    return str(context.get("phase", "")).strip().lower() == "auto"


def check_context_keys(keys: list[str]) -> None:
    """Reject a mistyped `-c key=value` instead of silently ignoring it.

    Feature flags (`@aws-cdk/...`) and the CLI's own keys (`aws:cdk:...`, lookups) contain `@`
    or `:`; every other key must be one this app reads.
    """
    unknown = sorted(k for k in keys if k not in CONTEXT_KEYS and not (set(k) & {"@", ":"}))
    if unknown:
        raise ConfigError(
            f"unknown context key {unknown[0]!r}: valid keys are {', '.join(CONTEXT_KEYS)}"
        )


def _given(context: Mapping[str, Any]) -> dict[str, Any]:
    """The values of this app's context keys that are set, once every key is known to be one."""
    check_context_keys(list(context))
    return {key: context[key] for key in CONTEXT_KEYS if context.get(key) is not None}


def check_delivery_context(context: Mapping[str, Any]) -> None:
    """`-c delivery` takes each environment's phase and overrides from its own file."""
    check_context_keys(list(context))
    for key in ("overrides", "transition", "tasks_per_month", "avg_audio_minutes"):
        if context.get(key) is not None:
            raise ConfigError(f"-c {key} does not apply with -c delivery: set it per environment")


def cli_context(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The context the CDK CLI hands the app, read as `cdk.App` reads it: CDK_CONTEXT_JSON, and
    the file CONTEXT_OVERFLOW_LOCATION_ENV names when there was too much for the variable."""
    context: dict[str, Any] = json.loads(environ.get("CDK_CONTEXT_JSON") or "{}")
    overflow = environ.get("CONTEXT_OVERFLOW_LOCATION_ENV")
    if overflow:
        context.update(json.loads(Path(overflow).read_text()))
    return context


def check_context(context: Mapping[str, Any]) -> None:
    """Every check of the context that needs no CDK, so that a mistyped `-c` fails before the
    CDK loads: the keys, and the phase's config or the delivery file (`phase=auto` is sized by
    the capacity planner, which needs the CDK, and is checked when the app is built)."""
    if context.get("delivery") is not None:
        check_delivery_context(context)
        load_delivery(context["delivery"])
        return
    given = _given(context)
    if not _auto(given):
        config_from_context(given)


def build_app(app: cdk.App, *, nag: bool = True) -> tuple[PhaseConfig, list[cdk.Stack]]:
    """Add the configured phase's stacks to `app`, and cdk-nag's checks unless `nag=False`
    (callers that run `AwsSolutionsChecks().validate_scope` themselves)."""
    from stacks import build_platform  # noqa: PLC0415 - loads the CDK

    config = config_from_context(_given(app.node.get_all_context()))
    if config.network.max_azs > 2 and not config.network.availability_zones:
        print(
            f"note: network.max_azs is {config.network.max_azs} but the VPC spans 2 AZs until "
            "`region` and `network.availability_zones` name them (see docs/operations.md)",
            file=sys.stderr,
        )
    _name_the_zones(app, config)
    stacks = build_platform(app, config)
    if nag:
        _check_with_nag(app)
    return config, stacks


def _check_with_nag(app: cdk.App) -> None:
    """cdk-nag's AwsSolutions checks on every synth of `app`."""
    import aws_cdk as cdk  # noqa: PLC0415 - loaded by whoever made `app` already
    from cdk_nag import AwsSolutionsChecks  # noqa: PLC0415

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def _name_the_zones(app: cdk.App, config: PhaseConfig) -> None:
    """An environment in a named account and region that names its availability zones needs no
    lookup of them: CDK is told, so synth needs no AWS credentials (the delivery pipeline's
    synth has none in the environments' accounts)."""
    zones = list(config.network.availability_zones)
    if config.account and config.region and zones:
        key = f"availability-zones:account={config.account}:region={config.region}"
        if app.node.try_get_context(key) is None:
            app.node.set_context(key, zones)


def build_delivery_app(app: cdk.App, *, nag: bool = True) -> DeliveryStack:
    """The delivery pipeline and its stages, from `-c delivery=` (JSON or @file); each
    environment's phase and overrides come from there, not from `-c phase/env/overrides`."""
    from stacks.delivery import build_delivery  # noqa: PLC0415 - loads the CDK

    context = app.node.get_all_context()
    check_delivery_context(context)
    value = context.get("delivery")
    stack = build_delivery(app, load_delivery(value), str(value))
    if nag:
        _check_with_nag(app)
    return stack


def _built_app() -> cdk.App:
    """The app of the CLI's context, its stacks added (the CDK loads here)."""
    import aws_cdk as cdk  # noqa: PLC0415

    from cdk_constructs.eks_addons import AddonDependencyError  # noqa: PLC0415

    app = cdk.App()
    try:
        if app.node.try_get_context("delivery") is not None:
            build_delivery_app(app)
        else:
            build_app(app)
    except AddonDependencyError as exc:
        raise ConfigError(str(exc)) from None
    return app


def main() -> int:
    try:
        check_context(cli_context())
        app = _built_app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
