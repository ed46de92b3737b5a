"""Every number the planner uses, as one validated, frozen object.

The defaults live in ``defaults.toml`` beside this module; each value there has a unit (in the
field's description below) and a public source with a date, or says "assumption" (the
``[sources]`` table). Users override any of them from a TOML/JSON file or ``--set path=value``.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class AssumptionError(ValueError):
    """A bad assumption or input; ``str(err)`` is one line that names the field."""


class _Model(BaseModel):
    # inf and NaN are never a price, a rate or a count: a float field rejects them by name
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# --- managed services ---------------------------------------------------------------------------


class TranscribeTier(_Model):
    up_to_minutes: PositiveFloat | None = Field(
        default=None,
        description="upper bound of the tier, audio minutes per month (null: no upper bound)",
    )
    usd_per_minute: PositiveFloat = Field(description="price in USD per audio minute")


class Transcribe(_Model):
    tiers: tuple[TranscribeTier, ...] = Field(
        min_length=1, description="standard batch volume tiers, cheapest last"
    )
    minimum_billed_seconds: NonNegativeFloat = Field(
        description="minimum charge per request, seconds of audio"
    )

    @model_validator(mode="after")
    def _tiers_ascend(self) -> Transcribe:
        bounds = [t.up_to_minutes for t in self.tiers]
        if bounds[-1] is not None:
            raise ValueError("the last tier must have up_to_minutes = null (no upper bound)")
        finite = [b for b in bounds[:-1] if b is not None]
        if len(finite) != len(bounds) - 1 or finite != sorted(set(finite)):
            raise ValueError("tier bounds must be numbers that strictly increase")
        return self


class BedrockPrice(_Model):
    input_usd_per_1k_tokens: PositiveFloat = Field(description="USD per 1,000 input tokens")
    output_usd_per_1k_tokens: PositiveFloat = Field(description="USD per 1,000 output tokens")


class Bedrock(_Model):
    model: str = Field(description="key into prices: the model the platform is configured with")
    prices: dict[str, BedrockPrice] = Field(description="on-demand prices per model")

    @model_validator(mode="after")
    def _model_known(self) -> Bedrock:
        if self.model not in self.prices:
            raise ValueError(
                f"model: unknown model {self.model!r} (known: {', '.join(sorted(self.prices))})"
            )
        return self


class SummaryTokens(_Model):
    """The LLM's work per task, the same for Bedrock (billed) and vLLM (GPU time)."""

    transcript_tokens_per_audio_minute: PositiveFloat = Field(
        description="tokens of transcript per minute of speech (LLM input)"
    )
    prompt_overhead_tokens: NonNegativeFloat = Field(
        description="system prompt and instructions per summary, tokens (LLM input)"
    )
    output_tokens: PositiveFloat = Field(description="tokens generated per summary (LLM output)")


# --- self-hosted GPUs ---------------------------------------------------------------------------


class GpuInstance(_Model):
    gpu: str = Field(description="accelerator model and memory, for the reader")
    on_demand_usd_per_hour: PositiveFloat = Field(description="on-demand price, USD per hour")
    spot_usd_per_hour: PositiveFloat = Field(description="typical Spot price, USD per hour")

    @model_validator(mode="after")
    def _spot_not_dearer(self) -> GpuInstance:
        if self.spot_usd_per_hour > self.on_demand_usd_per_hour:
            raise ValueError("spot_usd_per_hour must not exceed on_demand_usd_per_hour")
        return self


class SttPool(_Model):
    instance_type: str = Field(description="GPU instance type of the Whisper pool")
    audio_minutes_per_gpu_minute: PositiveFloat = Field(
        description="STT throughput: minutes of audio transcribed per minute of one GPU"
    )


class LlmPool(_Model):
    instance_type: str = Field(description="GPU instance type of the vLLM pool")
    prefill_tokens_per_second: PositiveFloat = Field(
        description="LLM prompt processing per GPU: input tokens per second of GPU time"
    )
    decode_tokens_per_second: PositiveFloat = Field(
        description="LLM generation per GPU: output tokens per second, batched at `concurrency`"
    )
    concurrency: Annotated[int, Field(ge=1)] = Field(
        description="concurrent requests per GPU at which the decode throughput holds"
    )


class Gpu(_Model):
    instances: dict[str, GpuInstance] = Field(description="GPU instance types the pools may use")
    stt: SttPool
    llm: LlmPool
    spot_share: Fraction = Field(
        description="share of the GPU hours above on_demand_base_gpus that run on Spot (0..1)"
    )
    target_utilisation: Annotated[float, Field(gt=0, le=1)] = Field(
        description="utilisation the autoscaler aims for at peak (0..1]"
    )
    min_gpus_per_pool: Annotated[int, Field(ge=1)] = Field(
        description="GPUs each pool keeps warm when self-hosting (cold start is minutes)"
    )
    on_demand_base_gpus: Annotated[int, Field(ge=0)] = Field(
        description="GPUs of each pool that run On-Demand every hour they run; spot_share "
        "applies to the GPUs above them"
    )
    phase2_max_gpus_per_pool: Annotated[int, Field(ge=1)] = Field(
        description="largest pool phase 2 is sized for; beyond it the plan moves to phase 3"
    )

    @model_validator(mode="after")
    def _types_known(self) -> Gpu:
        for pool in ("stt", "llm"):
            itype = getattr(self, pool).instance_type
            if itype not in self.instances:
                known = ", ".join(sorted(self.instances))
                raise ValueError(
                    f"{pool}.instance_type: unknown instance type {itype!r} (known: {known})"
                )
        return self


HOURS_PER_DAY = 24


class Load(_Model):
    hourly_profile: tuple[Annotated[float, Field(ge=0, le=1e12)], ...] = Field(
        min_length=HOURS_PER_DAY,
        max_length=HOURS_PER_DAY,
        description="share of a day's tasks arriving in each hour 0..23 (any scale: the "
        "planner divides by the sum); every day of the month has this shape",
    )
    hours_per_month: Annotated[float, Field(ge=28 * 24, le=31 * 24)] = Field(
        description="hours billed per month (672..744)"
    )

    @model_validator(mode="after")
    def _some_traffic(self) -> Load:
        if not any(w > 0 for w in self.hourly_profile):
            raise ValueError("hourly_profile: at least one hour must have traffic")
        return self

    @property
    def hourly_shares(self) -> tuple[float, ...]:
        """The profile scaled to sum to 1."""
        total = math.fsum(self.hourly_profile)
        return tuple(w / total for w in self.hourly_profile)

    @property
    def peak_to_average(self) -> float:
        """Busiest hour's load divided by the day's average hourly load."""
        return max(self.hourly_shares) * HOURS_PER_DAY


# --- fixed platform cost ------------------------------------------------------------------------


class InfraPrices(_Model):
    eks_control_plane_usd_per_hour: NonNegativeFloat = Field(description="USD per cluster-hour")
    fargate_vcpu_usd_per_hour: PositiveFloat = Field(description="Fargate x86, USD per vCPU-hour")
    fargate_gb_usd_per_hour: PositiveFloat = Field(description="Fargate x86, USD per GB-hour")
    fargate_arm_vcpu_usd_per_hour: PositiveFloat = Field(description="Fargate ARM64, USD/vCPU-h")
    fargate_arm_gb_usd_per_hour: PositiveFloat = Field(description="Fargate ARM64, USD per GB-h")
    nat_gateway_usd_per_hour: NonNegativeFloat = Field(description="USD per NAT gateway-hour")
    load_balancer_usd_per_hour: NonNegativeFloat = Field(description="USD per ALB/NLB-hour")
    load_balancer_lcu_usd_per_month: NonNegativeFloat = Field(
        description="capacity units a small load balancer uses, USD per month"
    )
    interface_endpoint_usd_per_hour_per_az: NonNegativeFloat = Field(
        description="interface VPC endpoint, USD per hour per AZ"
    )
    public_ipv4_usd_per_hour: NonNegativeFloat = Field(description="USD per public IPv4-hour")
    ec2_usd_per_hour: dict[str, PositiveFloat] = Field(
        description="non-GPU EC2 on-demand prices, USD per instance-hour"
    )
    ec2_spot_discount: Fraction = Field(description="Spot discount on non-GPU EC2 instances (0..1)")
    ebs_gp3_usd_per_gb_month: NonNegativeFloat = Field(description="USD per GB-month")
    rds_usd_per_hour: dict[str, PositiveFloat] = Field(
        description="RDS PostgreSQL single-AZ prices, USD per instance-hour (Multi-AZ: x2)"
    )
    rds_storage_usd_per_gb_month: NonNegativeFloat = Field(
        description="RDS storage, single-AZ, USD per GB-month (Multi-AZ: x2)"
    )
    aurora_usd_per_hour: dict[str, PositiveFloat] = Field(
        description="Aurora PostgreSQL prices, USD per instance-hour"
    )
    aurora_acu_usd_per_hour: NonNegativeFloat = Field(description="Aurora Serverless v2 USD/ACU-h")
    aurora_storage_usd_per_gb_month: NonNegativeFloat = Field(description="USD per GB-month")
    elasticache_usd_per_hour: dict[str, PositiveFloat] = Field(
        description="ElastiCache Redis/Valkey node prices, USD per node-hour"
    )
    cloudwatch_alarm_usd_per_month: NonNegativeFloat = Field(description="USD per alarm-month")
    cloudwatch_dashboard_usd_per_month: NonNegativeFloat = Field(description="USD per dashboard")
    kms_key_usd_per_month: NonNegativeFloat = Field(description="USD per customer key-month")
    secret_usd_per_month: NonNegativeFloat = Field(description="USD per Secrets Manager secret")
    waf_web_acl_usd_per_month: NonNegativeFloat = Field(description="USD per WAF web ACL-month")
    waf_rule_usd_per_month: NonNegativeFloat = Field(
        description="USD per WAF rule (a managed rule group counts as one) per month"
    )


class FixedItem(_Model):
    """One line of a phase's always-on platform cost, priced with ``InfraPrices``."""

    name: str = Field(description="what this line is, for the reader")
    kind: Literal[
        "eks_control_plane",
        "ec2",
        "fargate",
        "rds",
        "aurora",
        "elasticache",
        "nat_gateway",
        "load_balancer",
        "interface_endpoint",
        "flat",
    ] = Field(description="how the line is priced")
    count: Annotated[float, Field(ge=0)] = Field(default=1, description="instances/tasks/nodes")
    size: str | None = Field(default=None, description="instance type, DB class or cache node type")
    multi_az: bool = Field(default=False, description="RDS Multi-AZ (doubles instance+storage)")
    storage_gb: NonNegativeFloat = Field(default=0, description="database storage, GB")
    vcpu: NonNegativeFloat = Field(default=0, description="Fargate vCPU per task")
    memory_gb: NonNegativeFloat = Field(default=0, description="Fargate memory per task, GB")
    azs: Annotated[int, Field(ge=1)] = Field(default=1, description="AZs an endpoint spans")
    usd_per_month: NonNegativeFloat = Field(default=0, description="flat lines: USD per month")


class Phases(_Model):
    min_savings_fraction_to_self_host: Fraction = Field(
        description="self-hosting must save at least this share of the managed bill (0..1)"
    )
    fixed: dict[Literal["1", "2", "3"], tuple[FixedItem, ...]] = Field(
        description="always-on platform of each phase (no AI usage, no GPUs)"
    )

    @model_validator(mode="after")
    def _all_phases(self) -> Phases:
        missing = {"1", "2", "3"} - set(self.fixed)
        if missing:
            raise ValueError(f"fixed cost missing for phase(s) {', '.join(sorted(missing))}")
        return self


class Assumptions(_Model):
    """All assumptions of the planner and the cost estimator."""

    transcribe: Transcribe
    bedrock: Bedrock
    summary: SummaryTokens
    gpu: Gpu
    load: Load
    infra: InfraPrices
    phases: Phases
    sources: dict[str, str] = Field(
        description="public source and date (or 'assumption') per field path"
    )

    @model_validator(mode="after")
    def _sized_items_known(self) -> Assumptions:
        tables = {
            "ec2": self.infra.ec2_usd_per_hour,
            "rds": self.infra.rds_usd_per_hour,
            "aurora": self.infra.aurora_usd_per_hour,
            "elasticache": self.infra.elasticache_usd_per_hour,
        }
        for phase, items in self.phases.fixed.items():
            for i, item in enumerate(items):
                table = tables.get(item.kind)
                if table is not None and item.size not in table:
                    known = ", ".join(sorted(table))
                    raise ValueError(
                        f"phases.fixed.{phase}.{i}.size: unknown {item.kind} type "
                        f"{item.size!r} (known: {known})"
                    )
        return self

    def source_of(self, path: str) -> str:
        """The source recorded for a dotted field path (the longest recorded prefix wins)."""
        parts = path.split(".")
        for n in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:n]))
            if found is not None:
                return found
        return ""


# --- loading and overrides ----------------------------------------------------------------------


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AssumptionError(f"--assumptions: cannot read {path}: {exc.strerror}") from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AssumptionError(f"--assumptions: {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise AssumptionError(f"--assumptions: {path} must hold a table/object at the top")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def iter_leaves(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted path, value) for every scalar in nested dicts/lists."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield from iter_leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            yield from iter_leaves(value, f"{prefix}.{i}")
    else:
        yield prefix, data


def _resolve(data: Any, parts: list[str], full: str) -> tuple[Any, str | int]:
    """Find the container and key for a dotted path; keys may contain dots (``g5.xlarge``)."""
    node = data
    i = 0
    while True:
        if isinstance(node, list):
            if not parts[i].isdigit() or int(parts[i]) >= len(node):
                raise KeyError(full)
            key: str | int = int(parts[i])
            used = 1
        elif isinstance(node, dict):
            for used in range(len(parts) - i, 0, -1):
                key = ".".join(parts[i : i + used])
                if key in node:
                    break
            else:
                raise KeyError(full)
        else:
            raise KeyError(full)
        i += used
        if i == len(parts):
            return node, key
        node = node[key]


RENAMED = {
    "load.peak_to_average": "load.hourly_profile: 24 hourly shares, peak/average follows from them",
    "bedrock.transcript_tokens_per_audio_minute": "summary.transcript_tokens_per_audio_minute",
    "bedrock.prompt_overhead_tokens": "summary.prompt_overhead_tokens",
    "bedrock.output_tokens_per_summary": "summary.output_tokens",
    "gpu.llm.output_tokens_per_second": "gpu.llm.prefill_tokens_per_second and "
    "gpu.llm.decode_tokens_per_second",
}
"""Assumptions that were replaced, and what replaced them (named when one is set)."""


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set(data: dict[str, Any], assignment: str) -> str:
    path, sep, raw = assignment.partition("=")
    path = path.strip()
    if not sep or not path:
        raise AssumptionError(f"--set {assignment}: expected path=value, e.g. gpu.spot_share=0.7")
    try:
        container, key = _resolve(data, path.split("."), path)
    except KeyError:
        paths = [p for p, _ in iter_leaves({k: v for k, v in data.items() if k != "sources"})]
        near = difflib.get_close_matches(path, paths, n=1)
        hint = (
            f" (now {RENAMED[path]})"
            if path in RENAMED
            else f" (did you mean {near[0]}?)"
            if near
            else ""
        )
        raise AssumptionError(f"--set {path}: unknown assumption{hint}") from None
    container[key] = _parse_value(raw.strip())
    return path


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line naming the first bad field (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    if loc and ":" in msg.split(" ")[0]:  # the message already names a sub-field
        loc = f"{loc}.{msg.split(':', 1)[0]}"
        msg = msg.split(":", 1)[1].strip()
    where = ".".join(p for p in (prefix, loc) if p)
    got = (
        ""
        if first["type"].startswith(("missing", "extra", "value_error"))
        else (f" (got {first['input']!r})")
    )
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid {where or 'input'}: {msg}{got}{more}"


def load_assumptions(
    files: tuple[Path, ...] | list[Path] = (), sets: tuple[str, ...] | list[str] = ()
) -> Assumptions:
    """Defaults, then each file (deep-merged), then each ``path=value``; validated once."""
    data = _read_mapping(DEFAULTS_FILE)
    sources: dict[str, str] = dict(data.get("sources", {}))
    for f in files:
        extra = _read_mapping(Path(f))
        data = _merge(data, extra)
        for path, _ in iter_leaves({k: v for k, v in extra.items() if k != "sources"}):
            sources[path] = f"override from {f}"
    for assignment in sets:
        path = _set(data, assignment)
        sources[path] = "override from --set"
    data["sources"] = sources
    try:
        return Assumptions.model_validate(data)
    except ValidationError as exc:
        raise AssumptionError(format_validation_error(exc)) from None


_DEFAULTS: Assumptions | None = None


def default_assumptions() -> Assumptions:
    """The shipped defaults (read once)."""
    global _DEFAULTS  # noqa: PLW0603 - a module-level cache of an immutable object
    if _DEFAULTS is None:
        _DEFAULTS = load_assumptions()
    return _DEFAULTS


def with_value(a: Assumptions, path: str, value: Any) -> Assumptions:
    """A copy of ``a`` with one dotted path set to ``value`` (validated)."""
    data = a.model_dump(mode="json")
    try:
        container, key = _resolve(data, path.split("."), path)
    except KeyError:
        raise AssumptionError(f"unknown assumption {path}") from None
    container[key] = value
    try:
        return Assumptions.model_validate(data)
    except ValidationError as exc:
        raise AssumptionError(format_validation_error(exc)) from None
