"""The delivery pipeline's configuration: where it reads the code, where it runs, and the phase
and overrides of each environment it deploys (stacks/delivery.py, tools/delivery.py).

`cdk synth -c delivery=@config/delivery.json` (or a JSON string) builds the pipeline's stack
instead of an environment; `config/delivery.example.json` is the example `make synth` uses. The
file is committed: each run of the pipeline synthesizes the environments from the commit's copy,
so moving an environment to another phase is a reviewed change to this file.
Every model is frozen and rejects unknown fields; each field says what it is for.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, field_validator

from phases.loader import (
    EXAMPLES,
    PHASE_ALIASES,
    ConfigError,
    deep_merge,
    describe,
    load_config,
    parse_overrides,
)
from phases.models import Env, Frozen, Phase, PhaseConfig

REPO_ROOT = EXAMPLES.parent
Account = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")]


class SmokeConfig(Frozen):
    """The task the pipeline sends through an environment after deploying it (tools/smoke.py)."""

    secret_name: str | None = Field(
        default=None,
        min_length=1,
        description="Secrets Manager secret with the smoke tenant's API key; default "
        "`<project>/<env>/smoke-api-key` (docs/operations.md#the-smoke-tenant).",
    )
    timeout_minutes: int = Field(
        default=20,
        ge=1,
        le=120,
        description="How long the task may take, from upload to `completed`. Workers scale "
        "from zero, GPU workers with their node: allow for a cold start.",
    )


class DeliveryEnvironment(Frozen):
    """One environment the pipeline deploys: at which phase, into which account."""

    phase: Phase = Field(description="The phase the environment runs at (1, 2, 3 or a name).")
    account: Account = Field(description="The AWS account the environment lives in.")
    region: Region = Field(description="The environment's region.")
    overrides: str | dict[str, Any] = Field(
        default_factory=dict,
        description="The environment's overrides (as `-c overrides=`): a JSON object, or "
        "`@path/to/file.json` relative to the repository root. Committed with the code.",
    )
    api_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+$",
        description="Where the smoke step reaches the API, when not at the compute stack's "
        "`ApiUrl` output (e.g. a certificate for a name other than `edge.domain`).",
    )
    smoke: SmokeConfig = Field(default_factory=SmokeConfig, description="The smoke step.")

    @field_validator("phase", mode="before")
    @classmethod
    def _phase(cls, value: object) -> Phase:
        key = str(value).strip().lower()
        if key not in PHASE_ALIASES:  # no `auto`: an environment runs at a phase you chose
            raise ValueError(f"unknown phase {value!r}: choose one of {', '.join(PHASE_ALIASES)}")
        return PHASE_ALIASES[key]

    def placed_overrides(self) -> dict[str, Any]:
        """The overrides `cdk synth -c overrides=` gets: the environment's own, in the account
        and region named here."""
        overrides = self.overrides
        if isinstance(overrides, str) and overrides.startswith("@"):
            path = Path(overrides[1:])
            overrides = f"@{path if path.is_absolute() else REPO_ROOT / path}"
        return deep_merge(
            parse_overrides(overrides), {"account": self.account, "region": self.region}
        )

    def platform(self, env: Env) -> PhaseConfig:
        """The environment's validated `PhaseConfig`, in the account and region named here."""
        try:
            config = load_config(self.phase, env, self.placed_overrides())
        except ConfigError as exc:
            raise ConfigError(f"delivery.{env.value}: {exc}") from None
        if not config.network.availability_zones:
            raise ConfigError(
                f"delivery.{env.value}: name network.availability_zones in its overrides "
                "(a subnet's zone is fixed from the first deploy, and the pipeline's synth "
                "looks nothing up in the environment's account)"
            )
        return config


class DeliveryConfig(Frozen):
    """The pipeline: its source, where it runs, and the environments in promotion order."""

    account: Account = Field(description="The AWS account the pipeline runs in.")
    region: Region = Field(description="The pipeline's region.")
    connection_arn: str = Field(
        pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:\d{12}:"
        r"connection/[0-9a-f-]+$",
        description="The CodeConnections (CodeStar) connection to the repository host, created "
        "and approved once in the console (docs/operations.md#the-delivery-pipeline).",
    )
    repository: str = Field(
        pattern=r"^[\w.-]+/[\w.-]+$", description="`owner/name` of the repository."
    )
    branch: str = Field(default="main", min_length=1, description="The branch that releases.")
    approval_email: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Who is asked to approve the prod release (SNS email); the approval "
        "waits in the console either way.",
    )
    staging: DeliveryEnvironment = Field(description="Deployed first, then smoke-tested.")
    prod: DeliveryEnvironment = Field(description="Deployed after the manual approval.")

    def environment(self, env: Env) -> DeliveryEnvironment:
        chosen: DeliveryEnvironment = getattr(self, env.value)
        return chosen


def load_delivery(value: object) -> DeliveryConfig:
    """`-c delivery=` as JSON or `@file` (the same forms as `-c overrides=`), validated."""
    tree = value if isinstance(value, Mapping) else parse_overrides(value)
    if not tree:
        raise ConfigError("delivery: the pipeline's config is empty (-c delivery=@file.json)")
    try:
        return DeliveryConfig.model_validate(tree)
    except ValidationError as exc:
        message = describe(exc, DeliveryConfig)
        raise ConfigError(message.replace("invalid config", "invalid delivery config", 1)) from None
